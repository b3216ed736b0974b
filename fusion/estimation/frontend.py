"""Per-frame tracking: LiDAR odometry with IMU prediction and deskewing, gap handling, keyframes, loops.

:class:`Frontend` consumes frames one at a time and keeps, in the odometry
frame (the first LiDAR pose, or the first body pose for IMU-only logs), a body
pose per frame with its status and registration information, the IMU state
(velocity, biases, gravity vector once initialised), keyframes and verified
loop closures. :mod:`backend` turns that record into the optimised trajectory.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from fuse4d.data.types import Frame, ImuSamples
from fuse4d.errors import DataError
from fuse4d.fusion.estimation.config import EstimationConfig
from fuse4d.fusion.estimation.deskew import azimuth_time, trajectory_motion
from fuse4d.fusion.estimation.imu import initial_alignment, preintegrate_many, propagate_path
from fuse4d.fusion.estimation.inertial_init import initialise, track_velocity
from fuse4d.fusion.estimation.lidar_odometry import LidarOdometry
from fuse4d.fusion.estimation.lie import rotation_angle
from fuse4d.fusion.estimation.loop_closure import LoopClosure, LoopDetector
from fuse4d.geometry import invert

log = logging.getLogger(__name__)


@dataclass
class FrameRecord:
    """Front-end estimate of one frame (odometry frame; ``info`` is 6×6 registration information or None)."""

    index: int
    t: float
    T: np.ndarray
    status: str
    flags: set[str] = field(default_factory=set)
    fitness: float = float("nan")
    info: np.ndarray | None = None
    v: np.ndarray | None = None
    delta: tuple[float, np.ndarray, np.ndarray] | None = None  # IMU (Δt, Δv, Δp) from the previous frame
    points: np.ndarray | None = None  # deskewed sweep, kept until the keyframe decision


class Frontend:
    """Frame-by-frame tracker (see module doc).

    Args:
        config: estimation settings.
        T_body_lidar: ``[4, 4]`` LiDAR → body extrinsics (identity without IMU).
        imu: the whole IMU stream when known up front; else samples are taken from each frame.
        imu_noise: ``Calibration.imu_noise`` dict, for preintegration covariances.
        lidar_timing: azimuth timing model for sweeps without per-point times.
        lidar_deskewed: the sweeps are already motion-compensated (never deskewed again).
    """

    def __init__(self, config: EstimationConfig, T_body_lidar: np.ndarray, imu: ImuSamples | None,
                 use_imu: bool, lidar_timing: dict | None = None, lidar_deskewed: bool = False):
        c = config
        #: sweeps are motion-compensated upstream (e.g. Argoverse 2): their point times are not used again
        self.lidar_deskewed = bool(lidar_deskewed)
        #: azimuth timing model for sweeps without per-point times (see deskew.azimuth_time)
        self.lidar_timing = lidar_timing if c.deskew else None
        self.cfg = c
        self.X = np.asarray(T_body_lidar, float)
        self.X_inv = invert(self.X)
        self.use_imu = use_imu
        self.imu = imu
        self._imu_parts: list[ImuSamples] = []
        self.lo = LidarOdometry(c.voxel_size, c.max_range, c.min_range, c.max_points_per_voxel, c.point_to_plane,
                                c.initial_threshold, c.min_motion, c.max_icp_iterations, c.deskew, c.min_fitness)
        self.loops_db = LoopDetector(c.voxel_size, c.loop_search_radius, c.loop_drift_fraction, c.loop_min_separation,
                                     c.loop_sc_threshold, c.loop_min_fitness, c.loop_max_rmse,
                                     point_sigma=c.lidar_point_sigma)
        self.records: list[FrameRecord] = []
        self.keyframes: list[int] = []  # frame positions
        self.kf_lidar: dict[int, int] = {}  # frame position → loop-database id
        self.loops: list[LoopClosure] = []
        self.network: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (frame i, frame j, T_i_j, cov)
        self.gravity: np.ndarray | None = None  # odometry-frame gravity once initialised
        self.bg, self.ba = np.zeros(3), np.zeros(3)
        self.timings: dict[str, float] = {}
        self._last_loop_kf = -10 ** 9
        self._T_map_odom = np.eye(4)  # odometry → loop-store frame, from the latest verified loop
        self._refined = False  # gravity re-estimated over a longer span

    # -- IMU stream -------------------------------------------------------------
    def _append_imu(self, frame: Frame) -> None:
        if self.imu is not None and not self._imu_parts:
            return
        s = frame.imu
        if s is None or len(s) == 0:
            return
        s.validate(f"frame {frame.index} IMU")
        if self._imu_parts and s.t[0] <= self._imu_parts[-1].t[-1]:
            keep = s.t > self._imu_parts[-1].t[-1]
            s = ImuSamples(s.t[keep], s.acc[keep], s.gyro[keep])
        if len(s):
            self._imu_parts.append(s)
            self.imu = ImuSamples(np.concatenate([p.t for p in self._imu_parts]),
                                  np.concatenate([p.acc for p in self._imu_parts]),
                                  np.concatenate([p.gyro for p in self._imu_parts]))

    def _imu_covers(self, t0: float, t1: float) -> bool:
        """IMU samples span ``[t0, t1]`` without a hole longer than 0.25 s (10 Hz OXTS still counts)."""
        if not self.use_imu or self.imu is None or len(self.imu) < 2:
            return False
        ts = self.imu.t
        inside = ts[np.searchsorted(ts, t0 - 0.15, "left"):np.searchsorted(ts, t1 + 0.15, "right")]
        return (ts[0] <= t0 + 0.02 and ts[-1] >= t1 - 0.02
                and (len(inside) < 2 or np.diff(inside).max() < 0.25))

    # -- main step ---------------------------------------------------------------
    def step(self, frame: Frame) -> FrameRecord:
        """Track one frame; returns its record.

        Raises:
            DataError: frame timestamps not increasing, or bad IMU samples in the frame.
        """
        tic = time.perf_counter()
        t = float(frame.timestamp)
        if self.records and not t > self.records[-1].t:
            raise DataError(None, f"frame {frame.index}: timestamp {t:.6f} s is not after the previous "
                                  f"frame's {self.records[-1].t:.6f} s")
        if self.use_imu:
            self._append_imu(frame)
        prev = self.records[-1] if self.records else None
        if prev is None and (frame.points is None or len(frame.points) < 100):
            self._static_start(t)
        tau = None if self.lidar_deskewed else frame.point_time
        if tau is None and not self.lidar_deskewed and self.lidar_timing is not None and frame.points is not None and len(frame.points):
            tau = azimuth_time(frame.points, self.lidar_timing)
        T_pred = v_pred = motion = delta = None
        if prev is not None and self.gravity is not None and self._imu_covers(prev.t, t):
            tk, Tp, vp = propagate_path(self.imu, prev.t, t, prev.T[:3, :3], prev.T[:3, 3], prev.v,
                                        self.bg, self.ba, self.gravity)
            T_pred, v_pred = Tp[-1], vp[-1]
            delta = _delta(prev.T, prev.v, T_pred, v_pred, t - prev.t, self.gravity)
            if tau is not None and len(tk) >= 2:
                motion = trajectory_motion(tk, Tp @ self.X, t)
        rec = self._register(frame, tau, t, prev, T_pred, motion)
        if self.lo.first_deskewed is not None:  # the first sweep, deskewed now that the motion is known
            first = next(iter(self.kf_lidar.items()), None)
            if first is not None and first[0] == 0:
                self.loops_db.replace_points(first[1], self.lo.first_deskewed)
            self.lo.first_deskewed = None
        if rec is None:  # no usable LiDAR
            if T_pred is not None:
                rec = FrameRecord(frame.index, t, T_pred, "imu_only")
            elif prev is not None and self.lo.last_pose is not None:
                T_l = self.lo.predict()
                rec = FrameRecord(frame.index, t, T_l @ self.X_inv, "extrapolated")
            else:
                rec = FrameRecord(frame.index, t, np.eye(4) if prev is None else prev.T.copy(),
                                  "extrapolated" if prev is not None else "imu_only")
            self.lo.reset_motion(rec.T @ self.X)
        elif rec.status == "lidar_rejected" and T_pred is not None:
            rec.T, rec.status = T_pred, "imu_only"
            rec.flags.add("lidar_rejected")
            self.lo.reset_motion(T_pred @ self.X)
        rec.delta = delta
        self.records.append(rec)
        self._update_velocity(rec, v_pred)
        self._tick("tracking", tic)
        self._keyframe(rec, frame)
        rec.points = None
        return rec

    def _register(self, frame: Frame, tau: np.ndarray | None, t: float, prev: FrameRecord | None,
                  T_pred: np.ndarray | None, motion) -> FrameRecord | None:
        if frame.points is None or len(frame.points) < 100:
            return None
        gap = prev is not None and prev.status in ("imu_only", "extrapolated")
        try:
            step = self.lo.register(frame.points, tau, None if prev is None else t - prev.t,
                                    T_pred=None if T_pred is None else T_pred @ self.X, motion=motion,
                                    widen=2.0 if gap else 1.0)
        except ValueError as e:
            log.warning("frame %d: LiDAR unusable (%s)", frame.index, e)
            return None
        rec = FrameRecord(frame.index, t, step.T_world_lidar @ self.X_inv, "ok", fitness=step.fitness,
                          points=step.points)
        if step.degenerate:
            rec.flags.add("degenerate")
        if not step.first:
            if not step.accepted:
                rec.status = "lidar_rejected"
            rec.info = step.hessian / self.cfg.lidar_point_sigma ** 2
        return rec

    def _update_velocity(self, rec: FrameRecord, v_pred: np.ndarray | None) -> None:
        recs, W = self.records, self.cfg.velocity_window
        if self.gravity is None:
            rec.v = np.zeros(3) if len(recs) < 2 else \
                (recs[-1].T[:3, 3] - recs[-2].T[:3, 3]) / (recs[-1].t - recs[-2].t)
            self._try_initialise()
            return
        if not self._refined and self._try_initialise(3.0 * self.cfg.imu_init_time):
            self._refined = True
            return
        run = _trailing_ok(recs[-W:])
        if len(run) >= 3 and all(r.delta is not None for r in run[1:]):
            R = np.stack([r.T[:3, :3] for r in run])
            p = np.stack([r.T[:3, 3] for r in run])
            rec.v = track_velocity(R, p, [r.delta for r in run[1:]], self.gravity)
        else:
            rec.v = v_pred if v_pred is not None else (recs[-2].v if len(recs) > 1 else np.zeros(3))

    def _static_start(self, t: float) -> None:
        """A log that starts without LiDAR: level the body with the accelerometer, assuming it is at rest."""
        if not self._imu_covers(t, t + self.cfg.imu_init_time):
            return
        R, self.bg, static = initial_alignment(self.imu, t, self.cfg.imu_init_time)
        self.gravity = R.T @ np.array([0.0, 0.0, -self.cfg.gravity])  # odometry frame = first body frame
        log.warning("no LiDAR at the start: IMU dead reckoning from rest (%s), drift is unbounded until LiDAR",
                    "static start" if static else "NOT static: velocity unknown")

    def _try_initialise(self, span: float | None = None) -> bool:
        """Gravity, velocities and gyro bias from the trailing run of LiDAR frames lasting ``span`` s.

        Called with the configured ``imu_init_time`` until it succeeds, then once more at
        three times that span: the gravity error falls with the square of the span.
        """
        span = self.cfg.imu_init_time if span is None else span
        if not self.use_imu or self.imu is None:
            return False
        ok = _trailing_ok(self.records)
        if len(ok) < 3 or ok[-1].t - ok[0].t < span:
            return False
        ok = [r for r in ok if r.t >= ok[-1].t - span - 1e-9]
        t = np.array([r.t for r in ok])
        if not self._imu_covers(t[0], t[-1]):
            return False
        pre = preintegrate_many(self.imu, t[:-1], t[1:])
        st = initialise(np.stack([r.T[:3, :3] for r in ok]), np.stack([r.T[:3, 3] for r in ok]), pre,
                        self.cfg.gravity)
        self.gravity, self.bg = st.gravity, st.gyro_bias
        for r, v in zip(ok, st.velocities):
            r.v = v
        for r, pr in zip(ok[1:], pre):
            r.delta = (pr.dt, *pr.corrected(self.bg, self.ba)[1:])
        log.info("IMU initialised over %.2f s: gravity %s, gyro bias %s, fit %.3f m",
                 t[-1] - t[0], np.round(st.gravity, 3), np.round(st.gyro_bias, 4), st.residual)
        return True

    # -- keyframes and loops -----------------------------------------------------------
    def _keyframe(self, rec: FrameRecord, frame: Frame) -> None:
        c, pos = self.cfg, len(self.records) - 1
        prev_status = self.records[-2].status if pos > 0 else None
        if self.keyframes:
            last = self.records[self.keyframes[-1]]
            rel = invert(last.T) @ rec.T
            new = (np.linalg.norm(rel[:3, 3]) > c.keyframe_distance
                   or np.degrees(rotation_angle(rel)) > c.keyframe_angle_deg
                   or pos - self.keyframes[-1] >= c.keyframe_max_frames
                   or (rec.status == "ok") != (prev_status == "ok"))
            if not new:
                return
        self.keyframes.append(pos)
        rec.flags.add("keyframe")
        pts, rec.points = rec.points, None
        if pts is not None and rec.status == "ok":
            tic = time.perf_counter()
            self.kf_lidar[pos] = self.loops_db.add(pts, rec.T @ self.X)
            if c.loop_closure and len(self.keyframes) - self._last_loop_kf > 5:
                lc = self.loops_db.detect(self.kf_lidar[pos])
                if lc is not None:
                    db = self.loops_db
                    self._T_map_odom = db.poses[lc.i] @ lc.T_i_j @ invert(db.poses[lc.j])
                    self.loops.append(lc)
                    self._last_loop_kf = len(self.keyframes)
                    rec.flags.add("loop")
                    log.info("loop closure: frame %d ↔ keyframe %d (fitness %.2f, rmse %.3f m)",
                             frame.index, lc.i, lc.fitness, lc.rmse)
            # a revisited place keeps the older sweep only: the store grows with the area, not the log
            self.loops_db.prune(self.kf_lidar[pos], self._T_map_odom, 0.5 * c.keyframe_distance)
            self._tick("loop_closure", tic)

    def _tick(self, name: str, tic: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - tic


def _trailing_ok(records: list[FrameRecord]) -> list[FrameRecord]:
    """The longest run of LiDAR-registered (``ok``) records at the end of ``records``."""
    n = 0
    for r in reversed(records):
        if r.status != "ok":
            break
        n += 1
    return records[len(records) - n:]


def _delta(T0: np.ndarray, v0: np.ndarray, T1: np.ndarray, v1: np.ndarray, dt: float,
           g: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """IMU deltas ``(Δt, Δv, Δp)`` implied by a propagated state pair."""
    Rt = T0[:3, :3].T
    return dt, Rt @ (v1 - v0 - g * dt), Rt @ (T1[:3, 3] - T0[:3, 3] - v0 * dt - 0.5 * g * dt * dt)
