"""Object tracks from moving LiDAR objects: oriented boxes, Hungarian association, constant-velocity Kalman filters.

Each frame's moving objects (clusters of points the segmentation calls moving)
become detections with a centroid and an oriented box in the ground plane.
Tracks predict their centroid at constant velocity, are matched to detections
by the Hungarian method on centroid distance (gated), and are updated: the
centroid is replaced, the velocity is Kalman-filtered from the motion that
registers the object's previous points onto its new ones (ICP: translation of its centre
and turn about it; the centre of a partly seen vehicle from its longest seen length),
between the objects' capture times (a spinning LiDAR sees an object up to one sweep before
the stamp), with its heading carried forward by the turn (CTRV) and its vertical velocity
from the ground's slope along its heading (it rolls on the ground); unmatched detections start
tentative tracks, which are confirmed after ``track_min_hits`` matches. The table of confirmed track states
(one row per track and frame) is what the store's ``dynamics/tracks`` holds; offline, its horizontal
velocities are re-estimated at the end by a fixed-interval smoother over each track's registrations,
each dated at the middle of its span (:func:`smooth_velocities`).
"""

from __future__ import annotations

import csv
import io
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from fuse4d.dynamics.config import DynamicsConfig
from fuse4d.dynamics.registration import axis_search, icp_translation
from fuse4d.errors import DataError

_VHIST = 6               # velocity measurements (at their mid-times) the turn-rate fit keeps
_MIN_TURN_SPEED = 2.0    # m/s: slower objects' headings are too noisy to extrapolate
_MAX_TURN_RATE = 1.5     # rad/s
_VERTICAL_ACCEL = 0.1     # vertical process noise of the velocity filter, per unit of accel_sigma
_YAW_PRIOR = 0.01        # weak pull of a registration's turn to 0 (per inlier, per rad²)

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


def full_centre(points: np.ndarray, heading: np.ndarray | None, sensor: np.ndarray | None,
                length: float) -> np.ndarray:
    """Centre ``[3]`` of an object of known ``length`` (m) seen partly: ``points [N, 3]`` (world),
    long axis ``heading [2]``, seen from ``sensor [3]``.

    A LiDAR sees the end of a vehicle that faces it; the far end hides behind it. So when the
    visible extent along the axis is shorter than the object's (the longest extent the track has
    seen: it is rigid), the centre lies half the length beyond the near end, not in the middle of
    what is visible. Without heading or sensor, the middle of the visible box.
    """
    centre, size, _ = oriented_box(points, heading)
    if heading is None or sensor is None or np.linalg.norm(heading) <= 1e-6 or length <= size[0]:
        return centre
    axis = np.r_[np.asarray(heading, np.float64) / np.linalg.norm(heading), 0.0]
    a = points @ axis
    near_low = float(np.asarray(sensor, np.float64) @ axis) < 0.5 * (a.min() + a.max())
    ca = a.min() + 0.5 * length if near_low else a.max() - 0.5 * length
    return centre + (ca - 0.5 * (a.min() + a.max())) * axis


@dataclass
class Track:
    """One tracked object: ``x [6]`` (centroid m, velocity m/s) and the velocity covariance ``P [3, 3]``."""

    id: int
    x: np.ndarray
    P: np.ndarray
    hits: int = 1
    measured: int = 0
    missed: int = 0
    size: np.ndarray = field(default_factory=lambda: np.zeros(3))
    yaw: float = 0.0
    centre: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rejected: int = 0
    length: float = 0.0
    first: list = field(default_factory=list)
    history: deque = field(default_factory=deque)
    vhist: deque = field(default_factory=lambda: deque(maxlen=_VHIST))

    @property
    def velocity(self) -> np.ndarray:
        """``[3]`` m/s."""
        return self.x[3:]


