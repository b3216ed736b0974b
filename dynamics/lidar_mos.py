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
from dataclasses import dataclass

import numpy as np

from fuse4d.dynamics.config import DynamicsConfig
from fuse4d.dynamics.ground import GroundGrid


@dataclass(frozen=True)
class SphericalGrid:
    """Cells of a range grid: azimuth bins over 360°, elevation bins centred on ``el_min + k·el_res``.

    Attributes:
        az_res / el_res: cell size (rad); el_min: elevation of row 0's centre (rad); rows, cols: grid size.
    """

    az_res: float
    el_res: float
    el_min: float
    rows: int
    cols: int

    @classmethod
    def for_sensor(cls, config: DynamicsConfig, beams: int | None = None, azimuth_steps: int | None = None,
                   fov_deg: tuple[float, float] | None = None) -> "SphericalGrid":
        """A grid matched to a spinning LiDAR: one row per beam when the beam count and the FoV
        (degrees, down/up) are known, else 1° rows over ±30° and 0.2° columns."""
        lo, hi = fov_deg if fov_deg is not None else (-30.0, 30.0)
        known = fov_deg is not None and beams and beams > 1  # uniform beams over a known FoV
        el_res = config.elevation_res_deg or ((hi - lo) / (beams - 1) if known else 1.0)
        az_res = config.azimuth_res_deg or (360.0 / azimuth_steps if azimuth_steps else 0.2)
        lo, hi = lo - 2 * el_res, hi + 2 * el_res  # margin for tilt and deskew
        rows = int(np.ceil((hi - lo) / el_res)) + 1
        return cls(np.radians(az_res), np.radians(el_res), np.radians(lo), rows, int(np.ceil(360.0 / az_res)))

    def cells(self, points_sensor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row ``[N]`` (−1 outside the grid), column ``[N]`` and range ``[N]`` (m) of points ``[N, 3]``."""
        x, y, z = points_sensor[:, 0], points_sensor[:, 1], points_sensor[:, 2]
        r = np.sqrt(x * x + y * y + z * z)
        el = np.arcsin(np.clip(z / np.maximum(r, 1e-9), -1.0, 1.0))
        row = np.rint((el - self.el_min) / self.el_res).astype(np.int64)
        col = np.floor((np.arctan2(y, x) + np.pi) / self.az_res).astype(np.int64) % self.cols
        row[(row < 0) | (row >= self.rows)] = -1
        return row, col, r


def _window(grid: np.ndarray, config: DynamicsConfig, op) -> np.ndarray:
    """``op`` (minimum/maximum filter) over each cell's neighbourhood, wrapping in azimuth."""
    size = (2 * config.window_el + 1, 2 * config.window_az + 1)
    return op(grid, size=size, mode=("nearest", "wrap"))


@dataclass
class PastScan:
    """One past scan as range grids ``[rows, cols]`` (m; +inf / −inf = no return).

    ``near`` is the nearest return reduced over a cell's neighbourhood (minimum filter);
    ``near_above`` the same over non-ground returns only, with the cell's own nearest return of
    any kind; ``static_lo`` / ``static_hi`` the nearest and farthest static return per cell and
    ``static_lo_above`` / ``static_hi_above`` those of non-ground static returns (not reduced:
    :func:`scan_evidence` tests each neighbour). ``T_sensor_world`` maps world points into the
    scan's sensor frame.
    """

    T_sensor_world: np.ndarray
    near: np.ndarray
    near_above: np.ndarray
    static_lo: np.ndarray
    static_hi: np.ndarray
    static_lo_above: np.ndarray
    static_hi_above: np.ndarray
    _sorted: tuple | None = None  # (cell, range, above) of the returns, sorted by cell then range

    @classmethod
    def build(cls, grid: SphericalGrid, points_world: np.ndarray, T_world_sensor: np.ndarray,
              dynamic_prob: np.ndarray | None, config: DynamicsConfig, ground: np.ndarray | None = None
              ) -> "PastScan":
        """Range grids of a scan ``[N, 3]`` (world) seen from ``T_world_sensor`` with posteriors ``[N]``
        (None = every point static) and ground flags ``[N]`` bool (None = no point is ground)."""
        from scipy.ndimage import minimum_filter

        T_sw = np.linalg.inv(T_world_sensor)
        row, col, r = grid.cells(points_world @ T_sw[:3, :3].T + T_sw[:3, 3])
        keep = row >= 0
        flat, r = row[keep] * grid.cols + col[keep], r[keep]
        above = np.ones(len(r), bool) if ground is None else ~np.asarray(ground, bool)[keep]
        order = np.lexsort((r, flat))  # one sort; every subset of it stays sorted by cell, then range
        flat, r, above = flat[order], r[order], above[order]
        shape = (grid.rows, grid.cols)
        near_all = _sorted_reduce(flat, r, shape, True)
        near_above = np.minimum(near_all, _window(_sorted_reduce(flat[above], r[above], shape, True),
                                                  config, minimum_filter))
        out = cls(T_sw, _window(near_all, config, minimum_filter), near_above, *([None] * 4),
                  _sorted=(flat, r, above, keep, order))
        return out.with_posterior(dynamic_prob)

    def with_posterior(self, dynamic_prob: np.ndarray | None) -> "PastScan":
        """This scan's static grids from its points' posteriors ``[N]`` (None = all static), in place."""
        flat, r, above, keep, order = self._sorted
        static = np.ones(len(r), bool) if dynamic_prob is None else (np.asarray(dynamic_prob)[keep] < 0.5)[order]
        shape = self.near.shape
        sa = static & above
        self.static_lo = _sorted_reduce(flat[static], r[static], shape, True)
        self.static_hi = _sorted_reduce(flat[static], r[static], shape, False)
        self.static_lo_above = _sorted_reduce(flat[sa], r[sa], shape, True)
        self.static_hi_above = _sorted_reduce(flat[sa], r[sa], shape, False)
        # [2, cells]: row 0 for non-ground queries (non-ground neighbours), row 1 for ground ones (any)
        self._lo_nb = np.stack([self.static_lo_above.ravel(), self.static_lo.ravel()])
        self._hi_nb = np.stack([self.static_hi_above.ravel(), self.static_hi.ravel()])
        return self


def _sorted_reduce(flat: np.ndarray, value: np.ndarray, shape: tuple[int, int], first: bool) -> np.ndarray:
    """Per-cell minimum (``first``) or maximum of ``value`` over cells ``flat`` (both sorted by cell,
    then value) → grid ``shape`` (+inf / −inf = empty)."""
    out = np.full(shape[0] * shape[1], np.inf if first else -np.inf)
    if len(flat):
        edge = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]]) if first else \
            np.flatnonzero(np.r_[flat[1:] != flat[:-1], True])
        out[flat[edge]] = value[edge]
    return out.reshape(shape)


