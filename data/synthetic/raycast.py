"""Ray casting of sensor fans against the static scene and the moving boxes.

Rays come in *fans*: all rays of a fan share an origin and a capture time and
lie in one plane (a LiDAR azimuth column, a camera pixel column), spanned by
the fan's ``fwd`` and ``up`` axes; ray r of fan f has in-plane angle
``angle[f, r]`` (ascending in r). A moving box is tested only against the rays
of the fans whose plane cuts its bounding sphere, and only those within the
angular range the sphere covers in that plane, so the work is proportional to
what the actors cover, not rays × actors. Boxes are placed at each fan's time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fuse4d.data.synthetic.terrain import classify_offset


@dataclass
class Fans:
    """Rays grouped in F planar fans of R rays each (rays are flattened fan-major).

    Attributes:
        origin, normal, fwd, up: ``[F, 3]`` fan origin (world, m) and plane axes (unit).
        dirs: ``[F, R, 3]`` ray directions; hit distances are in units of their length.
        angle: ``[F, R]`` in-plane angle ``atan2(d·up, d·fwd)`` of each ray, ascending in r.
        time: ``[F]`` capture time of each fan (s).
    """

    origin: np.ndarray
    normal: np.ndarray
    fwd: np.ndarray
    up: np.ndarray
    dirs: np.ndarray
    angle: np.ndarray
    time: np.ndarray


def _candidates(fans: Fans, centre: np.ndarray, radius: np.ndarray, max_dist: float) -> tuple[np.ndarray, np.ndarray]:
    """(part, ray) pairs whose ray may hit the bounding sphere of the part."""
    F, R = fans.angle.shape
    rel = centre - fans.origin[None]
    dist = np.einsum("pfi,fi->pf", rel, fans.normal)
    rho2 = radius[:, None] ** 2 - dist ** 2
    x = np.einsum("pfi,fi->pf", rel, fans.fwd)
    y = np.einsum("pfi,fi->pf", rel, fans.up)
    near = (rho2 > 0) & (np.sqrt(x * x + y * y + dist * dist) <= max_dist + radius[:, None])
    p, f = np.nonzero(near)
    if p.size == 0:
        return p, p
    x, y, rho = x[p, f], y[p, f], np.sqrt(rho2[p, f])
    r_c = np.hypot(x, y)
    half = np.where(rho >= r_c, np.pi, np.arcsin(np.minimum(1.0, rho / np.maximum(r_c, 1e-9))))
    a_c = np.arctan2(y, x)
    # global sort key: fan index * 8 + angle (angles lie in (-pi, pi))
    keys = (np.arange(F)[:, None] * 8.0 + fans.angle).reshape(-1)
    full = half >= 0.5 * np.pi
    lo = np.where(full, f * 8.0 - 4.0, f * 8.0 + np.maximum(a_c - half, -3.99))
    hi = np.where(full, f * 8.0 + 4.0, f * 8.0 + np.minimum(a_c + half, 3.99))
    i0 = np.searchsorted(keys, lo, "left")
    i1 = np.searchsorted(keys, hi, "right")
    counts = np.maximum(i1 - i0, 0)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    start = np.repeat(i0 - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    rays = start + np.arange(total)
    return np.repeat(p, counts), rays


def cast_boxes(fans: Fans, box_center: np.ndarray, box_yaw: np.ndarray, box_size: np.ndarray,
               max_t: float = np.inf) -> dict[str, np.ndarray]:
    """First hits of fans with yaw-rotated boxes that move between fans.

    Args:
        fans: the rays; box_center ``[P, F, 3]`` and box_yaw ``[P, F]`` at each fan's time;
        box_size ``[P, 3]`` full extents; max_t: ignore farther hits.

    Returns ``ray [H]`` (flat ray index), ``t [H]``, ``part [H]``, ``normal [H, 3]`` (world,
    outward) for the rays that hit a box.
    """
    F, R, _ = fans.dirs.shape
    empty = {"ray": np.zeros(0, np.int64), "t": np.zeros(0), "part": np.zeros(0, np.int64),
             "normal": np.zeros((0, 3))}
    if box_center.shape[0] == 0:
        return empty
    scale = float(np.sqrt((fans.dirs[:, [0, -1]] ** 2).sum(-1).max()))
    radius = 0.5 * np.linalg.norm(box_size, axis=1)
    p_idx, ray = _candidates(fans, box_center, radius, max_t * scale)
    if ray.size == 0:
        return empty
    f_idx = ray // R
    yaw = box_yaw[p_idx, f_idx]
    c, s = np.cos(yaw), np.sin(yaw)
    o = fans.origin[f_idx] - box_center[p_idx, f_idx]
    d = fans.dirs.reshape(-1, 3)[ray]
    o_l = np.stack([c * o[:, 0] + s * o[:, 1], -s * o[:, 0] + c * o[:, 1], o[:, 2]], -1)
    d_l = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], -1)
    half = 0.5 * box_size[p_idx]
    inv = 1.0 / np.where(np.abs(d_l) < 1e-12, 1e-12, d_l)
    t1 = (-half - o_l) * inv
    t2 = (half - o_l) * inv
    t_lo = np.minimum(t1, t2)
    t_near = t_lo.max(axis=1)
    t_far = np.maximum(t1, t2).min(axis=1)
    hit = np.flatnonzero((t_far >= t_near) & (t_near > 0) & (t_near <= max_t))
    if hit.size == 0:
        return empty
    order = hit[np.lexsort((t_near[hit], ray[hit]))]
    first = order[np.r_[True, ray[order][1:] != ray[order][:-1]]]
    axis = t_lo[first].argmax(axis=1)
    n_l = np.zeros((first.size, 3))
    n_l[np.arange(first.size), axis] = -np.sign(d_l[first, axis])
    c, s = c[first], s[first]
    normal = np.stack([c * n_l[:, 0] - s * n_l[:, 1], s * n_l[:, 0] + c * n_l[:, 1], n_l[:, 2]], -1)
    return {"ray": ray[first], "t": t_near[first], "part": p_idx[first], "normal": normal}


def trace(static, actors, fans: Fans, max_t: float = np.inf) -> dict[str, np.ndarray]:
    """Cast fans into the static scene and the moving actors (at each fan's time).

    Args:
        static: a ``StaticScene``; actors: an ``Actors``; fans: the rays; max_t: max hit distance.

    Returns per *hit* (H of the ``F*R`` rays): ``idx [H]`` flat ray index (fan-major), ``t [H]``,
    ``cls [H]`` uint8, ``inst [H]`` int32 (-1 = stuff), ``dynamic [H]`` bool, ``normal [H, 3]``,
    ``color [H, 3]`` base albedo and ``ground [H, 3]`` = (d, cos φ, sin φ) on ground (else 0).
    """
    F, R, _ = fans.dirs.shape
    dirs = fans.dirs.reshape(-1, 3)
    st = static.cast(np.repeat(fans.origin, R, axis=0), dirs)
    t_all = st["t"].astype(np.float64)
    if len(actors):
        times, inv = np.unique(fans.time, return_inverse=True)
        centre, yaw = actors.part_poses(times)
        box = cast_boxes(fans, centre[:, inv], yaw[:, inv], actors.parts.size, max_t)
        nearer = box["t"] < t_all[box["ray"]]
        b_ray, b_t, b_part, b_n = box["ray"][nearer], box["t"][nearer], box["part"][nearer], box["normal"][nearer]
        t_all[b_ray] = b_t
    else:
        b_ray = np.zeros(0, np.int64)
    idx = np.flatnonzero(np.isfinite(t_all) & (t_all <= max_t))
    is_box = np.zeros(F * R, bool)
    is_box[b_ray] = True
    from_box = is_box[idx]
    s_idx = idx[~from_box]
    tri = st["tri"][s_idx]
    H = idx.size
    cls = np.zeros(H, np.uint8)
    inst = np.full(H, -1, np.int32)
    color = np.zeros((H, 3), np.float32)
    normal = np.zeros((H, 3))
    ground = np.zeros((H, 3), np.float32)
    sm = ~from_box
    cls[sm] = static.tri_cls[tri]
    prim = static.tri_prim[tri]
    has_prim = prim >= 0
    sp = np.flatnonzero(sm)[has_prim]
    inst[sp] = static.prims.inst[prim[has_prim]]
    color[sp] = static.prims.color[prim[has_prim]]
    normal[sm] = st["normal"][s_idx]
    on_ground = ~has_prim
    if on_ground.any():
        g_tri = tri[on_ground]
        uv = st["uv"][s_idx[on_ground]]
        w = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], -1)
        vid = static.triangles[g_tri].astype(np.int64)
        g_idx = np.flatnonzero(sm)[on_ground]
        ground[g_idx] = np.einsum("nk,nkc->nc", w, static.terrain.vertex_attr[vid])
        cls[g_idx] = classify_offset(ground[g_idx, 0])
    dynamic = from_box.copy()
    if from_box.any():
        pos = np.searchsorted(idx, b_ray[b_ray.argsort()])
        order = b_ray.argsort()
        part = b_part[order]
        k = actors.parts.actor[part]
        cls[pos] = actors.cls[k]
        inst[pos] = actors.ids[k]
        color[pos] = actors.color[k] * actors.parts.shade[part, None]
        normal[pos] = b_n[order]
    return {"idx": idx, "t": t_all[idx], "cls": cls, "inst": inst, "dynamic": dynamic, "normal": normal,
            "color": color, "ground": ground}