class Tracker:
    """Multi-object tracker over frames in time order.

    Args:
        config: ``track_*``, ``accel_sigma``, ``vel_sigma``, ``vel_gate``, ``max_speed`` and ``icp_min_inliers``.
        ground: callable ``xy [N, 2] -> [N]`` ground height (m, inf unknown), or None: a moving
            object's vertical velocity then follows the ground's slope along its heading.
    """

    def __init__(self, config: DynamicsConfig, ground=None):
        self.config = config
        self.ground = ground  # callable xy [N, 2] -> ground height [N] (inf unknown), or None
        self.tracks: list[Track] = []
        self.rows: list[tuple] = []
        self._next_id = 0
        self._t: float | None = None
        self._meas: dict[int, list[tuple[float, float, float, float]]] = {}  # id -> (t_mid, vx, vy, span)

    def _predict(self, dt: float) -> None:
        # road users accelerate vertically only as the slope under them changes: far less than
        # they brake or turn, and a scan constrains vertical motion least (its faces are upright)
        q = np.array([1.0, 1.0, _VERTICAL_ACCEL ** 2]) * (self.config.accel_sigma * dt) ** 2
        for tr in self.tracks:
            tr.x[:3] += tr.x[3:] * dt
            tr.P = tr.P + np.diag(q)

    def update(self, t: float, objects: list[np.ndarray], times: list[float] | np.ndarray | None = None,
               sensor: np.ndarray | None = None) -> np.ndarray:
        """Advance to time ``t`` (s) with the moving objects' points (each ``[N_k, 3]``, world, m).

        ``times`` ``[K]`` (s, ≤ 0): when each object was captured relative to ``t`` (a spinning
        LiDAR sees an object when its beam sweeps past it, up to one sweep before the stamp;
        the mean ``point_time`` of its points). Velocities are measured between capture times
        and the reported positions are moved on to ``t``. None = captured at ``t``.
        ``sensor [3]`` (world, m): where the LiDAR saw them from (locates the hidden end of a
        partly seen vehicle, see :func:`full_centre`); None = centres of the visible boxes.

        Returns:
            ``[K, 3]`` velocity (m/s) assigned to each object (0 for a new or unconfirmed track).
        """
        cfg = self.config
        dt = 0.0 if self._t is None else max(t - self._t, 0.0)
        self._t = t
        self._predict(dt)
        keep = [k for k, o in enumerate(objects) if len(o) >= cfg.track_min_points]
        dets = [objects[k] for k in keep]
        tau = np.zeros(len(objects)) if times is None else np.asarray(times, np.float64).reshape(-1)
        tdet = t + tau[keep]
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
        used = set()
        for a, b in pairs:
            tr = self.tracks[a]
            v_meas = self._velocity_measurement(tr, dets[b], cents[b], float(tdet[b]), t, sensor)
            if v_meas is not None:  # Kalman update of the velocity (random-walk model)
                K = tr.P @ np.linalg.inv(tr.P + np.eye(3) * cfg.vel_sigma ** 2)
                tr.x[3:] = tr.x[3:] + K @ (v_meas - tr.x[3:])
                tr.P = (np.eye(3) - K) @ tr.P
                tr.measured += 1
            tr.x[:3] = cents[b] + tr.velocity * (t - tdet[b])
            tr.history.append((float(tdet[b]), dets[b], sensor))
            tr.hits += 1
            tr.missed = 0
            heading = tr.velocity[:2] if np.linalg.norm(tr.velocity[:2]) > 1.0 else None
            tr.centre, tr.size, tr.yaw = oriented_box(dets[b], heading)
            if heading is not None:
                tr.length = max(tr.length, float(tr.size[0]))
                tr.centre = full_centre(dets[b], heading, sensor, tr.length)
                tr.size[0] = tr.length
            tr.centre = tr.centre + tr.velocity * (t - tdet[b])  # captured before the stamp
            matched_t.add(a)
            used.add(b)
            if self.ground is not None and heading is not None:
                tr.x[5] = self._ground_vz(tr)
            # rows only once the velocity is observable: the filter started (median of three
            # one-frame registrations) and refined by a long-baseline registration
            if tr.hits >= cfg.track_min_hits and tr.measured >= 4:
                velocity[keep[b]] = tr.velocity
                self.rows.append((tr.id, t, *tr.centre, *tr.velocity, *tr.size, tr.yaw))
        for k, tr in enumerate(self.tracks):
            if k not in matched_t:
                tr.missed += 1
        self.tracks = [tr for tr in self.tracks if tr.missed <= cfg.track_max_missed]
        for b in range(len(dets)):
            if b not in used:
                P = np.eye(3) * 10.0 ** 2
                centre, size, yaw = oriented_box(dets[b])
                self.tracks.append(Track(self._next_id, np.r_[cents[b], 0, 0, 0], P, size=size, yaw=yaw,
                                         centre=centre))
                self.tracks[-1].history = deque([(float(tdet[b]), dets[b], sensor)], maxlen=cfg.track_baseline)
                self._next_id += 1
        return velocity

    def _velocity_measurement(self, tr: Track, points: np.ndarray, centroid: np.ndarray, t: float,
                              t_now: float | None = None, sensor: np.ndarray | None = None) -> np.ndarray | None:
        """Velocity ``[3]`` (m/s) from registering the track's oldest kept points (up to
        ``track_baseline`` frames back: a longer baseline divides the registration error) onto the
        detection's, or None when they do not register or disagree with a settled velocity.
        Centroid differences are not used: a centroid moves with the visible side of an object
        (a car passing by), the registered surfaces do not."""
        cfg = self.config
        if not tr.history:
            return None
        settled = tr.measured >= 3
        d = share = span = None
        heading = tr.velocity[:2] if np.linalg.norm(tr.velocity[:2]) > 1.0 else None
        # the registration turns the old points about the object's centre, so d is the centre's
        # displacement (a turning vehicle's other points move differently: ω × offset)
        if settled:  # long baseline, started from the filter's velocity
            t_old, old, s_old = tr.history[0]
            span = t - t_old
            if span > 0 and len(old) >= 5:
                d, share, th = icp_translation(points, old, tr.velocity * span, yaw_prior=_YAW_PRIOR,
                                               pivot=full_centre(old, heading, s_old, tr.length))
        if d is None or share < cfg.icp_min_inliers:  # one frame back, searched along the object's axis
            t_old, old, s_old = tr.history[-1]
            span = t - t_old
            if span <= 0 or len(old) < 5:
                return None
            start = axis_search(points, old, tr.velocity * span, cfg.max_speed * span)
            d, share, th = icp_translation(points, old, start, pivot=full_centre(old, heading, s_old, tr.length),
                                           yaw_prior=_YAW_PRIOR)
        if share < cfg.icp_min_inliers:
            return None
        v = d / span
        if not settled or np.linalg.norm(v - tr.velocity) <= cfg.vel_gate:  # the gated ones are not kept either
            self._meas.setdefault(tr.id, []).append((t - span / 2, float(v[0]), float(v[1]), span))
        if not settled:  # the median of the first three starts the filter (one bad search is outvoted)
            tr.first.append(v)
            if len(tr.first) == 3:
                tr.x[3:] = np.median(np.array(tr.first), axis=0)
                tr.P = np.eye(3) * cfg.vel_sigma ** 2
                tr.measured, tr.first = 3, []
            return None
        if np.linalg.norm(v - tr.velocity) > cfg.vel_gate:
            tr.rejected += 1
            if tr.rejected >= 3:  # the filter has locked on something wrong: start over
                tr.measured, tr.rejected, tr.first = 0, 0, []
                tr.vhist.clear()
            return None
        tr.rejected = 0
        return self._extrapolate(tr, t - span / 2, v, t if t_now is None else t_now, th / span)

    def _ground_vz(self, tr: Track) -> float:
        """Vertical velocity (m/s) of a road user rolling on the ground: its horizontal speed times
        the ground's slope along its heading, from the ground just ahead of and behind it; the
        filter's own value where that ground is unknown."""
        v = tr.velocity[:2]
        u = v / np.linalg.norm(v)
        reach = 0.5 * max(tr.length, 1.0) + 1.0
        xy = tr.centre[:2] + np.outer([reach, -reach], u)
        h = self.ground(xy)
        if not np.isfinite(h).all():
            return float(tr.x[5])
        return float(np.linalg.norm(v) * (h[0] - h[1]) / (2 * reach))

    @staticmethod
    def _extrapolate(tr: Track, t_mid: float, v: np.ndarray, t: float, rate: float | None = None) -> np.ndarray:
        """Velocity ``[3]`` at ``t`` from a registration's mean velocity ``v`` over a span ending at
        ``t`` and centred at ``t_mid`` (s): constant turn rate, constant speed (CTRV).

        A mean velocity points along the chord of the span, i.e. the heading at its middle; a
        turning object has turned on since. The turn rate is the slope of the recent mean
        velocities' headings against their mid-times (least squares), or the registration's own
        turn ``rate`` (rad/s) when given, and ``v`` is rotated by ``rate × (t − t_mid)``. Only the
        heading is extrapolated: the speed along a vehicle's long side is the weakly constrained
        part of a registration and is left as measured."""
        tr.vhist.append((t_mid, v))
        speed = float(np.linalg.norm(v[:2]))
        if speed < _MIN_TURN_SPEED:
            return v
        if rate is None:
            ts = np.array([a for a, _ in tr.vhist])
            vs = np.array([b for _, b in tr.vhist])
            if len(tr.vhist) < 3 or ts.max() - ts.min() < 0.15 or (np.linalg.norm(vs[:, :2], axis=1) < _MIN_TURN_SPEED).any():
                return v
            head = np.unwrap(np.arctan2(vs[:, 1], vs[:, 0]))
            rate = float(np.polyfit(ts, head, 1)[0])
        rate = float(np.clip(rate, -_MAX_TURN_RATE, _MAX_TURN_RATE))
        a = rate * (t - t_mid)
        c, s_ = np.cos(a), np.sin(a)
        return np.array([c * v[0] - s_ * v[1], s_ * v[0] + c * v[1], v[2]])

    def table(self) -> dict[str, np.ndarray]:
        """Confirmed track states, one row per track and frame: columns of :data:`TRACK_COLUMNS`
        (``track_id`` int64, the rest float64). With ``track_smooth`` the horizontal velocities are
        the offline smoother's (:func:`smooth_velocities`), not the causal filter's."""
        table = rows_to_table(self.rows)
        if not self.config.track_smooth or not len(table["t"]):
            return table
        cfg = self.config
        for tid in np.unique(table["track_id"]):
            meas = self._meas.get(int(tid))
            rows = np.flatnonzero(table["track_id"] == tid)
            if not meas or len(meas) < 2:
                continue
            m = np.asarray(meas, np.float64)
            v = smooth_velocities(m[:, 0], m[:, 1:3], cfg.smooth_disp_sigma / m[:, 3], table["t"][rows],
                                  cfg.smooth_accel_sigma)
            table["vx"][rows], table["vy"][rows] = v[:, 0], v[:, 1]
        return table


