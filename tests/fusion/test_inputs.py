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
