"""Unit and property tests of fuse4d.metrics on synthetic trajectories and tiny hand-checked arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.spatial.transform import Rotation

from fuse4d import metrics
from fuse4d.data.trajectory import Trajectory
from fuse4d.errors import DataError
from fuse4d.geometry import invert, make_T


def _random_T(rng, scale_t=5.0):
    return make_T(Rotation.random(random_state=rng).as_matrix(), rng.normal(size=3) * scale_t)


def _wiggly_path(n: int, rng, step: float = 1.0) -> np.ndarray:
    """``[n, 4, 4]`` poses along a smooth random curve (yaw turns, small pitch), ~``step`` m apart."""
    yaw = np.cumsum(rng.normal(0, 0.05, n))
    pitch = 0.05 * np.sin(np.linspace(0, 3, n))
    R = Rotation.from_euler("zyx", np.c_[yaw, pitch, np.zeros(n)]).as_matrix()
    p = np.cumsum(R[:, :, 0] * step, axis=0)
    return make_T(R, p)


# --- alignment ---------------------------------------------------------------------------------

def test_umeyama_recovers_known_sim3():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 50))
    R = Rotation.random(random_state=rng).as_matrix()
    t, s = np.array([1.0, -2.0, 3.5]), 2.7
    y = s * R @ x + t[:, None]
    R1, t1, s1 = metrics.umeyama_alignment(x, y, with_scale=True)
    np.testing.assert_allclose(R1, R, atol=1e-12)
    np.testing.assert_allclose(t1, t, atol=1e-12)
    assert s1 == pytest.approx(s, abs=1e-12)
    R2, t2, s2 = metrics.umeyama_alignment(x, R @ x + t[:, None], with_scale=False)
    np.testing.assert_allclose(R2, R, atol=1e-12)
    assert s2 == 1.0


def test_umeyama_rejects_degenerate_and_mismatched():
    x = np.zeros((3, 10))
    x[0] = np.arange(10)  # collinear: rank 1 < 2
    with pytest.raises(DataError, match="degenerate"):
        metrics.umeyama_alignment(x, x)
    with pytest.raises(DataError, match="one shape"):
        metrics.umeyama_alignment(np.zeros((3, 4)), np.zeros((3, 5)))


@pytest.mark.parametrize("mode", ["se3", "sim3"])
def test_ate_of_transformed_copy_is_zero(mode):
    rng = np.random.default_rng(2)
    ref = _wiggly_path(200, rng)
    T = _random_T(rng)
    s = 0.37 if mode == "sim3" else 1.0
    est = ref.copy()
    est[:, :3, 3] *= s
    est = T @ est
    out = metrics.ate(est, ref, align=mode)
    assert out["rmse"] < 1e-9 and out["max"] < 1e-9
    assert out["scale"] == pytest.approx(1.0 / s, rel=1e-9)
    aligned, T_align, scale = metrics.align(est, ref, mode)
    np.testing.assert_allclose(aligned, ref, atol=1e-9)
    np.testing.assert_allclose(est[:, :3, 3] @ T_align[:3, :3].T + T_align[:3, 3], ref[:, :3, 3], atol=1e-9)


def test_ate_none_and_scale_modes():
    rng = np.random.default_rng(3)
    ref = _wiggly_path(100, rng)
    est = ref.copy()
    est[:, :3, 3] += [0.3, 0.0, -0.4]
    assert metrics.ate(est, ref, align="none")["rmse"] == pytest.approx(0.5, abs=1e-12)
    est2 = ref.copy()
    est2[:, :3, 3] *= 2.0
    assert metrics.ate(est2, ref, align="scale")["rmse"] < 1e-9
    with pytest.raises(DataError, match="unknown alignment"):
        metrics.ate(est, ref, align="affine")


def test_inputs_are_checked():
    rng = np.random.default_rng(4)
    P = _wiggly_path(10, rng)
    with pytest.raises(DataError, match=r"\[S, 4, 4\]"):
        metrics.ate(P, P[:5])
    with pytest.raises(DataError, match="empty"):
        metrics.ate(P[:0], P[:0])
    with pytest.raises(DataError, match="empty"):
        metrics.error_stats([])
    a = Trajectory(np.arange(10.0), P)
    b = Trajectory(np.arange(10.0) + 100.0, P)
    with pytest.raises(DataError, match="no matching timestamps"):
        metrics.ate(a, b)


# --- association -------------------------------------------------------------------------------

def test_associate_picks_nearest_within_max_diff():
    t_ref = np.arange(0.0, 10.0, 0.1)
    t_est = np.array([0.004, 0.5, 0.549, 3.0, 20.0, 9.9049])
    i_est, i_ref = metrics.associate(t_est, t_ref, max_diff=0.01)
    assert i_est.tolist() == [0, 1, 3, 5]
    assert i_ref.tolist() == [0, 5, 30, 99]
    i_est, i_ref = metrics.associate(t_est - 1.0, t_ref, max_diff=0.01, offset=1.0)
    assert i_est.tolist() == [0, 1, 3, 5]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=40, unique=True),
       st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=40, unique=True),
       st.floats(0.001, 5.0))
def test_associate_pairs_are_nearest_and_close(a, b, max_diff):
    t_est, t_ref = np.sort(a), np.sort(b)
    try:
        i_est, i_ref = metrics.associate(t_est, t_ref, max_diff)
    except DataError:
        short, long_ = (t_est, t_ref) if len(t_est) <= len(t_ref) else (t_ref, t_est)
        assert np.min(np.abs(short[:, None] - long_[None, :])) > max_diff
        return
    assert np.all(np.abs(t_est[i_est] - t_ref[i_ref]) <= max_diff)
    short_is_est = len(t_est) <= len(t_ref)
    i_s, i_l = (i_est, i_ref) if short_is_est else (i_ref, i_est)
    s, lg = (t_est, t_ref) if short_is_est else (t_ref, t_est)
    assert np.all(np.diff(i_s) > 0)  # each stamp of the shorter one at most once
    np.testing.assert_allclose(np.abs(s[i_s] - lg[i_l]), np.min(np.abs(s[i_s, None] - lg[None, :]), axis=1))


# --- properties --------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(5, 80), st.floats(0.0, 0.5))
def test_alignment_order_and_rpe_invariance(seed, n, noise):
    rng = np.random.default_rng(seed)
    ref = _wiggly_path(n, rng)
    est = _random_T(rng) @ ref
    est[:, :3, 3] += rng.normal(0, noise, (n, 3))
    # Sim(3) fits at least as well as SE(3), which fits at least as well as nothing
    e_none = metrics.ate(est, ref, align="none")["rmse"]
    e_se3 = metrics.ate(est, ref, align="se3")["rmse"]
    e_sim3 = metrics.ate(est, ref, align="sim3")["rmse"]
    assert e_sim3 <= e_se3 + 1e-9 and e_se3 <= e_none + 1e-9
    # RPE does not see a rigid change of the estimate's world frame
    T = _random_T(rng)
    for rot in (False, True):
        a = metrics.rpe(est, ref, 1, "frames", rot=rot)
        b = metrics.rpe(T @ est, ref, 1, "frames", rot=rot)
        assert a["rmse"] == pytest.approx(b["rmse"], abs=1e-7)


def test_rpe_pair_counts_and_known_error():
    rng = np.random.default_rng(5)
    ref = _wiggly_path(101, rng)
    assert metrics.rpe(ref, ref, 1)["rmse"] < 1e-12
    assert metrics.rpe(ref, ref, 10)["n"] == 10
    assert metrics.rpe(ref, ref, 10, all_pairs=True)["n"] == 91
    # a constant 2 cm bias on every relative step of x: E is a pure 2 cm translation
    step = make_T(np.eye(3), [0.02, 0.0, 0.0])
    rel = invert(ref[:-1]) @ ref[1:] @ step
    est = np.concatenate([ref[:1], np.zeros((100, 4, 4))])
    for k in range(100):  # integrating 100 poses (not points)
        est[k + 1] = est[k] @ rel[k]
    r = metrics.rpe(est, ref, 1)
    assert r["rmse"] == pytest.approx(0.02, abs=1e-9) and r["max"] == pytest.approx(0.02, abs=1e-9)
    assert metrics.rpe(est, ref, 1, rot=True)["max"] < 1e-6


def test_rpe_bad_arguments():
    P = _wiggly_path(10, np.random.default_rng(6))
    with pytest.raises(DataError, match="positive integer"):
        metrics.rpe(P, P, 0)
    with pytest.raises(DataError, match="positive integer"):
        metrics.rpe(P, P, 1.5)
    with pytest.raises(DataError, match="unit"):
        metrics.rpe(P, P, 1, "seconds")
    with pytest.raises(DataError, match="no pose pairs"):
        metrics.rpe(P, P, 1000.0, "m")


# --- KITTI devkit ------------------------------------------------------------------------------

def _devkit_reference(P, Q, lengths, step=10):
    """Literal transcription of evaluate_odometry.cpp's calcSequenceErrors (loops on purpose)."""
    dist = [0.0]
    for k in range(1, len(Q)):
        dist.append(dist[-1] + float(np.linalg.norm(Q[k, :3, 3] - Q[k - 1, :3, 3])))
    t_err, r_err = [], []
    for first in range(0, len(Q), step):
        for L in lengths:
            last = next((k for k in range(first, len(dist)) if dist[k] > dist[first] + L), -1)
            if last == -1:
                continue
            dq = np.linalg.inv(Q[first]) @ Q[last]
            dp = np.linalg.inv(P[first]) @ P[last]
            E = np.linalg.inv(dp) @ dq
            r_err.append(math.acos(max(min(0.5 * (np.trace(E[:3, :3]) - 1.0), 1.0), -1.0)) / L)
            t_err.append(float(np.linalg.norm(E[:3, 3])) / L)
    return 100 * np.mean(t_err), np.degrees(np.mean(r_err)) * 100


