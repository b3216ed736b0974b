"""Point classes from the semantic occupancy map, a few frames late.

The model labels each scan alone, through a coarse range view: far points are its worst (on
held-out seeds road IoU falls from 0.95 under 10 m to 0.1 beyond 20 m). The occupancy map
votes every hit into its voxel's class histogram with a weight that falls with range, so a
voxel first seen far away is relabelled once the vehicle has passed close by. This module
gives each static point the class of its voxel ``lag`` frames after the point was seen (so
the map has taken in the next stretch of road), in bounded memory: only the last ``lag``
scans are held. Points nearer than ``min_range`` keep the model's class: there it is right
about 90 % of the time, and a 0.5 m voxel mixes the edges of small objects.

A point keeps the model's class when its voxel has no class, is not occupied, or disagrees
with the point's ground flag (the geometric ground segmentation decides ground vs. not);
moving points always keep theirs.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from fuse4d.data.classes import GROUND, NUM_CLASSES

_IS_GROUND = np.isin(np.arange(NUM_CLASSES), GROUND)


class MapLabels:
    """Relabel static LiDAR points by the class of their occupancy voxel, ``lag`` frames late.

    Args:
        occupancy: the map builder's occupancy (``MapBuilder.occupancy``: an ``OccupancyMap``
            with a lattice ``anchor``), read through :meth:`classes_at`.
        lag: frames between a scan and its relabelling (≥ 0); at 10 Hz, 20 frames is 2 s.
        min_range: points at most this far from the sensor (m) keep their class.
    """

    def __init__(self, occupancy, lag: int = 20, min_range: float = 10.0):
        if lag < 0:
            raise ValueError("lag must be ≥ 0")
        self.occupancy, self.lag, self.min_range = occupancy, int(lag), float(min_range)
        self._queue: deque = deque()

    def classes_at(self, points: np.ndarray) -> np.ndarray:
        """Class ``[N]`` uint8 of the occupied voxels holding world points ``[N, 3]`` m (0 = none:
        unknown, free or unlabelled voxel)."""
        occ = self.occupancy
        inner = getattr(occ, "map", occ)
        anchor = np.asarray(getattr(occ, "anchor", np.zeros(3)), np.float64)
        ijk = np.floor((np.asarray(points, np.float64).reshape(-1, 3) - anchor) / inner.res).astype(np.int64)
        cls = inner.class_of(ijk)
        cls[inner.log_odds_at(ijk) <= 0] = 0
        return cls

    def add(self, index: int, points_world: np.ndarray | None, labels: np.ndarray | None,
            moving: np.ndarray | None, ground: np.ndarray | None,
            ranges: np.ndarray | None = None) -> list[tuple[int, np.ndarray | None]]:
        """Queue scan ``index`` and return the scans now ``lag`` frames old, relabelled.

        Args:
            index: frame index (scans must come in order).
            points_world: ``[N, 3]`` world positions, m (None: no points or no pose).
            labels: ``[N]`` uint8 classes (the model's), or None.
            moving: ``[N]`` bool, True = moving (keeps its label); None = all static.
            ground: ``[N]`` bool geometric ground mask, or None (no ground check).
            ranges: ``[N]`` distance from the sensor, m (None = every point is far enough).
        Returns:
            ``[(index, labels [N] uint8 or None)]`` of the scans that left the queue, in order.
        """
        pts = None if points_world is None else np.asarray(points_world, np.float32)
        self._queue.append((index, pts, labels, moving, ground, ranges))
        out = []
        while len(self._queue) > self.lag:
            out.append(self._relabel(*self._queue.popleft()))
        return out

    def flush(self) -> list[tuple[int, np.ndarray | None]]:
        """Relabel and return every queued scan (at the end of the log)."""
        out = [self._relabel(*q) for q in self._queue]
        self._queue.clear()
        return out

    def _relabel(self, index, pts, labels, moving, ground, ranges):
        if labels is None or pts is None or len(labels) != len(pts):
            return index, labels
        new = np.asarray(labels, np.uint8).copy()
        static = np.ones(len(new), bool) if moving is None else ~np.asarray(moving, bool)
        if ranges is not None:
            static &= np.asarray(ranges) > self.min_range
        cls = np.zeros(len(new), np.uint8)
        cls[static] = self.classes_at(pts[static])
        ok = cls > 0
        if ground is not None and len(ground) == len(new):
            ok &= _IS_GROUND[cls] == np.asarray(ground, bool)
        new[ok] = cls[ok]
        return index, new
