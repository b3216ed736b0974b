"""Ego motion the calibration needs: LiDAR-only odometry (no IMU, no extrinsic) over a
log, and deskewing of a sweep to its frame stamp (the image time).

The odometry is :class:`fuse4d.fusion.estimation.lidar_odometry.LidarOdometry`
(KISS-ICP style scan-to-map ICP) run on the LiDAR alone, so the rotations it
returns are independent of the IMU extrinsic the hand-eye step estimates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fuse4d.data.types import Sequence
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


def lidar_track(seq: Sequence, stop: int | None = None, voxel_size: float | None = None) -> LidarTrack:
    """Run LiDAR-only odometry over the first ``stop`` frames of ``seq`` (all when None).

    The voxel size defaults to 1 m (0.5 m when the sweeps span less than 30 m).

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
        try:
            step = odo.register(f.points, f.point_time, None if t_prev is None else f.timestamp - t_prev)
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
