"""Camera dynamic cues: projection consistency on an analytic scene, attention tokens with a known signal."""

from __future__ import annotations

import numpy as np

from fuse4d.dynamics.attention import attention_cue, split_threshold
from fuse4d.dynamics.consistency import consistency_cue, window_camera_poses
from fuse4d.dynamics.stage import combine_cues

K = np.array([[100.0, 0, 80], [0, 100.0, 30], [0, 0, 1]])
H, W = 60, 160
#: camera axes (x right, y down, z forward) in a body frame (x forward, y left, z up), 1.5 m up
T_BODY_CAM = np.eye(4)
T_BODY_CAM[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]
T_BODY_CAM[:3, 3] = [0, 0, 1.5]


def _render_depth(T_world_cam: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray) -> np.ndarray:
    """Depth ``[H, W]`` of ground z = 0, a wall x = 40 and an axis-aligned box, by ray casting."""
    v, u = np.mgrid[0:H, 0:W]
    rays_c = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, float)], -1).reshape(-1, 3)
    d = rays_c @ T_world_cam[:3, :3].T  # per unit of camera depth
    o = T_world_cam[:3, 3]
    t = np.full(len(d), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(d[:, 2] < 0, -o[2] / d[:, 2], np.inf)
        t_wall = np.where(d[:, 0] > 0, (40.0 - o[0]) / d[:, 0], np.inf)
        t1, t2 = (box_lo - o) / d, (box_hi - o) / d
        near = np.nanmax(np.minimum(t1, t2), axis=1)
        far = np.nanmin(np.maximum(t1, t2), axis=1)
    t_box = np.where((far >= near) & (near > 0), near, np.inf)
    t = np.minimum(np.minimum(t, t_ground), np.minimum(t_wall, t_box))
    return np.where(np.isfinite(t), t, 0).reshape(H, W).astype(np.float32)


def _window(box_velocity: float, frames: int = 5):
    """Ego drives forward at 5 m/s; a car-sized box 12 m ahead moves sideways at ``box_velocity``."""
    poses, depth, masks = [], [], []
    for s in range(frames):
        T_wb = np.eye(4)
        T_wb[0, 3] = 0.5 * s
        lo = np.array([12.0, -1.0 + 0.1 * box_velocity * s, 0.0])
        hi = lo + [4.0, 1.8, 1.5]
        d = _render_depth(T_wb @ T_BODY_CAM, lo, hi)
        d_nobox = _render_depth(T_wb @ T_BODY_CAM, lo + 100, hi + 100)
        poses.append(T_wb)
        depth.append(d)
        masks.append(np.abs(d - d_nobox) > 1e-3)
    T_prev_cur = np.full((frames, 4, 4), np.nan)
    for s in range(1, frames):
        T_prev_cur[s] = np.linalg.inv(poses[s - 1]) @ poses[s]
    return np.stack(depth), T_prev_cur, np.stack(masks)


def test_consistency_zero_on_a_static_scene_with_exact_depth():
    depth, T_prev_cur, box = _window(0.0)
    cue, observed = consistency_cue(depth, window_camera_poses(T_prev_cur, T_BODY_CAM), K, tau=0.05)
    assert (observed > 0).mean() > 0.5  # most pixels were checked against other frames
    assert not (cue > 0.5).any()


def test_consistency_positive_on_a_moved_object():
    depth, T_prev_cur, box = _window(4.0)
    cue, _ = consistency_cue(depth, window_camera_poses(T_prev_cur, T_BODY_CAM), K, tau=0.05)
    moving = cue > 0.5
    assert (moving & box).sum() / box.sum() > 0.3  # the box's pixels that other frames saw through
    assert (moving & ~box).sum() / (~box).sum() < 0.01


def _tokens(moving_patches: np.ndarray, S: int = 6, h: int = 6, w: int = 16, D: int = 32, seed: int = 0):
    """Tokens ``[2, S, h*w, D]``: static patches show a place of a shared world (the view pans one
    patch per frame), moving patches a fresh random vector every frame."""
    rng = np.random.default_rng(seed)
    world = rng.normal(size=(2, h, w + S, D))
    tok = np.zeros((2, S, h * w, D))
    for s in range(S):
        view = world[:, :, s:s + w].reshape(2, h * w, D)
        fresh = rng.normal(size=(2, h * w, D))
        tok[:, s] = np.where(moving_patches.reshape(1, -1, 1), fresh, view) + 0.1 * rng.normal(size=view.shape)
    return tok


def test_attention_cue_finds_patches_without_partners():
    h, w = 6, 16
    moving = np.zeros((h, w), bool)
    moving[2:5, 5:9] = True
    cue = attention_cue(_tokens(moving), (h, w), (h * 8, w * 8))
    patch = cue[:, 4::8, 4::8]  # at the patch centres
    assert patch[:, moving].min() > 0.5
    inner = ~moving
    inner[:, [0, -1]] = False  # the first/last columns enter/leave the panning view: no partners
    assert patch[:, inner].max() < 0.5 and patch[:, inner].mean() < 0.1
    static = attention_cue(_tokens(np.zeros((h, w), bool)), (h, w), (h * 8, w * 8))[:, 4::8, 4::8]
    assert static[:, :, 1:-1].max() < 0.5  # nothing moving: nothing flagged but the view's new edge


def test_split_threshold_between_two_groups():
    v = np.r_[np.full(80, 0.9), np.full(20, 0.3)] + np.random.default_rng(0).normal(0, 0.02, 100)
    thr, _ = split_threshold(v)
    assert 0.35 < thr < 0.85


def test_combine_cues_weights_and_absent_cues():
    a, b = np.full((2, 2), 0.9), np.full((2, 2), 0.1)
    assert np.allclose(combine_cues({"attention": a, "head": b}, {"attention": 1.0, "head": 1.0}), 0.5, atol=1e-6)
    w = np.array([[1.0, 0.0], [1.0, 0.0]])  # a cue with no observation at a pixel does not vote there
    out = combine_cues({"attention": a, "consistency": b}, {"attention": 1.0, "consistency": w})
    assert np.allclose(out[:, 1], 0.9, atol=1e-6) and np.all(out[:, 0] < 0.9)
