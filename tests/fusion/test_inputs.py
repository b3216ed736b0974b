"""LiDAR points enter the camera view at the camera's stamp: the sweep's motion is undone."""

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
