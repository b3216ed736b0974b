"""LiDAR points enter the camera view at the camera's stamp: the sweep's motion is undone; the
z-buffers of the input preparation pick the nearest point as the sorted writes did."""

import math

import numpy as np
import pytest

from fuse4d.data.synthetic import synthesize
from fuse4d.fusion.inputs import camera_points, lidar_motions
from fuse4d.fusion.sparse_depth import lidar_depth_image


@pytest.fixture(scope="module")
def frames():
    seq = synthesize(5, frames=5)
    return seq, [seq[i] for i in range(5)]


def _errors(seq, f, motion):
    cal = seq.calibration
    L = lidar_depth_image(camera_points(f, motion), cal.T_cam_lidar, cal.K, f.depth.shape)
    m = (L > 0) & (f.depth > 0)
    return np.abs(L[m] - f.depth[m]) / f.depth[m]


def test_deskewed_points_match_the_camera_depth(frames):
    seq, fr = frames
    cal = seq.calibration
    T = np.stack([f.T_world_body @ cal.T_body_lidar for f in fr])
    motions = lidar_motions(T, np.array([f.timestamp for f in fr]))
    assert motions[0] is not None and np.allclose(motions[0][0], motions[1][0])   # frame 0: constant velocity
    raw = np.concatenate([_errors(seq, f, None) for f in fr[1:]])
    fixed = np.concatenate([_errors(seq, f, motions[i + 1]) for i, f in enumerate(fr[1:])])
    # the ego moves ~1 m during a sweep: as captured, the median point is 1 % off the camera's depth
    assert np.median(raw) > 0.005
    assert np.median(fixed) < 0.4 * np.median(raw) and np.median(fixed) < 0.005
    assert np.mean(fixed > 0.1) < 0.6 * np.mean(raw > 0.1)


def test_unknown_motion_leaves_points_as_captured(frames):
    seq, fr = frames
    T = np.stack([f.T_world_body for f in fr])
    T[2] = np.nan
    motions = lidar_motions(T, np.array([f.timestamp for f in fr]))
    assert motions[2] is None and motions[3] is None and motions[4] is not None
    np.testing.assert_array_equal(camera_points(fr[2], None), fr[2].points[:, :3].astype(np.float64))


def test_lidar_refinement_fixes_the_models_local_scale_and_ignores_occluded_points():
    from fuse4d.fusion.sparse_depth import refine_with_lidar
    rng = np.random.default_rng(0)
    H, W = 96, 160
    v = np.arange(H)[:, None] + np.zeros((1, W))
    gt = np.where(v > 40, 200.0 / np.maximum(v - 30, 1), 25.0)      # a road below a wall
    pred = gt * np.where(np.arange(W)[None, :] < W // 2, 1.12, 0.92)  # the model: 12 % too far left, 8 % near right
    lidar = np.where(rng.random((H, W)) < 0.1, gt, 0.0)
    occluded = (lidar > 0) & (rng.random((H, W)) < 0.1)
    lidar[occluded] *= 2.5                                             # seen by the LiDAR, hidden from the camera
    out = refine_with_lidar(pred.astype(np.float32), lidar.astype(np.float32))
    err_before = np.mean(np.abs(pred - gt) / gt)
    err_after = np.mean(np.abs(out - gt) / gt)
    assert err_before > 0.09 and err_after < 0.3 * err_before, (err_before, err_after)  # 0.100 -> 0.023
    assert np.median(np.abs(out[occluded] / gt[occluded] - 1)) < 0.03     # occluded points do not pull the depth
    assert np.array_equal(refine_with_lidar(pred, lidar, weight=0.0), pred.astype(np.float32))


def _sorted_zbuffer(pix: np.ndarray, key: np.ndarray, n_pix: int) -> np.ndarray:
    """The reference z-buffer (what the input preparation did before): write every point far to
    near in a stable order; the last write wins. ``[n_pix]`` winner index, -1 = none."""
    order = np.argsort(-key, kind="stable")
    win = np.full(n_pix, -1, np.int64)
    win[pix[order]] = order
    return win


def test_fast_zbuffer_picks_the_same_points_as_the_sorted_writes(frames):
    from fuse4d.encoders.lidar import nearest_per_pixel, range_image, range_pixels, sparse_depth
    rng = np.random.default_rng(0)
    seq, fr = frames
    pts = fr[1].points
    r, c = range_pixels(pts, (32, 256), seq.calibration.lidar_fov_deg)
    cases = [(r * 256 + c, np.linalg.norm(pts[:, :3], axis=1), 32 * 256),          # a real scan
             (rng.integers(0, 40, 3000), rng.integers(0, 4, 3000).astype(np.float32), 40),  # many ties
             (rng.integers(0, 70000, 5000), rng.random(5000), 70000),                # beyond 16-bit pixel ids
             (np.array([3, 3, 1]), np.array([1.0, np.nan, 2.0]), 5)]                 # NaN: written last, as before
    for pix, key, n in cases:
        ref = _sorted_zbuffer(pix, key, n)
        p, w = nearest_per_pixel(pix, key, n)
        got = np.full(n, -1, np.int64)
        got[p] = w
        assert np.array_equal(got, ref)
        assert len(np.unique(p)) == len(p) == np.count_nonzero(ref >= 0)
    # the images built on it: the sorted-write range image, bit for bit
    img, r2, c2 = range_image(pts, (32, 256), seq.calibration.lidar_fov_deg)
    rg = np.linalg.norm(pts[:, :3], axis=1)
    win = _sorted_zbuffer(r * 256 + c, rg, 32 * 256)
    hit = win >= 0
    ref = np.zeros((4, 32 * 256), np.float32)
    ref[0, hit] = np.log1p(rg[win[hit]]) / math.log1p(80.0)      # a Python float: float32 math
    ref[1, hit] = 1.0
    ref[2, hit] = np.clip(pts[win[hit], 3] / (255.0 if pts[:, 3].max() > 1.5 else 1.0), 0, 1)
    ref[3, hit] = np.clip(pts[win[hit], 2] / 3.0, -3, 3)
    assert np.array_equal(img.reshape(4, -1), ref) and np.array_equal(r2, r) and np.array_equal(c2, c)
    assert hit.mean() > 0.5                      # a dense scan: most pixels hit
    # the camera-view sparse depth with per-pixel values (the nearest point's)
    cal = seq.calibration
    p = pts[:, :3].astype(np.float64) @ cal.T_cam_lidar[:3, :3].T + cal.T_cam_lidar[:3, 3]
    d, val = sparse_depth(p, cal.K, (64, 192), np.arange(len(p)))
    front = np.flatnonzero(p[:, 2] > 0.1)
    uv = (p[front] @ cal.K.T)[:, :2] / p[front, 2:3]
    u, v = np.floor(uv[:, 0] + 0.5).astype(np.int64), np.floor(uv[:, 1] + 0.5).astype(np.int64)
    ok = (u >= 0) & (u < 192) & (v >= 0) & (v < 64)
    win = _sorted_zbuffer((v * 192 + u)[ok], p[front[ok], 2], 64 * 192)
    hit = win >= 0
    assert hit.sum() > 500 and np.array_equal(val.reshape(-1)[hit], front[ok][win[hit]])
    assert np.array_equal(d.reshape(-1)[hit], p[front[ok][win[hit]], 2].astype(np.float32))
    assert not d.reshape(-1)[~hit].any()
