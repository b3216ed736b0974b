"""Helpers shared by the log readers: image, depth and scan files, checks, text calibration.

Every function raises :class:`fuse4d.errors.DataError` naming the offending
file when the input is bad, never a bare numpy/Pillow exception.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from fuse4d.data.validation import check_finite, check_monotonic  # noqa: F401 (re-exported)
from fuse4d.errors import DataError
from fuse4d.geometry import make_T, orthonormalize

#: bytes per point of a KITTI-style ``.bin`` scan (float32 x, y, z, intensity)
SCAN_POINT_BYTES = 16
#: a scan coordinate beyond this (m) means the file is corrupt
MAX_SCAN_COORD_M = 10_000.0
#: largest |R^T R - I| entry a calibration rotation may have (files print ~7 digits)
ROTATION_TOL = 1e-4


def read_text(path: str | Path) -> str:
    """The text of ``path`` (UTF-8). Raises DataError naming the file when it is missing or binary."""
    path = Path(path)
    try:
        return path.read_text()
    except UnicodeDecodeError as e:
        raise DataError(path, f"not a text file (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    except OSError as e:
        raise DataError(path, f"cannot read: {e.strerror or e}") from None


# -- images and depth --------------------------------------------------------
def _open_image(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataError(path, "image file not found")
    try:
        im = Image.open(path)
        im.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(path, f"cannot decode image: {e}") from None
    return im


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, reading only its header.

    Raises:
        DataError: missing or undecodable file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file not found")
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(path, f"cannot decode image: {e}") from None


def read_rgb(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a PNG/JPG as uint8 RGB ``[H, W, 3]`` (grey is repeated into 3 channels).

    ``size``: the log's ``(width, height)``; an image of another size is an error
    (a camera cannot change resolution mid-log; intrinsics would no longer fit).

    Raises:
        DataError: missing or undecodable file, a 16-bit image, or the wrong size.
    """
    path = Path(path)
    im = _open_image(path)
    if im.mode in ("I;16", "I;16B", "I", "F"):
        raise DataError(path, f"expected an 8-bit colour or grey image, got mode {im.mode}")
    if size is not None and tuple(im.size) != tuple(size):
        raise DataError(path, f"image is {im.size[0]}x{im.size[1]} px but the log's images are {size[0]}x{size[1]}")
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def read_depth_png(path: str | Path, scale: float, invalid: Iterable[int] = (0,)) -> np.ndarray:
    """Read a 16-bit depth PNG as float32 metres ``[H, W]`` (raw / ``scale``); ``invalid`` raw values → 0.

    Raises:
        DataError: missing/undecodable file or not a single-channel 16-bit image.
    """
    path = Path(path)
    im = _open_image(path)
    if im.mode not in ("I;16", "I;16B", "I", "L"):
        raise DataError(path, f"expected a single-channel 16-bit depth image, got mode {im.mode}")
    raw = np.asarray(im)
    depth = raw.astype(np.float32) / np.float32(scale)
    bad = np.isin(raw, np.asarray(list(invalid), dtype=raw.dtype))
    depth[bad] = 0.0
    return depth


def check_same_size(image: np.ndarray, depth: np.ndarray, depth_path: str | Path) -> None:
    """Raise DataError naming ``depth_path`` when depth ``[H, W]`` differs from image ``[H, W, 3]``."""
    if image.shape[:2] != depth.shape[:2]:
        raise DataError(depth_path, f"depth size {depth.shape[1]}x{depth.shape[0]} differs from "
                                    f"image size {image.shape[1]}x{image.shape[0]}")


# -- LiDAR scans -------------------------------------------------------------
def check_scan_size(path: str | Path) -> int:
    """Cheap open-time check of a ``.bin`` scan; returns its point count.

    Raises:
        DataError: file missing, empty, or size not a multiple of 16 bytes.
    """
    path = Path(path)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise DataError(path, "scan file listed but missing") from None
    if size % SCAN_POINT_BYTES:
        raise DataError(path, f"size {size} bytes is not a multiple of {SCAN_POINT_BYTES} "
                              "(float32 x, y, z, intensity): truncated or not a scan")
    return size // SCAN_POINT_BYTES


