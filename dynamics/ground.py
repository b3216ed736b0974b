"""A running lowest-point grid that tells ground points from objects standing on it.

Only used to keep objects apart when clustering (cars touch the road): the
mapping stage owns the real ground segmentation and elevation map.
"""

from __future__ import annotations

import numpy as np


class GroundGrid:
    """Lowest z seen per ``cell`` × ``cell`` world cell, kept over frames (a hashed sparse grid).

    Moving objects do not lower a cell's minimum, and a cell hidden under a car
    now was usually seen bare earlier, so the minimum over time is the ground.
    """

    def __init__(self, cell: float = 0.5, height: float = 0.25):
        self.cell, self.height = float(cell), float(height)
        self._keys = np.zeros(0, np.int64)
        self._zmin = np.zeros(0, np.float64)

    def _key(self, xy: np.ndarray) -> np.ndarray:
        ij = np.floor(xy / self.cell).astype(np.int64) + (1 << 20)
        return (ij[:, 0] << 21) | ij[:, 1]

    def update(self, points_world: np.ndarray, centre: np.ndarray | None = None, radius: float = 100.0) -> np.ndarray:
        """Add a scan ``[N, 3]`` (world, m) and return its ground flags ``[N]`` bool.

        A point is ground when it is within ``height`` of its cell's minimum, or of the
        minimum of a neighbouring cell in a 3 × 3 block (sloped ground, cell edges). Cells farther
        than ``radius`` (m) from ``centre [>=2]`` are forgotten, which bounds the memory.
        """
        if len(points_world) == 0:
            return np.zeros(0, bool)
        keys = self._key(points_world[:, :2])
        uk, inv = np.unique(keys, return_inverse=True)
        zmin = np.full(len(uk), np.inf)
        np.minimum.at(zmin, inv, points_world[:, 2])
        all_keys = np.concatenate([self._keys, uk])
        all_z = np.concatenate([self._zmin, zmin])
        order = np.lexsort((all_z, all_keys))
        all_keys, all_z = all_keys[order], all_z[order]
        first = np.ones(len(all_keys), bool)
        first[1:] = all_keys[1:] != all_keys[:-1]
        self._keys, self._zmin = all_keys[first], all_z[first]
        if centre is not None:
            c = np.floor(np.asarray(centre[:2]) / self.cell).astype(np.int64) + (1 << 20)
            i, j = self._keys >> 21, self._keys & ((1 << 21) - 1)
            near = np.maximum(np.abs(i - c[0]), np.abs(j - c[1])) * self.cell <= radius
            self._keys, self._zmin = self._keys[near], self._zmin[near]
        ground_z = self.lookup(points_world[:, :2])
        return points_world[:, 2] <= ground_z + self.height

    def lookup(self, xy: np.ndarray) -> np.ndarray:
        """Ground height ``[N]`` (m) under ``xy [N, 2]``: the lowest minimum of the 3 × 3 cells around
        (a steep neighbour does not lift the ground); +inf where nothing was seen."""
        best = np.full(len(xy), np.inf)
        if not len(xy) or not len(self._keys):
            return best
        base = np.floor(xy / self.cell).astype(np.int64) + (1 << 20)
        lo, hi = base.min(axis=0) - 1, base.max(axis=0) + 1
        i, j = self._keys >> 21, self._keys & ((1 << 21) - 1)
        inside = (i >= lo[0]) & (i <= hi[0]) & (j >= lo[1]) & (j <= hi[1])
        shape = hi - lo + 1
        if shape[0] * shape[1] > 1 << 24:  # a far-flung query: hashed lookups instead of a dense block
            return self._lookup_sparse(base)
        block = np.full(shape[0] * shape[1], np.inf)  # the minima over the queries' bounding block
        block[(i[inside] - lo[0]) * shape[1] + (j[inside] - lo[1])] = self._zmin[inside]
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                z = block.take((base[:, 0] + di - lo[0]) * shape[1] + (base[:, 1] + dj - lo[1]))
                # the neighbour only lowers the ground by a slope-bounded amount
                best = np.minimum(best, z + (0.0 if di == dj == 0 else 0.3 * self.cell))
        return best

    def _lookup_sparse(self, base: np.ndarray) -> np.ndarray:
        """:meth:`lookup` on the hashed cells ``base [N, 2]`` (offset cell indices) by binary search."""
        best = np.full(len(base), np.inf)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                k = ((base[:, 0] + di) << 21) | (base[:, 1] + dj)
                pos = np.clip(np.searchsorted(self._keys, k), 0, len(self._keys) - 1)
                z = np.where(self._keys[pos] == k, self._zmin[pos], np.inf)
                best = np.minimum(best, z + (0.0 if di == dj == 0 else 0.3 * self.cell))
        return best
