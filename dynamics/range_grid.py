"""Range grids of a LiDAR scan and the visibility test of points against them.

A past scan is binned on a spherical grid matched to the sensor (one row per beam):
per cell the nearest return (reduced over a neighbourhood), and the nearest / farthest
static return. :func:`scan_evidence` tells, for points of a later scan, whether that
past scan saw their place *free* (its rays went beyond them) or *occupied by a static
surface*; :mod:`~fuse4d.dynamics.lidar_mos` sums these observations over time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fuse4d.dynamics.config import DynamicsConfig


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
