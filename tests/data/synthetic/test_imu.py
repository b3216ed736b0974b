"""IMU stream: exact kinematics (integration reproduces GT poses) and the noise model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fuse4d.data.synthetic.imu import exact_imu
from fuse4d.geometry import rotation_angle

G = np.array([0.0, 0.0, -9.81])


def integrate(t, acc, gyro, R0, v0, p0):
    """Trapezoidal strapdown integration of body-frame samples → final R, p."""
    R, v, p = R0.copy(), v0.copy(), p0.copy()
    a_prev = R @ acc[0] + G
    for k in range(len(t) - 1):
        dt = t[k + 1] - t[k]
        R_next = R @ Rotation.from_rotvec(0.5 * (gyro[k] + gyro[k + 1]) * dt).as_matrix()
        a_next = R_next @ acc[k + 1] + G
        p = p + v * dt + (2 * a_prev + a_next) / 6 * dt * dt
        v = v + 0.5 * (a_prev + a_next) * dt
        R, a_prev = R_next, a_next
    return R, p


class TestImu:
    @pytest.mark.parametrize("frame", [0, 37, 120])
    def test_noise_free_integration_matches_gt_pose(self, exact_world, frame):
        seq = exact_world.sequence()
        t0 = seq.timestamps[frame]
        imu = seq.imu.between(t0 - 1e-9, t0 + 1.0 + 1e-9)
        assert len(imu) == 201
        k0 = exact_world.ego.kinematics(np.array([t0]))
        R, p = integrate(imu.t, imu.acc, imu.gyro, k0["R"][0], k0["v"][0], k0["p"][0])
        gt = seq.gt_poses[frame + 10]
        assert np.linalg.norm(p - gt[:3, 3]) < 0.01
        assert np.degrees(rotation_angle(R.T @ gt[:3, :3])) < 0.1

    def test_stream_continuous_and_covers_frames(self, default_world):
        imu = default_world.sequence().imu
        np.testing.assert_allclose(np.diff(imu.t), 1 / 200, atol=1e-12)
        assert imu.t[0] <= -0.1 + 1e-9 and imu.t[-1] >= default_world.times[-1]
        f = default_world.sequence()[5]
        assert len(f.imu) == 20 and f.imu.t[-1] == pytest.approx(f.timestamp)

    def test_at_rest_gravity_sign(self, exact_world):
        # specific force points up in the body frame (z ≈ +9.81 on flat ground)
        imu = exact_world.sequence().imu
        assert imu.acc[:, 2].mean() == pytest.approx(9.81, abs=0.5)

    def test_noise_matches_calibration(self, default_world):
        imu = default_world.sequence().imu
        clean = exact_imu(default_world.ego, imu.t)
        cal = default_world.calibration.imu_noise
        res = imu.gyro - clean.gyro
        white = np.diff(res, axis=0).std(axis=0) / np.sqrt(2)  # differencing removes the slow bias
        np.testing.assert_allclose(white, cal["gyro_noise"] * np.sqrt(200), rtol=0.15)
        res = imu.acc - clean.acc
        white = np.diff(res, axis=0).std(axis=0) / np.sqrt(2)
        np.testing.assert_allclose(white, cal["acc_noise"] * np.sqrt(200), rtol=0.15)
        assert np.abs(res.mean(axis=0)).max() < 0.2  # bias: tens of mg at most
