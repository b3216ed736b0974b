"""Ground-truth maps of the static world, computed from the geometry (not from sensors).

* occupancy ``[X, Y, Z]`` uint8 class ids, *surface* occupancy for every class alike
  (Occ3D / SemanticKITTI SSC: ground truth is the voxelised surfaces): a voxel is
  occupied when a matter surface (the ground, a primitive's face) passes through it,
  with the majority class of the matter in it; the inside of a solid is free.
* elevation ``[X, Y]`` float32: the highest static surface in each cell (ground,
  buildings, vegetation, poles, parked cars), with the class of that surface.

Ground heights are sampled on a sub-grid at least as fine as the ground mesh
(exact for the default, aligned resolutions); primitive tops on a ≤ 0.1 m sub-grid.
Both grids lie inside the ground mesh; origins are the corner of cell/voxel 0, on multiples of
the resolution from the world origin (the lattice MapBuilder uses by convention).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fuse4d.data.synthetic.config import SynthConfig
from fuse4d.data.synthetic.primitives import BOX, SPHERE, Primitives, templates
from fuse4d.data.synthetic.terrain import Terrain


def _ground_cells(terrain: Terrain, res: float) -> dict[str, np.ndarray]:
    """Per-cell ground ``hmin, hmax [X, Y]``, class of the highest point, lattice ``origin [2]``."""
    n = max(1, int(np.ceil(res / terrain.spacing - 1e-9)))
    # the lattice of every map: cell corners on multiples of res from the world origin (the
    # maps' fixed convention, see MapBuilder), inside the ground mesh
    o = np.ceil(np.asarray(terrain.origin, np.float64) / res - 1e-9) * res
    end = np.asarray(terrain.origin) + (np.asarray(terrain.shape) - 1) * terrain.spacing
    X, Y = (np.floor((end - o) / res + 1e-9)).astype(int)
    sub = res / n
    fx = o[0] + sub * np.arange(X * n + 1)
    fy = o[1] + sub * np.arange(Y * n + 1)
    FX, FY = np.meshgrid(fx, fy, indexing="ij")
    h = terrain.height_at(FX, FY)
    win = sliding_window_view(h, (n + 1, n + 1))[::n, ::n]
    flat = win.reshape(X, Y, -1)
    arg = flat.argmax(-1)
    ai, aj = np.divmod(arg, n + 1)
    ii, jj = np.meshgrid(np.arange(X), np.arange(Y), indexing="ij")
    # ground class at the highest sample, nudged towards the cell centre
    px = o[0] + (ii + 0.5 + 0.9 * (ai / n - 0.5)) * res
    py = o[1] + (jj + 0.5 + 0.9 * (aj / n - 0.5)) * res
    return {"hmin": flat.min(-1), "hmax": flat.max(-1), "cls": terrain.class_at(px, py), "shape": (X, Y),
            "origin": o}


def elevation_grid(terrain: Terrain, prims: Primitives, res: float) -> dict[str, np.ndarray]:
    """Max static surface height per cell: ``height [X, Y]`` float32, ``semantics [X, Y]`` uint8,
    ``origin [2]``, ``resolution``."""
    g = _ground_cells(terrain, res)
    height, cls = g["hmax"].copy(), g["cls"].copy()
    X, Y = g["shape"]
    origin = g["origin"]
    m = max(2, int(np.ceil(res / 0.1)))
    offs = (np.arange(m) + 0.5) / m
    lo, hi = prims.bounds()
    for i in range(len(prims)):
        i0, j0 = np.floor((lo[i, :2] - origin) / res).astype(int)
        i1, j1 = np.floor((hi[i, :2] - origin) / res).astype(int) + 1
        i0, j0, i1, j1 = max(i0, 0), max(j0, 0), min(i1, X), min(j1, Y)
        if i0 >= i1 or j0 >= j1:
            continue
        xs = origin[0] + res * (np.arange(i0, i1)[:, None] + offs[None]).reshape(-1)
        ys = origin[1] + res * (np.arange(j0, j1)[:, None] + offs[None]).reshape(-1)
        PX, PY = np.meshgrid(xs, ys, indexing="ij")
        top = prims.top_at(i, np.stack([PX, PY], -1))
        top = top.reshape(i1 - i0, m, j1 - j0, m)
        with np.errstate(invalid="ignore"):
            cell_top = np.nanmax(np.where(np.isnan(top), -np.inf, top), axis=(1, 3))
        ci, cj = np.floor((prims.center[i, :2] - origin) / res).astype(int)
        if i0 <= ci < i1 and j0 <= cj < j1:
            cell_top[ci - i0, cj - j0] = max(cell_top[ci - i0, cj - j0], prims.center[i, 2] + 0.5 * prims.size[i, 2])
        block = height[i0:i1, j0:j1]
        higher = cell_top > block
        block[higher] = cell_top[higher]
        cls[i0:i1, j0:j1][higher] = prims.cls[i]
    return {"height": height.astype(np.float32), "semantics": cls.astype(np.uint8),
            "origin": np.asarray(origin, float).copy(), "resolution": float(res)}


def _polygon(prims: Primitives, i: int) -> np.ndarray:
    """Footprint of prism primitive i (box or the 12-gon of the cylinder mesh): CCW ``[m, 2]`` world xy."""
    if prims.kind[i] == BOX:
        xy = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    else:
        tv = templates()[prims.kind[i]][0]
        ring = tv[np.hypot(tv[:, 0], tv[:, 1]) > 0.25, :2]
        ring = np.unique(np.round(ring, 9), axis=0)
        xy = ring[np.argsort(np.arctan2(ring[:, 1], ring[:, 0]))]
    xy = xy * prims.size[i, :2]
    c, s = np.cos(prims.yaw[i]), np.sin(prims.yaw[i])
    return np.column_stack([c * xy[:, 0] - s * xy[:, 1], s * xy[:, 0] + c * xy[:, 1]]) + prims.center[i, :2]


def _columns(poly: np.ndarray, origin: np.ndarray, res: float, X: int, Y: int):
    """Columns ``[i0, i1) x [j0, j1)`` of the footprint's box and, per column, whether the polygon
    ``poly [m, 2]`` overlaps the cell's square (``meets``) and covers it whole (``covers``), by
    separating axes (cell edges and polygon edge normals)."""
    lo, hi = poly.min(0), poly.max(0)
    i0, j0 = np.maximum(np.floor((lo - origin[:2]) / res).astype(int), 0)
    i1, j1 = np.minimum(np.floor((hi - origin[:2]) / res).astype(int) + 1, (X, Y))
    if i0 >= i1 or j0 >= j1:
        return None
    ci = origin[0] + res * (np.arange(i0, i1) + 0.5)
    cj = origin[1] + res * (np.arange(j0, j1) + 0.5)
    C = np.stack(np.meshgrid(ci, cj, indexing="ij"), -1)                # [I, J, 2] cell centres
    e = np.roll(poly, -1, axis=0) - poly
    n = np.column_stack([e[:, 1], -e[:, 0]]) / np.maximum(np.linalg.norm(e, axis=1), 1e-12)[:, None]
    d = np.einsum("md,md->m", n, poly)                                   # outward support per edge
    pmin = (poly @ n.T).min(0)                                           # polygon's low end per normal
    proj = C @ n.T                                                       # [I, J, m]
    half = 0.5 * res * np.abs(n).sum(1)
    eps = 1e-9
    meets = np.all((proj - half < d - eps) & (proj + half > pmin + eps), -1)
    meets &= (np.abs(C[..., 0] - 0.5 * (lo[0] + hi[0])) < 0.5 * (hi[0] - lo[0] + res) - eps)
    meets &= (np.abs(C[..., 1] - 0.5 * (lo[1] + hi[1])) < 0.5 * (hi[1] - lo[1] + res) - eps)
    covers = np.all(proj + half <= d + eps, -1)
    return (i0, i1, j0, j1), meets, covers


def _triangle_samples(v: np.ndarray, tri: np.ndarray, step: float) -> np.ndarray:
    """Points ``[M, 3]`` on triangles ``v[tri]`` on a barycentric lattice at most ``step`` m apart."""
    out = []
    T = v[tri]                                                            # [K, 3, 3]
    edge = np.max(np.linalg.norm(T - np.roll(T, 1, axis=1), axis=-1), axis=1)
    ns = np.maximum(np.ceil(edge / step).astype(int), 1)
    for n in np.unique(ns):
        a, b = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        keep = a + b <= n
        w = np.column_stack([a[keep], b[keep]]) / n                      # [L, 2]
        t = T[ns == n]
        out.append((t[:, None, 0] + w[None, :, :1] * (t[:, None, 1] - t[:, None, 0])
                    + w[None, :, 1:] * (t[:, None, 2] - t[:, None, 0])).reshape(-1, 3))
    return np.concatenate(out) if out else np.zeros((0, 3))


def occupancy_grid(terrain: Terrain, prims: Primitives, res: float) -> dict[str, np.ndarray]:
    """Surface occupancy: ``labels [X, Y, Z]`` uint8 (0 = free), ``origin [3]``, ``resolution``.

    A voxel is occupied when a surface of matter (the ground, or a face of a static primitive's
    mesh, as the sensors see them) passes through it; its class is the majority class of the
    matter in it (by volume, on a 4³ sub-grid; a voxel whose matter is too thin for the sub-grid
    takes the class of the thinnest surface in it). Surfaces inside other matter (a voxel wholly
    inside a primitive or below the ground) do not count; the inside of a solid is free. This is
    the voxelised-surface convention of Occ3D / SemanticKITTI SSC, the same for every class.
    Prism faces (boxes, cylinders) are voxelised exactly; sphere meshes from surface samples
    ≤ res/4 apart.
    """
    g = _ground_cells(terrain, res)
    X, Y = g["shape"]
    top = float(np.max(prims.center[:, 2] + 0.5 * prims.size[:, 2])) if len(prims) else float(g["hmax"].max())
    z0 = np.floor((g["hmin"].min() - res) / res) * res
    Z = int(np.ceil((max(top, g["hmax"].max()) + res - z0) / res))
    origin = np.array([g["origin"][0], g["origin"][1], z0])
    shape = (X, Y, Z)
    k_lo = np.clip(np.floor((g["hmin"] - z0) / res).astype(int), 0, Z - 1)
    k_hi = np.clip(np.floor((g["hmax"] - z0) / res).astype(int), 0, Z - 1)
    k = np.arange(Z)
    # voxels wholly inside matter: below the ground surface, or inside a primitive
    inner = k[None, None] < k_lo[..., None]
    flats, classes = [], []

    def emit(i, j, kk, c):
        flats.append(np.ravel_multi_index((i, j, kk), shape))
        classes.append(np.full(len(flats[-1]), c, np.uint8))

    lo_b, hi_b = prims.bounds()
    for i in range(len(prims)):
        za, zb = prims.center[i, 2] - 0.5 * prims.size[i, 2], prims.center[i, 2] + 0.5 * prims.size[i, 2]
        ka, kb = (int(np.clip(np.floor((z - z0) / res), 0, Z - 1)) for z in (za, zb))
        if prims.kind[i] == SPHERE:
            a = np.maximum(np.floor((lo_b[i] - origin) / res).astype(int), 0)
            b = np.minimum(np.floor((hi_b[i] - origin) / res).astype(int) + 1, shape)
            if np.any(a >= b):
                continue
            corners = [origin[d] + res * np.arange(a[d], b[d] + 1) for d in range(3)]
            P = np.stack(np.meshgrid(*corners, indexing="ij"), -1)
            q = prims.local(i, P)
            ins = np.sum(q * q, -1) <= 0.25 * _SPHERE_IN ** 2       # inside the mesh's inscribed ellipsoid
            whole = sliding_window_view(ins, (2, 2, 2)).all(axis=(-3, -2, -1))
            inner[a[0]:b[0], a[1]:b[1], a[2]:b[2]] |= whole
            tv, tt = templates()[SPHERE]
            lv = tv * prims.size[i]
            c, s = np.cos(prims.yaw[i]), np.sin(prims.yaw[i])
            wv = np.column_stack([c * lv[:, 0] - s * lv[:, 1], s * lv[:, 0] + c * lv[:, 1], lv[:, 2]]) + prims.center[i]
            ijk = np.floor((_triangle_samples(wv, tt, 0.25 * res) - origin) / res).astype(int)
            ijk = ijk[np.all((ijk >= 0) & (ijk < shape), 1)]
            if len(ijk):
                emit(*ijk.T, prims.cls[i])
            continue
        cols = _columns(_polygon(prims, i), origin, res, X, Y)
        if cols is None:
            continue
        (i0, i1, j0, j1), meets, covers = cols
        # wholly inside: covered columns, voxels within [za, zb]
        kin0, kin1 = int(np.ceil((za - z0) / res - 1e-9)), int(np.floor((zb - z0) / res + 1e-9))
        if kin1 > kin0:
            inner[i0:i1, j0:j1, max(kin0, 0):max(kin1, 0)] |= covers[..., None]
        # side faces cross the columns the outline passes through; top/bottom faces the covered ones
        ii, jj = np.nonzero(meets & ~covers)
        if len(ii):
            n = kb - ka + 1
            emit(np.repeat(ii + i0, n), np.repeat(jj + j0, n), np.tile(np.arange(ka, kb + 1), len(ii)), prims.cls[i])
        ii, jj = np.nonzero(covers)
        for kk in {ka, kb}:
            emit(ii + i0, jj + j0, np.full(len(ii), kk), prims.cls[i])
    # the ground surface, with the class of each ground material it carries (2 x 2 per cell)
    gcls = _ground_classes(terrain, origin, res, X, Y, 2)                     # [X, Y, 2*2]
    gi, gj = np.nonzero(np.ones((X, Y), bool))
    for c in np.unique(gcls):
        has = (gcls == c).any(-1).reshape(-1)
        n = (k_hi - k_lo + 1).reshape(-1)[has]
        ci, cj = gi[has], gj[has]
        kk = np.repeat(k_lo.reshape(-1)[has], n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
        emit(np.repeat(ci, n), np.repeat(cj, n), kk, c)
    flat = np.concatenate(flats)
    cls = np.concatenate(classes)
    keep = ~inner.reshape(-1)[flat]
    flat, cls = flat[keep], cls[keep]
    labels = np.zeros(X * Y * Z, np.uint8)
    n_cls = np.zeros(X * Y * Z, np.uint8)
    for c in np.unique(cls):
        has = np.zeros(X * Y * Z, bool)
        has[flat[cls == c]] = True
        n_cls += has
        labels[has] = c
    multi = np.flatnonzero(n_cls > 1)
    if len(multi):
        pos = np.searchsorted(multi, flat)
        sel = (pos < len(multi)) & (multi[np.minimum(pos, len(multi) - 1)] == flat)
        fallback = _thinnest(cls[sel], pos[sel], len(multi), prims)
        labels[multi] = _majority(terrain, prims, np.stack(np.unravel_index(multi, shape), -1), origin, res, fallback)
    return {"labels": labels.reshape(shape), "origin": origin, "resolution": float(res)}


#: the sphere mesh (resolution 6) holds the ellipsoid shrunk by this factor (its faces' least distance)
_SPHERE_IN = 0.93


def _ground_classes(terrain: Terrain, origin: np.ndarray, res: float, X: int, Y: int, m: int = 4) -> np.ndarray:
    """Ground class at ``m x m`` points of every cell of the lattice at ``origin``: ``[X, Y, m*m]`` uint8."""
    offs = (np.arange(m) + 0.5) / m
    xs = origin[0] + res * (np.arange(X)[:, None] + offs[None]).reshape(-1)
    ys = origin[1] + res * (np.arange(Y)[:, None] + offs[None]).reshape(-1)
    PX, PY = np.meshgrid(xs, ys, indexing="ij")
    c = terrain.class_at(PX, PY).reshape(X, m, Y, m)
    return c.transpose(0, 2, 1, 3).reshape(X, Y, m * m)


def _thinnest(cls: np.ndarray, inv: np.ndarray, n: int, prims: Primitives) -> np.ndarray:
    """Per voxel ``[n]`` the class, among its candidates ``cls`` (voxel ``inv``), of the thinnest
    matter: primitive classes by their smallest horizontal size, ground last."""
    thin = np.full(256, np.inf)
    for c in np.unique(prims.cls):
        thin[c] = prims.size[prims.cls == c, :2].min()
    order = np.lexsort((cls, thin[cls], inv))
    first = np.r_[True, inv[order][1:] != inv[order][:-1]]
    out = np.zeros(n, np.uint8)
    out[inv[order][first]] = cls[order][first]
    return out


def _majority(terrain: Terrain, prims: Primitives, ijk: np.ndarray, origin: np.ndarray, res: float,
              fallback: np.ndarray, m: int = 4) -> np.ndarray:
    """Majority class of the matter in voxels ``ijk [N, 3]`` from ``m³`` sub-samples each (a point
    inside a primitive counts for it, else below the ground for the ground's class); ``fallback [N]``
    where no sample lies in matter."""
    offs = (np.arange(m) + 0.5) / m
    sub = np.stack(np.meshgrid(offs, offs, offs, indexing="ij"), -1).reshape(-1, 3)
    P = origin + res * (ijk[:, None, :] + sub[None])                    # [N, m^3, 3]
    lab = np.zeros(P.shape[:2], np.uint8)
    below = P[..., 2] < terrain.height_at(P[..., 0], P[..., 1])
    lab[below] = terrain.class_at(P[..., 0][below], P[..., 1][below])
    lo_b, hi_b = prims.bounds()
    vlo, vhi = origin + res * ijk, origin + res * (ijk + 1)
    for i in range(len(prims)):
        sel = np.flatnonzero(np.all((vhi > lo_b[i]) & (vlo < hi_b[i]), 1))
        if len(sel):
            ins = prims.contains(i, P[sel])
            lab[sel] = np.where(ins, prims.cls[i], lab[sel])
    C = int(lab.max()) + 1
    counts = np.bincount((np.arange(len(ijk))[:, None] * C + lab).reshape(-1), minlength=len(ijk) * C)
    counts = counts.reshape(len(ijk), C)
    counts[:, 0] = 0
    return np.where(counts.any(1), counts.argmax(1), fallback).astype(np.uint8)


def ground_truth_maps(terrain: Terrain, prims: Primitives, cfg: SynthConfig) -> dict[str, dict]:
    """Both maps, as in ``Sequence.gt_maps``: ``{"occupancy": ..., "elevation": ...}``."""
    return {"occupancy": occupancy_grid(terrain, prims, cfg.occupancy_resolution),
            "elevation": elevation_grid(terrain, prims, cfg.elevation_resolution)}
