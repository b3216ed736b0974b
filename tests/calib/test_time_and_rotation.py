"""Time offset and IMU–LiDAR rotation on a held-out synthetic world (no rendering: the
LiDAR rotations come from its ground-truth poses, the IMU is its noisy stream)."""

import numpy as np
import pytest

from fuse4d.calib.hand_eye import estimate_rotation, gyro_rotations, rotation_vectors
from fuse4d.calib.lie import np_so3_exp, np_so3_log, rotation_error_deg
from fuse4d.calib.time_offset import estimate_time_offset
from fuse4d.data.synthetic import synthesize
from fuse4d.data.types import ImuSamples
from fuse4d.errors import DataError
from fuse4d.geometry import invert

SEED = 20  # seed % 10 == 0: a test seed


@pytest.fixture(scope="module")
def world():
    seq = synthesize(seed=SEED, frames=200)
    T = seq.gt_poses @ seq.calibration.T_body_lidar
    rel = np.stack([invert(T[i - 1]) @ T[i] for i in range(1, len(T))])
    t = seq.timestamps
    return seq, t[:-1], t[1:], rel


@pytest.mark.slow
def test_time_offset_20ms_recovered_to_1ms(world):
    seq, t0, t1, rel = world
    shifted = ImuSamples(seq.imu.t + 0.020, seq.imu.acc, seq.imu.gyro)  # IMU clock 20 ms ahead
    est = estimate_time_offset(t0, t1, np.linalg.norm(rotation_vectors(rel), axis=1), shifted)
    assert est.excited
    assert abs(est.offset_s - 0.020) < 1e-3
    assert 0 < est.std_s < 2e-3


def test_time_offset_flagged_on_constant_rate():
    t = np.arange(0, 20, 0.005)
    imu = ImuSamples(t, np.zeros((len(t), 3)), np.tile([0.0, 0.0, 0.1], (len(t), 1))
                     + 1e-3 * np.random.default_rng(0).standard_normal((len(t), 3)))
    tf = np.arange(1, 19, 0.1)
    est = estimate_time_offset(tf[:-1], tf[1:], np.full(len(tf) - 1, 0.01), imu, max_std_s=0.005)
    assert not est.excited and est.notes


def test_time_offset_too_few_frames():
    t = np.arange(0, 2, 0.005)
    imu = ImuSamples(t, np.zeros((len(t), 3)), np.zeros((len(t), 3)))
    with pytest.raises(DataError, match="too few frames"):
        estimate_time_offset(np.array([0.5, 0.6]), np.array([0.6, 0.7]), np.array([0.01, 0.01]), imu)


@pytest.mark.slow
def test_imu_lidar_rotation(world):
    seq, t0, t1, rel = world
    b = rotation_vectors(rel)
    a = gyro_rotations(seq.imu, t0, t1)
    # odometry rotations of a LiDAR mounted with a known extra rotation R_err
    R_err = np_so3_exp(np.radians([1.0, -0.7, 0.5]))
    R_true = seq.calibration.T_body_lidar[:3, :3] @ R_err.T
    b_mod = b @ R_err.T   # b' = R_err b: the LiDAR frame rotated by R_err
    est = estimate_rotation(a, b_mod, t1 - t0)
    err = rotation_error_deg(est.R_body_lidar, R_true)
    if est.excited:
        assert err < 0.2
    assert err < 3 * np.linalg.norm(est.std_deg) + 0.05  # the std is honest either way


def test_no_motion_is_a_clear_error():
    n = 50
    with pytest.raises(DataError, match="no motion"):
        estimate_rotation(np.zeros((n, 3)), np.zeros((n, 3)), np.full(n, 0.1))


