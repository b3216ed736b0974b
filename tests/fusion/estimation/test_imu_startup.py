"""IMU-only start-up: rest detection with vibration, levelling and biases, against plain integration."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from fuse4d.data.types import ImuSamples
from fuse4d.fusion.estimation import estimate_trajectory
from fuse4d.fusion.estimation.imu import propagate_path
from fuse4d.fusion.estimation.imu_startup import _level, dead_reckon, imu_startup, rest_mask
from fuse4d.fusion.estimation.lie import so3_exp

EUROC = ("euroc_kimera_vio_tests", "tests", "data", "ForOnlineAlignment", "real_data")


def _plain(seq) -> np.ndarray:
    """DESIGN.md's anchor: gravity and gyro bias from the first second's means, then strapdown."""
    imu, t = seq.imu, seq.timestamps
    m = imu.t <= imu.t[0] + 1.0
    bg = imu.gyro[m].mean(0)
    T, v, tc = np.eye(4), np.zeros(3), imu.t[0]
    T[:3, :3] = _level(imu.acc[m].mean(0))
    out = []
    for tk in t:
        _, P, V = propagate_path(imu, tc, tk, T[:3, :3], T[:3, 3], v, bg)
        T, v, tc = P[-1], V[-1], tk
        out.append(T)
    return np.stack(out)


def _anchored_rmse(est, gt, t, span):
    A = gt[0] @ np.linalg.inv(est[0]) @ est
    k = np.searchsorted(t, t[0] + span, side="right")
    return float(np.sqrt(np.mean(np.sum((A[:k, :3, 3] - gt[:k, :3, 3]) ** 2, 1))))


def test_euroc_dead_reckoning_beats_plain_integration(shared):
    """V1_02_medium: the MAV rests ~4 s with rotors spinning, then flies (IMU only, real data)."""
    from fuse4d import load_sequence
    seq = load_sequence(shared(*EUROC))
    res = estimate_trajectory(seq)
    assert set(res.status) == {"imu_only"} and res.info["at_rest"] and res.info["rest_start_s"] > 2.0
    plain = _plain(seq)
    gt, t = seq.gt_poses, seq.timestamps
    for span, bound in ((2.0, 0.01), (5.0, 0.05), (10.0, 0.8)):  # measured 0.002 / 0.033 / 0.45 m
        ours, anchor = _anchored_rmse(res.T_world_body, gt, t, span), _anchored_rmse(plain, gt, t, span)
        assert ours < bound and ours <= anchor, (span, ours, anchor)  # plain: 0.028 / 0.155 / 0.98 m
    # the gyro bias is the rest mean: EuRoC's own estimate is (-0.002, 0.021, 0.076) rad/s
    np.testing.assert_allclose(res.biases[0, :3], [-0.0022, 0.0207, 0.0758], atol=3e-3)
    # levelled: gravity-aligned start (roll/pitch of the ground truth within 1°)
    tilt = np.degrees(np.arccos(np.clip(np.trace(res.T_world_body[0, :3, :3].T @ gt[0, :3, :3]) / 2 - 0.5, -1, 1)))
    yaw_free = np.degrees(np.arccos(np.clip(res.T_world_body[0, 2, :3] @ gt[0, 2, :3], -1, 1)))
    assert yaw_free < 1.0 and tilt < 180


def _vibrating_rest_then_accelerate(rest: float, seed: int = 0):
    """Body tilted by (3°, -2°), gyro bias, vibration (acc std 0.3 m/s²), at rest for ``rest`` s, then 1 m/s² forward."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, rest + 3.0, 0.005)
    R = so3_exp(np.radians([3.0, -2.0, 0.0]))
    a_world = np.zeros((len(t), 3))
    a_world[t > rest, 0] = 1.0
    acc = (a_world + [0, 0, 9.81]) @ R + rng.normal(0, 0.3, (len(t), 3))
    gyro = np.tile([0.01, -0.02, 0.03], (len(t), 1)) + rng.normal(0, 0.01, (len(t), 3))
    return ImuSamples(t, acc, gyro), R


def test_rest_with_vibration_gives_level_and_gyro_bias():
    imu, R = _vibrating_rest_then_accelerate(2.0)
    mask = rest_mask(imu)
    assert mask[imu.t < 1.6].all() and not mask[(imu.t > 2.5) & (imu.t < 4.5)].any()
    st = imu_startup(imu, 0.0)
    assert st.at_rest and 1.4 < st.t_stop <= 2.0  # the motion starts at 2.0 s
    np.testing.assert_allclose(st.gyro_bias, [0.01, -0.02, 0.03], atol=2e-3)
    tilt = np.degrees(np.linalg.norm(np.cross(st.R[2], R[2])))  # up axis in body coordinates
    assert tilt < 0.4  # degrees (noise of the 1.6 s mean: ~0.1°)
    t = np.arange(0.0, 4.9, 0.1)
    T, v, _ = dead_reckon(imu, t, st)
    x_true = 0.5 * np.clip(t - 2.0, 0, None) ** 2
    assert np.abs(T[:, :3, 3] - T[0, :3, 3])[t <= 1.5].max() == 0.0  # zero-velocity update while resting
    np.testing.assert_allclose(np.linalg.norm(T[:, :2, 3] - T[0, :2, 3], axis=1), x_true, atol=0.15)


def test_moving_start_is_reported(caplog, smooth_trajectory):
    """A car turning and changing speed from the first sample is not mistaken for rest (only constant
    acceleration would be: an accelerometer cannot tell it from a tilt)."""
    imu = smooth_trajectory.imu(0.0, 5.0, gyro_noise=1.7e-4, acc_noise=2e-3)
    with caplog.at_level(logging.WARNING):
        st = imu_startup(imu, 0.0)
    assert not st.at_rest and "starts in motion" in caplog.text
    with pytest.raises(Exception, match="need >= 10 IMU samples"):
        imu_startup(imu, 1e6)
