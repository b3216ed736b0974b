"""KITTI raw and KITTI odometry readers on the real sample (../shared/data/kitti_raw_2011_09_26)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fuse4d import load_sequence
from fuse4d.data.readers import _common
from fuse4d.data.registry import detect_format
from fuse4d.errors import DataError
from fuse4d.geometry import invert
from fuse4d.data.trajectory import read_trajectory

DAY = ("kitti_raw_2011_09_26", "2011_09_26")


@pytest.fixture
def day(shared) -> Path:
    return shared(*DAY)


@pytest.fixture
def scan_reads(monkeypatch) -> list:
    """Records every path passed to ``_common.read_scan``."""
    calls: list = []
    real = _common.read_scan

    def counting(path):
        calls.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(_common, "read_scan", counting)
    return calls


def _write_odometry(root: Path, day: Path, n: int = 6, gt_rows: np.ndarray | None = None) -> Path:
    """A KITTI odometry sequence 00 built from the raw sample: links to its scans/images, calib from its files."""
    seq = root / "sequences" / "00"
    drive = day / "2011_09_26_drive_unknown_sync"
    for sub, src, ext in (("velodyne", "velodyne_points", ".bin"), ("image_2", "image_02", ".png")):
        (seq / sub).mkdir(parents=True)
        for i in range(n):
            (seq / sub / f"{i:06d}{ext}").symlink_to(drive / src / "data" / f"{i:010d}{ext}")
    cam = _common.parse_kitti_calib(day / "calib_cam_to_cam.txt")
    velo = _common.parse_kitti_calib(day / "calib_velo_to_cam.txt")
    R_rect = cam["R_rect_00"].reshape(3, 3)
    Tr = R_rect @ np.hstack([velo["R"].reshape(3, 3), velo["T"].reshape(3, 1)])
    lines = [f"P{k}: " + " ".join(f"{v:.12e}" for v in cam[f"P_rect_0{k}"]) for k in range(4)]
    lines.append("Tr: " + " ".join(f"{v:.12e}" for v in Tr.ravel()))
    (seq / "calib.txt").write_text("\n".join(lines) + "\n")
    (seq / "times.txt").write_text("".join(f"{0.1 * i:.6e}\n" for i in range(n)))
    (seq / "groundtruth.txt").write_text("# fuse4d sidecar, must be ignored\n")
    (seq / "calib.yaml").write_text("K: [1, 2]\n")
    if gt_rows is not None:
        (root / "poses").mkdir()
        np.savetxt(root / "poses" / "00.txt", gt_rows[:n, :12])
    return seq


# -- KITTI raw -----------------------------------------------------------------
def test_raw_drive_with_scans_and_images(day, scan_reads):
    drive = day / "2011_09_26_drive_unknown_sync"
    assert detect_format(drive) == "kitti_raw"
    seq = load_sequence(drive)
    assert len(seq) == 6 and seq.sensors == {"camera", "lidar"}
    assert scan_reads == []  # opening reads no scan
    np.testing.assert_allclose(seq.timestamps, np.arange(6) * 0.1)
    assert seq.gt_poses is None and seq.imu is None
    assert any("no timestamps" in p for p in seq.metadata["problems"])
    f = seq[3]
    assert scan_reads == ["0000000003.bin"]
    assert f.points.dtype == np.float32 and 113_000 <= len(f.points) <= 114_500
    assert len(f.points) == (drive / "velodyne_points/data/0000000003.bin").stat().st_size // 16
    assert f.image.shape == (375, 1242, 3) and f.image.dtype == np.uint8
    assert f.flags == {"no_timestamp", "no_pose"} and f.point_time is None
    assert seq.calibration.image_size == (1242, 375) and seq.calibration.lidar_beams == 64
    # slicing and windows stay lazy and index into the full log
    sub = seq[2:5]
    assert len(sub) == 3 and list(sub.indices) == [2, 3, 4]
    assert [len(w) for w in seq.windows(4, 2)] == [4, 4]
    scan_reads.clear()
    assert sub[0].index == 2 and scan_reads == ["0000000002.bin"]


def test_raw_calibration_geometry(day):
    cal = load_sequence(day, drive="unknown").calibration
    T_lidar_cam = invert(cal.T_body_lidar) @ cal.T_body_cam
    # KITTI rig: colour camera 2 sits ~0.27 m ahead of the Velodyne, ~0.06 m left, ~0.08 m lower
    np.testing.assert_allclose(T_lidar_cam[:3, 3], [0.27, 0.06, -0.075], atol=0.02)
    # optical axis looks forward (body x), image x points right (−body y)
    np.testing.assert_allclose(cal.T_body_cam[:3, 2], [1, 0, 0], atol=0.02)
    np.testing.assert_allclose(cal.T_body_cam[:3, 0], [0, -1, 0], atol=0.02)
    # the Velodyne sits ~0.81 m ahead of and ~0.80 m above the OXTS unit
    np.testing.assert_allclose(cal.T_body_lidar[:3, 3], [0.81, -0.31, 0.80], atol=0.01)
    assert cal.K[0, 0] == pytest.approx(721.5377)


def test_raw_several_drives_need_a_choice(shared):
    root = shared("kitti_raw_2011_09_26")
    assert detect_format(root) == "kitti_raw"
    with pytest.raises(DataError, match=r"pick one with --drive \(drive=...\)"):
        load_sequence(root)
    assert len(load_sequence(root, drive="0001")) == 108


def test_raw_timestamps_and_single_oxts_record(day):
    seq = load_sequence(day / "2011_09_26_drive_0001_sync")
    assert len(seq) == 108 and seq.sensors == set()  # no images or scans, one OXTS record: no IMU stream
    assert seq.imu is None and any("only 1 OXTS record" in p for p in seq.metadata["problems"])
    assert seq.timestamps[0] == pytest.approx(1317042145.951199337, abs=1e-6)  # 2011-09-26 13:02:25.951 UTC
    assert np.all(np.diff(seq.timestamps) > 0.09) and np.all(np.diff(seq.timestamps) < 0.11)
    gt = seq.gt_poses
    assert np.isfinite(gt[0]).all() and not np.isfinite(gt[1:, 0, 0]).any()
    # gravity-aligned world: origin at the first pose, its yaw removed, roll/pitch kept
    roll, pitch = 0.035752, 0.00903
    np.testing.assert_allclose(gt[0][:3, 3], 0, atol=1e-9)
    np.testing.assert_allclose(gt[0][2, :3], [-np.sin(pitch), np.sin(roll) * np.cos(pitch),
                                              np.cos(roll) * np.cos(pitch)], atol=1e-9)
    assert gt[0][1, 0] == pytest.approx(0, abs=1e-12)
    assert seq[0].flags == set() and seq[5].flags == {"no_pose"}
    assert seq.metadata["ground_truth"] == ["poses"]
    json.dumps(seq.metadata)  # JSON-safe, so the zarr log can store it


def _oxts_drive(tmp_path: Path, day: Path, records: list[np.ndarray]) -> Path:
    new_day = tmp_path / "2011_09_26"
    new_day.mkdir(parents=True)
    for f in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt", "calib_imu_to_velo.txt"):
        shutil.copy(day / f, new_day / f)
    drive = new_day / "2011_09_26_drive_0099_sync"
    (drive / "oxts" / "data").mkdir(parents=True)
    for i, r in enumerate(records):
        (drive / "oxts" / "data" / f"{i:010d}.txt").write_text(" ".join(f"{v:.12g}" for v in r))
    stamps = [f"2011-09-26 13:02:25.{i:01d}00000000" for i in range(len(records))]
    (drive / "oxts" / "timestamps.txt").write_text("\n".join(stamps) + "\n")
    return drive


def test_raw_oxts_imu_and_mercator_poses(tmp_path, day):
    rec = np.array((day / "2011_09_26_drive_0001_sync/oxts/data/0000000000.txt").read_text().split(), float)
    # the real record: ax..az are body-frame (tilted with roll/pitch), af..au level-frame
    g = np.linalg.norm(rec[14:17])
    assert rec[12] - rec[15] == pytest.approx(g * np.sin(rec[3]), abs=0.03)
    assert rec[11] - rec[14] == pytest.approx(-g * np.sin(rec[4]), abs=0.03)
    # three records heading north (yaw = 90°), 1e-5° of latitude apart (≈ 1.113 m)
    recs = []
    for k in range(3):
        r = rec.copy()
        r[0] += k * 1e-5
        r[3:6] = [0.0, 0.0, np.pi / 2]
        recs.append(r)
    seq = load_sequence(_oxts_drive(tmp_path, day, recs))
    assert seq.sensors == {"imu"} and len(seq.imu) == 3 and seq.imu.rate_hz == pytest.approx(10.0)
    np.testing.assert_allclose(seq.imu.acc[0], rec[11:14])
    np.testing.assert_allclose(seq.imu.gyro[0], rec[17:20])
    # yaw of the first pose removed: driving north becomes driving along world +x
    step = 6378137.0 * np.deg2rad(1e-5)
    np.testing.assert_allclose(seq.gt_poses[:, :3, 3], [[0, 0, 0], [step, 0, 0], [2 * step, 0, 0]], atol=1e-3)
    np.testing.assert_allclose(seq.gt_poses[1][:3, :3], np.eye(3), atol=1e-12)
    level = load_sequence(_oxts_drive(tmp_path / "b", day, recs), oxts_axes="level")
    np.testing.assert_allclose(level.imu.acc[0], rec[14:17])
    east = load_sequence(_oxts_drive(tmp_path / "c", day, recs), rebase="none")
    assert east.gt_poses[2, 1, 3] - east.gt_poses[0, 1, 3] == pytest.approx(2 * step, rel=1e-6)


# -- KITTI odometry ------------------------------------------------------------
def test_odometry_layout_matches_raw_calibration(tmp_path, day, shared, scan_reads):
    gt_file = shared("evo_trajectories", "test", "data", "KITTI_00_gt.txt")
    rows = np.loadtxt(gt_file)
    seq_dir = _write_odometry(tmp_path, day, gt_rows=rows)
    assert detect_format(tmp_path) == "kitti_odometry"
    seq = load_sequence(tmp_path)
    assert seq.metadata["format"] == "kitti_odometry" and seq.sensors == {"camera", "lidar"}
    assert len(seq) == 6 and scan_reads == []
    raw = load_sequence(day / "2011_09_26_drive_unknown_sync")
    # same calibration chain: odometry body (LiDAR) ↔ camera equals raw's LiDAR ↔ camera
    np.testing.assert_allclose(seq.calibration.T_body_cam,
                               invert(raw.calibration.T_body_lidar) @ raw.calibration.T_body_cam, atol=1e-7)
    np.testing.assert_allclose(seq.calibration.K, raw.calibration.K)
    assert seq.calibration.image_size == (1242, 375)
    # ground truth: cam0 poses → LiDAR-frame body poses, frame 0 = identity
    P = read_trajectory(gt_file, "kitti").poses[:6]
    M = _common.parse_kitti_calib(seq_dir / "calib.txt")["Tr"].reshape(3, 4)
    Tr = _common.rigid(M[:, :3], M[:, 3])
    np.testing.assert_allclose(seq.gt_poses, invert(Tr) @ P @ Tr, atol=1e-12)
    np.testing.assert_allclose(seq.gt_poses[0], np.eye(4), atol=1e-6)  # the file's own precision
    # distances travelled are frame-independent
    np.testing.assert_allclose(np.linalg.norm(np.diff(seq.gt_poses[:, :3, 3], axis=0), axis=1),
                               np.linalg.norm(np.diff(P[:, :3, 3], axis=0), axis=1), atol=0.03)
    f, raw4 = seq[4], raw[4]
    assert np.array_equal(f.points, raw4.points) and np.array_equal(f.image, raw4.image)
    assert f.timestamp == pytest.approx(0.4) and f.flags == set()
    assert scan_reads == ["000004.bin", "0000000004.bin"]


def test_odometry_path_variants(tmp_path, day):
    seq_dir = _write_odometry(tmp_path, day, n=3)
    (seq_dir / "poses.txt").write_text("".join("1 0 0 %g 0 1 0 0 0 0 1 0\n" % i for i in range(3)))
    seq = load_sequence(seq_dir)  # a sequence folder directly, poses.txt inside it
    assert detect_format(seq_dir) == "kitti_odometry" and len(seq) == 3
    # camera x translation becomes LiDAR −y (KITTI: cam x right, LiDAR y left)
    assert seq.gt_poses[2, :3, 3] @ [0, -1, 0] == pytest.approx(2.0, abs=0.05)
    assert load_sequence(tmp_path / "sequences", sequence="0").name == "kitti/00"
    shutil.copytree(seq_dir, tmp_path / "sequences" / "01", symlinks=True)
    with pytest.raises(DataError, match="several sequences"):
        load_sequence(tmp_path)
    assert len(load_sequence(tmp_path, sequence="01")) == 3
    with pytest.raises(DataError, match="no sequence '07'"):
        load_sequence(tmp_path, sequence="07")


def test_odometry_empty_scan_is_a_lidar_dropout(tmp_path, day):
    seq_dir = _write_odometry(tmp_path, day, n=3)
    (seq_dir / "velodyne" / "000001.bin").unlink()
    (seq_dir / "velodyne" / "000001.bin").write_bytes(b"")
    seq = load_sequence(tmp_path)
    assert seq[1].points is None and "no_lidar" in seq[1].flags and seq[1].sensors == {"camera"}
    assert seq[2].points.shape[1] == 4
