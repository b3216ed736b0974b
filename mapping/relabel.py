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
moving points keep theirs unless the shape rules below decide.

Then the shape rules of :mod:`fuse4d.mapping.shapes` run on the static points of the scan and its
neighbours (``past`` scans already relabelled and the ``lag`` queued after it, deskewed, in the
world frame): a thin upright column of points is a pole, at any range; a moving object's points
take the class its size gives (a person, a car, a truck).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from fuse4d.data.classes import GROUND, NUM_CLASSES, POLE
from fuse4d.mapping.shapes import ShapeRules, base_classes, ground_height, moving_classes, pole_mask

_IS_GROUND = np.isin(np.arange(NUM_CLASSES), GROUND)


class MapLabels:
    """Relabel static LiDAR points by the class of their occupancy voxel, ``lag`` frames late.

    Args:
        occupancy: the map builder's occupancy (``MapBuilder.occupancy``: an ``OccupancyMap``
            with a lattice ``anchor``), read through :meth:`classes_at`.
        lag: frames between a scan and its relabelling (≥ 0); at 10 Hz, 20 frames is 2 s.
        min_range: points at most this far from the sensor (m) keep their class.
        shapes: sizes of the shape rules (None = no shape rules); they need the ground flags.
        past: relabelled scans kept as context of the shape rules (with the ``lag`` queued ones).
    """

    def __init__(self, occupancy, lag: int = 20, min_range: float = 10.0, shapes: ShapeRules | None = ShapeRules(),
                 past: int = 10):
        if lag < 0 or past < 0:
            raise ValueError("lag and past must be ≥ 0")
        self.occupancy, self.lag, self.min_range = occupancy, int(lag), float(min_range)
        self.shapes = shapes
        self._queue: deque = deque()
        self._past: deque = deque(maxlen=int(past))

    @staticmethod
    def world_points(seq, T_world_body: np.ndarray, i: int, frame=None) -> np.ndarray | None:
        """Frame ``i``'s (``frame``: ``seq[i]`` when already read) LiDAR points ``[N, 3]`` in the world frame (m), deskewed through the poses
        of the frames either side (within 0.5 s) unless the log's points are already
        (``metadata["lidar_deskewed"]``); None when the frame has no points or no pose."""
        from fuse4d.deskew import deskew, polynomial_motion
        from fuse4d.geometry import transform_points

        frame, T_bl = seq[i] if frame is None else frame, seq.calibration.T_body_lidar
        T = np.asarray(T_world_body[i], np.float64)
        if frame.points is None or len(frame.points) == 0 or not np.isfinite(T).all():
            return None
        T_wl, local = T @ T_bl, np.asarray(frame.points[:, :3], np.float64)
        ts = seq.timestamps
        near = [k for k in (i - 1, i + 1) if 0 <= k < len(T_world_body) and np.isfinite(T_world_body[k]).all()
                and 0 < abs(ts[k] - ts[i]) < 0.5]
        if near and frame.point_time is not None and not seq.metadata.get("lidar_deskewed"):
            inv = np.linalg.inv(T_wl)
            motion = polynomial_motion(np.array([ts[k] - ts[i] for k in near]),
                                       np.stack([inv @ T_world_body[k] @ T_bl for k in near]))
            local = deskew(local, frame.point_time, motion, bins=256)
        return transform_points(T_wl, local).astype(np.float32)

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
        self._queue.append((index, pts, labels, moving, ground, ranges, self._parts(pts, labels, moving, ground)))
        out = []
        while len(self._queue) > self.lag:
            out.append(self._relabel(*self._queue.popleft()))
        return out

    def flush(self) -> list[tuple[int, np.ndarray | None]]:
        """Relabel and return every queued scan (at the end of the log)."""
        out = []
        while self._queue:
            out.append(self._relabel(*self._queue.popleft()))
        return out

    def _parts(self, pts, labels, moving, ground):
        """(static non-ground points, ground points, the first's labels: the model's while queued,
        the relabelled ones once past) of a scan, the shape rules' context; None without ground flags."""
        if self.shapes is None or pts is None or ground is None or len(ground) != len(pts):
            return None
        g = np.asarray(ground, bool)
        static = np.ones(len(pts), bool) if moving is None else ~np.asarray(moving, bool)
        lab = np.zeros(len(pts), np.uint8) if labels is None or len(labels) != len(pts) else np.asarray(labels, np.uint8)
        return pts[static & ~g], pts[g], lab[static & ~g]

    def _relabel(self, index, pts, labels, moving, ground, ranges, parts):
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
        if parts is not None:
            mv = np.zeros(len(new), bool) if moving is None else np.asarray(moving, bool)
            self._shape_rules(new, pts, ~np.asarray(ground, bool), mv, parts)
        return index, new

    def _shape_rules(self, labels: np.ndarray, pts: np.ndarray, nonground: np.ndarray, moving: np.ndarray,
                     parts) -> None:
        """Apply the shape rules to a scan's labels, in place: its static non-ground points that stand
        on a pole (judged on its own ``parts`` and its neighbours') become poles; its moving points
        take the class their object's size gives."""
        ctx = [parts] + list(self._past) + [q[-1] for q in self._queue if q[-1] is not None]
        candidate = nonground & ~moving
        if candidate.any() or moving.any():
            gtab = ground_height(np.concatenate([c[1] for c in ctx]))
        if candidate.any():
            pole = pole_mask(pts[candidate], np.concatenate([c[0] for c in ctx]), gtab, self.shapes)
            labels[np.flatnonzero(candidate)[pole]] = POLE
        if moving.any():
            idx = np.flatnonzero(moving)
            cls = moving_classes(pts[idx], labels[idx], nonground[idx], gtab, self.shapes)
            labels[idx[cls > 0]] = cls[cls > 0]
        band = ~nonground & ~moving
        if band.any():  # the column above: this scan's labels as they now stand, the past's relabelled ones
            ctx[0] = parts[:2] + (labels[candidate],)
            cls = base_classes(pts[band], np.concatenate([c[0] for c in ctx]), np.concatenate([c[2] for c in ctx]),
                               self.shapes)
            labels[np.flatnonzero(band)[cls > 0]] = cls[cls > 0]
        self._past.append(parts[:2] + (labels[candidate],))