def test_kitti_errors_match_devkit_loop():
    rng = np.random.default_rng(7)
    ref = _wiggly_path(400, rng, step=1.2)
    drift = Rotation.from_rotvec(np.outer(np.arange(400), [0, 0, 2e-4])).as_matrix()
    est = ref.copy()
    est[:, :3, :3] = drift @ ref[:, :3, :3]
    est[:, :3, 3] = 1.01 * ref[:, :3, 3] + rng.normal(0, 0.05, (400, 3))
    lengths = (50.0, 100.0, 200.0)
    k = metrics.kitti_errors(est, ref, lengths=lengths)
    t_ref, r_ref = _devkit_reference(est, ref, lengths)
    assert k["trans_pct"] == pytest.approx(t_ref, rel=1e-9)
    assert k["rot_deg_per_100m"] == pytest.approx(r_ref, rel=1e-9)


def test_kitti_errors_scale_drift_and_short_paths():
    rng = np.random.default_rng(8)
    ref = _wiggly_path(60, rng)  # ~59 m: shorter than the 100 m segments
    est = ref.copy()
    est[:, :3, 3] *= 1.02
    k = metrics.kitti_errors(est, ref)
    assert k["lengths_m"][0] == pytest.approx(0.1 * ref_len(ref)) and len(k["lengths_m"]) == 8
    # error 2 % of the chord; a segment ends at the first frame past L, so chord/L is in [~1, 1 + 1 m / L)
    chord_max = 1.0 + 1.0 / k["lengths_m"][0]
    assert 1.9 < k["trans_pct"] < 2.0 * chord_max
    assert k["rot_deg_per_100m"] == pytest.approx(0.0, abs=1e-5)
    assert metrics.kitti_errors(ref, ref)["trans_pct"] == pytest.approx(0.0, abs=1e-9)
    still = np.tile(np.eye(4), (20, 1, 1))
    assert math.isnan(metrics.kitti_errors(still, still)["trans_pct"])


