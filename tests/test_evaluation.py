"""Tests of fuse4d.evaluation: trajectory files, run folders, degradation spans, table output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fuse4d import evaluation
from fuse4d.data.trajectory import read_tum, write_kitti, write_tum
from fuse4d.errors import ConfigError, DataError
from fuse4d.geometry import make_T

KEYS = ("ate_rmse_m", "ate_mean_m", "ate_median_m", "ate_max_m", "rpe_trans_rmse_m", "rpe_rot_rmse_deg",
        "kitti_trans_pct", "kitti_rot_deg_per_100m", "n_poses", "path_length_m", "ate_pct_of_path")


def _path(n=120, seed=0):
    rng = np.random.default_rng(seed)
    yaw = np.cumsum(rng.normal(0, 0.05, n))
    R = Rotation.from_euler("z", yaw[:, None]).as_matrix()
    return make_T(R, np.cumsum(R[:, :, 0] * 0.5, axis=0))


def _offset_world(poses, seed=1):
    rng = np.random.default_rng(seed)
    return make_T(Rotation.random(random_state=rng).as_matrix(), rng.normal(size=3) * 10) @ poses


def test_evaluate_files_tum_transformed_copy(tmp_path):
    ref = _path()
    t = 100.0 + 0.1 * np.arange(len(ref))
    write_tum(tmp_path / "gt.txt", t, ref)
    est = _offset_world(ref)
    est[40:60, :3, 3] += [0.0, 0.0, 0.2]  # lift 20 of 120 estimated poses by 20 cm
    write_tum(tmp_path / "est.txt", t[::2] + 0.004, est[::2])  # half rate, 4 ms late
    m = evaluation.evaluate_files(tmp_path / "est.txt", tmp_path / "gt.txt", align="none")
    assert set(KEYS) <= set(m)
    assert m["n_poses"] == 60 and m["n_est"] == 60 and m["n_ref"] == 120
    assert m["ate_rmse_m"] > 5.0  # unaligned: the world offset
    m = evaluation.evaluate_files(tmp_path / "est.txt", tmp_path / "gt.txt", align="se3")
    assert 0.05 < m["ate_rmse_m"] < 0.2 * math.sqrt(10 / 60) + 1e-6
    assert m["path_length_m"] == pytest.approx(np.linalg.norm(np.diff(ref[::2, :3, 3], axis=0), axis=1).sum())
    assert m["ate_pct_of_path"] == pytest.approx(100 * m["ate_rmse_m"] / m["path_length_m"])
    write_tum(tmp_path / "clean.txt", t, _offset_world(ref))
    m = evaluation.evaluate_files(tmp_path / "clean.txt", tmp_path / "gt.txt")
    assert m["ate_rmse_m"] < 1e-6 and m["rpe_trans_rmse_m"] < 1e-6 and m["kitti_trans_pct"] < 1e-4


def test_evaluate_files_kitti_by_index_and_times(tmp_path):
    ref = _path(200)
    est = ref.copy()
    est[:, :3, 3] *= 1.5  # monocular-like scale
    write_kitti(tmp_path / "gt.txt", ref)
    write_kitti(tmp_path / "est.txt", est)
    m = evaluation.evaluate_files(tmp_path / "est.txt", tmp_path / "gt.txt", align="sim3")
    assert m["n_poses"] == 200 and m["ate_rmse_m"] < 1e-6
    assert m["align_scale"] == pytest.approx(1 / 1.5)
    # a KITTI estimate against a TUM reference of the same length pairs by index
    write_tum(tmp_path / "gt_tum.txt", 5.0 + 0.1 * np.arange(200), ref)
    assert evaluation.evaluate_files(tmp_path / "est.txt", tmp_path / "gt_tum.txt", "sim3")["n_poses"] == 200
    # with a times file it pairs by time: 100 of its stamps fall on the reference's
    np.savetxt(tmp_path / "times.txt", 5.0 + 0.1 * np.arange(100, 300))
    m = evaluation.evaluate_files(tmp_path / "est.txt", tmp_path / "gt_tum.txt", "sim3", est_times=tmp_path / "times.txt")
    assert m["n_poses"] == 100


def test_errors_name_the_file(tmp_path):
    ref = _path(50)
    write_tum(tmp_path / "gt.txt", np.arange(50.0), ref)
    write_kitti(tmp_path / "short.txt", ref[:30])
    with pytest.raises(DataError, match="short.txt.*30 estimated poses but 50 reference poses.*times file"):
        evaluation.evaluate_files(tmp_path / "short.txt", tmp_path / "gt.txt")
    write_tum(tmp_path / "late.txt", 1000.0 + np.arange(50.0), ref)
    with pytest.raises(DataError, match=r"late.txt: found no matching timestamps.*\(reference: .*gt.txt\)"):
        evaluation.evaluate_files(tmp_path / "late.txt", tmp_path / "gt.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(DataError, match="empty.txt: no poses"):
        evaluation.evaluate_files(tmp_path / "empty.txt", tmp_path / "gt.txt")
    with pytest.raises(DataError, match="missing.txt: trajectory file not found"):
        evaluation.evaluate_files(tmp_path / "gt.txt", tmp_path / "missing.txt")
    write_tum(tmp_path / "one.txt", np.array([3.0]), ref[3:4])
    with pytest.raises(DataError, match="one.txt: degenerate"):
        evaluation.evaluate_files(tmp_path / "one.txt", tmp_path / "gt.txt")
    with pytest.raises(ConfigError, match="unknown alignment"):
        evaluation.evaluate_files(tmp_path / "gt.txt", tmp_path / "gt.txt", align="se2")


def _run_dir(tmp_path, with_gt=True):
    ref = _path(100)
    t = 0.1 * np.arange(100)
    est = _offset_world(ref)
    est[30:50, :3, 3] += [0.3, 0.0, 0.0]
    run = tmp_path / "run"
    write_tum(run / "trajectory.txt", t, est)
    if with_gt:
        write_tum(run / "groundtruth.txt", t, ref)
    return run


def test_evaluate_run_and_degradations(tmp_path):
    run = _run_dir(tmp_path)
    base = evaluation.evaluate_run(run)
    assert base == evaluation.evaluate_files(run / "trajectory.txt", run / "groundtruth.txt")
    assert evaluation.evaluate_run(run, align="sim3")["align_scale"] != 1.0
    # frame spans as Sequence.degradations has them (stop exclusive); the run's stamps are 0.1 s apart
    (run / "degradations.json").write_text(json.dumps([
        {"name": "camera_dark", "start": 30, "stop": 50},  # the shifted poses
        {"name": "lidar_loss", "start": 70, "stop": 81},
        {"name": "lidar_loss", "start": 500, "stop": 600},  # past the run's end: adds nothing
        {"name": "imu_burst", "start": 0, "stop": 0},  # empty
        {"name": "by_time", "t_start": 3.0, "t_stop": 4.9},  # seconds, inclusive: also poses 30..49
    ]))
    m = evaluation.evaluate_run(run)
    assert m["n_poses@camera_dark"] == 20 and m["n_poses@lidar_loss"] == 11 and m["n_poses@imu_burst"] == 0
    assert m["ate_rmse_m@camera_dark"] > 3 * m["ate_rmse_m@lidar_loss"]
    assert math.isnan(m["ate_rmse_m@imu_burst"])
    assert m["ate_rmse_m@by_time"] == m["ate_rmse_m@camera_dark"]
    # the span numbers come from the same globally aligned errors as the whole-run ATE
    _, err, i_ref = evaluation.trajectory_errors(read_tum(run / "trajectory.txt"), read_tum(run / "groundtruth.txt"))
    np.testing.assert_array_equal(i_ref, np.arange(100))
    assert m["ate_rmse_m@camera_dark"] == pytest.approx(np.sqrt(np.mean(err[30:50] ** 2)), rel=1e-12)
    assert m["ate_rmse_m"] == pytest.approx(np.sqrt(np.mean(err ** 2)), rel=1e-12)
    (run / "degradations.json").write_text('{"name": "x"}')
    with pytest.raises(DataError, match="degradations.json"):
        evaluation.evaluate_run(run)


def test_evaluate_run_without_ground_truth(tmp_path):
    run = _run_dir(tmp_path, with_gt=False)
    with pytest.raises(DataError, match="run: no ground truth"):
        evaluation.evaluate_run(run)
    with pytest.raises(DataError, match="run folder not found"):
        evaluation.evaluate_run(tmp_path / "nope")


def test_registered_evaluators_merge(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluation, "RUN_EVALUATORS", list(evaluation.RUN_EVALUATORS))
    evaluation.register_run_evaluator(lambda run_dir, align: {"depth_absrel": 0.125})
    m = evaluation.evaluate_run(_run_dir(tmp_path))
    assert m["depth_absrel"] == 0.125 and "ate_rmse_m" in m


def test_format_table():
    text = evaluation.format_table({"ate_rmse_m": 0.0134700888, "n_poses": 785, "path_length_m": 3724.18699,
                                    "kitti_trans_pct": float("nan")})
    lines = text.splitlines()
    assert lines[1].split() == ["metric", "value"]
    assert "ate_rmse_m" in lines[3] and lines[3].endswith("0.0134701")
    assert lines[4].endswith(" 785") and lines[5].endswith("3724.1870") and lines[6].endswith("nan")
    assert len({len(line) for line in lines[1:]}) == 1  # aligned columns


def test_real_files_match_evo_reference_numbers(shared):
    d = shared("evo_trajectories", "test", "data")
    m = evaluation.evaluate_files(d / "KITTI_00_ORB.txt", d / "KITTI_00_gt.txt")
    assert m["ate_rmse_m"] == pytest.approx(1.303450, abs=5e-7)
    assert m["ate_mean_m"] == pytest.approx(1.156997, abs=5e-7)
    assert m["ate_max_m"] == pytest.approx(3.587949, abs=5e-7)
    assert m["kitti_trans_pct"] == pytest.approx(0.70, abs=0.005)
    m = evaluation.evaluate_files(d / "V102.txt", d / "V102_groundtruth.csv")  # EuRoC CSV guessed
    assert m["ate_rmse_m"] == pytest.approx(0.091727, abs=5e-7)
    assert m["ate_mean_m"] == pytest.approx(0.081522, abs=5e-7)
    m = evaluation.evaluate_files(d / "KITTI_00_SPTAM.txt", d / "KITTI_00_gt.txt",
                                  est_times=d / "KITTI_00_gt_times.txt", ref_times=d / "KITTI_00_gt_times.txt")
    assert m["ate_rmse_m"] == pytest.approx(3.738488, abs=5e-7)


def test_two_pose_runs_anchor_the_first_pose(tmp_path):
    """Umeyama needs 3 positions; two-sweep logs (AV2 sample) are compared from a shared first pose."""
    from fuse4d.data.trajectory import write_tum
    from fuse4d.evaluation import evaluate_files
    T = np.tile(np.eye(4), (2, 1, 1))
    T[1, 0, 3] = 1.0
    E = T.copy()
    E[:, 1, 3] += 5.0          # a different world origin
    E[1, 0, 3] = 1.1           # 10 cm too far
    write_tum(tmp_path / "ref.txt", [0.0, 0.1], T)
    write_tum(tmp_path / "est.txt", [0.0, 0.1], E)
    m = evaluate_files(tmp_path / "est.txt", tmp_path / "ref.txt")
    assert m["align_mode"] == "first_pose"
    assert m["ate_max_m"] == pytest.approx(0.1, abs=1e-9)
    assert m["rpe_trans_rmse_m"] == pytest.approx(0.1, abs=1e-9)
