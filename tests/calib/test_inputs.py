"""Bad inputs give one clear DataError; calibration files round-trip; seeded errors have the asked size."""

import numpy as np
import pytest

from fuse4d.calib.config import CalibConfig
from fuse4d.calib.io import parse_error_spec, read_calibration, with_calibration_error, write_calibration
from fuse4d.calib.lidar_camera import EdgeFrame, refine_extrinsic
from fuse4d.calib.lie import np_se3_exp, rotation_error_deg
from fuse4d.data.types import Calibration, ImuSamples, Sequence, Frame
from fuse4d.errors import ConfigError, DataError

K = np.array([[200.0, 0, 160], [0, 200.0, 60], [0, 0, 1]])
T_CL = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])  # LiDAR x forward = camera z


def _scene(seed=0):
    """A box world in front of the sensor: LiDAR edge points and a matching edge image."""
    rng = np.random.default_rng(seed)
    pts = np.c_[rng.uniform(5, 20, 4000), rng.uniform(-8, 8, 4000), rng.uniform(-1, 2, 4000)]
    edges = np.zeros((120, 320), bool)
    X = pts @ T_CL[:3, :3].T
    u = np.rint(K[0, 0] * X[:, 0] / X[:, 2] + K[0, 2]).astype(int)
    v = np.rint(K[1, 1] * X[:, 1] / X[:, 2] + K[1, 2]).astype(int)
    ok = (u >= 0) & (u < 320) & (v >= 0) & (v < 120)
    edges[v[ok], u[ok]] = True
    img = np.zeros((120, 320, 3), np.uint8)
    return EdgeFrame(pts.astype(np.float32), np.ones(len(pts), np.float32), edges, img, pts)


def test_no_overlap_is_a_clear_error():
    f = _scene()
    behind = np_se3_exp(np.r_[0, 0, 0, 0, np.pi, 0]) @ T_CL  # camera looks backwards
    with pytest.raises(DataError, match="no overlap between LiDAR and image"):
        refine_extrinsic([f], K, behind, CalibConfig(search_deg=0))


def test_no_structure_is_a_clear_error():
    f = _scene()
    f.points, f.weights = f.points[:20], f.weights[:20]
    with pytest.raises(DataError, match="no structure in view"):
        refine_extrinsic([f], K, T_CL, CalibConfig(search_deg=0))


def test_no_frames_is_a_clear_error():
    with pytest.raises(DataError, match="no frame with both an image and a LiDAR"):
        refine_extrinsic([], K, T_CL)


def test_error_spec():
    assert parse_error_spec("rot_deg=2,trans_m=0.1,time_ms=20") == {"rot_deg": 2.0, "trans_m": 0.1, "time_ms": 20.0}
    with pytest.raises(ConfigError, match="bad entry"):
        parse_error_spec("rot=2")


def test_seeded_error_has_the_asked_size_and_round_trips(tmp_path):
    cal = Calibration(K=K, image_size=(320, 120), T_body_cam=np.linalg.inv(T_CL), T_body_lidar=np.eye(4),
                      time_offsets={"camera": 0.0, "lidar": 0.0})
    t = np.arange(0, 5, 0.005)
    imu = ImuSamples(t, np.zeros((len(t), 3)), np.zeros((len(t), 3)))
    seq = Sequence(np.arange(10) * 0.1, lambda i: Frame(i, i * 0.1), cal, {"lidar", "imu"}, imu)
    bad, truth = with_calibration_error(seq, 2.0, 0.1, 20.0, seed=3)
    assert rotation_error_deg(bad.calibration.T_cam_lidar[:3, :3], truth.T_cam_lidar[:3, :3]) == pytest.approx(2.0)
    assert np.linalg.norm(bad.calibration.T_cam_lidar[:3, 3] - truth.T_cam_lidar[:3, 3]) == pytest.approx(0.1)
    assert abs(truth.time_offsets["lidar"]) == pytest.approx(0.020)
    assert np.allclose(bad.imu.t - seq.imu.t, truth.time_offsets["lidar"])  # the data really is shifted
    p = write_calibration(tmp_path / "calib.yaml", truth, {"rot_err_deg": 0.1})
    back = read_calibration(p)
    assert np.allclose(back.T_cam_lidar, truth.T_cam_lidar) and back.time_offsets == truth.time_offsets
    (tmp_path / "bad.yaml").write_text("[1, 2")
    with pytest.raises(DataError, match="bad.yaml"):
        read_calibration(tmp_path / "bad.yaml")