def read_scan(path: str | Path) -> np.ndarray:
    """Read a KITTI-style ``.bin`` scan as float32 ``[N, 4]`` (x, y, z metres, intensity).

    Raises:
        DataError: missing, odd-sized or containing NaN/inf values.
    """
    path = Path(path)
    n = check_scan_size(path)
    points = np.fromfile(path, dtype=np.float32)
    if points.size != 4 * n:
        raise DataError(path, f"read {points.size} floats, expected {4 * n}")
    points = points.reshape(-1, 4)
    check_finite(points, path, "points")
    far = float(np.abs(points[:, :3]).max()) if len(points) else 0.0
    if far > MAX_SCAN_COORD_M:  # random bytes decode as floats up to 3e38: a corrupt file, not a scan
        raise DataError(path, f"corrupt scan: a coordinate of {far:.3g} m (a LiDAR sees < {MAX_SCAN_COORD_M:.0f} m)")
    return points




def parse_datetimes(path: str | Path) -> np.ndarray:
    """Read a KITTI raw timestamps file (``YYYY-MM-DD hh:mm:ss.fffffffff`` per line) → ``[S]`` float64 s.

    Raises:
        DataError: unreadable or unparsable line.
    """
    path = Path(path)
    lines = [s.strip() for s in read_text(path).splitlines() if s.strip()]
    try:
        ns = np.array(lines, dtype="datetime64[ns]").astype(np.int64)
    except ValueError as e:
        raise DataError(path, f"cannot parse timestamps: {e}") from None
    return ns_to_seconds(ns)


def ns_to_seconds(ns: np.ndarray) -> np.ndarray:
    """Integer nanoseconds ``[S]`` → float64 seconds, splitting to keep precision."""
    ns = np.asarray(ns, dtype=np.int64)
    return (ns // 1_000_000_000).astype(np.float64) + (ns % 1_000_000_000).astype(np.float64) * 1e-9


def read_numbers(path: str | Path, min_cols: int = 1) -> np.ndarray:
    """Whitespace/comma separated numeric table → float64 ``[R, C]``; ``#`` lines skipped.

    Raises:
        DataError: missing file, non-numeric cell, ragged rows, or fewer than ``min_cols`` columns.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    rows = [ln.replace(",", " ").split() for ln in read_text(path).splitlines()]
    rows = [r for r in rows if r and not r[0].startswith("#")]
    if not rows:
        return np.zeros((0, min_cols))
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise DataError(path, f"rows have different numbers of columns: {sorted(widths)}")
    try:
        a = np.array(rows, dtype=np.float64)
    except ValueError as e:
        raise DataError(path, f"not numeric: {e}") from None
    if a.shape[1] < min_cols:
        raise DataError(path, f"expected at least {min_cols} columns, got {a.shape[1]}")
    return a


# -- calibration text ---------------------------------------------------------
_KEY = re.compile(r"^\s*([A-Za-z_][\w]*)\s*:\s*(.*)$")


def parse_kitti_calib(path: str | Path) -> dict[str, np.ndarray]:
    """Parse a KITTI ``key: v1 v2 ...`` calibration file → ``{key: float64 [n]}``.

    Keys whose values are not numeric (e.g. ``calib_time``) are skipped.

    Raises:
        DataError: the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "calibration file missing")
    out: dict[str, np.ndarray] = {}
    for line in read_text(path).splitlines():
        m = _KEY.match(line)
        if not m:
            continue
        try:
            out[m.group(1)] = np.array([float(v) for v in m.group(2).split()], dtype=np.float64)
        except ValueError:
            continue
    return out


def calib_matrix(calib: dict[str, np.ndarray], key: str, shape: tuple[int, int], path: str | Path) -> np.ndarray:
    """``calib[key]`` reshaped to ``shape``; DataError naming ``path`` if absent or the wrong size."""
    if key not in calib:
        raise DataError(path, f"calibration entry {key!r} missing")
    v = calib[key]
    if v.size != shape[0] * shape[1]:
        raise DataError(path, f"calibration entry {key!r} has {v.size} values, expected {shape[0] * shape[1]}")
    return check_finite(v.reshape(shape), path, f"calibration entry {key!r}")


