"""slambook2 RGB-D reader (``"slambook_rgbd"``): ``color/N.png``, ``depth/N.pgm``, ``pose.txt``.

The layout of "14 Lectures on Visual SLAM" (gaoxiang12/slambook2, ``ch5/rgbd``):
Kinect colour images, 16-bit PGM depth in millimetres (0 = no value), and
``pose.txt`` with one ``tx ty tz qx qy qz qw`` camera-to-world pose per frame.
Body frame = camera. There are no timestamps (frame ``i`` is at ``i / 30`` s) and
no intrinsics file: the book's fx 518, fy 519, cx 325.5, cy 253.5 are used.
The depth is a real sensor's (``metadata["depth_sensor"] = True``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fuse4d.data.readers import _common
from fuse4d.data.readers._poses import check_rotations
from fuse4d.data.registry import register_reader
from fuse4d.data.types import Calibration, Frame, Sequence
from fuse4d.errors import DataError
from fuse4d.geometry import pose_from_tq

NAME = "slambook_rgbd"
FRAME_RATE_HZ = 30.0
K = np.array([[518.0, 0, 325.5], [0, 519.0, 253.5], [0, 0, 1.0]])
DEPTH_SCALE = 1000.0
_NUM = re.compile(r"^(\d+)\.(png|pgm)$")


def _numbered(folder: Path, ext: str) -> dict[int, Path]:
    out = {}
    if folder.is_dir():
        for f in folder.iterdir():
            m = _NUM.match(f.name)
            if m and m.group(2) == ext:
                out[int(m.group(1))] = f
    return out


def detect(path: Path) -> bool:
    """True for a folder with ``color/`` PNGs and ``depth/`` PGMs numbered alike."""
    return path.is_dir() and bool(_numbered(path / "depth", "pgm")) and bool(_numbered(path / "color", "png"))


def load(path: Path) -> Sequence:
    """Open a slambook2 RGB-D folder lazily.

    Raises:
        DataError: no frames, colour/depth numbering that differs, a bad ``pose.txt``.
    """
    path = Path(path)
    color, depth = _numbered(path / "color", "png"), _numbered(path / "depth", "pgm")
    if not color:
        raise DataError(path, "no color/N.png frames")
    if sorted(color) != sorted(depth):
        raise DataError(path, f"color/ and depth/ hold different frame numbers: {sorted(color)} vs {sorted(depth)}")
    keys = sorted(color)
    n = len(keys)
    t = np.arange(n) / FRAME_RATE_HZ
    problems = [f"no timestamps: frame i is at i / {FRAME_RATE_HZ:g} s", "no intrinsics file: the book's K is used"]
    gt = None
    pose_path = path / "pose.txt"
    if pose_path.is_file():
        rows = _common.read_numbers(pose_path, 7)
        if len(rows) != n:
            raise DataError(pose_path, f"has {len(rows)} poses for {n} frames")
        gt = pose_from_tq(rows[:, :3], rows[:, 3:7])
        check_rotations(gt, pose_path)
    cal = Calibration(K=K.copy(), image_size=_common.image_size(color[keys[0]]))

    def loader(i: int) -> Frame:
        image = _common.read_rgb(color[keys[i]], cal.image_size)
        d = _common.read_depth_png(depth[keys[i]], DEPTH_SCALE)
        _common.check_same_size(image, d, depth[keys[i]])
        return Frame(index=i, timestamp=float(t[i]), image=image, depth=d,
                     T_world_body=_common.pose_or_none(gt, i), flags={"no_timestamp"})

    meta = _common.base_metadata(NAME, path, ["poses"] if gt is not None else [], problems, frame_numbers=keys,
                                 world_frame="pose.txt world", depth_sensor=True)
    return Sequence(t, loader, cal, {"camera"}, None, gt, meta, name=path.name, path=path)


register_reader(NAME, detect, load, priority=3, description="slambook2 RGB-D: color/N.png, depth/N.pgm, pose.txt")
