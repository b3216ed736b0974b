"""Logs without LiDAR: network relative-pose factors (+ IMU) as the motion source, against ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from fuse4d import metrics
from fuse4d.data.types import Calibration, Frame
from fuse4d.fusion.estimation import Estimator
from fuse4d.fusion.estimation.lie import se3_exp
from fuse4d.geometry import invert

SIG_T, SIG_R = 0.05, np.radians(1.0)  # per-frame network noise: 5 cm, 1°
COV = np.diag([SIG_T ** 2] * 3 + [SIG_R ** 2] * 3)


def _noisy_factors(gt: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [invert(gt[k - 1]) @ gt[k] @ se3_exp(np.r_[rng.normal(0, SIG_T, 3), rng.normal(0, SIG_R, 3)])
            for k in range(1, len(gt))]


def _run(sensors: set[str], t: np.ndarray, factors: list[np.ndarray], imu=None, late: bool = False):
    est = Estimator(None, Calibration(), sensors, imu)
    for k, tk in enumerate(t):
        est.step(Frame(index=k, timestamp=float(tk), image=np.zeros((4, 4, 3), np.uint8)))
        if k and not late:
            est.add_network_factor(k - 1, k, factors[k - 1], COV)
    if late:  # the pipeline's pass 2: every factor after every frame
        for k in range(1, len(t)):
            est.add_network_factor(k - 1, k, factors[k - 1], COV)
    return est.finish()


@pytest.fixture(scope="module")
def log10s(smooth_trajectory):
    traj = smooth_trajectory
    t = np.arange(100) / 10.0  # 10 s at 10 Hz, moving from the first frame
    imu = traj.imu(-0.05, t[-1] + 0.05, gyro_bias=(0.004, -0.003, 0.002), acc_bias=(0.03, -0.02, 0.04),
                   gyro_noise=1.7e-4, acc_noise=2e-3)
    return t, traj.pose(t), imu


@pytest.mark.parametrize("seed", [0, 1])
def test_camera_only_chains_network_factors(log10s, seed):
    t, gt, _ = log10s
    factors = _noisy_factors(gt, seed)
    with pytest.warns(UserWarning, match="fusion model"):
        res = _run({"camera"}, t, factors, late=bool(seed))
    assert res.status == ["network"] * 100 and not res.needs_model and not res.gaps
    np.testing.assert_allclose(res.T_world_body[0], np.eye(4), atol=1e-6)  # origin at the first frame
    # the chain is the product of the factors (a tree graph: the optimiser keeps it)
    chained = np.eye(4)
    for f in factors:
        chained = chained @ f
    np.testing.assert_allclose(res.T_world_body[-1], chained, atol=1e-3)
    ate = metrics.ate(res.T_world_body, gt)["rmse"]
    assert 0.05 < ate < 3.0  # a random walk of 99 noisy steps (1° each): it drifts, but stays metric


def test_camera_imu_beats_camera_only(log10s):
    """Same factors; the IMU (biased, noisy) adds gravity, rotation and velocity: ATE falls several-fold."""
    t, gt, imu = log10s
    ates_cam, ates_ci = [], []
    for seed in range(3):
        factors = _noisy_factors(gt, seed)
        with pytest.warns(UserWarning):
            cam = _run({"camera"}, t, factors)
        ci = _run({"camera", "imu"}, t, factors, imu, late=seed == 2)
        assert ci.frame == "body" and ci.status == ["network"] * 100
        ates_cam.append(metrics.ate(cam.T_world_body, gt)["rmse"])
        ates_ci.append(metrics.ate(ci.T_world_body, gt)["rmse"])
        # gravity-aligned world: z is up, so the estimated height profile follows the truth (no alignment)
        assert np.degrees(np.arccos(np.clip(ci.T_world_body[-1, 2, 2], -1, 1))) < 6.0
        assert np.abs(ci.biases[:, :3]).max() < 0.01  # rad/s: stays near the true 0.004 (1° network noise hides it)
        v_gt = np.gradient(gt[:, :3, 3], t, axis=0)
        speed_err = np.abs(np.linalg.norm(ci.velocities, axis=1) - np.linalg.norm(v_gt, axis=1))
        assert np.median(speed_err) < 0.2  # m/s, moving at 6-9 m/s from the first frame
    assert np.median(ates_ci) < 0.4 * np.median(ates_cam), (ates_ci, ates_cam)
    assert max(ates_ci) < 0.3  # measured ~0.1 m over ~75 m


def test_frames_without_a_factor():
    """Camera-only: frames no factor reaches stay NaN ('needs_model'); the gap is reported."""
    t = np.arange(6) * 0.1
    with pytest.warns(UserWarning, match="fusion model"):
        est = Estimator(None, Calibration(), {"camera"})
    for k in range(6):
        est.step(Frame(index=k, timestamp=float(t[k])))
    step = np.eye(4)
    step[0, 3] = 0.5
    for k in (1, 2):
        est.add_network_factor(k - 1, k, step, COV)
    res = est.finish()
    assert res.status == ["network"] * 3 + ["needs_model"] * 3
    assert np.isnan(res.T_world_body[3:]).all() and np.allclose(res.T_world_body[2, 0, 3], 1.0)
    assert res.gaps == [{"start": 3, "stop": 6, "t_start": pytest.approx(0.3), "t_stop": pytest.approx(0.5),
                         "carried_by": "nothing"}]
    with pytest.raises(ValueError, match="positive definite"):
        est.add_network_factor(0, 1, step, -COV)
