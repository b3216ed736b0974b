"""Metric scale of depth-odometry translations from the IMU (visual-inertial scale alignment).

Depth odometry on the fusion model's predicted depth inherits the depth's scale error (a few
per cent, different per log). With an IMU the scale is observable wherever the platform
accelerates or turns: over windows of consecutive frames, with rotations from the gyro,

    s Δp_m = v_w Δt_m + g (τ_m Δt_m + ½ Δt_m²) + A_m Δt_m + R_m Δp^imu_m

is linear in the scale ``s``, the gravity vector ``g`` (shared) and each window's first
velocity ``v_w`` (VINS-Mono's visual-inertial alignment, over the whole log at once). It is
solved for λ = 1/s with the depth-odometry steps as the observations: their noise on the
regressor side would bias ``s`` low.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fuse4d.data.types import ImuSamples
from fuse4d.fusion.estimation.imu import preintegrate_many

log = logging.getLogger(__name__)


@dataclass
class ScaleFit:
    """Result of :func:`imu_scale`.

    Attributes:
        scale: metric length / depth-odometry length (1.0 when not observable).
        std: its standard deviation from the fit's residuals (inf when not observable).
        windows: number of windows used. residual: RMS of the position equations (m).
    """

    scale: float
    std: float
    windows: int
    residual: float


def imu_scale(t: np.ndarray, steps: dict[int, np.ndarray], imu: ImuSamples, gravity: float = 9.81,
              window: float = 3.0, min_frames: int = 8, prior_std: float = 0.1) -> ScaleFit:
    """Scale of the depth-odometry translations that best agrees with the IMU.

    Args:
        t: ``[S]`` frame times (s).
        steps: ``{k: T_(k-1)_k [4, 4]}`` body-frame relative poses from depth odometry.
        imu: the IMU stream (body frame).
        gravity: its magnitude (m/s²).
        window: seconds per window (each window has its own first velocity).
        min_frames: shorter runs of consecutive steps are not used.
        prior_std: prior standard deviation of the scale around 1 (the predicted depth's scale errors
            were 5-14 % on training seeds).

    Returns:
        :class:`ScaleFit`, the posterior mean under a prior N(1, ``prior_std``²); scale 1 and std inf
        with fewer than 2 windows or an implausible fit.
    """
    # windows: runs of consecutive steps, cut every `window` seconds
    wins: list[list[int]] = []
    cur: list[int] = []
    for k in range(1, len(t)):
        if k in steps and (not cur or (cur[-1] == k - 1 and t[k] - t[cur[0] - 1] <= window)):
            cur.append(k)
        else:
            if len(cur) >= min_frames:
                wins.append(cur)
            cur = [k] if k in steps else []
    if len(cur) >= min_frames:
        wins.append(cur)
    if len(wins) < 2:  # one short window: too little acceleration to tell scale from velocity
        return ScaleFit(1.0, float("inf"), len(wins), float("nan"))
    ks = [k for w in wins for k in w]
    pre = dict(zip(ks, preintegrate_many(imu, t[[k - 1 for k in ks]], t[ks])))
    # rotations: the gyro's, chained over the whole log (gravity is one vector in this frame)
    R = {ks[0] - 1: np.eye(3)}
    for k in range(ks[0], ks[-1] + 1):
        if k in pre:
            R[k] = R[k - 1] @ pre[k].dR
        else:
            R[k] = R[k - 1] @ steps[k][:3, :3] if k in steps else R[k - 1]
    # the noisy depth-odometry steps are the observations (regressors from them would bias the scale
    # low): with λ = 1/s, v' = λ v, g' = λ g,  Δp_m = v' Δt + g' (τ Δt + ½ Δt²) + λ (A Δt + R Δp^imu)
    n_unk = 4 + 3 * len(wins)
    rows, obs = [], []
    for w_i, w in enumerate(wins):
        tau, A = 0.0, np.zeros(3)
        for k in w:
            p, Rm = pre[k], R[k - 1]
            dt = p.dt
            row = np.zeros((3, n_unk))
            row[:, 0] = A * dt + Rm @ p.dp                          # λ
            row[:, 1:4] = np.eye(3) * (tau * dt + 0.5 * dt * dt)   # g'
            row[:, 4 + 3 * w_i:7 + 3 * w_i] = np.eye(3) * dt       # v'_w
            rows.append(row)
            obs.append(Rm @ steps[k][:3, 3])
            A = A + Rm @ p.dv
            tau += dt
    M, b = np.concatenate(rows), np.concatenate(obs)
    x, *_ = np.linalg.lstsq(M, b, rcond=None)
    g_dir = x[1:4] / max(np.linalg.norm(x[1:4]), 1e-9)
    if x[0] < 0:
        g_dir = -g_dir
    keep = [0] + list(range(4, n_unk))  # |g| known: g' = λ |g| ĝ, re-solve for λ and the velocities
    M2 = M[:, keep].copy()
    M2[:, 0] += M[:, 1:4] @ (gravity * g_dir)
    x2, *_ = np.linalg.lstsq(M2, b, rcond=None)
    res = M2 @ x2 - b
    sigma2 = float(res @ res) / max(len(b) - len(keep), 1)
    cov = np.linalg.pinv(M2.T @ M2) * sigma2
    lam = float(x2[0])
    if not lam > 0:
        return ScaleFit(1.0, float("inf"), len(wins), float(np.sqrt(sigma2)))
    s, std = 1.0 / lam, float(np.sqrt(max(cov[0, 0], 0.0))) / lam ** 2
    w = prior_std ** 2 / (prior_std ** 2 + std ** 2)  # shrink towards 1 by the fit's uncertainty
    s, std = 1.0 + w * (s - 1.0), float(np.sqrt(w) * std)
    log.info("visual-inertial scale %.3f ± %.3f over %d windows (fit %.3f m)", s, std, len(wins), np.sqrt(sigma2))
    if not 0.5 < s < 2.0:
        return ScaleFit(1.0, float("inf"), len(wins), float(np.sqrt(sigma2)))
    return ScaleFit(s, std, len(wins), float(np.sqrt(sigma2)))
