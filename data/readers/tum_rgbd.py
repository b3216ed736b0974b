"""TUM RGB-D reader (``"tum_rgbd"``): ``rgb.txt``, ``depth.txt``, ``groundtruth.txt``.

Body frame = camera (there is no IMU: TUM's ``accelerometer.txt`` is the Kinect's
tilt sensor; it is exposed as ``metadata["accelerometer"]`` = ``{"t", "acc"}`` lists
and ``imu`` is not claimed). Frames are the ``rgb.txt`` entries (``depth.txt``'s when
there is no colour); depth and ground truth are associated by the nearest stamp
within ``max_diff`` (0.02 s, as TUM's ``associate.py``); unmatched frames get flags
``no_depth`` / ``no_pose``. Depth PNGs are uint16 / 5000 → metres. Intrinsics are
the published defaults of the freiburg1/2/3 sensors, chosen from the folder name
(``rgbd_dataset_freiburg2_desk`` → freiburg2), else 525/525/319.5/239.5; images
are used as stored (not undistorted). Ground truth is kept in the mocap world
(``rebase="none"``), so it compares directly with ``groundtruth.txt``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fuse4d.data.readers import _common
from fuse4d.data.readers._poses import nearest_within, rebase_poses
from fuse4d.data.registry import register_reader
from fuse4d.data.types import Calibration, Frame, Sequence
from fuse4d.errors import DataError
from fuse4d.geometry import pose_from_tq

NAME = "tum_rgbd"
DEPTH_SCALE = 5000.0
#: (fx, fy, cx, cy) of the TUM RGB-D sensors (ROS default calibration for "default")
INTRINSICS = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
    "default": (525.0, 525.0, 319.5, 239.5),
}


def detect(path: Path) -> bool:
    """True for a folder with ``rgb.txt`` or ``depth.txt``."""
    return path.is_dir() and ((path / "rgb.txt").is_file() or (path / "depth.txt").is_file())


def read_file_list(path: Path) -> tuple[np.ndarray, list[Path]]:
    """A TUM ``timestamp filename`` list → ``(t [S] float64 s, files)`` relative to its folder.

    Raises:
        DataError: unparsable line, non-increasing stamps.
    """
    t, files = [], []
    for lineno, line in enumerate(_common.read_text(path).splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        try:
            t.append(float(parts[0]))
            files.append(path.parent / parts[1])
        except (ValueError, IndexError):
            raise DataError(path, f"line {lineno}: expected 'timestamp filename', got {s[:80]!r}") from None
    t = _common.check_monotonic(np.asarray(t, dtype=np.float64), path)
    return t, files


def intrinsics_for(folder: Path) -> tuple[str, np.ndarray]:
    """``(sensor name, K [3, 3])`` from a folder name containing ``freiburg1/2/3``."""
    m = re.search(r"freiburg([123])", str(folder))
    key = f"freiburg{m.group(1)}" if m else "default"
    fx, fy, cx, cy = INTRINSICS[key]
    return key, np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


def load(path: Path, max_diff: float = 0.02, rebase: str = "none") -> Sequence:
    """Open a TUM RGB-D folder lazily.

    Args:
        path: folder with ``rgb.txt`` and/or ``depth.txt`` (and optional ``groundtruth.txt``).
        max_diff: association tolerance in seconds.
        rebase: ground-truth world frame (``"none"`` = mocap, ``"first"``, ``"gravity"``).

    Raises:
        DataError: bad lists or ground truth; missing image files; image/depth size mismatch (at frame load).
    """
    path = Path(path)
    problems: list[str] = []
    rgb_t, rgb_f = read_file_list(path / "rgb.txt") if (path / "rgb.txt").is_file() else (None, None)
    d_t, d_f = read_file_list(path / "depth.txt") if (path / "depth.txt").is_file() else (None, None)
    t = rgb_t if rgb_t is not None else d_t
    if len(t) == 0:
        raise DataError(path / ("rgb.txt" if rgb_t is not None else "depth.txt"), "lists no frames")
    for f in (rgb_f or []) + (d_f or []):
        if not f.is_file():
            raise DataError(f, "image listed but missing")
    if rgb_t is None:
        depth_idx = np.arange(len(t))
        problems.append("no rgb.txt: frames are depth images only")
    elif d_t is None:
        depth_idx = np.full(len(t), -1)
    else:
        depth_idx = nearest_within(d_t, t, max_diff)
        if (depth_idx < 0).any():
            problems.append(f"{int((depth_idx < 0).sum())} of {len(t)} frames have no depth within {max_diff} s")
    sensor, K = intrinsics_for(path.resolve())
    cal = Calibration(K=K, image_size=_common.image_size(rgb_f[0] if rgb_f else d_f[0]))
    gt = None
    gt_path = path / "groundtruth.txt"
    if gt_path.is_file():
        rows = _common.read_numbers(gt_path, 8)
        keep = np.r_[True, np.diff(rows[:, 0]) != 0]  # the real fr2_desk file repeats one stamp
        if not keep.all():
            problems.append(f"{gt_path.name}: {int((~keep).sum())} repeated timestamps, first pose kept")
            rows = rows[keep]
        _common.check_monotonic(rows[:, 0], gt_path)
        j = nearest_within(rows[:, 0], t, max_diff)
        gt = np.full((len(t), 4, 4), np.nan)
        gt[j >= 0] = pose_from_tq(rows[j[j >= 0], 1:4], rows[j[j >= 0], 4:8])
        gt, _ = rebase_poses(gt, rebase)
        if (j < 0).any():
            problems.append(f"{int((j < 0).sum())} of {len(t)} frames have no ground truth within {max_diff} s")
    extra = {}
    acc_path = path / "accelerometer.txt"
    if acc_path.is_file():
        a = _common.read_numbers(acc_path, 4)
        extra["accelerometer"] = {"t": a[:, 0].tolist(), "acc": a[:, 1:4].tolist()}

    def loader(i: int) -> Frame:
        flags = set()
        image = _common.read_rgb(rgb_f[i], cal.image_size) if rgb_f is not None else None
        depth = None
        if depth_idx[i] >= 0:
            dpath = d_f[depth_idx[i]]
            depth = _common.read_depth_png(dpath, DEPTH_SCALE)
            if image is not None:
                _common.check_same_size(image, depth, dpath)
        else:
            flags.add("no_depth")
        pose = _common.pose_or_none(gt, i)
        if pose is None:
            flags.add("no_pose")
        return Frame(index=i, timestamp=float(t[i]), image=image, depth=depth, T_world_body=pose, flags=flags)

    meta = _common.base_metadata(NAME, path, ["poses"] if gt is not None else [], problems,
                                 camera=sensor, world_frame=f"mocap world re-based with {rebase!r}",
                                 depth_sensor=d_f is not None, **extra)
    return Sequence(t, loader, cal, {"camera"} if rgb_f is not None else set(), None, gt, meta,
                    name=path.name, path=path)


register_reader(NAME, detect, load, priority=4, description="TUM RGB-D: rgb.txt, depth.txt, groundtruth.txt")
