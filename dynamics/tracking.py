"""Object tracks from moving LiDAR objects: oriented boxes, Hungarian association, constant-velocity Kalman filters.

Each frame's moving objects (clusters of points the segmentation calls moving)
become detections with a centroid and an oriented box in the ground plane.
Tracks predict their centroid with a constant-velocity Kalman filter, are
matched to detections by the Hungarian method on centroid distance (gated),
and are updated; unmatched detections start tentative tracks, which are
confirmed after ``track_min_hits`` matches. The table of confirmed track states
(one row per track and frame) is what the store's ``dynamics/tracks`` holds.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from fuse4d.dynamics.config import DynamicsConfig
from fuse4d.errors import DataError

#: columns of the tracks table, in CSV order (m, s, m/s, rad; world frame)
TRACK_COLUMNS = ("track_id", "t", "x", "y", "z", "vx", "vy", "vz", "l", "w", "h", "yaw")


def oriented_box(points: np.ndarray, heading: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Box around points ``[N, 3]`` (world, z up): centre ``[3]``, size ``[3]`` (l, w, h, m), yaw (rad).

    The long axis is ``heading [2]`` when given (a moving object's velocity), else the ground-plane
    principal axis (PCA); l is the extent along it.
    """
    xy = points[:, :2]
    if heading is not None and np.linalg.norm(heading) > 1e-6:
        axis = np.asarray(heading, np.float64) / np.linalg.norm(heading)
    elif len(points) >= 3:
        w, v = np.linalg.eigh(np.cov((xy - xy.mean(0)).T))
        axis = v[:, np.argmax(w)]
    else:
        axis = np.array([1.0, 0.0])
    perp = np.array([-axis[1], axis[0]])
    a, b = xy @ axis, xy @ perp
    lo = np.array([a.min(), b.min(), points[:, 2].min()])
    hi = np.array([a.max(), b.max(), points[:, 2].max()])
    mid = (lo + hi) / 2
    centre = np.array([*(mid[0] * axis + mid[1] * perp), mid[2]])
    return centre, hi - lo, float(np.arctan2(axis[1], axis[0]))


@dataclass
class Track:
    """One tracked object: Kalman state ``x [6]`` (position m, velocity m/s), covariance ``P [6, 6]``."""

    id: int
    x: np.ndarray
    P: np.ndarray
    hits: int = 1
    missed: int = 0
    size: np.ndarray = field(default_factory=lambda: np.zeros(3))
    yaw: float = 0.0
    centre: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @property
    def velocity(self) -> np.ndarray:
        """``[3]`` m/s."""
        return self.x[3:]


