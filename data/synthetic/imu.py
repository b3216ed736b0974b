"""IMU stream from the analytic ego trajectory, with MEMS noise and burst degradations.

Exact signals: specific force ``f = R_wbᵀ (a_w - g_w)`` with ``g_w = (0, 0, -9.81)``
and the body angular rate. Noise model (per axis): white noise of density σ
(discrete σ·√rate) plus a bias that starts at a random offset and follows a
random walk of density σ_w (discrete σ_w·√dt per step). During ``imu_burst``
spans the white noise is multiplied by ``imu_burst_scale`` and the biases jump
by a random step (removed at the end of the span); the stream stays continuous.
"""

from __future__ import annotations

import numpy as np

from fuse4d.data.synthetic.config import SynthConfig
from fuse4d.data.synthetic.ego import EgoTrajectory
from fuse4d.data.types import ImuSamples


def imu_times(t_start: float, t_end: float, rate: float) -> np.ndarray:
    """Sample times ``[M]`` (seconds) at ``rate`` Hz covering ``[t_start, t_end]``."""
    k0, k1 = int(np.floor(t_start * rate + 1e-9)), int(np.ceil(t_end * rate - 1e-9))
    return np.arange(k0, k1 + 1) / rate


def exact_imu(ego: EgoTrajectory, t: np.ndarray) -> ImuSamples:
    """Noise-free IMU samples at times ``t [M]``."""
    k = ego.kinematics(t)
    return ImuSamples(t, k["f"], k["omega"])


def synthesize_imu(ego: EgoTrajectory, t: np.ndarray, cfg: SynthConfig, rng: np.random.Generator,
                   bursts: list[tuple[float, float]] = ()) -> ImuSamples:
    """IMU samples at times ``t [M]`` with the config's noise and burst spans.

    Args:
        ego: the trajectory; t: sample times (s); cfg: noise parameters and ``imu_noise`` switch.
        rng: generator for all IMU noise (drawn once for the whole stream).
        bursts: ``(t0, t1)`` time spans (s) of heavy noise and bias jumps.
    """
    clean = exact_imu(ego, t)
    M = len(t)
    acc, gyro = clean.acc.copy(), clean.gyro.copy()
    dt = 1.0 / cfg.imu_rate
    white = rng.standard_normal((2, M, 3))
    walk = rng.standard_normal((2, M, 3))
    bias0 = rng.standard_normal((2, 3))
    if cfg.imu_noise:
        s_acc = cfg.acc_noise_density / np.sqrt(dt)
        s_gyro = cfg.gyro_noise_density / np.sqrt(dt)
        b_acc = cfg.acc_bias_sigma * bias0[0] + np.cumsum(walk[0] * cfg.acc_random_walk * np.sqrt(dt), axis=0)
        b_gyro = cfg.gyro_bias_sigma * bias0[1] + np.cumsum(walk[1] * cfg.gyro_random_walk * np.sqrt(dt), axis=0)
        acc += b_acc + s_acc * white[0]
        gyro += b_gyro + s_gyro * white[1]
    for t0, t1 in bursts:
        m = (t >= t0) & (t < t1)
        jump = rng.uniform(0.3, 0.8, (2, 3)) * rng.choice([-1.0, 1.0], (2, 3))
        scale = cfg.imu_burst_scale
        acc[m] += jump[0] + scale * cfg.acc_noise_density / np.sqrt(dt) * rng.standard_normal((m.sum(), 3))
        gyro[m] += 0.08 * jump[1] + scale * cfg.gyro_noise_density / np.sqrt(dt) * rng.standard_normal((m.sum(), 3))
    return ImuSamples(t, acc, gyro)
