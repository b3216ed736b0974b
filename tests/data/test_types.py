"""Core types: lazy Sequence views, windows, IMU slicing and validation."""

from __future__ import annotations

import numpy as np
import pytest

from fuse4d.data.types import Calibration, Frame, ImuSamples, Sequence
from fuse4d.errors import DataError


def make_seq(n=10, with_imu=True):
    calls = []

    def loader(i):
        calls.append(i)
        return Frame(index=i, timestamp=0.1 * i, points=np.full((5, 4), i, np.float32))

    t_imu = np.arange(0, 0.1 * n, 0.005)
    imu = ImuSamples(t_imu, np.tile([0, 0, 9.81], (len(t_imu), 1)), np.zeros((len(t_imu), 3))) if with_imu else None
    gt = np.tile(np.eye(4), (n, 1, 1))
    gt[:, 0, 3] = np.arange(n)
    return Sequence(0.1 * np.arange(n), loader, Calibration(), {"lidar", "imu"} if with_imu else {"lidar"},
                    imu=imu, gt_poses=gt, name="toy"), calls


def test_lazy_indexing_and_slicing():
    seq, calls = make_seq()
    assert len(seq) == 10 and calls == []
    view = seq[2:8:2]
    assert len(view) == 3 and calls == []
    assert view.timestamps == pytest.approx([0.2, 0.4, 0.6])
    f = view[1]
    assert f.index == 4 and calls == [4]
    assert view.gt_poses[:, 0, 3] == pytest.approx([2, 4, 6])
    assert seq[-1].index == 9
    with pytest.raises(IndexError):
        seq[10]


def test_frame_imu_is_samples_since_previous_frame():
    seq, _ = make_seq()
    f3 = seq[3]
    assert len(f3.imu) == 20  # 0.1 s at 200 Hz, (0.2, 0.3]
    assert f3.imu.t[0] > 0.2 and f3.imu.t[-1] <= 0.3 + 1e-12
    assert f3.sensors == {"lidar", "imu"}


def test_windows_cover_every_frame():
    seq, _ = make_seq(10)
    wins = list(seq.windows(4, 3))
    assert [list(w.indices) for w in wins] == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert [len(w) for w in seq.windows(4)] == [4, 4, 2]
    with pytest.raises(ValueError):
        list(seq.windows(0))


def test_imu_validation_names_file():
    imu = ImuSamples([0.0, 0.01, 0.01, 0.03], np.zeros((4, 3)), np.zeros((4, 3)))
    with pytest.raises(DataError, match=r"imu\.csv: duplicate IMU timestamps at row 2"):
        imu.validate("imu.csv")
    imu = ImuSamples([0.0, 0.02, 0.01], np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(DataError, match="non-monotonic"):
        imu.validate("imu.csv")
    imu = ImuSamples([0.0, 0.01], np.array([[0, 0, np.nan], [0, 0, 1]]), np.zeros((2, 3)))
    with pytest.raises(DataError, match="NaN"):
        imu.validate("imu.csv")


def test_calibration_round_trip_and_checks():
    c = Calibration(K=np.diag([500.0, 500, 1]), image_size=(640, 480), lidar_beams=32,
                    T_body_lidar=np.diag([1.0, 1, 1, 1]), time_offsets={"camera": 0.01})
    c2 = Calibration.from_dict(c.to_dict())
    assert np.array_equal(c2.K, c.K) and c2.image_size == (640, 480) and c2.time_offsets == {"camera": 0.01}
    with pytest.raises(DataError, match="4x4"):
        Calibration(T_body_cam=np.eye(3))


def test_unknown_sensor_rejected():
    with pytest.raises(DataError, match="unknown sensors"):
        Sequence(np.zeros(1), lambda i: Frame(i, 0.0), sensors={"radar"})
