"""Bad input → DataError naming the file and the problem, for every reader (inputs made in tmp_path)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fuse4d import load_sequence
from fuse4d.errors import DataError

CALIB = "P2: 700 0 600 40 0 700 180 0 0 0 1 0\nTr: 0 -1 0 0 0 0 -1 -0.1 1 0 0 -0.3\n"


def _scan(n: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)


def _odometry(root: Path, n: int = 3, times: str | None = None) -> Path:
    seq = root / "sequences" / "00"
    (seq / "velodyne").mkdir(parents=True)
    for i in range(n):
        _scan(seed=i).tofile(seq / "velodyne" / f"{i:06d}.bin")
    (seq / "calib.txt").write_text(CALIB)
    (seq / "times.txt").write_text(times if times is not None else "".join(f"{0.1 * i}\n" for i in range(n)))
    return seq


def test_unknown_layout(tmp_path):
    with pytest.raises(DataError, match="unknown log layout"):
        load_sequence(tmp_path)
    with pytest.raises(DataError, match="no such file or directory"):
        load_sequence(tmp_path / "missing")


def test_odd_sized_scan_is_refused_at_open(tmp_path):
    seq = _odometry(tmp_path)
    with open(seq / "velodyne" / "000001.bin", "ab") as f:
        f.write(b"\x00" * 7)
    with pytest.raises(DataError, match=r"000001\.bin: size 807 bytes is not a multiple of 16"):
        load_sequence(tmp_path)


def test_nan_points_are_refused_when_the_frame_loads(tmp_path):
    seq_dir = _odometry(tmp_path)
    pts = _scan()
    pts[3, 1] = np.nan
    pts[7, 0] = np.inf
    pts.tofile(seq_dir / "velodyne" / "000002.bin")
    seq = load_sequence(tmp_path)  # lazy: the scan is not read yet
    assert seq[0].points.shape == (50, 4)
    with pytest.raises(DataError, match=r"000002\.bin: points contain 2 NaN/inf values"):
        seq[2]


@pytest.mark.parametrize("times, kind", [("0\n0.2\n0.1\n", "non-monotonic"), ("0\n0.1\n0.1\n", "duplicate")])
def test_bad_times_txt(tmp_path, times, kind):
    _odometry(tmp_path, times=times)
    with pytest.raises(DataError, match=rf"times\.txt: {kind} timestamps at row 2"):
        load_sequence(tmp_path)


def test_scan_listed_but_missing(tmp_path):
    _odometry(tmp_path, times="0\n0.1\n0.2\n0.3\n")
    with pytest.raises(DataError, match=r"000003\.bin: file listed \(frame index\) but missing"):
        load_sequence(tmp_path)


def test_missing_calibration(tmp_path, shared):
    seq = _odometry(tmp_path)
    (seq / "calib.txt").unlink()
    with pytest.raises(DataError, match=r"calib\.txt: calibration file missing"):
        load_sequence(tmp_path)
    day = shared("kitti_raw_2011_09_26", "2011_09_26")
    new_day = tmp_path / "raw" / "2011_09_26"
    drive = new_day / "2011_09_26_drive_0002_sync" / "velodyne_points" / "data"
    drive.mkdir(parents=True)
    _scan().tofile(drive / "0000000000.bin")
    for f in ("calib_cam_to_cam.txt", "calib_imu_to_velo.txt"):
        shutil.copy(day / f, new_day / f)
    with pytest.raises(DataError, match=r"calib_velo_to_cam\.txt: calibration file missing"):
        load_sequence(new_day.parent)
    (new_day / "calib_velo_to_cam.txt").write_text("R: 1 0 0 0 1 0 0 0 1\n")
    with pytest.raises(DataError, match=r"calib_velo_to_cam\.txt: calibration entry 'T' missing"):
        load_sequence(new_day / "2011_09_26_drive_0002_sync")


def _euroc(root: Path, imu_ns: list[int]) -> Path:
    imu = root / "mav0" / "imu0"
    imu.mkdir(parents=True)
    rows = "".join(f"{t},0.01,0.02,0.03,0.1,0.2,9.8\n" for t in imu_ns)
    (imu / "data.csv").write_text("#timestamp [ns],w_x,w_y,w_z,a_x,a_y,a_z\n" + rows)
    gt = root / "mav0" / "gt0"
    gt.mkdir()
    (gt / "data.csv").write_text("#t,px,py,pz,qw,qx,qy,qz\n" + "".join(
        f"{t},0,0,0,1,0,0,0\n" for t in range(imu_ns[0], imu_ns[-1], 25_000_000)))
    return root


def test_euroc_imu_stamps(tmp_path):
    ok = [1_000_000_000 + 5_000_000 * k for k in range(40)]
    seq = load_sequence(_euroc(tmp_path / "ok", ok))
    assert seq.sensors == {"imu"} and len(seq.imu) == 40 and len(seq) == 4
    dup = ok[:10] + [ok[9]] + ok[10:]
    with pytest.raises(DataError, match=r"imu0/data\.csv: duplicate timestamps at row 10"):
        load_sequence(_euroc(tmp_path / "dup", dup))
    back = ok[:10] + [ok[5]] + ok[11:]
    with pytest.raises(DataError, match=r"imu0/data\.csv: non-monotonic timestamps at row 10"):
        load_sequence(_euroc(tmp_path / "back", back))
    bad = _euroc(tmp_path / "nan", ok)
    text = (bad / "mav0/imu0/data.csv").read_text().replace("0.1,0.2,9.8", "0.1,nan,9.8", 1)
    (bad / "mav0/imu0/data.csv").write_text(text)
    with pytest.raises(DataError, match=r"imu0/data\.csv: values contain 1 NaN/inf values"):
        load_sequence(bad)


def test_av2_pose_stamps_and_sweep_columns(tmp_path):
    log = tmp_path / "log"
    (log / "sensors" / "lidar").mkdir(parents=True)
    (log / "calibration").mkdir()
    pts = pd.DataFrame({"x": np.float16([1, 2]), "y": np.float16([0, 1]), "z": np.float16([0, 0]),
                        "intensity": np.uint8([3, 4]), "offset_ns": np.int32([0, 1000])})
    pts.to_feather(log / "sensors/lidar/1000000000.feather")
    pts.drop(columns="offset_ns").to_feather(log / "sensors/lidar/1100000000.feather")
    pd.DataFrame({"sensor_name": ["up_lidar"], "qw": [1.0], "qx": [0.0], "qy": [0.0], "qz": [0.0],
                  "tx_m": [1.0], "ty_m": [0.0], "tz_m": [2.0]}).to_feather(
        log / "calibration/egovehicle_SE3_sensor.feather")
    poses = pd.DataFrame({"timestamp_ns": np.int64([1_000_000_000, 1_100_000_000, 1_050_000_000]),
                          "qw": 1.0, "qx": 0.0, "qy": 0.0, "qz": 0.0, "tx_m": [0.0, 1.0, 0.5],
                          "ty_m": 0.0, "tz_m": 0.0})
    poses.to_feather(log / "city_SE3_egovehicle.feather")
    with pytest.raises(DataError, match=r"city_SE3_egovehicle\.feather: non-monotonic timestamps at row 2"):
        load_sequence(log)
    poses.iloc[[0, 2, 1]].reset_index(drop=True).to_feather(log / "city_SE3_egovehicle.feather")
    seq = load_sequence(log)
    assert seq.gt_poses[1][0, 3] == pytest.approx(1.0) and seq[0].points.shape == (2, 4)
    with pytest.raises(DataError, match=r"1100000000\.feather: missing columns \['offset_ns'\]"):
        seq[1]


def test_sevenscenes_and_tum_empty_inputs(tmp_path):
    (tmp_path / "tum").mkdir()
    (tmp_path / "tum" / "rgb.txt").write_text("# nothing\n")
    with pytest.raises(DataError, match=r"rgb\.txt: lists no frames"):
        load_sequence(tmp_path / "tum")
    (tmp_path / "tum" / "rgb.txt").write_text("1.0 rgb/a.png\n0.5 rgb/b.png\n")
    with pytest.raises(DataError, match=r"rgb\.txt: non-monotonic timestamps at row 1"):
        load_sequence(tmp_path / "tum")
