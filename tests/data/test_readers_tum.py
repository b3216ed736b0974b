"""TUM RGB-D reader on a small folder made here plus the real fr2_desk ground truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fuse4d import load_sequence
from fuse4d.data.registry import detect_format
from fuse4d.errors import DataError
from fuse4d.geometry import pose_from_tq

T0 = 1311868164.0  # inside fr2_desk's ground truth (1311868163.87 …)


def _make_tum(root: Path, gt_file: Path | None, n: int = 4, depth_size=(64, 48)) -> Path:
    folder = root / "rgbd_dataset_freiburg2_desk"
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    rng = np.random.default_rng(0)
    rgb_lines, depth_lines = ["# color images"], ["# depth maps"]
    for i in range(n):
        t = T0 + i / 30.0
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"rgb/{t:.6f}.png")
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
        if i == 2:
            continue  # frame 2 has no depth within 0.02 s
        td = t + 0.005
        raw = np.full(depth_size[::-1], 5000 * (i + 1), dtype=np.uint16)
        raw[0, 0] = 0
        Image.fromarray(raw).save(folder / f"depth/{td:.6f}.png")
        depth_lines.append(f"{td:.6f} depth/{td:.6f}.png")
    (folder / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (folder / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    (folder / "accelerometer.txt").write_text(f"# accel\n{T0:.4f} 0.1 -9.8 0.2\n{T0 + 0.1:.4f} 0.1 -9.7 0.2\n")
    if gt_file is not None:
        shutil.copy(gt_file, folder / "groundtruth.txt")
    return folder


@pytest.fixture
def gt_file(shared) -> Path:
    return shared("evo_trajectories", "test", "data", "fr2_desk_groundtruth.txt")


def test_rgbd_frames_depth_and_ground_truth(tmp_path, gt_file):
    folder = _make_tum(tmp_path, gt_file)
    assert detect_format(folder) == "tum_rgbd"
    seq = load_sequence(folder)
    assert len(seq) == 4 and seq.sensors == {"camera"} and seq.imu is None
    assert seq.metadata["camera"] == "freiburg2"
    np.testing.assert_allclose(np.diag(seq.calibration.K), [520.9, 521.0, 1.0])
    assert seq.calibration.image_size == (64, 48)
    assert seq.metadata["accelerometer"]["acc"][1] == [0.1, -9.7, 0.2]  # tilt sensor: metadata only
    json.dumps(seq.metadata)  # JSON-safe, so the zarr log can store it
    f = seq[1]
    assert f.image.shape == (48, 64, 3) and f.depth.dtype == np.float32
    assert f.depth[5, 5] == pytest.approx(2.0) and f.depth[0, 0] == 0.0  # 10000 / 5000 m; 0 = no value
    assert seq[2].depth is None and "no_depth" in seq[2].flags
    # ground truth: the row of groundtruth.txt nearest each rgb stamp
    rows = np.loadtxt(gt_file, comments="#")
    for i in (0, 3):
        k = np.argmin(np.abs(rows[:, 0] - seq.timestamps[i]))
        assert abs(rows[k, 0] - seq.timestamps[i]) < 0.02
        np.testing.assert_allclose(seq.gt_poses[i], pose_from_tq(rows[k, 1:4], rows[k, 4:8]), atol=1e-12)
    assert seq.metadata["ground_truth"] == ["poses"] and seq.has_ground_truth_poses
    assert "groundtruth.txt: 1 repeated timestamps, first pose kept" in seq.metadata["problems"]
    first = load_sequence(folder, rebase="first")
    np.testing.assert_allclose(first.gt_poses[0], np.eye(4), atol=1e-12)


def test_without_ground_truth_and_default_intrinsics(tmp_path):
    folder = _make_tum(tmp_path, None, n=2)
    renamed = folder.rename(tmp_path / "my_scan")
    seq = load_sequence(renamed)
    assert seq.gt_poses is None and seq.metadata["camera"] == "default"
    np.testing.assert_allclose(seq.calibration.K[0], [525.0, 0, 319.5])
    assert seq[0].flags == {"no_pose"}


def test_depth_size_mismatch_names_the_file(tmp_path):
    folder = _make_tum(tmp_path, None, n=2, depth_size=(32, 24))
    seq = load_sequence(folder)  # lazy: opens fine
    with pytest.raises(DataError, match=r"depth/.*\.png: depth size 32x24 differs from image size 64x48"):
        seq[0]


def test_missing_listed_image(tmp_path):
    folder = _make_tum(tmp_path, None, n=2)
    next((folder / "rgb").iterdir()).unlink()
    with pytest.raises(DataError, match="image listed but missing"):
        load_sequence(folder)
