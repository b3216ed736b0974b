"""LiDAR–camera refinement recovers a perturbed extrinsic: on a held-out synthetic
sequence (several frames, ground-truth motion for deskewing) and on one real KITTI
raw frame (the published extrinsic as the truth)."""

import numpy as np
import pytest

from fuse4d.calib.config import CalibConfig
from fuse4d.calib.frames import edge_frame
from fuse4d.calib.lidar_camera import refine_extrinsic
from fuse4d.calib.lie import perturb, rotation_error_deg
from fuse4d.geometry import invert

SEED = 30  # seed % 10 == 0: a test seed, never used for tuning


def _errors(T, T_true):
    return rotation_error_deg(T[:3, :3], T_true[:3, :3]), float(np.linalg.norm(T[:3, 3] - T_true[:3, 3]))


@pytest.fixture(scope="module")
def synthetic_estimate():
    """The product's 60 frames (of a 150-frame log) with true-motion deskew, refined from 2 deg / 10 cm."""
    from fuse4d.data.synthetic import synthesize
    seq = synthesize(seed=SEED, frames=150)
    cal = seq.calibration
    T_wl = seq.gt_poses @ cal.T_body_lidar
    frames = [edge_frame(seq[i], cal, (invert(T_wl[i - 1]) @ T_wl[i], float(seq.timestamps[i] - seq.timestamps[i - 1])))
              for i in np.linspace(5, 149, 60).round().astype(int)]
    T0 = perturb(cal.T_cam_lidar, 2.0, 0.1, np.random.default_rng(SEED))
    return refine_extrinsic(frames, cal.K, T0, CalibConfig(bootstrap=10)), T0, cal.T_cam_lidar


@pytest.mark.slow
def test_synthetic_sequence_recovers_2deg_10cm(synthetic_estimate):
    """Rotation to a few tenths of a degree and the translation moved towards the truth (bench_calib,
    60 frames: held-out seeds 0/10 0.32/0.18 deg, 3.6/3.6 cm, where the cost's own minimum from the
    truth sits 0.32/0.16 deg off: the edges put it there). The std (block bootstrap + a bias floor) was
    0.17/0.12 deg per axis there, the error's norm 1.5-1.9x that: not asserted (this test's 10 draws)."""
    est, T0, T_true = synthetic_estimate
    rot, trans = _errors(est.T_cam_lidar, T_true)
    assert _errors(T0, T_true)[0] == pytest.approx(2.0)
    assert rot < 0.6
    assert est.rot_excited
    assert trans < 0.09  # from 10 cm: the translation is no longer the start's
    assert est.trans_excited and not np.allclose(est.T_cam_lidar[:3, 3], T0[:3, 3])
    assert est.compile_seconds >= 0 and est.seconds > 0


def test_kitti_frame_improves_a_2deg_start(shared):
    """One real KITTI raw frame (urban traffic) from 2 deg / 10 cm off the published extrinsic:
    measured 0.43 deg / 4.6 cm (bench_calib --real-only --draws 2: 0.43 / 0.49 deg)."""
    from fuse4d.data.registry import load_sequence
    seq = load_sequence(shared("kitti_raw_2011_09_26", "2011_09_26", "2011_09_26_drive_unknown_sync"))
    cal = seq.calibration
    f = edge_frame(seq[0], cal)
    T_true = cal.T_cam_lidar
    T0 = perturb(T_true, 2.0, 0.1, np.random.default_rng([0, 99]))
    est = refine_extrinsic([f], cal.K, T0, CalibConfig(bootstrap=0))
    rot, trans = _errors(est.T_cam_lidar, T_true)
    assert rot < 0.75 and trans < 0.08
    assert est.rot_excited


def test_bootstrap_draws_blocks_of_consecutive_frames():
    """Many frames are resampled in blocks of neighbours (they see the same structures), one
    frame alone is resampled by image tile."""
    from fuse4d.calib.lidar_camera import EdgeFrame, _groups
    edges = np.zeros((3, 40, 80), bool)
    f = EdgeFrame(np.zeros((4, 3), np.float32), np.ones(4, np.float32), edges, np.zeros((40, 80, 3), np.uint8),
                  np.zeros((4, 3), np.float32))
    w = np.ones((16, 4), np.float32)
    g = _groups([f] * 16, np.zeros((16, 4, 3)), w, np.eye(4), np.eye(3), blocks=8)
    assert np.array_equal(g[:, 0], np.repeat(np.arange(8), 2)) and (g == g[:, :1]).all()
    assert np.array_equal(_groups([f] * 16, np.zeros((16, 4, 3)), w, np.eye(4), np.eye(3))[:, 0], np.arange(16))
    K = np.array([[40.0, 0, 39.5], [0, 40.0, 19.5], [0, 0, 1]])
    P = np.array([[[-1.9, -0.8, 2.0], [1.9, -0.8, 2.0], [-1.9, 0.8, 2.0], [1.9, 0.8, 2.0]]])  # the four corners
    assert sorted(_groups([f], P, w[:1], np.eye(4), K, blocks=8)[0]) == [0, 7, 24, 31]
