"""Pose graph (pypose LM): loop closure on a noisy circle, IMU factors, network factors, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fuse4d.fusion.estimation.imu import preintegrate_many
from fuse4d.fusion.estimation.lie import se3_exp, so3_exp, so3_log
from fuse4d.fusion.estimation.pose_graph import PoseGraph
from fuse4d.geometry import invert, make_T


def _circle(n: int, radius: float = 10.0) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    R = np.zeros((n, 3, 3))
    R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 2] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a), 1
    T = make_T(R, np.stack([radius * np.sin(a), radius - radius * np.cos(a), np.zeros(n)], -1))
    return invert(T[0]) @ T


@pytest.fixture(scope="module")
def noisy_chain():
    gt = _circle(30)
    rng = np.random.default_rng(0)
    meas = [invert(gt[k]) @ gt[k + 1] @ se3_exp(np.r_[rng.normal(0, 0.02, 3), rng.normal(0, 0.004, 3)])
            for k in range(len(gt) - 1)]
    odo = [np.eye(4)]
    for m in meas:
        odo.append(odo[-1] @ m)
    return gt, np.array(odo), meas


def test_loop_closure_removes_drift(noisy_chain):
    gt, odo, meas = noisy_chain
    info = np.diag([1 / 0.02 ** 2] * 3 + [1 / 0.004 ** 2] * 3)
    g = PoseGraph(odo)
    for k, m in enumerate(meas):
        g.add_relative(k, k + 1, m, info)
    g.add_prior(0, np.eye(4), np.eye(6) * 1e8)
    g.add_relative(len(gt) - 1, 0, invert(gt[-1]) @ gt[0], info * 10, kind="loop")
    sol = g.optimize()
    before = np.linalg.norm(odo[-1, :3, 3] - gt[-1, :3, 3])
    after = np.linalg.norm(sol.poses[-1, :3, 3] - gt[-1, :3, 3])
    assert before > 0.3 and after < 0.05 * before
    assert sol.cost_final < 0.01 * sol.cost_initial
    rms_before = np.sqrt(np.mean(np.sum((odo[:, :3, 3] - gt[:, :3, 3]) ** 2, 1)))
    rms_after = np.sqrt(np.mean(np.sum((sol.poses[:, :3, 3] - gt[:, :3, 3]) ** 2, 1)))
    assert rms_after < 0.5 * rms_before


def test_network_factor_with_covariance(noisy_chain):
    """A confident network prediction of the loop pulls the chain like a loop closure."""
    gt, odo, meas = noisy_chain
    g = PoseGraph(odo)
    for k, m in enumerate(meas):
        g.add_relative(k, k + 1, m, np.diag([2500.0] * 3 + [6e4] * 3))
    g.add_prior(0, np.eye(4), np.eye(6) * 1e8)
    g.add_network_factor(0, len(gt) - 1, invert(gt[0]) @ gt[-1], np.diag([1e-4] * 3 + [1e-6] * 3))
    sol = g.optimize()
    assert np.linalg.norm(sol.poses[-1, :3, 3] - gt[-1, :3, 3]) < 0.05


def test_imu_factors_recover_velocity_and_bias(box_world):
    """Exact circle IMU plus an accelerometer bias; poses pinned: LM must find v and the bias."""
    t = np.arange(0, 3.0, 0.25)
    T = box_world.circle_pose(t)
    imu = box_world.imu(-0.1, 3.1)
    bias = np.array([0.0, 0.0, 0.0, 0.05, -0.03, 0.02])
    imu.acc = imu.acc + bias[3:]
    w = box_world.speed / box_world.radius
    v_true = np.stack([box_world.speed * np.cos(w * t), box_world.speed * np.sin(w * t), 0 * t], -1)
    g = PoseGraph(T, v_true + 0.5, np.zeros((len(t), 6)))
    for k, pre in enumerate(preintegrate_many(imu, t[:-1], t[1:])):
        g.add_imu(k, k + 1, pre, gyro_walk=1e-5, acc_walk=1e-3)
    for k in range(len(t)):
        g.add_prior(k, T[k], np.eye(6) * 1e8)
    g.add_bias_prior(0, np.zeros(6), np.full(6, 0.5))
    sol = g.optimize(max_iterations=20)
    np.testing.assert_allclose(sol.velocities, v_true, atol=0.02)
    np.testing.assert_allclose(sol.biases[0], bias, atol=0.01)


def test_errors():
    g = PoseGraph(np.stack([np.eye(4)] * 3))
    with pytest.raises(ValueError, match="no factors"):
        g.optimize()
    with pytest.raises(IndexError):
        g.add_relative(0, 5, np.eye(4), np.eye(6))
    with pytest.raises(ValueError, match="velocities"):
        g.add_imu(0, 1, None, 1e-5, 1e-3)
    with pytest.raises(ValueError, match="velocities"):
        g.add_velocity_prior(0, np.zeros(3), 0.1)
    g.add_relative(0, 1, np.eye(4), np.eye(6), kind="lidar")
    with pytest.raises(ValueError, match="robust kernel"):
        g.optimize(kernels={"lidar": ("tukey", 1.0)})


@pytest.mark.parametrize("kind", ["imu", "imu_lidar"])
def test_corrupted_imu_between_lidar_held_states(box_world, kind):
    """A 2° gyro burst in one IMU factor between LiDAR-registered states: the default Huber ``imu`` kernel
    lets it bend the trajectory, the redescending ``imu_lidar`` kernel rejects it (the LiDAR holds)."""
    t = np.arange(0, 3.0, 0.25)
    T = box_world.circle_pose(t)
    w = box_world.speed / box_world.radius
    v_true = np.stack([box_world.speed * np.cos(w * t), box_world.speed * np.sin(w * t), 0 * t], -1)
    pre = preintegrate_many(box_world.imu(-0.1, 3.1), t[:-1], t[1:])
    pre[5].dR = pre[5].dR @ so3_exp(np.radians([0.0, 0.0, 2.0]))
    g = PoseGraph(T.copy(), v_true.copy(), np.zeros((len(t), 6)))
    for k, p in enumerate(pre):
        g.add_imu(k, k + 1, p, gyro_walk=1e-5, acc_walk=1e-3, kind=kind)
        g.add_relative(k, k + 1, invert(T[k]) @ T[k + 1], np.diag([1e4] * 3 + [1e5] * 3))  # 1 cm, 0.18°
    g.add_prior(0, T[0], np.eye(6) * 1e8)
    g.add_bias_prior(0, np.zeros(6), np.full(6, 0.5))
    sol = g.optimize(max_iterations=20)
    err = np.degrees(max(np.linalg.norm(so3_log(T[k, :3, :3].T @ sol.poses[k, :3, :3])) for k in range(len(t))))
    if kind == "imu":
        assert err > 0.5, err
    else:
        assert err < 0.1, err
