"""LiDAR moving-object segmentation: each scan against the past scans in aligned frames.

The idea (visibility-based, as in Removert/Dynablox, filtered over time as in
4DMOS/MapMOS): a point is *moving* when the space it occupies now was seen
*free* before — an earlier ray of the sensor passed through it and hit
something farther away. Every past scan kept in ``history`` is an independent
observation of the point's location:

* free (all rays of the point's neighbourhood went beyond it) → ``+l_free``;
* occupied by a surface that was itself static → ``-l_occ``;
* occluded, unseen, or occupied by something moving → no information.

Backward, each new scan also checks the previous one: a previous point in
the space the new scan sees free has gone (a receding car, the rear of a car
ahead at the ego's speed, whose new place stays hidden behind it from every
earlier viewpoint); the previous scan's posterior is revised before it is
carried on and kept as a static reference.

The log-odds of these observations, the prior, and the previous scan's
posterior carried to the nearest current point (after moving it with its
track's velocity) are summed: a binary Bayes filter over repeated
observations. Finally non-ground points are grouped into objects
(DBSCAN) and an object with enough moving votes is moving as a whole,
which recovers the parts of a car that still overlap where it was a moment ago.

Everything is vectorised over points; nothing loops over points in Python.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from fuse4d.dynamics.config import DynamicsConfig
from fuse4d.dynamics.ground import GroundGrid
from fuse4d.dynamics.range_grid import PastScan, SphericalGrid, scan_evidence


def _voxel_keys(points: np.ndarray, cell: float) -> np.ndarray:
    """One int64 key per point ``[N, 3]`` for its ``cell`` voxel (±2^20 cells per axis)."""
    ijk = np.floor(points / cell).astype(np.int64) + (1 << 20)
    return (ijk[:, 0] << 42) | (ijk[:, 1] << 21) | ijk[:, 2]


def cluster_objects(points_world: np.ndarray, eps: float, min_points: int) -> np.ndarray:
    """Object labels ``[N]`` int64 of points ``[N, 3]`` (−1 = too small): connected components of
    occupied ``eps`` voxels (26-neighbourhood), a grid form of DBSCAN that runs in linear time."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(points_world)
    if n == 0:
        return np.zeros(0, np.int64)
    ijk = np.floor(points_world / eps).astype(np.int64)
    ijk -= ijk.min(axis=0)
    dims = ijk.max(axis=0) + 3
    key = ((ijk[:, 0] + 1) * dims[1] + ijk[:, 1] + 1) * dims[2] + ijk[:, 2] + 1
    voxels, inv = np.unique(key, return_inverse=True)
    rows, cols = [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                if (dx, dy, dz) <= (0, 0, 0):
                    continue  # each neighbour pair once
                nb = voxels + (dx * dims[1] + dy) * dims[2] + dz
                pos = np.clip(np.searchsorted(voxels, nb), 0, len(voxels) - 1)
                hit = voxels[pos] == nb
                rows.append(np.nonzero(hit)[0])
                cols.append(pos[hit])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(len(voxels), len(voxels)))
    _, comp = connected_components(graph, directed=False)
    labels = comp[inv].astype(np.int64)
    sizes = np.bincount(labels)
    labels[sizes[labels] < min_points] = -1
    return labels


