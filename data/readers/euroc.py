"""EuRoC MAV / ASL reader (``"euroc"``): ``mav0/{cam0,imu0,state_groundtruth_estimate0|gt0}``.

Body frame = IMU frame (the ASL sensor frame ``S`` of ``imu0``):
``T_body_cam = inv(T_B_imu) @ T_B_cam0`` from the ``T_BS`` entries of the
``sensor.yaml`` files (``T_B_imu`` is the identity in EuRoC). Frames are the cam0
images; grey images are repeated into RGB. Without a camera (e.g. an IMU + ground
truth recording) frames are the ground-truth stamps inside the IMU's time span,
thinned to ``rate_hz``. Ground truth (``p_RS_R``, ``q_RS`` w-first) is interpolated
to the frame stamps (SLERP; NaN outside its span or across gaps > 0.1 s) and
re-based with ``rebase`` (default ``"gravity"``: the Vicon world is z-up).
Distortion (radial-tangential) is kept in ``metadata["distortion"]``; images are not undistorted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fuse4d.data.readers import _common
from fuse4d.data.readers._poses import interpolate_poses, rebase_poses
from fuse4d.data.registry import register_reader
from fuse4d.data.types import Calibration, Frame, ImuSamples, Sequence
from fuse4d.errors import DataError
from fuse4d.geometry import invert, make_T, quat_to_matrix

NAME = "euroc"
_GT_DIRS = ("state_groundtruth_estimate0", "gt0")


def _mav(path: Path) -> Path | None:
    for p in (path / "mav0", path):
        if p.is_dir() and ((p / "imu0" / "data.csv").is_file() or (p / "cam0" / "data.csv").is_file()):
            return p
    return None


def detect(path: Path) -> bool:
    """True for a folder holding ``mav0/`` (or a ``mav0`` folder) with ``imu0/data.csv`` or ``cam0/data.csv``."""
    return _mav(path) is not None


def read_csv(path: Path, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """An ASL CSV (``#`` header, first column integer ns) → ``(ns [M] int64, values [M, n_cols - 1] float64)``.

    Raises:
        DataError: missing file, wrong column count, non-numeric or NaN values, non-increasing stamps.
    """
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        df = pd.read_csv(path, header=None, comment="#", skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot parse CSV: {e}") from None
    if df.shape[1] < n_cols:
        raise DataError(path, f"expected {n_cols} columns, got {df.shape[1]}")
    try:
        ns = df.iloc[:, 0].to_numpy(dtype=np.int64)
        vals = df.iloc[:, 1:n_cols].to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise DataError(path, f"non-numeric value: {e}") from None
    _common.check_finite(vals, path, "values")
    _common.check_monotonic(ns, path)
    return ns, vals


def _sensor_T(folder: Path) -> np.ndarray:
    p = folder / "sensor.yaml"
    if not p.is_file():
        return np.eye(4)
    T = _common.yaml_matrix(_common.read_opencv_yaml(p), "T_BS", p)
    return _common.rigid(T[:3, :3], T[:3, 3], p)


def _camera(mav: Path):
    cam = mav / "cam0"
    ns, _ = read_csv(cam / "data.csv", 1)
    names = pd.read_csv(cam / "data.csv", header=None, comment="#", skipinitialspace=True).iloc[:, 1].astype(str)
    files = [cam / "data" / n.strip() for n in names]
    for f in files:
        if not f.is_file():
            raise DataError(f, "image listed in data.csv but missing")
    y_path = cam / "sensor.yaml"
    y = _common.read_opencv_yaml(y_path)
    try:
        fu, fv, cu, cv = (float(v) for v in y["intrinsics"])
        size = (int(y["resolution"][0]), int(y["resolution"][1]))
    except (KeyError, TypeError, ValueError):
        raise DataError(y_path, "intrinsics [fu, fv, cu, cv] or resolution missing") from None
    K = np.array([[fu, 0, cu], [0, fv, cv], [0, 0, 1.0]])
    dist = {"model": y.get("distortion_model"), "coefficients": list(y.get("distortion_coefficients") or [])}
    T_B_cam = _common.yaml_matrix(y, "T_BS", y_path)
    return ns, files, K, size, _common.rigid(T_B_cam[:3, :3], T_B_cam[:3, 3], y_path), dist


def load(path: Path, rate_hz: float = 20.0, rebase: str = "gravity") -> Sequence:
    """Open a EuRoC/ASL recording lazily.

    Args:
        path: folder holding ``mav0/`` (or ``mav0`` itself).
        rate_hz: frame rate used when there is no camera (frames at ground-truth stamps).
        rebase: ground-truth world frame (``"gravity"``, ``"first"``, ``"none"``).

    Raises:
        DataError: missing/bad CSV or YAML, non-increasing IMU stamps, a listed image missing.
    """
    mav = _mav(Path(path))
    if mav is None:
        raise DataError(path, "no mav0/ with imu0/data.csv or cam0/data.csv")
    problems: list[str] = []
    imu = None
    if (mav / "imu0" / "data.csv").is_file():
        ns_imu, v = read_csv(mav / "imu0" / "data.csv", 7)
        imu = ImuSamples(_common.ns_to_seconds(ns_imu), v[:, 3:6], v[:, 0:3])
        imu.validate(mav / "imu0" / "data.csv")
    gt_dir = next((mav / d for d in _GT_DIRS if (mav / d / "data.csv").is_file()), None)
    t_gt = T_gt = None
    if gt_dir is not None:
        ns_gt, g = read_csv(gt_dir / "data.csv", 8)
        t_gt = _common.ns_to_seconds(ns_gt)
        T_gt = make_T(quat_to_matrix(g[:, [4, 5, 6, 3]]), g[:, 0:3]) @ invert(_sensor_T(gt_dir))
    T_B_imu = _sensor_T(mav / "imu0")
    cal = Calibration(T_body_cam=np.eye(4), T_body_lidar=np.eye(4))
    meta_extra = {}
    files = None
    if (mav / "cam0" / "data.csv").is_file():
        ns, files, cal.K, cal.image_size, T_B_cam, meta_extra["distortion"] = _camera(mav)
        cal.T_body_cam = invert(T_B_imu) @ T_B_cam
        t = _common.ns_to_seconds(ns)
    elif t_gt is not None and imu is not None:
        t_in = t_gt[(t_gt >= imu.t[0]) & (t_gt <= imu.t[-1])]
        if len(t_in) == 0:
            raise DataError(gt_dir / "data.csv", "ground truth does not overlap the IMU stream in time")
        bins = np.floor((t_in - t_in[0]) * rate_hz + 1e-6)
        t = t_in[np.unique(bins, return_index=True)[1]]
        if len(t_in) < len(t_gt):
            problems.append(f"ground truth spans {t_gt[-1] - t_gt[0]:.1f} s but the IMU only "
                            f"{imu.t[-1] - imu.t[0]:.1f} s: frames limited to the IMU span")
        problems.append(f"no camera: frames are ground-truth stamps thinned to {rate_hz:g} Hz")
    else:
        raise DataError(mav, "no camera, and no IMU + ground truth to define frames")
    gt = None
    if T_gt is not None:
        gt, _ = rebase_poses(interpolate_poses(t_gt, T_gt @ T_B_imu, t, max_gap=0.1), rebase)
        n_miss = int((~np.isfinite(gt[:, 0, 0])).sum())
        if n_miss:
            problems.append(f"{n_miss} of {len(t)} frames fall outside the ground truth (no pose)")
    sensors = {"camera"} if files is not None else set()
    if imu is not None and len(imu) >= 2:
        sensors.add("imu")

    def loader(i: int) -> Frame:
        pose = _common.pose_or_none(gt, i)
        image = None if files is None else _common.read_rgb(files[i], cal.image_size)
        return Frame(index=i, timestamp=float(t[i]), image=image, T_world_body=pose,
                     flags=set() if pose is not None else {"no_pose"})

    if imu is not None:
        y_imu = mav / "imu0" / "sensor.yaml"
        if y_imu.is_file():
            y = _common.read_opencv_yaml(y_imu)
            keys = {"acc_noise": "accelerometer_noise_density", "gyro_noise": "gyroscope_noise_density",
                    "acc_walk": "accelerometer_random_walk", "gyro_walk": "gyroscope_random_walk"}
            cal.imu_noise = {k: float(y[v]) for k, v in keys.items() if v in y}
    meta = _common.base_metadata(NAME, mav.parent, ["poses"] if gt is not None else [], problems,
                                 world_frame=f"ground-truth world re-based with {rebase!r}", **meta_extra)
    return Sequence(t, loader, cal, sensors, imu, gt, meta, name=mav.parent.name, path=mav.parent)


register_reader(NAME, detect, load, priority=5, description="EuRoC MAV / ASL: mav0/{cam0,imu0,gt}")