class Tracker:
    """Multi-object tracker over frames in time order.

    Args:
        config: ``track_*``, ``accel_sigma`` and ``meas_sigma`` settings.
    """

    def __init__(self, config: DynamicsConfig):
        self.config = config
        self.tracks: list[Track] = []
        self.rows: list[tuple] = []
        self._next_id = 0
        self._t: float | None = None

    def _predict(self, dt: float) -> None:
        F = np.eye(6)
        F[:3, 3:] = np.eye(3) * dt
        q = self.config.accel_sigma ** 2
        G = np.vstack([np.eye(3) * dt * dt / 2, np.eye(3) * dt])
        Q = G @ G.T * q
        for tr in self.tracks:
            tr.x = F @ tr.x
            tr.P = F @ tr.P @ F.T + Q

    def update(self, t: float, objects: list[np.ndarray]) -> np.ndarray:
        """Advance to time ``t`` (s) with the moving objects' points (each ``[N_k, 3]``, world, m).

        Returns:
            ``[K, 3]`` velocity (m/s) assigned to each object (0 for a new or unconfirmed track).
        """
        cfg = self.config
        dt = 0.0 if self._t is None else max(t - self._t, 0.0)
        self._t = t
        self._predict(dt)
        dets = [o for o in objects if len(o) >= cfg.track_min_points]
        keep = [k for k, o in enumerate(objects) if len(o) >= cfg.track_min_points]
        cents = np.array([d.mean(axis=0) for d in dets]).reshape(-1, 3)
        velocity = np.zeros((len(objects), 3))
        matched_t: set[int] = set()
        if self.tracks and len(dets):
            pred = np.array([tr.x[:3] for tr in self.tracks])
            cost = np.linalg.norm(pred[:, None, :2] - cents[None, :, :2], axis=2)
            ti, di = linear_sum_assignment(np.where(cost > cfg.track_gate, 1e6, cost))
            pairs = [(a, b) for a, b in zip(ti, di) if cost[a, b] <= cfg.track_gate]
        else:
            pairs = []
        R = np.eye(3) * cfg.meas_sigma ** 2
        H = np.hstack([np.eye(3), np.zeros((3, 3))])
        used = set()
        for a, b in pairs:
            tr = self.tracks[a]
            S = H @ tr.P @ H.T + R
            K = tr.P @ H.T @ np.linalg.inv(S)
            tr.x = tr.x + K @ (cents[b] - tr.x[:3])
            tr.P = (np.eye(6) - K @ H) @ tr.P
            tr.hits += 1
            tr.missed = 0
            heading = tr.velocity[:2] if np.linalg.norm(tr.velocity[:2]) > 1.0 else None
            tr.centre, tr.size, tr.yaw = oriented_box(dets[b], heading)
            matched_t.add(a)
            used.add(b)
            if tr.hits >= cfg.track_min_hits:
                velocity[keep[b]] = tr.velocity
                self.rows.append((tr.id, t, *tr.centre, *tr.velocity, *tr.size, tr.yaw))
        for k, tr in enumerate(self.tracks):
            if k not in matched_t:
                tr.missed += 1
        self.tracks = [tr for tr in self.tracks if tr.missed <= cfg.track_max_missed]
        for b in range(len(dets)):
            if b not in used:
                P = np.diag([cfg.meas_sigma ** 2] * 3 + [10.0 ** 2] * 3)
                centre, size, yaw = oriented_box(dets[b])
                self.tracks.append(Track(self._next_id, np.r_[cents[b], 0, 0, 0], P, size=size, yaw=yaw,
                                         centre=centre))
                self._next_id += 1
        return velocity

    def table(self) -> dict[str, np.ndarray]:
        """Confirmed track states, one row per track and frame: columns of :data:`TRACK_COLUMNS`
        (``track_id`` int64, the rest float64)."""
        return rows_to_table(self.rows)


def rows_to_table(rows: list[tuple]) -> dict[str, np.ndarray]:
    """Column dict of :data:`TRACK_COLUMNS` from row tuples (empty columns when there are none)."""
    arr = np.asarray(rows, np.float64).reshape(-1, len(TRACK_COLUMNS))
    out = {c: arr[:, k].copy() for k, c in enumerate(TRACK_COLUMNS)}
    out["track_id"] = arr[:, 0].astype(np.int64)
    return out


def tracks_to_csv(table: dict[str, np.ndarray], path: str | Path) -> None:
    """Write a tracks table (columns of :data:`TRACK_COLUMNS`) as CSV with a header, atomically.

    Raises:
        DataError: a column is missing or the columns differ in length.
    """
    from fuse4d.fileio import atomic_write_text

    missing = [c for c in TRACK_COLUMNS if c not in table]
    if missing:
        raise DataError(path, f"tracks table lacks columns {missing}")
    n = {len(np.asarray(table[c])) for c in TRACK_COLUMNS}
    if len(n) > 1:
        raise DataError(path, f"tracks table columns differ in length: {sorted(n)}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TRACK_COLUMNS)
    cols = [np.asarray(table[c]) for c in TRACK_COLUMNS]
    for r in range(len(cols[0])):
        w.writerow([int(cols[0][r])] + [repr(float(c[r])) for c in cols[1:]])
    atomic_write_text(Path(path), buf.getvalue())


def read_tracks_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Read a CSV written by :func:`tracks_to_csv` back into a table.

    Raises:
        DataError: unreadable file, wrong header, or a non-numeric cell (naming the line).
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise DataError(path, f"cannot read tracks CSV: {e.strerror}") from None
    if not lines or tuple(lines[0].split(",")) != TRACK_COLUMNS:
        raise DataError(path, f"expected the header {','.join(TRACK_COLUMNS)}")
    rows = []
    for k, line in enumerate(lines[1:], start=2):
        try:
            rows.append(tuple(float(v) for v in line.split(",")))
        except ValueError:
            raise DataError(path, f"line {k}: not a row of numbers: {line[:80]!r}") from None
        if len(rows[-1]) != len(TRACK_COLUMNS):
            raise DataError(path, f"line {k}: {len(rows[-1])} values, expected {len(TRACK_COLUMNS)}")
    return rows_to_table(rows)
