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
#: voxel shapes: too few points or no dominant direction / a plane / a line
SCATTERED, PLANAR, LINEAR = 0, 1, 2


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


def smallest_eigh(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) ``[V, 3]`` and the smallest one's unit eigenvector ``[V, 3]`` of symmetric ``[V, 3, 3]``.

    Closed form (trigonometric solution of the characteristic cubic, eigenvector
    from the best-conditioned cross product of two rows of ``A - λI``): several
    times faster than ``np.linalg.eigh`` on many small matrices.
    """
    a00, a11, a22 = cov[:, 0, 0], cov[:, 1, 1], cov[:, 2, 2]
    a01, a02, a12 = cov[:, 0, 1], cov[:, 0, 2], cov[:, 1, 2]
    q = (a00 + a11 + a22) / 3.0
    p1 = a01 ** 2 + a02 ** 2 + a12 ** 2
    p2 = (a00 - q) ** 2 + (a11 - q) ** 2 + (a22 - q) ** 2 + 2.0 * p1
    p = np.sqrt(np.maximum(p2, 0.0) / 6.0)
    safe = np.where(p > 1e-30, p, 1.0)
    B = (cov - q[:, None, None] * np.eye(3)) / safe[:, None, None]
    r = np.clip(np.linalg.det(B) / 2.0, -1.0, 1.0)
    phi = np.arccos(r) / 3.0
    e_max = q + 2.0 * p * np.cos(phi)
    e_min = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
    evals = np.stack([e_min, 3.0 * q - e_max - e_min, e_max], -1)
    M = cov - e_min[:, None, None] * np.eye(3)
    c = np.stack([np.cross(M[:, 0], M[:, 1]), np.cross(M[:, 0], M[:, 2]), np.cross(M[:, 1], M[:, 2])], 1)
    norms = np.linalg.norm(c, axis=-1)
    best = norms.argmax(1)
    v = c[np.arange(len(c)), best]
    nv = norms[np.arange(len(c)), best]
    v = np.where(nv[:, None] > 1e-30, v / np.where(nv > 1e-30, nv, 1.0)[:, None], np.array([0.0, 0.0, 1.0]))
    return evals, v


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
        planarity: with eigenvalues λ0 ≤ λ1 ≤ λ2 of a voxel's covariance (≥ 5 points),
            the voxel is planar when λ0 < planarity·λ1 and linear (e.g. one scan ring
            on the ground, which moves with the sensor) when λ1 < planarity·λ2.
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
        self._kind = np.zeros(0, dtype=np.int8)
        self._dirty = np.zeros(0, dtype=bool)
        self._fine = np.zeros(0, dtype=np.int64)  # sorted keys of occupied min_spacing sub-cells
        self._adds = 0
        self._tree: cKDTree | None = None

    def __len__(self) -> int:
        return len(self.points)

    @property
    def empty(self) -> bool:
        """True when the map holds no points."""
        return len(self.points) == 0

    def add(self, points_world: np.ndarray, origin: np.ndarray | None = None) -> None:
        """Insert ``points_world [N, 3]`` (metres); every few calls drop voxels beyond ``max_distance`` of ``origin [3]``.

        Existing points keep their place: a new point enters only where its cell
        has room and no map point lies in the same ``min_spacing`` sub-cell. The work
        is proportional to the new points plus one linear-time (radix) merge.
        """
        new = np.asarray(points_world, dtype=np.float64)[:, :3]
        if len(new):
            fine = voxel_keys(new, self.min_spacing)
            keep = ~pd.Series(fine).duplicated().to_numpy()
            if len(self._fine):
                pos = np.minimum(np.searchsorted(self._fine, fine), len(self._fine) - 1)
                keep &= self._fine[pos] != fine
            new, fine = new[keep], fine[keep]
            keys = voxel_keys(new, self.voxel_size)
            order = np.argsort(keys, kind="stable")
            new, fine, keys = new[order], fine[order], keys[order]
            starts = _group_starts(keys)
            rank = np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
            have = np.searchsorted(self._keys, keys, "right") - np.searchsorted(self._keys, keys, "left")
            ok = rank + have < self.max_points_per_voxel
            new, fine, keys = new[ok], fine[ok], keys[ok]
            all_keys = np.concatenate([self._keys, keys])
            order = np.argsort(all_keys, kind="stable")
            is_new = order >= len(self._keys)
            self.points = np.concatenate([self.points, new])[order]
            self._keys = all_keys[order]
            self._normals = np.concatenate([self._normals, np.zeros_like(new)])[order]
            self._kind = np.concatenate([self._kind, np.zeros(len(new), dtype=np.int8)])[order]
            dirty = np.concatenate([self._dirty, np.ones(len(new), dtype=bool)])[order]
            self._fine = np.sort(np.concatenate([self._fine, fine]), kind="stable")
            starts = _group_starts(self._keys)  # a voxel that gained a point is refitted
            grp = np.logical_or.reduceat(is_new | dirty, starts) if len(starts) else np.zeros(0, dtype=bool)
            self._dirty = np.repeat(grp, np.diff(np.r_[starts, len(self._keys)]))
        self._adds += 1
        if origin is not None and self._adds % 5 == 0:
            self._cull(np.asarray(origin, dtype=np.float64))
        self._tree = None

    def _cull(self, origin: np.ndarray) -> None:
        """Remove voxels whose first point is farther than ``max_distance`` from ``origin``."""
        starts = _group_starts(self._keys)
        if len(starts) == 0:
            return
        counts = np.diff(np.r_[starts, len(self._keys)])
        near = np.sum((self.points[starts] - origin) ** 2, axis=1) < self.max_distance ** 2
        if near.all():
            return
        keep = np.repeat(near, counts)
        self.points, self._keys = self.points[keep], self._keys[keep]
        self._normals, self._kind, self._dirty = self._normals[keep], self._kind[keep], self._dirty[keep]
        self._fine = np.sort(voxel_keys(self.points, self.min_spacing), kind="stable")

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
        evals, normal = smallest_eigh(cov)
        enough = counts >= 5
        kind = np.where(enough & (evals[:, 1] < self.planarity * evals[:, 2]), LINEAR,
                        np.where(enough & (evals[:, 0] < self.planarity * evals[:, 1]), PLANAR, SCATTERED))
        self._normals[idx] = np.repeat(normal, counts, axis=0)
        self._kind[idx] = np.repeat(kind.astype(np.int8), counts)
        self._dirty[idx] = False

    def normals(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-point plane normal of its voxel ``[M, 3]`` and voxel shape ``[M]`` int8
        (:data:`SCATTERED`, :data:`PLANAR` or :data:`LINEAR`)."""
        self._fit_planes()
        return self._normals, self._kind

    def nearest(self, query: np.ndarray, max_distance: float, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Nearest map point of each ``query [N, 3]`` within ``max_distance`` m.

        Returns:
            ``dist [N]`` (inf where none) and ``index [N]`` into :attr:`points`
            (``len(self)`` where none).
        """
        if self.empty:
            return np.full(len(query), np.inf), np.full(len(query), 0, dtype=np.int64)
        return self.tree.query(query, k=1, distance_upper_bound=max_distance, workers=workers)
