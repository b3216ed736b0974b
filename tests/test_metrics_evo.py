"""Parity of fuse4d.metrics with evo 1.38 on the real trajectories of evo's test data.

evo is run through its Python API on the same files; ATE (se3, sim3, none, scale) and RPE
(delta 1 frame; delta 10 m on KITTI 00, consecutive and all pairs) must agree to 1e-6 and
the SOURCE.md reference numbers must come out.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

evo_fi = pytest.importorskip("evo.tools.file_interface")
from evo.core import filters, geometry, lie_algebra, metrics as evo_metrics, sync  # noqa: E402
from evo.core.units import Unit  # noqa: E402

from fuse4d import metrics  # noqa: E402
from fuse4d.data.trajectory import read_trajectory  # noqa: E402

# (name, evo reader format, reference file, estimate file, evo_ape -a rmse from SOURCE.md)
CASES = {
    "kitti00_orb": ("kitti", "KITTI_00_gt.txt", "KITTI_00_ORB.txt", 1.303450),
    "fr2_desk_orb": ("tum", "fr2_desk_groundtruth.txt", "fr2_desk_ORB.txt", 0.008119),
    "v102_euroc": ("euroc", "V102_groundtruth.csv", "V102.txt", 0.091727),
    "v101_openvins": ("tum", "V101_gt.txt", "V101_openvins.txt", 0.052102),
    "fr1_xyz_rgbdslam": ("tum", "freiburg1_xyz-groundtruth.txt", "freiburg1_xyz-rgbdslam.txt", 0.013470),
}
TOL = 1e-6
STATS = ("rmse", "mean", "max")


@pytest.fixture
def evo_dir(shared) -> Path:
    return shared("evo_trajectories", "test", "data")


@lru_cache(maxsize=None)
def _load(folder: str, case: str):
    """(evo ref, evo est) synchronised as evo_ape does, and our (est poses, ref poses) paired."""
    fmt, ref_name, est_name, _ = CASES[case]
    d = Path(folder)
    if fmt == "kitti":
        e_ref, e_est = evo_fi.read_kitti_poses_file(d / ref_name), evo_fi.read_kitti_poses_file(d / est_name)
        ours = metrics.paired_poses(read_trajectory(d / est_name).poses, read_trajectory(d / ref_name).poses)
    else:
        read_ref = evo_fi.read_euroc_csv_trajectory if fmt == "euroc" else evo_fi.read_tum_trajectory_file
        e_ref, e_est = read_ref(d / ref_name), evo_fi.read_tum_trajectory_file(d / est_name)
        e_ref, e_est = sync.associate_trajectories(e_ref, e_est, max_diff=0.01)
        ours = metrics.paired_poses(read_trajectory(d / est_name, "tum"), read_trajectory(d / ref_name, fmt))
    return e_ref, e_est, ours


def _assert_stats(ours: dict, evo_stats: dict, keys=STATS, tol=TOL) -> None:
    for k in keys:
        assert ours[k] == pytest.approx(evo_stats[k], abs=tol), k


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("mode", ["se3", "sim3", "none", "scale"])
def test_ate_matches_evo(evo_dir, case, mode):
    e_ref, e_est, (P, Q) = _load(str(evo_dir), case)
    assert len(P) == e_est.num_poses == e_ref.num_poses
    e_al = copy.deepcopy(e_est)
    if mode != "none":
        e_al.align(e_ref, correct_scale=mode in ("sim3", "scale"), correct_only_scale=mode == "scale")
    ape = evo_metrics.APE(evo_metrics.PoseRelation.translation_part)
    ape.process_data((e_ref, e_al))
    ours = metrics.ate(P, Q, align=mode)
    _assert_stats(ours, ape.get_all_statistics(), ("rmse", "mean", "median", "std", "min", "max"))
    if mode == "se3":  # the numbers SOURCE.md recorded from the evo_ape command line
        assert ours["rmse"] == pytest.approx(CASES[case][3], abs=5e-7)


@pytest.mark.parametrize("case", list(CASES))
def test_rpe_one_frame_matches_evo(evo_dir, case):
    e_ref, e_est, (P, Q) = _load(str(evo_dir), case)
    rpe_t = evo_metrics.RPE(evo_metrics.PoseRelation.translation_part, 1, Unit.frames)
    rpe_t.process_data((e_ref, e_est))
    ours_t = metrics.rpe(P, Q, 1, "frames")
    assert ours_t["n"] == len(rpe_t.error) == len(P) - 1
    _assert_stats(ours_t, rpe_t.get_all_statistics())
    if len(P) < 1000:  # evo's rotation angle is a scipy call per pair (~0.25 ms): run it where it is cheap
        rpe_r = evo_metrics.RPE(evo_metrics.PoseRelation.rotation_angle_deg, 1, Unit.frames)
        rpe_r.process_data((e_ref, e_est))
        evo_rot = rpe_r.error
    else:  # evo's own error poses E and its angle function, batched
        E = np.asarray(rpe_t.E)
        evo_rot = np.rad2deg(np.linalg.norm(lie_algebra.sst_rotation_from_matrix(E[:, :3, :3]).as_rotvec(), axis=1))
    ours_r = metrics.rpe(P, Q, 1, "frames", rot=True)
    evo_r = {"rmse": np.sqrt(np.mean(evo_rot ** 2)), "mean": np.mean(evo_rot), "max": np.max(evo_rot)}
    _assert_stats(ours_r, evo_r)


@pytest.mark.parametrize("all_pairs", [False, True])
def test_rpe_10m_kitti_matches_evo(evo_dir, all_pairs):
    e_ref, e_est, (P, Q) = _load(str(evo_dir), "kitti00_orb")
    for rel, rot in ((evo_metrics.PoseRelation.translation_part, False),
                     (evo_metrics.PoseRelation.rotation_angle_deg, True)):
        if rot and all_pairs:
            continue  # 4,500 scipy calls in evo; the pair selection is what all_pairs changes
        r = evo_metrics.RPE(rel, 10.0, Unit.meters, all_pairs=all_pairs)
        r.process_data((e_ref, e_est))
        ours = metrics.rpe(P, Q, 10.0, "m", rot=rot, all_pairs=all_pairs)
        assert ours["n"] == len(r.error)
        _assert_stats(ours, r.get_all_statistics())
    if not all_pairs:  # SOURCE.md: evo_rpe kitti ... --delta 10 --delta_unit m gives rmse 0.236763
        assert metrics.rpe(P, Q, 10.0, "m")["rmse"] == pytest.approx(0.236763, abs=5e-7)


@pytest.mark.parametrize("delta,all_pairs", [(1.0, False), (1.0, True), (0.25, False), (3.0, True)])
def test_pairs_by_path_match_evo_filters(evo_dir, delta, all_pairs):
    _, _, (P, _) = _load(str(evo_dir), "v102_euroc")
    expected = filters.filter_pairs_by_path(list(P), delta, delta * 0.1, all_pairs)
    i, j = metrics._pairs_by_path(P[:, :3, 3], delta, delta * 0.1, all_pairs)
    assert list(zip(i.tolist(), j.tolist())) == expected


def test_association_matches_evo(evo_dir):
    d = evo_dir
    ref = read_trajectory(d / "fr2_desk_groundtruth.txt")
    est = read_trajectory(d / "fr2_desk_ORB.txt")
    evo_ref = evo_fi.read_tum_trajectory_file(d / "fr2_desk_groundtruth.txt")
    evo_est = evo_fi.read_tum_trajectory_file(d / "fr2_desk_ORB.txt")
    for offset in (0.0, 0.013, -0.2):
        i_est, i_ref = metrics.associate(est.t, ref.t, 0.01, offset)
        e_ref, e_est = sync.associate_trajectories(evo_ref, evo_est, max_diff=0.01, offset_2=offset)
        np.testing.assert_array_equal(est.t[i_est], e_est.timestamps)
        np.testing.assert_array_equal(ref.t[i_ref], e_ref.timestamps)
    # unsorted stamps take evo's linear-search branch
    rng = np.random.default_rng(0)
    t_long = rng.permutation(ref.t[:3000])
    t_short = est.t[:300]
    a = sync.matching_time_indices(t_short, t_long, 0.01)
    b = metrics.associate(t_short, t_long, 0.01)
    assert a[0] == b[0].tolist() and a[1] == b[1].tolist()


def test_umeyama_matches_evo(evo_dir):
    _, _, (P, Q) = _load(str(evo_dir), "fr1_xyz_rgbdslam")
    for with_scale in (False, True):
        r0, t0, s0 = geometry.umeyama_alignment(P[:, :3, 3].T, Q[:, :3, 3].T, with_scale)
        r1, t1, s1 = metrics.umeyama_alignment(P[:, :3, 3].T, Q[:, :3, 3].T, with_scale)
        np.testing.assert_allclose(r1, r0, atol=1e-12)
        np.testing.assert_allclose(t1, t0, atol=1e-12)
        assert s1 == pytest.approx(s0, abs=1e-12)


def test_kitti_devkit_numbers(evo_dir):
    """ORB-SLAM2 (stereo) on KITTI 00: its paper reports 0.70 % and 0.25 deg/100 m."""
    _, _, (P, Q) = _load(str(evo_dir), "kitti00_orb")
    k = metrics.kitti_errors(P, Q)
    assert k["lengths_m"] == metrics.KITTI_LENGTHS
    assert k["trans_pct"] == pytest.approx(0.70, abs=0.005)
    assert k["rot_deg_per_100m"] == pytest.approx(0.25, abs=0.005)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.5, 1.0, 2.0]), min_size=2, max_size=60),
       st.sampled_from([0.25, 0.5, 1.0, 3.0]), st.booleans())
def test_pairs_by_path_property_vs_evo(steps, delta, all_pairs):
    """Random step lengths, with stops (repeated positions) and exact ties at the delta."""
    positions = np.zeros((len(steps) + 1, 3))
    positions[1:, 0] = np.cumsum(steps)
    poses = [np.eye(4) for _ in positions]
    for p, x in zip(poses, positions):
        p[:3, 3] = x
    try:
        expected = filters.filter_pairs_by_path(poses, delta, delta * 0.1, all_pairs)
    except ValueError:  # evo's argmin on an empty slice
        return
    i, j = metrics._pairs_by_path(positions, delta, delta * 0.1, all_pairs)
    assert list(zip(i.tolist(), j.tolist())) == expected
