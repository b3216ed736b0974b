"""KITTI raw export of the synthetic world: the KITTI raw reader gets the same log back (OXTS at 10 Hz)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fuse4d.data.export import export_sequence
from fuse4d.data.export_kitti_raw import frame_edges
from fuse4d.data.readers._poses import rebase_poses
from fuse4d.data.registry import detect_format, load_sequence
from fuse4d.errors import DataError

FRAMES = 12


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from fuse4d.data.synthetic import synthesize
    seq = synthesize(2, FRAMES)  # a training seed: this checks the format, not accuracy
    out = tmp_path_factory.mktemp("kr")
    export_sequence(seq, out, "kitti-raw")
    return seq, out, load_sequence(out)


def test_reader_gets_the_log_back(exported):
    seq, out, back = exported
    assert detect_format(out) == "kitti_raw" and back.metadata["problems"] == []
    assert back.sensors == {"camera", "lidar", "imu"} and len(back) == FRAMES
    drive = out / "2011_09_26" / "2011_09_26_drive_0002_sync"
    assert sorted(p.name for p in drive.iterdir()) == ["image_02", "lidar_timing.json", "oxts", "velodyne_points"]
    # times: the log's seconds after midnight of the day (float64 epoch seconds: ~0.2 µs)
    np.testing.assert_allclose(back.timestamps - back.timestamps[0], seq.timestamps - seq.timestamps[0], atol=1e-6)
    for k in ("K", "T_body_cam", "T_body_lidar"):
        np.testing.assert_allclose(getattr(back.calibration, k), getattr(seq.calibration, k), atol=1e-9)
    assert back.calibration.image_size == seq.calibration.image_size
    # OXTS poses (Mercator) read back as the ground truth, re-based the reader's way
    np.testing.assert_allclose(back.gt_poses, rebase_poses(seq.gt_poses, "gravity")[0], atol=1e-6)
    f, g = seq[5], back[5]
    np.testing.assert_array_equal(g.points, f.points[:, :4])
    np.testing.assert_array_equal(g.image, f.image)
    assert g.point_time is None  # KITTI scans carry no per-point time: the timing model restores it
    timing = json.loads((drive / "lidar_timing.json").read_text())
    assert timing == back.metadata["lidar_timing"] and timing["fit_rmse_s"] < 1e-4


def test_oxts_imu_is_the_log_imu_at_10_hz(exported):
    seq, _, back = exported
    imu = back.imu
    assert len(imu) == FRAMES and np.allclose(np.diff(imu.t), 0.1, atol=1e-6)
    edges = frame_edges(seq.timestamps)
    assert np.allclose(np.diff(edges), 0.1)
    for k in (0, 6, FRAMES - 1):  # each record averages the 200 Hz stream over its frame's interval
        w = (seq.imu.t > edges[k]) & (seq.imu.t <= edges[k + 1])
        assert w.sum() >= 10
        np.testing.assert_allclose(imu.acc[k], seq.imu.acc[w].mean(0), atol=1e-9)
        np.testing.assert_allclose(imu.gyro[k], seq.imu.gyro[w].mean(0), atol=1e-12)
    assert abs(np.linalg.norm(imu.acc, axis=1).mean() - 9.81) < 0.5  # gravity included, body axes


def test_existing_drive_is_not_overwritten(exported, tmp_path):
    seq, out, _ = exported
    with pytest.raises(DataError, match="already exists"):
        export_sequence(seq, out, "kitti-raw")
