"""Microsoft 7-Scenes reader (``"sevenscenes"``): ``frame-XXXXXX.{color.jpg|png, depth.png, pose.txt}``.

Body frame = camera. Depth PNGs are uint16 millimetres; 0 and 65535 mean "no
value" and become 0. Poses are camera-to-world 4×4 matrices (KinectFusion world),
kept as in the files (``rebase="none"``). There are no timestamps: frame ``i`` is
at ``i / 30`` s (the Kinect rate), noted in ``metadata["problems"]``. Intrinsics come
from ``camera-intrinsics.txt`` when present, else fx = fy = 585, cx = 320, cy = 240.
Colour and depth come from different, unregistered Kinect sensors (as in the
dataset); both are returned at their stored size and must match.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fuse4d.data.readers import _common
from fuse4d.data.readers._poses import check_rotations, rebase_poses
from fuse4d.data.registry import register_reader
from fuse4d.data.types import Calibration, Frame, Sequence
from fuse4d.errors import DataError

NAME = "sevenscenes"
FRAME_RATE_HZ = 30.0
DEFAULT_K = np.array([[585.0, 0, 320.0], [0, 585.0, 240.0], [0, 0, 1.0]])
_FRAME = re.compile(r"^frame-(\d+)\.(color\.(?:jpg|png)|depth\.png|pose\.txt)$")


def _index(path: Path) -> dict[int, dict[str, Path]]:
    out: dict[int, dict[str, Path]] = {}
    if path.is_dir():
        for f in path.iterdir():
            m = _FRAME.match(f.name)
            if m:
                out.setdefault(int(m.group(1)), {})[m.group(2).split(".")[0]] = f
    return out


def detect(path: Path) -> bool:
    """True for a folder with ``frame-XXXXXX.color.*`` / ``.depth.png`` / ``.pose.txt`` files."""
    if not path.is_dir():
        return False
    return any(_FRAME.match(f.name) for f in path.iterdir())


def read_pose(path: Path) -> np.ndarray:
    """A 7-Scenes ``pose.txt`` → float64 ``[4, 4]``; DataError if not 4×4 numbers."""
    a = _common.read_numbers(path)
    if a.shape != (4, 4):
        raise DataError(path, f"expected a 4x4 matrix, got shape {a.shape}")
    return _common.check_finite(a, path, "pose values")


def load(path: Path, rebase: str = "none") -> Sequence:
    """Open a 7-Scenes sequence folder lazily (poses are read eagerly).

    Raises:
        DataError: no frames, bad pose file, bad intrinsics, image/depth size mismatch (at frame load).
    """
    path = Path(path)
    idx = _index(path)
    if not idx:
        raise DataError(path, "no frame-XXXXXX.* files")
    keys = sorted(idx)
    entries = [idx[k] for k in keys]
    n = len(keys)
    problems = [f"no timestamps: frame i is at i / {FRAME_RATE_HZ:g} s"]
    if keys != list(range(keys[0], keys[0] + n)):
        problems.append(f"frame numbers are not contiguous ({keys[0]}..{keys[-1]} with {n} frames)")
    t = np.arange(n) / FRAME_RATE_HZ
    has_color = any("color" in e for e in entries)
    gt = np.full((n, 4, 4), np.nan)
    with_pose = [i for i, e in enumerate(entries) if "pose" in e]
    for i in with_pose:
        gt[i] = read_pose(entries[i]["pose"])
    check_rotations(gt, path)
    gt = rebase_poses(gt, rebase)[0] if with_pose else None
    if with_pose and len(with_pose) < n:
        problems.append(f"{n - len(with_pose)} of {n} frames have no pose.txt")
    K_path = path / "camera-intrinsics.txt"
    K = DEFAULT_K.copy()
    if K_path.is_file():
        K = _common.read_numbers(K_path)
        if K.shape != (3, 3):
            raise DataError(K_path, f"expected a 3x3 matrix, got shape {K.shape}")
    else:
        problems.append("no camera-intrinsics.txt: using fx = fy = 585, cx = 320, cy = 240")
    first = next(e.get("color", e.get("depth")) for e in entries if "color" in e or "depth" in e)
    cal = Calibration(K=K, image_size=_common.image_size(first))

    def loader(i: int) -> Frame:
        e, flags = entries[i], {"no_timestamp"}
        image = _common.read_rgb(e["color"], cal.image_size) if "color" in e else None
        depth = None
        if "depth" in e:
            depth = _common.read_depth_png(e["depth"], 1000.0, invalid=(0, 65535))
            if image is not None:
                _common.check_same_size(image, depth, e["depth"])
        pose = _common.pose_or_none(gt, i)
        if pose is None:
            flags.add("no_pose")
        return Frame(index=i, timestamp=float(t[i]), image=image, depth=depth, T_world_body=pose, flags=flags)

    meta = _common.base_metadata(NAME, path, ["poses"] if gt is not None else [], problems,
                                 frame_numbers=keys, world_frame=f"KinectFusion world re-based with {rebase!r}",
                                 depth_sensor=True)
    return Sequence(t, loader, cal, {"camera"} if has_color else set(), None, gt, meta, name=path.name, path=path)


register_reader(NAME, detect, load, priority=3,
                description="Microsoft 7-Scenes: frame-XXXXXX.{color.jpg,depth.png,pose.txt}")
