"""Ground-truth maps of the static world, computed from the geometry (not from sensors).

* occupancy ``[X, Y, Z]`` uint8 class ids: ground voxels are those the ground
  surface passes through (its min..max height over the cell); a primitive
  occupies the voxels whose centre lies inside it and above the ground.
* elevation ``[X, Y]`` float32: the highest static surface in each cell (ground,
  buildings, vegetation, poles, parked cars), with the class of that surface.

Ground heights are sampled on a sub-grid at least as fine as the ground mesh
(exact for the default, aligned resolutions); primitive tops on a ≤ 0.1 m sub-grid.
Both grids cover the ground mesh; origins are the corner of cell/voxel 0.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fuse4d.data.synthetic.config import SynthConfig
from fuse4d.data.synthetic.primitives import Primitives
from fuse4d.data.synthetic.terrain import Terrain


def _ground_cells(terrain: Terrain, res: float) -> dict[str, np.ndarray]:
    """Per-cell ground ``hmin, hmax [X, Y]``, class of the highest point, cell-centre height."""
    n = max(1, int(np.ceil(res / terrain.spacing - 1e-9)))
    extent = (np.asarray(terrain.shape) - 1) * terrain.spacing
    X, Y = (np.floor(extent / res + 1e-9)).astype(int)
    sub = res / n
    fx = terrain.origin[0] + sub * np.arange(X * n + 1)
    fy = terrain.origin[1] + sub * np.arange(Y * n + 1)
    FX, FY = np.meshgrid(fx, fy, indexing="ij")
    h = terrain.height_at(FX, FY)
    win = sliding_window_view(h, (n + 1, n + 1))[::n, ::n]
    flat = win.reshape(X, Y, -1)
    arg = flat.argmax(-1)
    ai, aj = np.divmod(arg, n + 1)
    ii, jj = np.meshgrid(np.arange(X), np.arange(Y), indexing="ij")
    # ground class at the highest sample, nudged towards the cell centre
    px = terrain.origin[0] + (ii + 0.5 + 0.9 * (ai / n - 0.5)) * res
    py = terrain.origin[1] + (jj + 0.5 + 0.9 * (aj / n - 0.5)) * res
    cx = terrain.origin[0] + (ii + 0.5) * res
    cy = terrain.origin[1] + (jj + 0.5) * res
    return {"hmin": flat.min(-1), "hmax": flat.max(-1), "cls": terrain.class_at(px, py),
            "centre": terrain.height_at(cx, cy), "shape": (X, Y)}


def elevation_grid(terrain: Terrain, prims: Primitives, res: float) -> dict[str, np.ndarray]:
    """Max static surface height per cell: ``height [X, Y]`` float32, ``semantics [X, Y]`` uint8,
    ``origin [2]``, ``resolution``."""
    g = _ground_cells(terrain, res)
    height, cls = g["hmax"].copy(), g["cls"].copy()
    X, Y = g["shape"]
    origin = terrain.origin
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


def occupancy_grid(terrain: Terrain, prims: Primitives, res: float) -> dict[str, np.ndarray]:
    """Voxel class labels ``labels [X, Y, Z]`` uint8 (0 = free), ``origin [3]``, ``resolution``."""
    g = _ground_cells(terrain, res)
    X, Y = g["shape"]
    top = float(np.max(prims.center[:, 2] + 0.5 * prims.size[:, 2])) if len(prims) else float(g["hmax"].max())
    z0 = np.floor((g["hmin"].min() - res) / res) * res
    Z = int(np.ceil((max(top, g["hmax"].max()) + res - z0) / res))
    k_lo = np.floor((g["hmin"] - z0) / res).astype(int)
    k_hi = np.floor((g["hmax"] - z0) / res).astype(int)
    k = np.arange(Z)
    ground = (k[None, None] >= k_lo[..., None]) & (k[None, None] <= k_hi[..., None])
    labels = np.where(ground, g["cls"][..., None], 0).astype(np.uint8)
    origin = np.array([terrain.origin[0], terrain.origin[1], z0])
    lo, hi = prims.bounds()
    for i in range(len(prims)):
        a = np.maximum(np.floor((lo[i] - origin) / res).astype(int), 0)
        b = np.minimum(np.floor((hi[i] - origin) / res).astype(int) + 1, (X, Y, Z))
        if np.any(a >= b):
            continue
        axes = [origin[d] + res * (np.arange(a[d], b[d]) + 0.5) for d in range(3)]
        P = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
        inside = prims.contains(i, P) & (P[..., 2] > g["centre"][a[0]:b[0], a[1]:b[1], None])
        labels[a[0]:b[0], a[1]:b[1], a[2]:b[2]][inside] = prims.cls[i]
    return {"labels": labels, "origin": origin, "resolution": float(res)}


def ground_truth_maps(terrain: Terrain, prims: Primitives, cfg: SynthConfig) -> dict[str, dict]:
    """Both maps, as in ``Sequence.gt_maps``: ``{"occupancy": ..., "elevation": ...}``."""
    return {"occupancy": occupancy_grid(terrain, prims, cfg.occupancy_resolution),
            "elevation": elevation_grid(terrain, prims, cfg.elevation_resolution)}