class LidarMOS:
    """Streaming moving-object segmentation; feed scans in time order with their world poses.

    Args:
        config: the ``dynamics`` settings.
        grid: range-grid geometry (see :meth:`SphericalGrid.for_sensor`).
    """

    def __init__(self, config: DynamicsConfig, grid: SphericalGrid):
        self.config, self.grid = config, grid
        self.past: deque[PastScan] = deque(maxlen=config.history)
        self.ground = GroundGrid(config.ground_cell, config.ground_height)
        self._prev_points: np.ndarray | None = None
        self._prev_logodds: np.ndarray | None = None
        self._prev: tuple | None = None  # (T_world_sensor, log-odds before voting, objects, seen static, valid, ground)
        self._flow: np.ndarray | None = None
        self.recent: deque[_Scan] = deque(maxlen=config.backward_frames + 1)

    def update(self, points_world: np.ndarray, T_world_sensor: np.ndarray,
               flow_prev: np.ndarray | None = None, extra_logodds: np.ndarray | None = None
               ) -> dict[str, np.ndarray]:
        """Segment one scan and add it to the history.

        Args:
            points_world: ``[N, 3]`` the scan in the world frame (motion-compensated), m.
            T_world_sensor: ``[4, 4]`` sensor pose at the scan stamp.
            flow_prev: ``[N_prev, 3]`` displacement (m) of the previous scan's points since then
                (their track's velocity × dt), or None (treated as zero).
            extra_logodds: ``[N]`` further independent evidence (e.g. the model's), added as is.
        Returns:
            ``prob [N]`` float32 moving probability, ``logodds [N]`` float32 (before object voting),
            ``ground [N]`` bool, ``objects [N]`` int64 object ids of non-ground points (−1 = none),
            ``valid [N]`` bool (inside [min_range, max_range]).
        """
        cfg = self.config
        self._flow = None if flow_prev is None else np.asarray(flow_prev, np.float64)
        pts = np.asarray(points_world, np.float64)[:, :3]
        n = len(pts)
        r = np.linalg.norm(pts - T_world_sensor[:3, 3], axis=1)
        valid = (r >= cfg.min_range) & (r <= cfg.max_range)
        ground = self.ground.update(pts, T_world_sensor[:3, 3], cfg.max_range + 10.0)
        now = PastScan.build(self.grid, pts, T_world_sensor, None, cfg, ground)  # static grids: see the end
        if cfg.revise_previous and self._prev is not None:
            self._revise_previous(now)
        logodds = np.full(n, cfg.l_prior)
        n_free = np.zeros(n, np.int32)
        n_occ = np.zeros(n, np.int32)
        for past in self.past:
            free, occ = scan_evidence(self.grid, pts, past, cfg, ground)
            n_free += free
            n_occ += occ
        logodds += cfg.l_free * n_free - cfg.l_occ * n_occ
        logodds += cfg.l_carry * self._carried(pts)
        if extra_logodds is not None:
            logodds += extra_logodds
        logodds = np.clip(logodds, -cfg.l_clamp, cfg.l_clamp)
        logodds[~valid] = -cfg.l_clamp
        objects = np.full(n, -1, np.int64)
        above = ~ground & valid
        objects[above] = cluster_objects(pts[above], cfg.cluster_eps, cfg.cluster_min_points)
        seen_static = n_occ > n_free
        final = self._vote(logodds, objects, seen_static)
        prob = 1.0 / (1.0 + np.exp(-final))
        self.past.append(now.with_posterior(prob))
        self._prev_points, self._prev_logodds = pts, final
        self._prev = (T_world_sensor, logodds, objects, seen_static, valid, ground)
        self.recent.append(_Scan(pts, objects, seen_static, valid & ~ground, final, now))
        return {"prob": prob.astype(np.float32), "logodds": logodds.astype(np.float32), "ground": ground,
                "objects": objects, "valid": valid}

    def _revise_previous(self, now: PastScan) -> None:
        """Backward evidence: the previous scan's points that lie in the space the new scan ``now``
        sees free were moving (the surface has gone: a car driving away, the rear of a car ahead
        moving at the ego's speed, whose new place hides behind it from every earlier viewpoint).
        Their log-odds take ``+l_free``, the previous objects are voted again, and the revised
        posterior replaces the previous scan's in the history (its static surfaces) and in the
        posterior carried to the new scan. The output already returned for that scan is unchanged."""
        cfg = self.config
        _, logodds, objects, seen_static, valid, ground = self._prev
        free, _ = scan_evidence(self.grid, self._prev_points, now, cfg, ground, occupancy=False)
        free &= valid
        if not free.any():
            return
        revised = np.clip(logodds + cfg.l_free * free, -cfg.l_clamp, cfg.l_clamp)
        final = self._vote(revised, objects, seen_static & ~free)
        self._prev_logodds = np.maximum(self._prev_logodds, final)
        prob = 1.0 / (1.0 + np.exp(-self._prev_logodds))
        self.past[-1].with_posterior(prob)  # the previous scan's grids, its static returns revised
        if self.recent and self.config.backward_frames > 0:
            rec = self.recent[-1]
            rec.changed |= bool(((self._prev_logodds > 0) != (rec.final > 0)).any())
            rec.final = self._prev_logodds

    def backward(self, velocity: np.ndarray | None, t: float) -> list[tuple[float, np.ndarray]]:
        """Offline backward pass after :meth:`update`: once a later scan's object is moving, the same
        object in the earlier scans kept (``backward_frames``) is moving too (a car caught only once it
        showed a leading edge, a receding truck caught once it left free space behind).

        ``velocity [N, 3]`` (m/s) of the scan just updated (its track's; zeros or None = unknown) and its
        stamp ``t`` (s). Each earlier scan's points lying in a ``carry_radius`` voxel of the next scan's
        moving points, moved back by their velocity, are moving; its objects are voted again; the pass
        walks back while decisions change. Returns ``[(t_k, prob_k [N_k] float32)]`` of the earlier scans
        whose moving/static decisions changed since they were last returned (oldest first)."""
        if not self.recent:
            return []
        cur = self.recent[-1]
        cur.t, cur.velocity = float(t), velocity
        cfg = self.config
        recs = list(self.recent)
        for j in range(len(recs) - 2, -1, -1):
            a, b = recs[j], recs[j + 1]
            if b.velocity is None:
                break
            src = (b.final > 0) & (np.linalg.norm(b.velocity[:, :2], axis=1) >= cfg.backward_min_speed)
            if not src.any():
                break
            vel = b.velocity[src]
            keys = _voxel_keys(b.points[src] - vel * (b.t - a.t), cfg.carry_radius)
            keys, first = np.unique(keys, return_index=True)
            q = _voxel_keys(a.points, cfg.carry_radius)
            pos = np.clip(np.searchsorted(keys, q), 0, len(keys) - 1)
            hit = keys[pos] == q
            back = hit & a.valid & (a.final <= 0) & ~a.seen_static  # a stopped car, seen static, stays
            if a.velocity is None:
                a.velocity = np.zeros((len(a.points), 3))
            slow = hit & (np.linalg.norm(a.velocity[:, :2], axis=1) < cfg.backward_min_speed)
            a.velocity[slow] = vel[first[pos[slow]]]  # the track's velocity carries on backward
            if not back.any():
                continue
            lifted = a.final.copy()
            lifted[back] = cfg.l_free
            new = np.where(a.seen_static, a.final, np.maximum(a.final, self._vote(lifted, a.objects, a.seen_static)))
            a.final, a.changed = new, True
            a.past.with_posterior(1.0 / (1.0 + np.exp(-new)))  # later scans see its static surfaces only
        out = []
        for rec in recs[:-1]:
            if rec.changed:
                rec.changed = False
                out.append((rec.t, (1.0 / (1.0 + np.exp(-rec.final))).astype(np.float32)))
        return out

    def _carried(self, pts: np.ndarray) -> np.ndarray:
        """The previous posterior (log-odds above the prior) of the previous scan's points, moved by
        their flow, in the ``carry_radius`` voxel of each point (the largest when several fall there)."""
        if self._prev_points is None or not len(self._prev_points) or not len(pts):
            return np.zeros(len(pts))
        prev = self._prev_points + (0.0 if self._flow is None else self._flow)
        cell = self.config.carry_radius
        keys = _voxel_keys(prev, cell)
        vals = self._prev_logodds - self.config.l_prior
        order = np.lexsort((-vals, keys))
        keys, vals = keys[order], vals[order]
        first = np.r_[True, keys[1:] != keys[:-1]]
        keys, vals = keys[first], vals[first]
        q = _voxel_keys(pts, cell)
        pos = np.clip(np.searchsorted(keys, q), 0, len(keys) - 1)
        return np.where(keys[pos] == q, vals[pos], 0.0)

    def _vote(self, logodds: np.ndarray, objects: np.ndarray, seen_static: np.ndarray,
              moving: np.ndarray | None = None) -> np.ndarray:
        """Objects become moving whole when, among their points that are either voted moving or were
        mostly seen as a static surface, the moving share exceeds ``cluster_fraction`` (points with
        no evidence — e.g. a truck's rear, still where the truck was — do not vote). ``moving [N]``
        bool: the points voting moving (default: log-odds > 0)."""
        out = logodds.copy()
        sel = objects >= 0
        ids = objects[sel]
        if not len(ids):
            return out
        k = int(ids.max()) + 1
        is_moving = (logodds > 0) if moving is None else moving
        moving = np.bincount(ids, weights=is_moving[sel], minlength=k)
        static = np.bincount(ids, weights=seen_static[sel] & ~is_moving[sel], minlength=k)
        share = moving / np.maximum(moving + static, 1)
        lift = (share > self.config.cluster_fraction) & (moving >= self.config.cluster_min_points)
        up = sel & lift[np.maximum(objects, 0)]
        out[up] = np.maximum(out[up], self.config.l_free)
        return out