def scan_evidence(grid: SphericalGrid, points_world: np.ndarray, past: PastScan, config: DynamicsConfig,
                  ground: np.ndarray | None = None, occupancy: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Free-space and static-occupancy observations of points ``[N, 3]`` (world) by one past scan.

    A non-ground point (``ground [N]`` bool False, or None) is free when its own cell's ray and the
    neighbourhood's non-ground rays all went beyond it: a neighbouring beam that ended on the ground
    short of it passed *below* it (at 40 m one beam row is ~1 m of height) and says nothing about
    its place. A ground point needs every neighbouring ray beyond it (beams graze the ground, so the
    row below lands nearer). A point is on a static surface when a static return of its own cell,
    or a non-ground static return of a neighbouring cell (any, for ground points), lies within the
    margin of its range: a neighbour's ground return at a similar range does not make a car static.
    ``occupancy=False`` skips the static test (all False).

    Returns:
        ``free [N]`` bool (seen free by the margin), ``occupied_static [N]`` bool.
    """
    T = past.T_sensor_world
    row, col, r = grid.cells(points_world @ T[:3, :3].T + T[:3, 3])
    inside = row >= 0
    row = np.where(inside, row, 0)
    on_ground = np.zeros(len(r), bool) if ground is None else np.asarray(ground, bool)
    margin = np.maximum(config.free_margin, config.free_margin_rel * r)
    flat = row * grid.cols + col
    near = past.near_above.ravel().take(flat)
    near[on_ground] = past.near.ravel().take(flat[on_ground])
    free = inside & np.isfinite(near) & (r < near - margin)
    occ = np.zeros(len(r), bool)
    if not occupancy:
        return free, occ
    # the own cell first, then the neighbours, each only for the points not yet found on a surface
    todo = np.flatnonzero(inside & ~free)
    lo_own, hi_own = past.static_lo.ravel(), past.static_hi.ravel()
    offsets = [(0, 0)] + [(dr, dc) for dr in range(-config.window_el, config.window_el + 1)
                          for dc in range(-config.window_az, config.window_az + 1) if (dr, dc) != (0, 0)]
    for dr, dc in offsets:
        if not len(todo):
            break
        rt, mt = r[todo], margin[todo]
        if dr == dc == 0:
            f = flat[todo]
            lo, hi = lo_own.take(f), hi_own.take(f)
        else:
            f = np.clip(row[todo] + dr, 0, grid.rows - 1) * grid.cols + (col[todo] + dc) % grid.cols
            f += on_ground[todo] * (grid.rows * grid.cols)
            lo, hi = past._lo_nb.ravel().take(f), past._hi_nb.ravel().take(f)
        hit = (rt >= lo - mt) & (rt <= hi + mt)
        occ[todo[hit]] = True
        todo = todo[~hit]
    return free, occ


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
