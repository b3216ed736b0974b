"""Local voxel-hash map for scan-to-map registration (KISS-ICP's map, vectorised in numpy).

Points live in a sparse grid of ``voxel_size`` cells, at most
``max_points_per_voxel`` per cell and no two closer than
``voxel_size / sqrt(max_points_per_voxel)``; points farther than
``max_distance`` from the latest sensor origin are dropped. Nearest-neighbour
queries go through a scipy ``cKDTree`` rebuilt lazily after each update, and
each voxel carries a plane fit (normal + planarity) for point-to-plane ICP.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

_OFFSET = 1 << 20  # keys pack 21 bits per axis: ±1,048,576 cells


def voxel_keys(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """Pack integer voxel coordinates of ``points [N, 3]`` (metres) into int64 keys ``[N]``."""
    ijk = np.floor(points[:, :3] * (1.0 / voxel_size)).astype(np.int64) + _OFFSET
    return (ijk[:, 0] << 42) | (ijk[:, 1] << 21) | ijk[:, 2]


def voxel_downsample_mask(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """``[N]`` bool mask selecting the first point of every ``voxel_size`` cell of ``points [N, 3+]``."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    return ~pd.Series(voxel_keys(points, voxel_size)).duplicated().to_numpy()


def voxel_downsample(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """Keep the first point of every ``voxel_size`` cell: ``[N, C]`` → ``[M, C]`` (input order)."""
    return points[voxel_downsample_mask(points, voxel_size)]


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Start index of every run of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


class VoxelMap:
    """Sparse voxel map of world-frame points with KD-tree search and per-voxel planes.

    Args:
        voxel_size: cell edge in metres.
        max_points_per_voxel: cap on points per cell.
        max_distance: points farther than this (m) from the last origin are removed.
        planarity: a voxel counts as planar when its smallest covariance
            eigenvalue is below ``planarity`` times the middle one.
    """

    def __init__(self, voxel_size: float, max_points_per_voxel: int = 20, max_distance: float = 100.0,
                 planarity: float = 0.1):
        if voxel_size <= 0 or max_points_per_voxel < 1:
            raise ValueError(f"voxel_size must be > 0 and max_points_per_voxel >= 1, got {voxel_size}, {max_points_per_voxel}")
        self.voxel_size = float(voxel_size)
        self.max_points_per_voxel = int(max_points_per_voxel)
        self.max_distance = float(max_distance)
        self.planarity = float(planarity)
        self.min_spacing = self.voxel_size / np.sqrt(self.max_points_per_voxel)
        self.clear()

    def clear(self) -> None:
        """Remove every point."""
        self.points = np.zeros((0, 3))
        self._keys = np.zeros(0, dtype=np.int64)
        self._normals = np.zeros((0, 3))
        self._planar = np.zeros(0, dtype=bool)
        self._dirty = np.zeros(0, dtype=bool)
        self._tree: cKDTree | None = None

    def __len__(self) -> int:
        return len(self.points)

    @property
    def empty(self) -> bool:
        """True when the map holds no points."""
        return len(self.points) == 0

    def add(self, points_world: np.ndarray, origin: np.ndarray | None = None) -> None:
        """Insert ``points_world [N, 3]`` (metres); then drop voxels beyond ``max_distance`` of ``origin [3]``.

        Existing points keep their place: a new point enters only where its cell
        has room and no map point lies in the same ``min_spacing`` sub-cell.
        """
        new = np.asarray(points_world, dtype=np.float64)[:, :3]
        n_old = len(self.points)
        pts = np.concatenate([self.points, new])
        normals = np.concatenate([self._normals, np.zeros_like(new)])
        planar = np.concatenate([self._planar, np.zeros(len(new), dtype=bool)])
        dirty = np.concatenate([self._dirty, np.ones(len(new), dtype=bool)])
        # one point per fine sub-cell, the oldest wins
        first = np.flatnonzero(~pd.Series(voxel_keys(pts, self.min_spacing)).duplicated().to_numpy())
        keys = voxel_keys(pts[first], self.voxel_size)
        order = first[np.argsort(keys, kind="stable")]
        keys = np.sort(keys, kind="stable")
        starts = _group_starts(keys)
        counts = np.diff(np.r_[starts, len(keys)])
        rank = np.arange(len(keys)) - np.repeat(starts, counts)
        ok = rank < self.max_points_per_voxel
        if origin is not None and len(keys):
            d2 = np.sum((pts[order[starts]] - np.asarray(origin)) ** 2, axis=1)
            ok &= np.repeat(d2 < self.max_distance ** 2, counts)
        sel = order[ok]
        self.points, self._keys = pts[sel], keys[ok]
        self._normals, self._planar = normals[sel], planar[sel]
        # a voxel is refitted when it gained a point
        is_new = sel >= n_old
        self._dirty = dirty[sel]
        starts = _group_starts(self._keys)
        if len(starts):
            grp_new = np.logical_or.reduceat(is_new | self._dirty, starts)
            self._dirty = np.repeat(grp_new, np.diff(np.r_[starts, len(self._keys)]))
        self._tree = None

    @property
    def tree(self) -> cKDTree:
        """KD-tree over :attr:`points` (built on first use after an update)."""
        if self._tree is None:
            self._tree = cKDTree(self.points, leafsize=16, balanced_tree=False, compact_nodes=False)
        return self._tree

    def _fit_planes(self) -> None:
        idx = np.flatnonzero(self._dirty)
        if len(idx) == 0:
            return
        pts, keys = self.points[idx], self._keys[idx]
        starts = _group_starts(keys)
        counts = np.diff(np.r_[starts, len(keys)])
        mean = np.add.reduceat(pts, starts, axis=0) / counts[:, None]
        c = pts - np.repeat(mean, counts, axis=0)
        outer = (c[:, :, None] * c[:, None, :]).reshape(-1, 9)
        cov = (np.add.reduceat(outer, starts, axis=0) / counts[:, None]).reshape(-1, 3, 3)
        evals, evecs = np.linalg.eigh(cov)
        planar = (counts >= 5) & (evals[:, 0] < self.planarity * evals[:, 1])
        self._normals[idx] = np.repeat(evecs[:, :, 0], counts, axis=0)
        self._planar[idx] = np.repeat(planar, counts)
        self._dirty[idx] = False

    def normals(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-point plane normal of its voxel ``[M, 3]`` and planarity flag ``[M]`` bool."""
        self._fit_planes()
        return self._normals, self._planar

    def nearest(self, query: np.ndarray, max_distance: float, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Nearest map point of each ``query [N, 3]`` within ``max_distance`` m.

        Returns:
            ``dist [N]`` (inf where none) and ``index [N]`` into :attr:`points`
            (``len(self)`` where none).
        """
        if self.empty:
            return np.full(len(query), np.inf), np.full(len(query), 0, dtype=np.int64)
        return self.tree.query(query, k=1, distance_upper_bound=max_distance, workers=workers)