class _Scan:
    """A recent scan the backward pass may revise: points ``[N, 3]`` (world), object ids, seen-static flags,
    ``valid`` (in range and not ground: the points the pass may lift), final log-odds ``[N]``, its range grids (``past``), stamp and per-point velocity."""

    def __init__(self, points, objects, seen_static, valid, final, past):
        self.points, self.objects, self.seen_static, self.valid = points, objects, seen_static, valid
        self.final, self.past = final, past
        self.t, self.velocity, self.changed = 0.0, None, False


def segment_pair(points_a: np.ndarray, T_world_sensor_a: np.ndarray, points_b: np.ndarray,
                 T_world_sensor_b: np.ndarray, config: DynamicsConfig, grid: SphericalGrid) -> np.ndarray:
    """Two-sweep mode: moving probability ``[N_a]`` of scan A's points from A and one other scan B.

    Each scan is checked against the other (free space of B now occupied by A marks A's leading
    parts, free space of A now occupied by B marks B's), the two scans are clustered together
    (an object moving less than ``cluster_eps`` per sweep stays one cluster), and a joint object
    holding at least ``cluster_min_points`` free-space violations, from either direction, and at
    least ``pair_fraction`` of its points, is moving.

    Args:
        points_a / points_b: ``[N, 3]`` world frame (motion-compensated), m.
        T_world_sensor_a / _b: ``[4, 4]`` sensor poses (ray origins).
    """
    pa, pb = np.asarray(points_a, np.float64)[:, :3], np.asarray(points_b, np.float64)[:, :3]
    both = np.vstack([pa, pb])
    ground = GroundGrid(config.ground_cell, config.ground_height).update(both)
    ga, gb = ground[:len(pa)], ground[len(pa):]
    past_a = PastScan.build(grid, pa, T_world_sensor_a, None, config, ga)
    past_b = PastScan.build(grid, pb, T_world_sensor_b, None, config, gb)
    free_a, _ = scan_evidence(grid, pa, past_b, config, ga, occupancy=False)
    free_b, _ = scan_evidence(grid, pb, past_a, config, gb, occupancy=False)
    free = np.r_[free_a, free_b]
    r = np.r_[np.linalg.norm(pa - T_world_sensor_a[:3, 3], axis=1), np.linalg.norm(pb - T_world_sensor_b[:3, 3], axis=1)]
    valid = (r >= config.min_range) & (r <= config.max_range)
    free &= valid
    objects = np.full(len(both), -1, np.int64)
    above = ~ground & valid
    objects[above] = cluster_objects(both[above], config.cluster_eps, config.cluster_min_points)
    moving = free.copy()
    ids = objects >= 0
    if ids.any():
        votes = np.bincount(objects[ids], weights=free[ids])
        size = np.bincount(objects[ids])
        lift = (votes >= config.cluster_min_points) & (votes >= config.pair_fraction * size)
        moving[ids] |= lift[objects[ids]]
    logodds = np.where(moving, config.l_free, config.l_prior)
    return (1.0 / (1.0 + np.exp(-logodds[:len(pa)]))).astype(np.float32)
