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
def synthetic_frames():
    from fuse4d.data.synthetic import synthesize
    seq = synthesize(seed=SEED, frames=150)
    cal = seq.calibration
    T_wl = seq.gt_poses @ cal.T_body_lidar
    frames = [edge_frame(seq[i], cal, (invert(T_wl[i - 1]) @ T_wl[i], float(seq.timestamps[i] - seq.timestamps[i - 1])))
              for i in range(10, 150, 14)]
    return frames, cal


@pytest.mark.slow
def test_synthetic_sequence_recovers_2deg_10cm(synthetic_frames):
    """Rotation to a few tenths of a degree (held-out seeds 0/10/20: 0.19/0.40/0.42 deg); the
    translation is weakly observable (see the xfail below)."""
    frames, cal = synthetic_frames
    T_true = cal.T_cam_lidar
    T0 = perturb(T_true, 2.0, 0.1, np.random.default_rng(SEED))
    est = refine_extrinsic(frames, cal.K, T0, CalibConfig(bootstrap=10))
    rot, trans = _errors(est.T_cam_lidar, T_true)
    assert _errors(T0, T_true)[0] == pytest.approx(2.0)
    assert rot < 0.6
    assert rot < 4 * est.std_rot_deg + 0.1  # the bootstrap std is not 5-10x optimistic
    assert trans < 0.15  # never much worse than the 10 cm start
    assert est.compile_seconds >= 0 and est.seconds > 0


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known defect: the translation's bootstrap std (re-solved from the "
                   "solution, in its basin) is ~1 mm while the error is ~9 cm on this seed")
def test_synthetic_translation_is_recovered_or_flagged(synthetic_frames):
    frames, cal = synthetic_frames
    T_true = cal.T_cam_lidar
    T0 = perturb(T_true, 2.0, 0.1, np.random.default_rng(SEED))
    est = refine_extrinsic(frames, cal.K, T0, CalibConfig(bootstrap=10))
    _, trans = _errors(est.T_cam_lidar, T_true)
    if est.trans_excited:
        assert trans < 3 * est.std_trans_m + 0.01
    else:
        assert np.allclose(est.T_cam_lidar[:3, 3], T0[:3, 3])


def test_kitti_frame_improves_a_2deg_start(shared):
    """One real KITTI raw frame (urban traffic) from 2 deg / 10 cm off the published extrinsic:
    measured 0.50 deg / 5.2 cm (bench_calib: 0.30-0.50 deg over three starts)."""
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
