"""A :class:`WindowPrediction` built from ground truth, with known answers, for tests and development.

Depth is the ground-truth depth, ``T_prev_cur`` the ground-truth body motion,
the dynamic head a noisy copy of the ground-truth mask, and the attention
tokens carry the signal the attention cue looks for: a static patch's token is
a smooth random-feature embedding of the world point it sees (so the same
place seen from another frame gives a similar token), a moving patch's token
embeds that point displaced far away in a fresh direction every frame (no
partner elsewhere in the window).
"""

from __future__ import annotations

import numpy as np

from fuse4d.data.prediction import WindowPrediction
from fuse4d.data.types import Sequence


def _patch_world_points(depth: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray, patch: int) -> np.ndarray:
    """World point ``[h*w, 3]`` seen at each patch centre (sky: a point 200 m along the ray)."""
    H, W = depth.shape
    v, u = np.mgrid[patch // 2:H:patch, patch // 2:W:patch]
    d = depth[v, u].astype(np.float64)
    d = np.where(d > 0, d, 200.0)
    rays = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ np.linalg.inv(K).T
    X = rays * d.reshape(-1, 1)
    return X @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]


def oracle_prediction(window: Sequence, patch: int = 16, dim: int = 64, layers: int = 2,
                      token_noise: float = 0.05, head_noise: float = 0.1, seed: int = 0) -> WindowPrediction:
    """A WindowPrediction for a window of a log with ground-truth poses, depth and dynamic masks.

    Args:
        window: S frames with ``depth``, ``dynamic_mask``, ``T_world_body`` and a camera calibration.
        patch: patch size (pixels) of the token grid; dim: token width; layers: exposed layers.
        token_noise: σ of Gaussian noise added to the unit tokens; head_noise: σ added to the
            dynamic head's probabilities (then clipped to [0, 1]).
    Returns:
        depth, dynamic, T_prev_cur (row 0 NaN), attn_tokens ``[layers, S, h*w, dim]``, patch_grid.
    """
    rng = np.random.default_rng(seed)
    cal = window.calibration
    frames = list(window)
    S = len(frames)
    H, W = frames[0].depth.shape
    h, w = H // patch, W // patch
    freq = rng.normal(0.0, 1.0 / 3.0, (layers, dim, 3))  # smooth over ~3 m
    phase = rng.uniform(0, 2 * np.pi, (layers, dim))
    tokens = np.zeros((layers, S, h * w, dim), np.float32)
    T_prev_cur = np.full((S, 4, 4), np.nan)
    for s, f in enumerate(frames):
        if s:
            T_prev_cur[s] = np.linalg.inv(frames[s - 1].T_world_body) @ f.T_world_body
        X = _patch_world_points(f.depth[:h * patch, :w * patch], cal.K, f.T_world_body @ cal.T_body_cam, patch)
        moving = f.dynamic_mask[:h * patch, :w * patch].reshape(h, patch, w, patch).mean(axis=(1, 3)).reshape(-1) > 0.5
        X[moving] += rng.normal(0.0, 1000.0, (int(moving.sum()), 3))
        feat = np.cos(np.einsum("ldc,pc->lpd", freq, X) + phase[:, None, :])
        feat /= np.linalg.norm(feat, axis=-1, keepdims=True)
        tokens[:, s] = feat + token_noise * rng.normal(size=feat.shape)
    dyn = np.stack([f.dynamic_mask.astype(np.float32) for f in frames])
    head = np.clip(0.1 + 0.8 * dyn + head_noise * rng.normal(size=dyn.shape), 0, 1).astype(np.float32)
    return WindowPrediction(indices=window.indices.astype(np.int64), T_prev_cur=T_prev_cur,
                            pose_cov=np.zeros((S, 6, 6)), gates=np.ones((S, 3), np.float32),
                            depth=np.stack([f.depth for f in frames]).astype(np.float32), dynamic=head,
                            attn_tokens=tokens, patch_grid=(h, w))