def test_rotation_keeps_start_about_unexcited_axis():
    """Yaw-only turns with small pitch/roll wobble: the mount's yaw about the body's vertical is
    not determined and keeps the start; pitch/roll of the mount are still recovered."""
    rng = np.random.default_rng(3)
    n = 150
    R_true = np_so3_exp(np.radians([0.0, 0.0, 90.0]))  # LiDAR yawed 90 deg in the body
    a = np.zeros((n, 3))
    a[:, 2] = np.radians(rng.uniform(-3, 3, n))                # yaw per interval (body)
    a[:, :2] = np.radians(0.01) * rng.standard_normal((n, 2))  # tiny wobble: yaw of the mount unobservable
    b = a @ R_true + np.radians(0.005) * rng.standard_normal((n, 3))  # b = R^T a, LiDAR frame
    start_err = np_so3_exp(np.radians([0.6, -0.5, 0.8]))
    R_init = start_err @ R_true
    est = estimate_rotation(a, b, np.full(n, 0.1), R_init)
    assert not est.excited and est.applied
    assert len(est.weak_axes) == 1 and abs(est.weak_axes[0, 2]) > 0.99  # the body's vertical
    e = np.degrees(np_so3_log(est.R_body_lidar @ R_true.T))
    assert abs(e[0]) < 0.1 and abs(e[1]) < 0.1     # pitch/roll of the mount recovered from 0.6/0.5 deg
    assert abs(e[2] - 0.8) < 0.1                   # yaw kept at the start's
    assert est.notes and "start is kept" in est.notes[0]


def test_gyro_deskew_rotation_and_offset():
    """A constant yaw rate: the sweep's rotation from the gyro, in the LiDAR frame, at the offset."""
    from fuse4d.calib.motion import GyroDeskew
    t = np.arange(0, 2, 0.005)
    w = np.where(t > 1.0, 0.5, 0.0)               # the turn starts at IMU time 1.0 s
    imu = ImuSamples(t, np.zeros((len(t), 3)), np.stack([0 * t, 0 * t, w], 1))
    R_bl = np_so3_exp(np.radians([0.0, 90.0, 0.0]))  # body z = LiDAR -x
    m = GyroDeskew(imu, 0.02, R_bl).motion(1.08, np.array([10.0, 0, 0]))  # IMU time 1.10 s at the stamp
    T = m(np.array([-0.1, -0.05, 0.0]))
    ang = np_so3_log(T[:, :3, :3])
    # at τ=-0.1 the body was at IMU time 1.00 (turn start): 0.1 s · 0.5 rad/s behind, about LiDAR x
    assert np.allclose(ang[0], [0.05, 0, 0], atol=2e-3)
    assert np.allclose(ang[1], [0.025, 0, 0], atol=2e-3) and np.allclose(ang[2], 0, atol=1e-9)
    assert np.allclose(T[0, :3, 3], [-1.0, 0, 0])


@pytest.mark.slow
def test_end_to_end_with_lidar_odometry():
    """``calibrate_sequence`` on a log whose IMU clock runs 20 ms ahead and whose IMU-LiDAR
    rotation is 1 deg off, with the motion from its own LiDAR odometry (as ``fuse4d calib``)."""
    from fuse4d.calib.calibrate import calibrate_sequence
    from fuse4d.calib.config import CalibConfig
    from fuse4d.calib.io import with_calibration_error
    bad, truth = with_calibration_error(synthesize(seed=SEED, frames=150), 2.0, 0.1, 20.0, SEED)
    r = calibrate_sequence(bad, CalibConfig(lidar_camera=False), truth=truth).report
    assert r["time_offset_err_ms_before"] == pytest.approx(20.0) and r["imu_rot_err_deg_before"] == pytest.approx(1.0)
    assert r["time_offset_excited"] and r["time_offset_err_ms"] < 1.0
    assert 2 <= r["motion_passes"] <= 3
    assert r["imu_rot_applied"] and r["imu_rot_err_determined_deg"] < 0.2
    assert r["imu_rot_err_deg"] < r["imu_rot_err_deg_before"]
