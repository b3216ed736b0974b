"""IMU → tokens: the samples between consecutive frames, binned, plus their pypose
preintegration (ΔR, Δv, Δp; gravity not removed), → a few tokens per frame.

``imu_features`` (numpy + one batched pypose call) runs outside the model so training
can corrupt raw samples first; :class:`ImuEncoder` maps the features to tokens.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

_G = 9.81


def imu_feature_dim(bins: int) -> int:
    """Length of one frame's IMU feature vector for ``bins`` raw-sample bins."""
    return 10 + 6 * bins


def imu_features(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None], bins: int,
                 R_ref_body: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features of each frame's IMU samples.

    Args:
        samples: per frame ``(t [M] s, acc [M, 3] m/s², gyro [M, 3] rad/s)`` in the body
            frame, the samples since the previous frame; None or ``M < 2`` = no IMU.
        bins: raw-sample bins (means of acc and gyro over equal time bins).
        R_ref_body: ``[3, 3]`` rotation into the frame the model predicts motion in.

    Returns:
        features ``[S, 10 + 6 * bins]`` float32 (ΔR axis-angle rad, Δv m/s / g, Δp m,
        Δt s × 10, then bins of acc/g and gyro rad/s), valid ``[S]`` bool.
    """
    import pypose as pp
    S = len(samples)
    feats = np.zeros((S, imu_feature_dim(bins)), np.float32)
    valid = np.array([s is not None and len(s[0]) >= 2 for s in samples])
    if not valid.any():
        return feats, valid
    R = np.eye(3) if R_ref_body is None else np.asarray(R_ref_body, np.float64)
    idx = np.flatnonzero(valid)
    M = max(len(samples[i][0]) for i in idx)
    dt = np.zeros((len(idx), M, 1))
    acc = np.zeros((len(idx), M, 3))
    gyr = np.zeros((len(idx), M, 3))
    for j, i in enumerate(idx):
        t, a, g = samples[i]
        n = len(t)
        d = np.diff(t, prepend=t[0] - np.median(np.diff(t)))
        dt[j, :n, 0] = d
        acc[j, :n] = a @ R.T
        gyr[j, :n] = g @ R.T
        span = max(t[-1] - t[0] + d[0], 1e-6)
        b = np.minimum(((t - t[0] + d[0] * 0.5) / span * bins).astype(int), bins - 1)
        cnt = np.maximum(np.bincount(b, minlength=bins), 1)[:, None]
        am = np.stack([np.bincount(b, acc[j, :n, k], bins) for k in range(3)], 1) / cnt
        gm = np.stack([np.bincount(b, gyr[j, :n, k], bins) for k in range(3)], 1) / cnt
        feats[i, 10:] = np.concatenate([am / _G, gm], 1).reshape(-1)
    integ = pp.module.IMUPreintegrator(gravity=0.0, reset=True, prop_cov=False)
    n = len(idx)
    with torch.no_grad():
        out = integ(torch.tensor(dt, dtype=torch.float32), torch.tensor(gyr, dtype=torch.float32),
                    torch.tensor(acc, dtype=torch.float32),
                    init_state={"pos": torch.zeros(n, 1, 3), "vel": torch.zeros(n, 1, 3),
                                "rot": pp.identity_SO3(n, 1)})
    feats[idx, 0:3] = out["rot"][:, -1].Log().tensor().numpy()
    feats[idx, 3:6] = out["vel"][:, -1].numpy() / _G
    feats[idx, 6:9] = out["pos"][:, -1].numpy()
    feats[idx, 9] = dt[:, :, 0].sum(1) * 10.0
    return feats, valid


class ImuEncoder(nn.Module):
    """IMU features ``[N, F]`` → ``[N, K, D]`` tokens (K = ``tokens``)."""

    def __init__(self, dim: int, bins: int, tokens: int):
        super().__init__()
        f = imu_feature_dim(bins)
        self.k = tokens
        self.register_buffer("scale", torch.cat([torch.full((3,), 20.0), torch.full((3,), 5.0),
                                                 torch.full((3,), 5.0), torch.ones(f - 9)]))
        self.mlp = nn.Sequential(nn.Linear(f, 2 * dim), nn.GELU(), nn.Linear(2 * dim, tokens * dim))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``feats [N, F]`` → tokens ``[N, K, D]``."""
        return self.mlp(feats * self.scale).view(feats.shape[0], self.k, -1)
