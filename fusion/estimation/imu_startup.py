"""IMU start-up without other motion sensors: rest detection, levelling, biases, and dead reckoning.

A platform that rests at the start (a drone on the ground with its rotors
spinning, a car at a light) is found by zero-velocity detection: windowed
standard deviations of the gyro and accelerometer below thresholds (vibration
raises the accelerometer's spread but not its mean, and barely the gyro's).
Over the whole rest span — not only the first second — the mean specific force
gives gravity (roll and pitch), its magnitude against ``g`` the accelerometer
bias along gravity, and the mean angular rate the gyro bias; position and
velocity are held (zero-velocity update) until the platform leaves rest.
When the log starts in motion, levelling falls back on the mean specific force
of the first ``init_time`` seconds with an unknown (zero) velocity, which is
the best an IMU alone can do; logs with LiDAR or network factors initialise
from those instead (:mod:`inertial_init`, :mod:`network_backend`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fuse4d.data.types import ImuSamples
from fuse4d.errors import DataError
from fuse4d.fusion.estimation.imu import propagate_path
from fuse4d.fusion.estimation.lie import so3_exp

log = logging.getLogger(__name__)


@dataclass
class ImuStart:
    """Start-up state of an IMU-only log.

    Attributes:
        t_start, t_stop: rest span (s); ``t_stop == t_start`` when the log starts in motion.
        R: ``[3, 3]`` ``R_world_body`` during the rest (gravity-aligned, yaw 0).
        gyro_bias, acc_bias: ``[3]`` rad/s and m/s² (body frame).
        at_rest: the log starts at rest (velocity known to be zero).
    """

    t_start: float
    t_stop: float
    R: np.ndarray
    gyro_bias: np.ndarray
    acc_bias: np.ndarray
    at_rest: bool


def rest_mask(imu: ImuSamples, window: float = 0.5, acc_std: float = 0.8, gyro_std: float = 0.06,
              acc_drift: float = 0.15) -> np.ndarray:
    """``[K]`` bool: the IMU rests around each sample.

    At rest the windowed standard deviations (norms over axes) of the accelerometer
    (m/s², vibration allowed) and the gyro (rad/s) stay below ``acc_std`` and
    ``gyro_std``, and the windowed mean specific force stays within ``acc_drift`` m/s²
    of that of the first window (a smooth acceleration has no spread but moves the mean).
    """
    if len(imu) < 3:
        return np.zeros(len(imu), bool)
    rate = (len(imu) - 1) / max(imu.t[-1] - imu.t[0], 1e-9)
    w = max(int(round(window * rate)), 3)
    roll_a = pd.DataFrame(imu.acc).rolling(w, center=True, min_periods=max(w // 2, 2))
    a, mean = roll_a.std(), roll_a.mean().to_numpy()
    g = pd.DataFrame(imu.gyro).rolling(w, center=True, min_periods=max(w // 2, 2)).std()
    sa, sg = np.sqrt((a ** 2).sum(axis=1)).to_numpy(), np.sqrt((g ** 2).sum(axis=1)).to_numpy()
    ref = imu.acc[: min(w, len(imu))].mean(0)
    return (sa < acc_std) & (sg < gyro_std) & (np.linalg.norm(mean - ref, axis=1) < acc_drift)


def _level(acc_mean: np.ndarray) -> np.ndarray:
    """Smallest rotation ``R_world_body`` taking the mean specific force ``[3]`` to +z (yaw 0)."""
    z = acc_mean / np.linalg.norm(acc_mean)
    axis = np.cross(z, [0.0, 0.0, 1.0])
    angle = np.arctan2(np.linalg.norm(axis), z[2])
    return so3_exp(axis / max(np.linalg.norm(axis), 1e-12) * angle)


def imu_startup(imu: ImuSamples, t0: float, gravity: float = 9.81, init_time: float = 1.0,
                min_rest: float = 0.5, **rest_kw) -> ImuStart:
    """Start-up state from the IMU alone, looking at the samples from ``t0`` on.

    Args:
        imu: the stream (body frame).
        t0: where the log starts (s); samples before it are ignored.
        gravity: magnitude (m/s²).
        init_time: seconds averaged when the log does not start at rest.
        min_rest: shortest rest (s) that counts as a start at rest.
        rest_kw: thresholds for :func:`rest_mask`.

    Raises:
        DataError: fewer than 10 samples after ``t0``.
    """
    m = imu.t >= t0
    if m.sum() < 10:
        raise DataError(None, f"need >= 10 IMU samples from t = {t0:.3f} s for the start-up, got {int(m.sum())}")
    sub = ImuSamples(imu.t[m], imu.acc[m], imu.gyro[m])
    rest = rest_mask(sub, **rest_kw)
    n = len(rest) if rest.all() else int(np.argmin(rest))  # leading run of rest samples
    if n < len(rest):  # the centred window sees motion half a window early: keep only surely-resting samples
        n = int(np.searchsorted(sub.t, sub.t[max(n - 1, 0)] - 0.5 * rest_kw.get("window", 0.5)))
    if n >= 2 and sub.t[n - 1] - sub.t[0] >= min_rest:
        acc, gyro = sub.acc[:n].mean(0), sub.gyro[:n].mean(0)
        R = _level(acc)
        up = acc / np.linalg.norm(acc)
        ba = (np.linalg.norm(acc) - gravity) * up  # only the part along gravity is observable at rest
        log.info("IMU start-up: at rest for %.2f s (gyro bias %s rad/s)", sub.t[n - 1] - sub.t[0], np.round(gyro, 4))
        return ImuStart(float(sub.t[0]), float(sub.t[n - 1]), R, gyro, ba, True)
    w = sub.t <= sub.t[0] + init_time
    R = _level(sub.acc[w].mean(0))
    log.warning("IMU start-up: the log starts in motion and has no LiDAR or network motion; gravity from the "
                "mean specific force of %.1f s, velocity assumed zero (dead reckoning drifts fast)", init_time)
    return ImuStart(float(sub.t[0]), float(sub.t[0]), R, np.zeros(3), np.zeros(3), False)


def dead_reckon(imu: ImuSamples, t: np.ndarray, start: ImuStart,
                gravity: float = 9.81) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strapdown integration of frame times ``t [S]`` from ``start`` (held at rest until ``start.t_stop``).

    Returns:
        ``T_world_body [S, 4, 4]`` (gravity-aligned world, origin at the start), velocities ``[S, 3]`` m/s,
        biases ``[S, 6]``; frames before the IMU's first sample share the start pose.
    """
    S = len(t)
    T = np.tile(np.eye(4), (S, 1, 1))
    T[:, :3, :3] = start.R
    v = np.zeros((S, 3))
    b = np.tile(np.r_[start.gyro_bias, start.acc_bias], (S, 1))
    g = np.array([0.0, 0.0, -gravity])
    T_cur, v_cur, t_cur = T[0].copy(), np.zeros(3), start.t_stop
    for k in range(S):
        if t[k] <= t_cur:
            continue  # at rest (zero-velocity update): the start pose
        t_end = min(t[k], imu.t[-1])
        if t_end > t_cur:
            _, P, V = propagate_path(imu, t_cur, t_end, T_cur[:3, :3], T_cur[:3, 3], v_cur, start.gyro_bias,
                                     start.acc_bias, g)
            T_cur, v_cur, t_cur = P[-1], V[-1], t_end
        T[k], v[k] = T_cur, v_cur
    return T, v, b