def smooth_velocities(t_meas: np.ndarray, v_meas: np.ndarray, sigma: np.ndarray, t_out: np.ndarray,
                      accel_sigma: float) -> np.ndarray:
    """Fixed-interval (Rauch–Tung–Striebel) smoother of a velocity ``[2]`` random walk.

    Args:
        t_meas: ``[M]`` s, when each measurement holds: a registration's mean velocity over a span is
            the velocity at the span's middle (a causal filter that dates it at the span's end lags
            by half the span, which is what an accelerating or turning object's error is made of).
        v_meas: ``[M, 2]`` m/s measured velocities; sigma: ``[M]`` m/s their noise.
        t_out: ``[K]`` s, times of the wanted estimates.
        accel_sigma: the velocity's random walk: its variance grows by ``accel_sigma² · dt`` (m²/s³).
    Returns:
        ``[K, 2]`` m/s smoothed velocities at ``t_out`` (both sides of each time count).
    """
    t = np.r_[t_meas, t_out]
    is_meas = np.r_[np.ones(len(t_meas), bool), np.zeros(len(t_out), bool)]
    z = np.vstack([v_meas, np.zeros((len(t_out), 2))])
    r = np.r_[np.asarray(sigma, np.float64) ** 2, np.zeros(len(t_out))]
    order = np.argsort(t, kind="stable")
    t, is_meas, z, r = t[order], is_meas[order], z[order], r[order]
    n = len(t)
    m_f, p_f, p_p = np.zeros((n, 2)), np.zeros(n), np.zeros(n)
    m, p = z[np.argmax(is_meas)].copy(), 1e4
    for k in range(n):  # one step per measurement or output time: tens per track, not points
        if k:
            p = p + accel_sigma ** 2 * (t[k] - t[k - 1])
        p_p[k] = p
        if is_meas[k]:
            g = p / (p + r[k])
            m, p = m + g * (z[k] - m), (1 - g) * p
        m_f[k], p_f[k] = m, p
    m_s = m_f.copy()
    for k in range(n - 2, -1, -1):
        c = p_f[k] / p_p[k + 1]
        m_s[k] = m_f[k] + c * (m_s[k + 1] - m_f[k])
    out = np.empty((len(t_out), 2))
    pos = np.flatnonzero(~is_meas)
    out[order[pos] - len(t_meas)] = m_s[pos]
    return out


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
