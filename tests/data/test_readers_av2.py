"""Argoverse 2 reader on the real 2-sweep sample in ../shared/data/av2_sensor_val_2sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fuse4d import load_sequence
from fuse4d.data import classes as C
from fuse4d.data.readers import av2
from fuse4d.data.registry import detect_format
from fuse4d.geometry import invert, transform_points

LOG = ("av2_sensor_val_2sweeps", "tests", "unit", "test_data", "sensor", "val",
       "7fab2350-7eaf-3b7e-a39d-6937a4c1bede")


@pytest.fixture
def log(shared) -> Path:
    return shared(*LOG)


def test_sweeps_points_and_labels(log, monkeypatch):
    reads: list = []
    real = av2._read_feather
    monkeypatch.setattr(av2, "_read_feather", lambda p, cols: reads.append(Path(p).name) or real(p, cols))
    assert detect_format(log) == "av2"
    seq = load_sequence(log)
    assert not any(r.startswith("3159") for r in reads)  # no sweep read when opening
    assert len(seq) == 2 and seq.sensors == {"lidar"}
    np.testing.assert_allclose(seq.timestamps, [315966265.259836, 315966265.360032], atol=1e-6)
    np.testing.assert_allclose(seq.calibration.T_body_lidar, np.eye(4))
    assert seq.metadata["ground_truth"] == ["poses", "point_dynamic", "point_semantics", "elevation"]
    assert set(seq.metadata["av2_lidar_extrinsics"]) == {"up_lidar", "down_lidar"}
    json.dumps(seq.metadata)  # JSON-safe, so the zarr log can store it
    f = seq[0]
    assert f.points.shape == (99_229, 4) and f.points.dtype == np.float32
    assert int(f.point_dynamic.sum()) == 2_037
    assert f.point_time.dtype == np.float32 and 0.0 <= f.point_time.min() and f.point_time.max() < 0.11
    df = pd.read_feather(log / "sensors/lidar/315966265259836000.feather")
    np.testing.assert_array_equal(f.points[:, 3], df["intensity"].to_numpy(np.float32))
    sem = np.bincount(f.point_semantics, minlength=C.NUM_CLASSES)
    assert sem[C.CAR] == 8_517 and sem[C.PEDESTRIAN] == 317 + 4 and sem[C.POLE] == 18
    assert sem[C.ROAD] == 0  # unannotated ground stays unlabeled
    g = seq[1]
    assert g.points.shape == (99_466, 4) and g.point_dynamic is None and g.point_semantics is None


def test_poses_rebased_from_city(log):
    seq = load_sequence(log)
    city = pd.read_feather(log / "city_SE3_egovehicle.feather").set_index("timestamp_ns")
    p = city.loc[[315966265259836000, 315966265360032000], ["tx_m", "ty_m", "tz_m"]].to_numpy()
    gt = seq.gt_poses
    np.testing.assert_allclose(gt[0][:3, 3], 0, atol=1e-9)
    assert gt[0][1, 0] == pytest.approx(0, abs=1e-12)  # first yaw removed
    np.testing.assert_allclose(np.linalg.norm(gt[1][:3, 3]), np.linalg.norm(p[1] - p[0]), atol=1e-9)
    assert gt[1][2, 3] == pytest.approx(p[1, 2] - p[0, 2], abs=1e-9)  # heights unchanged by the yaw
    # the relative motion agrees with the dataset's own ego_motion between the sweeps
    # (stored as ego1_SE3_ego0, at float16-like precision)
    ego = np.load(log / "ego_motion.npz")["ego_motion"].astype(np.float64).reshape(4, 4)
    rel = invert(gt[0]) @ gt[1]
    np.testing.assert_allclose(invert(rel), ego, atol=2e-3)
    first = load_sequence(log, rebase="first")
    np.testing.assert_allclose(first.gt_poses[0], np.eye(4), atol=1e-12)
    assert first.gt_maps is None and "Sim2" in first.metadata["av2_ground_height"]


def test_ground_height_matches_ground_points(log):
    seq = load_sequence(log)
    grid = seq.gt_maps["elevation"]
    assert grid["resolution"] == pytest.approx(0.3) and grid["height"].dtype == np.float32
    f = seq[0]
    ground = pd.read_feather(log / "flow_labels.feather")["is_ground_0"].to_numpy()
    pw = transform_points(f.T_world_body, f.points[ground, :3].astype(np.float64))
    ij = np.floor((pw[:, :2] - grid["origin"]) / grid["resolution"]).astype(int)
    dz = pw[:, 2] - grid["height"][ij[:, 0], ij[:, 1]]
    assert np.isnan(dz).mean() < 0.01
    assert np.nanmedian(np.abs(dz)) < 0.06  # LiDAR ground points lie on the raster
    above = ~ground & (f.point_semantics == C.CAR)
    pc = transform_points(f.T_world_body, f.points[above, :3].astype(np.float64))
    ij = np.floor((pc[:, :2] - grid["origin"]) / grid["resolution"]).astype(int)
    assert np.nanmedian(pc[:, 2] - grid["height"][ij[:, 0], ij[:, 1]]) > 0.3  # cars stand above it
