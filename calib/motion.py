"""Ego motion the calibration needs: LiDAR odometry over a log, and deskewing of a sweep
to its frame stamp (the image time).

The odometry is :class:`fuse4d.fusion.estimation.lidar_odometry.LidarOdometry`
(KISS-ICP style scan-to-map ICP) registering the LiDAR alone. How each sweep is
deskewed matters for the IMU estimates: a constant-velocity deskew uses the last
interval's motion, so while the turn rate changes the sweep's own rotation is
misjudged in proportion to that change, which is what a time offset looks like
(train seed 2, 150 frames: yaw error 0.10 deg rms per interval, time offset off by
-4.4 ms). Deskewing the sweep's rotation with the gyro (:class:`GyroDeskew`, at the
current offset and IMU–LiDAR rotation) leaves 0.006 deg and -0.1 ms; a 20 ms
error of the offset used only moves the next estimate by ~0.8 ms, so two passes
(start calibration, then the estimate) converge. The pose a sweep yields refers to
its frame stamp (the sweep's end for the synthetic LiDAR), like the point times.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fuse4d.data.types import ImuSamples, Sequence
from fuse4d.errors import DataError
from fuse4d.geometry import invert

log = logging.getLogger(__name__)


@dataclass
class LidarTrack:
    """LiDAR odometry of a log.

    Attributes:
        index: ``[S]`` frame indices (in the sequence view) with a registered sweep.
        t: ``[S]`` their stamps (s).
        T_odom_lidar: ``[S, 4, 4]`` LiDAR poses in the odometry frame (first sweep = identity).
        fitness: ``[S]`` fraction of points matched, [0, 1].
    """

    index: np.ndarray
    t: np.ndarray
    T_odom_lidar: np.ndarray
    fitness: np.ndarray

    def delta(self, i: int) -> tuple[np.ndarray, float] | None:
        """``(T_prev_curr [4,4], dt s)`` of the step ending at frame ``i`` (sequence index), or None."""
        k = np.searchsorted(self.index, i)
        if k == 0 or k >= len(self.index) or self.index[k] != i or self.index[k - 1] != i - 1:
            return None
        return invert(self.T_odom_lidar[k - 1]) @ self.T_odom_lidar[k], float(self.t[k] - self.t[k - 1])


@dataclass
class GyroDeskew:
    """Deskew a sweep's rotation with the gyro.

    Attributes:
        imu: the IMU stream (its own clock).
        offset_s: IMU time = LiDAR time + ``offset_s``.
        R_body_lidar: ``[3, 3]`` rotation of the LiDAR in the IMU (body) frame.
        gyro_bias: ``[3]`` rad/s subtracted from the gyro (None = none).
    """

    imu: ImuSamples
    offset_s: float
    R_body_lidar: np.ndarray
    gyro_bias: np.ndarray | None = None

    def motion(self, t_stamp: float, velocity: np.ndarray | None):
        """Motion model ``T_stamp_τ`` (see :mod:`fuse4d.fusion.estimation.deskew`) of the sweep
        stamped ``t_stamp`` (s, LiDAR clock): rotation from the gyro, translation ``τ·velocity``
        (``[3]`` m/s in the LiDAR frame; zero when None)."""
        from scipy.spatial.transform import Rotation, Slerp
        t, g = self.imu.t, self.imu.gyro
        t0 = t_stamp + self.offset_s
        a = max(int(np.searchsorted(t, t0 - 0.5, side="right")) - 1, 0)  # sweeps last well under 0.5 s
        b = min(int(np.searchsorted(t, t0 + 0.1)) + 1, len(t))
        ts = t[a:b]
        if len(ts) < 2:
            return None
        w = g[a:b] - (0.0 if self.gyro_bias is None else np.asarray(self.gyro_bias))
        inc = Rotation.from_rotvec(0.5 * (w[1:] + w[:-1]) * np.diff(ts)[:, None])
        R = [Rotation.identity()]
        for r in inc:
            R.append(R[-1] * r)
        slerp = Slerp(ts, Rotation.concatenate(R))
        R_bl = np.asarray(self.R_body_lidar, np.float64)
        R_stamp = slerp(np.clip(t0, ts[0], ts[-1])).inv()
        v = np.zeros(3) if velocity is None else np.asarray(velocity, np.float64)

        def motion(tau: np.ndarray) -> np.ndarray:
            tau = np.asarray(tau, np.float64).reshape(-1)
            Rb = (R_stamp * slerp(np.clip(t0 + tau, ts[0], ts[-1]))).as_matrix()  # body: stamp <- τ
            out = np.tile(np.eye(4), (len(tau), 1, 1))
            out[:, :3, :3] = R_bl.T @ Rb @ R_bl
            out[:, :3, 3] = tau[:, None] * v[None]
            return out

        return motion


def lidar_track(seq: Sequence, stop: int | None = None, voxel_size: float | None = None,
                gyro: GyroDeskew | None = None) -> LidarTrack:
    """Run LiDAR odometry over the first ``stop`` frames of ``seq`` (all when None).

    The voxel size defaults to 1 m (0.5 m when the sweeps span less than 30 m). With
    ``gyro``, sweeps are deskewed with the gyro's rotation (and the last interval's
    velocity); otherwise at constant velocity.

    Raises:
        DataError: the log has no LiDAR, or fewer than 3 sweeps register.
    """
    from fuse4d.fusion.estimation.lidar_odometry import LidarOdometry
    if "lidar" not in seq.sensors:
        raise DataError(seq.path, "the log has no LiDAR: the IMU rotation and time offset need LiDAR odometry")
    n = len(seq) if not stop else min(stop, len(seq))
    odo = None
    idx, ts, Ts, fit = [], [], [], []
    t_prev = None
    for i in range(n):
        f = seq[i]
        if f.points is None or len(f.points) < 100:
            odo, t_prev = None, None  # a gap breaks the track: deltas across it are not used
            continue
        if odo is None:
            vs = voxel_size or (1.0 if np.ptp(f.points[:, :2], axis=0).max() > 30 else 0.5)
            odo = LidarOdometry(voxel_size=vs, max_range=80.0, min_range=1.0)
            base = None
        dt = None if t_prev is None else f.timestamp - t_prev
        motion = None
        if gyro is not None and f.point_time is not None and t_prev is not None:
            v = None
            if base is not None and len(Ts) >= 2 and idx[-2] == idx[-1] - 1:
                d = invert(Ts[-2]) @ Ts[-1]
                v = d[:3, 3] / max(ts[-1] - ts[-2], 1e-6)
            motion = gyro.motion(f.timestamp, v)
        try:
            step = odo.register(f.points, f.point_time, dt, motion=motion)
        except ValueError as e:
            log.warning("frame %d: odometry failed (%s)", i, e)
            odo, t_prev = None, None
            continue
        if base is None:
            base = np.eye(4) if not Ts else Ts[-1] @ invert(step.T_world_lidar)  # new track: restart at the last pose
        idx.append(i), ts.append(f.timestamp), Ts.append(base @ step.T_world_lidar), fit.append(step.fitness)
        t_prev = f.timestamp
    if len(idx) < 3:
        raise DataError(seq.path, f"too few frames: only {len(idx)} LiDAR sweeps registered (need 3 or more)")
    return LidarTrack(np.asarray(idx), np.asarray(ts), np.stack(Ts), np.asarray(fit))


def deskew_to_stamp(points: np.ndarray, point_time: np.ndarray | None,
                    delta: tuple[np.ndarray, float] | None) -> np.ndarray:
    """Move a sweep ``[N, C]`` into the LiDAR frame at the frame stamp, assuming the motion
    ``delta = (T_prev_curr, dt)`` continues at constant velocity; unchanged without times or motion."""
    if point_time is None or delta is None:
        return points
    from fuse4d.fusion.estimation.deskew import constant_velocity_motion, deskew
    return deskew(points, point_time, constant_velocity_motion(delta[0], delta[1]))
