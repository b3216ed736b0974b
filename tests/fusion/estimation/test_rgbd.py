"""A depth camera is a sensor: RGB-D logs get poses from depth + image geometry, against the datasets' poses."""

from __future__ import annotations

import numpy as np
import pytest

from fuse4d import load_sequence, metrics
from fuse4d.fusion.estimation import estimate_trajectory

SEVEN = ("sevenscenes_tsdf_fusion_python", "data")
SLAMBOOK = ("slambook2_rgbd_stereo", "ch5", "rgbd")


def _open3d_chain(seq) -> np.ndarray:
    """The anchor: Open3D hybrid RGB-D odometry, frame to frame from identity, chained."""
    import open3d as o3d
    odo = o3d.pipelines.odometry
    K = seq.calibration.K
    T, prev = [np.eye(4)], None
    for k in range(len(seq)):
        f = seq[k]
        h, w = f.depth.shape
        intr = o3d.camera.PinholeCameraIntrinsic(w, h, K[0, 0], K[1, 1], K[0, 2], K[1, 2])
        cur = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(f.image)), o3d.geometry.Image(f.depth.astype(np.float32)),
            depth_scale=1.0, depth_trunc=4.0, convert_rgb_to_intensity=True)
        if prev is not None:
            _, step, _ = odo.compute_rgbd_odometry(cur, prev, intr, np.eye(4), odo.RGBDOdometryJacobianFromHybridTerm(),
                                                   odo.OdometryOption())
            T.append(T[-1] @ step)
        prev = cur
    return np.stack(T)


def test_sevenscenes_rgbd_poses_without_the_model(shared):
    seq = load_sequence(shared(*SEVEN))[:6]
    assert seq.metadata["depth_sensor"] is True
    res = estimate_trajectory(seq)  # no warning: a depth camera is a motion sensor
    assert res.status == ["rgbd"] * len(seq) and not res.needs_model and res.frame == "body"
    ate = metrics.ate(res.T_world_body, seq.gt_poses)["rmse"]
    anchor = metrics.ate(_open3d_chain(seq), seq.gt_poses)["rmse"]
    assert ate < 0.01 and ate <= 1.2 * anchor, (ate, anchor)  # 30 frames: 2.8 mm vs Open3D's 3.5 mm


@pytest.mark.slow
def test_slambook_large_motion_needs_the_global_search(shared):
    """Five frames 0.3-0.6 m and ~20° apart: RGB-D odometry alone fails (Open3D: ATE 0.66 m)."""
    seq = load_sequence(shared(*SLAMBOOK))
    assert seq.metadata["format"] == "slambook_rgbd" and seq.metadata["depth_sensor"] is True
    res = estimate_trajectory(seq)
    ate = metrics.ate(res.T_world_body, seq.gt_poses)["rmse"]
    anchor = metrics.ate(_open3d_chain(seq), seq.gt_poses)["rmse"]
    assert ate < 0.1 and ate < 0.3 * anchor, (ate, anchor)  # measured 0.035 m vs 0.66 m


def test_synthetic_depth_is_ground_truth_only():
    """Without the metadata flag, depth is never an odometry input (the synthetic world's is ground truth)."""
    from fuse4d.data.types import Calibration, Frame, Sequence
    t = np.arange(3) * 0.1
    depth = np.ones((8, 8), np.float32)
    seq = Sequence(t, lambda i: Frame(index=i, timestamp=float(t[i]), image=np.zeros((8, 8, 3), np.uint8),
                                      depth=depth), Calibration(K=np.eye(3)), {"camera"}, None)
    with pytest.warns(UserWarning, match="fusion model"):
        res = estimate_trajectory(seq)
    assert res.needs_model and set(res.status) == {"needs_model"}
