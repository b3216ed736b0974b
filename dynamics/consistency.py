"""Projection-consistency cue: pixels whose depth, warped by the ego-motion, disagrees with other frames.

Each pixel with a depth is lifted to 3-D with K, moved into every other camera
of the window by the ego-motion (the model's ``T_prev_cur`` chained through
the window, and the camera extrinsic), and projected. Where the other frame saw
*farther* than the warped point (by more than ``tau`` relative), its ray passed
through where the point is: the point was not there then, so it moved — a
free-space violation, the camera form of the LiDAR test. Nearer depth is an
occlusion (no information); equal depth is a consistent, static observation.
The cue sums the frames' observations in log-odds (a binary Bayes filter over the window).
"""

from __future__ import annotations

import numpy as np


def window_camera_poses(T_prev_cur: np.ndarray, T_body_cam: np.ndarray) -> np.ndarray:
    """Camera poses ``[S, 4, 4]`` of a window in the frame of its first camera, from the body
    motions ``T_prev_cur [S, 4, 4]`` (row 0 ignored; NaN rows leave the chain NaN after them)."""
    S = len(T_prev_cur)
    T_b0_b = np.empty((S, 4, 4))
    T_b0_b[0] = np.eye(4)
    for s in range(1, S):
        T_b0_b[s] = T_b0_b[s - 1] @ T_prev_cur[s]
    T_cam_body = np.linalg.inv(T_body_cam)
    return T_cam_body[None] @ T_b0_b @ T_body_cam[None]


def consistency_cue(depth: np.ndarray, T_c0_c: np.ndarray, K: np.ndarray, tau: float = 0.1,
                    frames: list[int] | None = None, max_gap: int | None = None,
                    stride: int = 1, l_violation: float = 1.5, l_agree: float = 0.5, l_prior: float = -1.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Free-space violations of each frame's depth against the other frames of the window.

    Args:
        depth: ``[S, H, W]`` float32 metres, 0 = none.
        T_c0_c: ``[S, 4, 4]`` camera poses in a common frame (see :func:`window_camera_poses`).
        K: ``[3, 3]`` intrinsics (pixels).
        tau: relative depth difference that counts as disagreement.
        frames: frames to score (None = all); max_gap: compare only frames this close (None = all).
        stride: score every stride-th pixel (the rest are filled by nearest neighbour).
        l_violation / l_agree / l_prior: log-odds of one violation (toward moving), one agreeing
            frame (toward static), and the prior: a binary Bayes filter over the window's frames.
    Returns:
        ``cue [len(frames), H, W]`` float32 probability of moving (0 without an observation),
        ``observed [len(frames), H, W]`` int16 number of informative observations.
    """
    from scipy.ndimage import minimum_filter

    depth = np.asarray(depth, np.float32)
    S, H, W = depth.shape
    frames = list(range(S)) if frames is None else list(frames)
    # nearest depth of a 3 x 3 neighbourhood: a violation must hold for every pixel near the landing
    # point, which keeps depth edges and pixel rounding from looking like free space
    far = np.where(depth > 0, depth, np.inf)
    near3 = minimum_filter(far, size=(1, 3, 3), mode="nearest")
    v, u = np.mgrid[0:H:stride, 0:W:stride]
    Kinv = np.linalg.inv(K)
    rays = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3).astype(np.float64) @ Kinv.T
    T_inv = np.linalg.inv(T_c0_c)
    cue = np.zeros((len(frames), H, W), np.float32)
    observed = np.zeros((len(frames), H, W), np.int16)
    for k, s in enumerate(frames):
        d = depth[s, ::stride, ::stride].reshape(-1).astype(np.float64)
        has = d > 0
        X = rays * d[:, None]
        viol = np.zeros(len(d))
        seen = np.zeros(len(d))
        for t in range(S):
            if t == s or (max_gap is not None and abs(t - s) > max_gap):
                continue
            T = T_inv[t] @ T_c0_c[s]
            if not np.isfinite(T).all():
                continue
            Y = X @ T[:3, :3].T + T[:3, 3]
            z = Y[:, 2]
            ok = has & (z > 0.1)
            uv = (Y[:, :2] / np.where(ok, z, 1.0)[:, None]) @ K[:2, :2].T + K[:2, 2]
            ui, vi = np.rint(uv[:, 0]).astype(np.int64), np.rint(uv[:, 1]).astype(np.int64)
            ok &= (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H)
            ui, vi = np.where(ok, ui, 0), np.where(ok, vi, 0)
            d_near, d_at = near3[t, vi, ui], depth[t, vi, ui]
            free = ok & np.isfinite(d_near) & (d_near > z * (1 + tau))
            agree = ok & (d_at > 0) & (np.abs(d_at - z) <= tau * z)
            viol += free
            seen += free | agree
        agree_n = seen - viol
        logodds = l_prior + l_violation * viol - l_agree * agree_n
        c = np.where(seen > 0, 1.0 / (1.0 + np.exp(-logodds)), 0.0).reshape(v.shape)
        n = seen.reshape(v.shape)
        cue[k] = np.repeat(np.repeat(c, stride, 0), stride, 1)[:H, :W]
        observed[k] = np.repeat(np.repeat(n, stride, 0), stride, 1)[:H, :W]
    return cue, observed