def ref_len(P):
    return float(np.linalg.norm(np.diff(P[:, :3, 3], axis=0), axis=1).sum())


# --- depth and segmentation --------------------------------------------------------------------

def test_depth_errors_hand_checked():
    pred = np.array([[1.0, 2.0], [3.0, 0.0]], dtype=np.float32)
    gt = np.array([[1.0, 1.0], [4.0, 2.0]], dtype=np.float32)
    d = metrics.depth_errors(pred, gt)
    assert d["n"] == 3 and d["coverage"] == pytest.approx(0.75)
    assert d["absrel"] == pytest.approx((0 + 1 + 0.25) / 3)
    assert d["sqrel"] == pytest.approx((0 + 1 + 0.25) / 3)
    assert d["rmse"] == pytest.approx(math.sqrt(2 / 3))
    assert d["delta1"] == pytest.approx(1 / 3)  # ratios 1, 2, 4/3: only the first is below 1.25
    assert metrics.depth_errors(pred, gt, max_depth=3.0)["n"] == 2
    assert math.isnan(metrics.depth_errors(np.zeros((2, 2)), gt)["rmse"])
    with pytest.raises(DataError, match="shape"):
        metrics.depth_errors(pred, gt[:1])


def test_iou_hand_checked():
    pred = np.array([0, 1, 1, 2, 2, 2])
    gt = np.array([0, 1, 2, 2, 2, 1])
    per, miou = metrics.iou(pred, gt, 4)
    np.testing.assert_allclose(per[:3], [1.0, 1 / 3, 0.5])
    assert math.isnan(per[3])  # class 3 in neither
    assert miou == pytest.approx((1 + 1 / 3 + 0.5) / 3)
    per, miou = metrics.iou(pred, gt, 4, ignore_index=0)
    assert math.isnan(per[0]) and miou == pytest.approx((1 / 3 + 0.5) / 2)
    with pytest.raises(DataError, match="size"):
        metrics.iou(pred, gt[:3], 4)


def test_binary_iou():
    assert metrics.binary_iou([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(1 / 3)
    assert metrics.binary_iou(np.ones((3, 3)), np.ones((3, 3))) == 1.0
    assert math.isnan(metrics.binary_iou(np.zeros(4), np.zeros(4)))
    with pytest.raises(DataError, match="shape"):
        metrics.binary_iou(np.zeros(4), np.zeros(5))
