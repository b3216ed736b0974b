"""Motion compensation of a LiDAR sweep with per-point capture times.

Each point captured ``τ`` seconds from the frame stamp is moved into the
sensor frame at the stamp: ``p' = T_stamp_τ p``. The motion ``T_stamp_τ``
comes from a motion model evaluated on a few dozen time bins (the exact pose
of each bin, gathered per point), so the cost is one matrix product per point
whatever model is used: constant velocity (:func:`constant_velocity_motion`)
or IMU-propagated poses (:func:`trajectory_motion`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from fuse4d.fusion.estimation.lie import interpolate_pose

#: ``motion(τ [K]) -> T_stamp_τ [K, 4, 4]``
MotionModel = Callable[[np.ndarray], np.ndarray]


def constant_velocity_motion(T_prev_curr: np.ndarray, dt: float) -> MotionModel:
    """Motion model of a sensor that moved by ``T_prev_curr [4, 4]`` over the last ``dt`` seconds.

    Raises:
        ValueError: ``dt <= 0``.
    """
    if dt <= 0:
        raise ValueError(f"frame interval must be positive, got {dt}")
    return lambda tau: interpolate_pose(T_prev_curr, np.asarray(tau) / dt)


def trajectory_motion(t: np.ndarray, T_ref_x: np.ndarray, t_stamp: float) -> MotionModel:
    """Motion model from sampled poses, e.g. IMU propagation.

    Args:
        t: ``[K]`` increasing absolute times (s), K ≥ 2.
        T_ref_x: ``[K, 4, 4]`` poses of the sensor in any fixed frame ``ref``.
        t_stamp: absolute time (s) of the frame stamp.

    Returns:
        ``motion(τ) -> T_stamp_τ``, linear in translation and slerp in rotation,
        clamped at the ends of ``t``.

    Raises:
        ValueError: fewer than two samples or non-increasing times.
    """
    t = np.asarray(t, dtype=np.float64)
    if len(t) < 2 or np.any(np.diff(t) <= 0):
        raise ValueError("trajectory_motion needs >= 2 samples with increasing times")
    slerp = Slerp(t, Rotation.from_matrix(T_ref_x[:, :3, :3]))

    def pose_at(ts: np.ndarray) -> np.ndarray:
        ts = np.clip(ts, t[0], t[-1])
        T = np.tile(np.eye(4), (len(ts), 1, 1))
        T[:, :3, :3] = slerp(ts).as_matrix()
        for k in range(3):
            T[:, k, 3] = np.interp(ts, t, T_ref_x[:, k, 3])
        return T

    T_ref_stamp = pose_at(np.array([t_stamp]))[0]
    R_inv, p_inv = T_ref_stamp[:3, :3].T, -T_ref_stamp[:3, :3].T @ T_ref_stamp[:3, 3]

    def motion(tau: np.ndarray) -> np.ndarray:
        T = pose_at(t_stamp + np.asarray(tau, dtype=np.float64))
        out = T.copy()
        out[:, :3, :3] = R_inv @ T[:, :3, :3]
        out[:, :3, 3] = T[:, :3, 3] @ R_inv.T + p_inv
        return out

    return motion


def deskew(points: np.ndarray, point_time: np.ndarray | None, motion: MotionModel | None,
           bins: int = 64) -> np.ndarray:
    """Move every point of a sweep into the sensor frame at the frame stamp.

    Args:
        points: ``[N, C]`` (xyz metres first), sensor frame.
        point_time: ``[N]`` seconds relative to the stamp, or None (returned unchanged).
        motion: ``T_stamp_τ`` model, or None (returned unchanged).
        bins: number of time bins the motion is evaluated on.

    Returns:
        ``[N, C]`` copy with xyz compensated (same dtype).

    Raises:
        ValueError: ``point_time`` length differs from ``points``.
    """
    if point_time is None or motion is None or len(points) == 0:
        return points
    tau = np.asarray(point_time, dtype=np.float64).reshape(-1)
    if len(tau) != len(points):
        raise ValueError(f"point_time has {len(tau)} entries for {len(points)} points")
    lo, hi = float(tau.min()), float(tau.max())
    if hi - lo < 1e-9:
        edges = np.array([lo])
        which = np.zeros(len(tau), dtype=np.int64)
    else:
        edges = np.linspace(lo, hi, bins)
        which = np.clip(np.rint((tau - lo) / (hi - lo) * (bins - 1)).astype(np.int64), 0, bins - 1)
    T = motion(edges)  # [B, 4, 4]
    xyz = points[:, :3].astype(np.float64)
    R, t = T[which, :3, :3], T[which, :3, 3]
    out = points.copy()
    out[:, :3] = (np.einsum("nij,nj->ni", R, xyz) + t).astype(points.dtype)
    return out
