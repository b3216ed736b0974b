"""Time offset and IMU–LiDAR rotation on a held-out synthetic world (no rendering: the
LiDAR rotations come from its ground-truth poses, the IMU is its noisy stream)."""

import numpy as np
import pytest

from fuse4d.calib.hand_eye import estimate_rotation, gyro_rotations, rotation_vectors
from fuse4d.calib.lie import np_so3_exp, rotation_error_deg
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