def rigid(R: np.ndarray, t: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """``[4, 4]`` transform from a rotation ``[3, 3]`` projected onto SO(3) (SVD) and ``t [3]``.

    Calibration files print rotations to ~7 digits, so they are not exactly
    orthonormal; projecting keeps every later inverse exact (changes are ~1e-7).

    Raises:
        DataError (naming ``path``): ``R`` is not a rotation (``|R^T R - I| > 1e-4``
        or a reflection): projecting it would hide a wrong calibration.
    """
    R = np.asarray(R, dtype=np.float64)
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > ROTATION_TOL or np.linalg.det(R) < 0:
        what = "a reflection (det < 0)" if np.linalg.det(R) < 0 and err <= ROTATION_TOL else f"|R^T R - I| = {err:.2g}"
        raise DataError(path, f"calibration rotation is not a rotation matrix ({what})")
    return orthonormalize(make_T(R, np.asarray(t, dtype=np.float64).reshape(3)))


def read_opencv_yaml(path: str | Path) -> dict[str, Any]:
    """Read an ASL/OpenCV-style YAML file (``%YAML:1.0`` header allowed) into a dict.

    Raises:
        DataError: missing or unparsable file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "calibration file missing")
    text = "\n".join(ln for ln in read_text(path).splitlines() if not ln.startswith("%"))
    try:
        d = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise DataError(path, f"cannot parse YAML: {e}") from None
    if not isinstance(d, dict):
        raise DataError(path, "expected a YAML mapping")
    return d


def yaml_matrix(d: dict[str, Any], key: str, path: str | Path) -> np.ndarray:
    """An ASL ``{rows, cols, data}`` YAML matrix as float64 ``[rows, cols]``; DataError if malformed."""
    m = d.get(key)
    try:
        return np.asarray(m["data"], dtype=np.float64).reshape(int(m["rows"]), int(m["cols"]))
    except (TypeError, KeyError, ValueError):
        raise DataError(path, f"{key!r} is missing or not a rows/cols/data matrix") from None


# -- metadata -----------------------------------------------------------------
#: KITTI's Velodyne HDL-64E: 10 Hz, clockwise from above, stamped when it faces forward (cut behind)
KITTI_LIDAR_TIMING = {"rate_hz": 10.0, "direction": "cw", "stamp_azimuth_deg": 0.0, "stamp_fraction": 0.5}
LIDAR_TIMING_FILE = "lidar_timing.json"


def lidar_timing(folder: Path, default: dict | None = KITTI_LIDAR_TIMING) -> dict | None:
    """Azimuth timing model of a folder's spinning LiDAR: ``lidar_timing.json`` there (written by
    ``fuse4d synth``/export), else ``default`` (see ``fusion.estimation.deskew.azimuth_time``).

    Raises:
        DataError: the file exists but is not a JSON object.
    """
    import json
    f = Path(folder) / LIDAR_TIMING_FILE
    if not f.is_file():
        return None if default is None else dict(default)
    try:
        d = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f, f"unreadable LiDAR timing: {e}") from None
    if not isinstance(d, dict):
        raise DataError(f, "LiDAR timing must be a JSON object")
    return d


def base_metadata(fmt: str, source: str | Path, ground_truth: list[str], problems: list[str],
                  **extra: Any) -> dict[str, Any]:
    """The metadata keys every reader sets: ``format``, ``source``, ``ground_truth``, ``problems``."""
    return {"format": fmt, "source": str(source), "ground_truth": list(ground_truth),
            "problems": list(problems), **extra}


def pose_or_none(gt: np.ndarray | None, i: int) -> np.ndarray | None:
    """Row ``i`` of ``gt [S, 4, 4]`` as a copy, or None when absent/NaN."""
    if gt is None or not np.isfinite(gt[i]).all():
        return None
    return gt[i].copy()
