"""Sweep timing and IMU-path motion compensation of a LiDAR sweep.

The deskew itself and the frame-to-frame motion models (``deskew``, ``MotionModel``,
``constant_velocity_motion``, ``polynomial_motion``) live in the stage-neutral
:mod:`fuse4d.deskew`, shared with mapping, calibration and the model's inputs; they are
re-exported here for the estimation code. This module adds the IMU-propagated model
(:func:`trajectory_motion`) and the azimuth timing of sweeps without per-point times.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from fuse4d.deskew import MotionModel, constant_velocity_motion, deskew, polynomial_motion  # noqa: F401 (re-exported)


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


def azimuth_time(points: np.ndarray, timing: dict) -> np.ndarray:
    """Per-point capture times of a spinning LiDAR sweep that has none, from each point's azimuth.

    Args:
        points: ``[N, 3+]`` sensor-frame points (x forward, y left, z up).
        timing: the sensor's timing model (``seq.metadata["lidar_timing"]``):
            ``rate_hz`` (revolutions per second), ``direction`` (``"ccw"`` or ``"cw"`` seen
            from above), ``stamp_azimuth_deg`` (where the beam points at the frame stamp)
            and ``stamp_fraction`` (how far through the sweep the stamp falls: 0 start,
            0.5 middle, 1 end; the sweep's cut lies opposite to it accordingly).
            KITTI's HDL-64: ``10, "cw", 0, 0.5`` (stamped facing forward, cut behind).

    Returns:
        ``[N]`` float32 seconds relative to the stamp, in ``[-f/rate, (1-f)/rate)``.

    Raises:
        ValueError: an unknown direction or a non-positive rate.
    """
    rate = float(timing.get("rate_hz", 10.0))
    d = {"ccw": 1.0, "cw": -1.0}.get(str(timing.get("direction", "ccw")))
    if d is None or rate <= 0:
        raise ValueError(f"bad LiDAR timing {timing!r}: direction must be 'ccw' or 'cw', rate_hz > 0")
    f = float(np.clip(timing.get("stamp_fraction", 1.0), 0.0, 1.0))
    xyz = np.asarray(points)[:, :3]
    az = np.arctan2(xyz[:, 1], xyz[:, 0])
    phase = np.mod(d * (az - np.radians(float(timing.get("stamp_azimuth_deg", 0.0)))), 2 * np.pi)
    tau = phase / (2 * np.pi * rate)
    period = 1.0 / rate
    tau = np.where(tau >= (1.0 - f) * period, tau - period, tau)
    return tau.astype(np.float32)


def fit_timing(points: np.ndarray, point_time: np.ndarray) -> dict:
    """The :func:`azimuth_time` model that best reproduces a sweep's own per-point times.

    Used when a log with per-point times is written to a format without them (the KITTI
    export), so the reader can restore them. Returns the timing dict (see :func:`azimuth_time`)
    with ``fit_rmse_s``, the residual of the fit.

    Raises:
        ValueError: fewer than 10 points or times that do not span a sweep.
    """
    xyz = np.asarray(points)[:, :3]
    tau = np.asarray(point_time, dtype=np.float64).reshape(-1)
    if len(tau) < 10 or np.ptp(tau) <= 0:
        raise ValueError("need >= 10 points with distinct times to fit a LiDAR timing model")
    period = float(np.ptp(tau)) * (1 + 1.0 / 1024)  # columns are discrete: the span is one column short
    rate = 1.0 / period
    stamp = np.argmin(np.abs(tau))
    a_stamp = float(np.degrees(np.arctan2(xyz[stamp, 1], xyz[stamp, 0])))
    f = float(np.clip((-tau.min() + 0.5 * (period - np.ptp(tau))) / period, 0.0, 1.0))  # cut mid-gap
    best = None
    for direction in ("ccw", "cw"):
        cand = {"rate_hz": round(rate, 6), "direction": direction, "stamp_azimuth_deg": round(a_stamp, 3),
                "stamp_fraction": round(f, 6)}
        err = float(np.sqrt(np.mean((azimuth_time(xyz, cand) - tau) ** 2)))
        if best is None or err < best[0]:
            best = (err, cand)
    return {**best[1], "fit_rmse_s": best[0]}
