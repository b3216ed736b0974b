"""Local voxel-hash map for scan-to-map registration (KISS-ICP's map, vectorised in numpy).

Points live in a sparse grid of ``voxel_size`` cells, at most
``max_points_per_voxel`` per cell and no two closer than
``voxel_size / sqrt(max_points_per_voxel)``; points farther than
``max_distance`` from the latest sensor origin are dropped. Each voxel carries a
plane fit (normal + planarity) for point-to-plane ICP.

The cost of an update follows the points it brings, not the size of the map:
voxels and occupied sub-cells are found through hash tables, points go to an
append-only buffer, and nearest neighbours come from two scipy ``cKDTree``: a
base tree over the points present at the last compaction and a small one over
the points added since. Every ``rebuild_every`` updates the map is compacted
(culled points dropped) and the base tree rebuilt, so the one step whose cost
follows the map's size runs at a fixed cadence instead of on every sweep.
"""

from __future__ import annotations

import itertools

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
        rebuild_every: updates between compactions (culled points dropped, base KD-tree
            rebuilt); in between, new points go to a small tree of their own.

    Points are addressed by *row* (their place in an append-only buffer): :meth:`nearest`
    returns rows and :meth:`at` reads points, normals and voxel shapes by row. Rows stay
    valid until the next :meth:`add`.
    """

    def __init__(self, voxel_size: float, max_points_per_voxel: int = 20, max_distance: float = 100.0,
                 planarity: float = 0.1, rebuild_every: int = 16):
        if voxel_size <= 0 or max_points_per_voxel < 1:
            raise ValueError(f"voxel_size must be > 0 and max_points_per_voxel >= 1, got {voxel_size}, {max_points_per_voxel}")
        self.voxel_size = float(voxel_size)
        self.max_points_per_voxel = int(max_points_per_voxel)
        self.max_distance = float(max_distance)
        self.planarity = float(planarity)
        self.rebuild_every = int(rebuild_every)
        self.min_spacing = self.voxel_size / np.sqrt(self.max_points_per_voxel)
        self.clear()

    def clear(self) -> None:
        """Remove every point."""
        P = self.max_points_per_voxel
        self._buf = np.zeros((1024, 3))  # rows: points, append-only between compactions
        self._row_vox = np.zeros(1024, dtype=np.int64)  # voxel id of each row
        self._row_fine = np.zeros(1024, dtype=np.int64)  # sub-cell key of each row
        self._alive = np.zeros(1024, dtype=bool)
        self._n = 0  # rows used
        self._n_base = 0  # rows covered by the base tree
        self._vox_of: dict[int, int] = {}  # voxel key → voxel id
        self._fine: set[int] = set()  # occupied sub-cells (min_spacing)
        self._vkey = np.zeros(256, dtype=np.int64)
        self._vrows = np.full((256, P), -1, dtype=np.int64)
        self._vcount = np.zeros(256, dtype=np.int64)
        self._vnormal = np.zeros((256, 3))
        self._vkind = np.zeros(256, dtype=np.int8)
        self._vdirty = np.zeros(256, dtype=bool)
        self._nv = 0  # voxel ids used (culled ones are reclaimed at compaction)
        self._size = 0  # live points
        self._adds = 0
        self._since_rebuild = 0
        self._origin: np.ndarray | None = None
        self._base: cKDTree | None = None
        self._delta: cKDTree | None = None
        self._trees_stale = True

    def __len__(self) -> int:
        return self._size

    @property
    def empty(self) -> bool:
        """True when the map holds no points."""
        return self._size == 0

    @property
    def points(self) -> np.ndarray:
        """``[M, 3]`` live map points (a copy; row order, culled points left out)."""
        return self._buf[:self._n][self._alive[:self._n]]

    def normals(self) -> tuple[np.ndarray, np.ndarray]:
        """Plane normal of each live point's voxel ``[M, 3]`` and voxel shape ``[M]`` int8 (:data:`SCATTERED`,
        :data:`PLANAR` or :data:`LINEAR`), aligned with :attr:`points`."""
        rows = np.flatnonzero(self._alive[:self._n])
        _, n, k = self.at(rows)
        return n, k

    def at(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points ``[K, 3]``, voxel plane normals ``[K, 3]`` and voxel shapes ``[K]`` of ``rows [K]``."""
        self._fit_planes()
        vox = self._row_vox[rows]
        return self._buf[rows], self._vnormal[vox], self._vkind[vox]

    # -- updates -----------------------------------------------------------------------
    def add(self, points_world: np.ndarray, origin: np.ndarray | None = None) -> None:
        """Insert ``points_world [N, 3]`` (metres); voxels beyond ``max_distance`` of ``origin [3]`` are dropped.

        Existing points keep their place: a new point enters only where its cell
        has room and no map point lies in the same ``min_spacing`` sub-cell. The work
        follows ``N`` (hash look-ups); every ``rebuild_every`` calls the map is compacted
        and the base KD-tree rebuilt (linear in the map's size).
        """
        new = np.asarray(points_world, dtype=np.float64)[:, :3]
        if origin is not None:
            self._origin = np.asarray(origin, dtype=np.float64)[:3].copy()
        if len(new):
            self._insert(new)
        self._adds += 1
        self._since_rebuild += 1
        if self._origin is not None and self._adds % 5 == 0:
            self._cull(self._origin)
        delta = self._n - self._n_base
        if self._since_rebuild >= self.rebuild_every or delta > max(4096, self._n_base // 2):
            self._compact()
        self._trees_stale = True

    def _insert(self, new: np.ndarray) -> None:
        fine = voxel_keys(new, self.min_spacing)
        keep = ~pd.Series(fine).duplicated().to_numpy()
        if self._fine:
            keep &= ~np.fromiter(map(self._fine.__contains__, fine.tolist()), bool, len(fine))
        new, fine = new[keep], fine[keep]
        if not len(new):
            return
        keys = voxel_keys(new, self.voxel_size)
        vid = np.fromiter(map(self._vox_of.get, keys.tolist(), itertools.repeat(-1)), np.int64, len(keys))
        missing = vid < 0
        if missing.any():  # new voxels: ids in order of first appearance
            mk, first, inv = np.unique(keys[missing], return_index=True, return_inverse=True)
            order = np.argsort(first, kind="stable")
            ids = np.empty(len(mk), dtype=np.int64)
            ids[order] = self._nv + np.arange(len(mk))
            self._grow_voxels(self._nv + len(mk))
            self._vkey[ids] = mk
            self._vcount[ids] = 0
            self._vrows[ids] = -1
            self._vox_of.update(zip(mk.tolist(), ids.tolist()))
            self._nv += len(mk)
            vid[missing] = ids[inv.reshape(-1)]
        order = np.argsort(vid, kind="stable")
        new, fine, vid = new[order], fine[order], vid[order]
        starts = _group_starts(vid)
        rank = np.arange(len(vid)) - np.repeat(starts, np.diff(np.r_[starts, len(vid)]))
        slot = rank + self._vcount[vid]
        ok = slot < self.max_points_per_voxel
        new, fine, vid, slot = new[ok], fine[ok], vid[ok], slot[ok]
        m = len(new)
        self._grow_rows(self._n + m)
        rows = self._n + np.arange(m)
        self._buf[rows], self._row_vox[rows], self._row_fine[rows], self._alive[rows] = new, vid, fine, True
        self._vrows[vid, slot] = rows
        np.add.at(self._vcount, vid, 1)
        self._vdirty[vid] = True
        self._fine.update(fine.tolist())
        self._n += m
        self._size += m

    def _grow_rows(self, n: int) -> None:
        if n <= len(self._buf):
            return
        cap = max(n, 2 * len(self._buf))
        for name in ("_buf", "_row_vox", "_row_fine", "_alive"):
            a = getattr(self, name)
            b = np.zeros((cap,) + a.shape[1:], dtype=a.dtype)
            b[:len(a)] = a
            setattr(self, name, b)

    def _grow_voxels(self, n: int) -> None:
        if n <= len(self._vkey):
            return
        cap = max(n, 2 * len(self._vkey))
        for name in ("_vkey", "_vrows", "_vcount", "_vnormal", "_vkind", "_vdirty"):
            a = getattr(self, name)
            b = np.full((cap,) + a.shape[1:], -1 if name == "_vrows" else 0, dtype=a.dtype)
            b[:len(a)] = a
            setattr(self, name, b)

    def _cull(self, origin: np.ndarray) -> None:
        """Drop voxels whose first point is farther than ``max_distance`` from ``origin``.

        Their rows stay in the buffer (and the trees) until the next compaction, marked dead:
        :meth:`nearest` does not return them.
        """
        live = np.flatnonzero(self._vcount[:self._nv] > 0)
        if not len(live):
            return
        first = self._buf[self._vrows[live, 0]]
        far = live[np.sum((first - origin) ** 2, axis=1) >= self.max_distance ** 2]
        if not len(far):
            return
        rows = self._vrows[far]
        rows = rows[rows >= 0]
        self._alive[rows] = False
        self._fine.difference_update(self._row_fine[rows].tolist())
        for k in self._vkey[far].tolist():
            del self._vox_of[k]
        self._vcount[far] = 0
        self._vrows[far] = -1
        self._vdirty[far] = False
        self._size -= len(rows)

    def _compact(self) -> None:
        """Drop dead rows and culled voxels; the base tree then covers every row."""
        self._since_rebuild = 0
        alive = self._alive[:self._n]
        if not alive.all():
            new_row = np.cumsum(alive) - 1
            keep = np.flatnonzero(alive)
            m = len(keep)
            self._buf[:m], self._row_vox[:m], self._row_fine[:m] = \
                self._buf[keep], self._row_vox[keep], self._row_fine[keep]
            self._alive[:m], self._alive[m:self._n] = True, False
            vr = self._vrows[:self._nv]
            self._vrows[:self._nv] = np.where(vr >= 0, new_row[np.maximum(vr, 0)], -1)
            self._n = m
        used = self._vcount[:self._nv] > 0
        if not used.all():  # reclaim the ids of culled voxels
            new_id = np.cumsum(used) - 1
            ids = np.flatnonzero(used)
            for name in ("_vkey", "_vrows", "_vcount", "_vnormal", "_vkind", "_vdirty"):
                a = getattr(self, name)
                a[:len(ids)] = a[ids]
            self._row_vox[:self._n] = new_id[self._row_vox[:self._n]]
            self._nv = len(ids)
            self._vox_of = dict(zip(self._vkey[:self._nv].tolist(), range(self._nv)))
        self._n_base = self._n
        self._base = None

    # -- queries -----------------------------------------------------------------------
    def _trees(self) -> None:
        if not self._trees_stale:
            return
        if self._base is None and self._n_base:
            self._base = cKDTree(self._buf[:self._n_base], leafsize=16, balanced_tree=False, compact_nodes=False)
        d = self._buf[self._n_base:self._n]
        self._delta = cKDTree(d, leafsize=16, balanced_tree=False, compact_nodes=False) if len(d) else None
        self._trees_stale = False

    def _fit_planes(self) -> None:
        vox = np.flatnonzero(self._vdirty[:self._nv])
        if len(vox) == 0:
            return
        rows = self._vrows[vox]
        valid = rows >= 0
        counts = valid.sum(1)
        pts = self._buf[np.maximum(rows, 0)] * valid[..., None]
        mean = pts.sum(1) / counts[:, None]
        c = (pts - mean[:, None]) * valid[..., None]
        cov = np.einsum("vpi,vpj->vij", c, c) / counts[:, None, None]
        evals, normal = smallest_eigh(cov)
        enough = counts >= 5
        kind = np.where(enough & (evals[:, 1] < self.planarity * evals[:, 2]), LINEAR,
                        np.where(enough & (evals[:, 0] < self.planarity * evals[:, 1]), PLANAR, SCATTERED))
        self._vnormal[vox] = normal
        self._vkind[vox] = kind.astype(np.int8)
        self._vdirty[vox] = False

    def nearest(self, query: np.ndarray, max_distance: float, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Nearest map point of each ``query [N, 3]`` within ``max_distance`` m.

        Returns:
            ``dist [N]`` (inf where none) and ``row [N]`` (read with :meth:`at`; 0 where none).
        """
        query = np.asarray(query, dtype=np.float64)
        dist = np.full(len(query), np.inf)
        row = np.zeros(len(query), dtype=np.int64)
        if self.empty:
            return dist, row
        self._trees()
        if self._base is not None:
            d, i = self._base.query(query, k=1, distance_upper_bound=max_distance, workers=workers)
            hit = np.isfinite(d)
            dist[hit], row[hit] = d[hit], i[hit]
        if self._delta is not None:
            d, i = self._delta.query(query, k=1, distance_upper_bound=max_distance, workers=workers)
            closer = d < dist
            dist[closer], row[closer] = d[closer], i[closer] + self._n_base
        dead = np.isfinite(dist)
        dead[dead] = ~self._alive[row[dead]]
        dist[dead], row[dead] = np.inf, 0
        return dist, row
