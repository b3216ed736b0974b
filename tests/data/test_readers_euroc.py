"""EuRoC reader on the real samples in ../shared/data/euroc_kimera_vio_tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fuse4d import load_sequence
from fuse4d.data.readers import _common
from fuse4d.data.registry import detect_format
from fuse4d.geometry import rotation_angle

BASE = ("euroc_kimera_vio_tests", "tests", "data")


@pytest.fixture
def micro(shared) -> Path:
    return shared(*BASE, "MicroEurocDataset")


@pytest.fixture
def imu_gt(shared) -> Path:
    return shared(*BASE, "ForOnlineAlignment", "real_data")


def test_camera_imu_recording(micro, monkeypatch):
    reads: list = []
    real = _common.read_rgb
    monkeypatch.setattr(_common, "read_rgb", lambda p, size=None: reads.append(Path(p).name) or real(p, size))
    assert detect_format(micro) == "euroc"
    seq = load_sequence(micro)
    assert reads == [] and len(seq) == 10 and seq.sensors == {"camera", "imu"}
    assert seq.timestamps[0] == pytest.approx(1403715273.262142976, abs=1e-6)
    np.testing.assert_allclose(np.diff(seq.timestamps), 0.05, atol=1e-3)
    assert len(seq.imu) == 91 and seq.imu.rate_hz == pytest.approx(200.0, rel=1e-3)
    f = seq[1]
    assert reads == ["1403715273312143104.png"]
    assert f.image.shape == (480, 752, 3) and f.image.dtype == np.uint8
    assert np.array_equal(f.image[..., 0], f.image[..., 2])  # grey repeated into RGB
    assert len(f.imu) == 10 and np.all(f.imu.t > seq.timestamps[0]) and f.imu.t[-1] <= f.timestamp
    assert f.flags == {"no_pose"} and seq.gt_poses is None  # this subset ships no ground-truth CSV
    cal = seq.calibration
    assert cal.image_size == (752, 480)
    np.testing.assert_allclose(np.diag(cal.K), [458.654, 457.296, 1.0])
    np.testing.assert_allclose(cal.T_body_cam[:3, 3], [-0.0216401454975, -0.064676986768, 0.00981073058949])
    assert cal.T_body_cam[0, 1] == pytest.approx(-0.999880929698, abs=1e-6)
    assert cal.imu_noise["gyro_noise"] == pytest.approx(1.6968e-4) and cal.imu_noise["acc_walk"] == 3e-3
    assert seq.metadata["distortion"]["model"] == "radial-tangential"
    assert seq.metadata["distortion"]["coefficients"][0] == pytest.approx(-0.28340811)
    json.dumps(seq.metadata)  # JSON-safe, so the zarr log can store it


def test_imu_and_ground_truth_only(imu_gt):
    seq = load_sequence(imu_gt)
    assert seq.sensors == {"imu"} and seq.calibration.K is None
    assert len(seq.imu) == 7999 and seq.imu.rate_hz == pytest.approx(200.0, rel=1e-3)
    # frames: ground-truth stamps (40 Hz) inside the 40 s IMU span, thinned to 20 Hz
    assert np.median(np.diff(seq.timestamps)) == pytest.approx(0.05, abs=1e-6)
    assert seq.timestamps[0] >= seq.imu.t[0] and seq.timestamps[-1] <= seq.imu.t[-1]
    assert 770 <= len(seq) <= 790
    assert any("limited to the IMU span" in p for p in seq.metadata["problems"])
    gt = seq.gt_poses
    assert np.isfinite(gt).all() and seq.has_ground_truth_poses
    np.testing.assert_allclose(gt[0][:3, 3], 0, atol=1e-12)
    # the re-based world is gravity-aligned: the (stationary) accelerometer points up
    i = np.searchsorted(seq.imu.t, seq.timestamps[0])
    up = gt[0][:3, :3] @ seq.imu.acc[i - 20:i + 20].mean(axis=0)
    assert np.degrees(np.arccos(up[2] / np.linalg.norm(up))) < 1.0
    assert np.linalg.norm(up) == pytest.approx(9.81, abs=0.05)
    # relative motion is the file's: distance and rotation between frames 0 and 200
    df = pd.read_csv(imu_gt / "mav0/gt0/data.csv", header=None, comment="#")
    row = {int(ns): k for k, ns in enumerate(df[0])}
    ns = [int(round(t * 1e9 / 1e4)) * 10_000 for t in seq.timestamps[[0, 200]]]
    p = df.loc[[row[n] for n in ns], [1, 2, 3]].to_numpy()
    assert np.linalg.norm(gt[200][:3, 3]) == pytest.approx(np.linalg.norm(p[1] - p[0]), abs=1e-9)
    f = seq[200]
    assert f.image is None and f.sensors == {"imu"} and len(f.imu) == 10
    np.testing.assert_allclose(f.T_world_body, gt[200])


def test_rate_option_and_slicing(imu_gt):
    seq = load_sequence(imu_gt, rate_hz=10.0)
    assert np.median(np.diff(seq.timestamps)) == pytest.approx(0.1, abs=1e-6)
    win = next(seq[100:].windows(5))
    assert list(win.indices) == [100, 101, 102, 103, 104]
    assert len(win[0].imu) == 20  # 0.1 s of 200 Hz samples
    assert rotation_angle(win.gt_poses[0][:3, :3]) > 0
