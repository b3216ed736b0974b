"""A folder of ``.pcd`` or ``.ply`` scans as a LiDAR-only log (``"scan_folder"``).

Scans are read with Open3D's tensor I/O, which keeps extra fields: intensity
(``intensity``/``reflectivity``) and per-point time (``time``, ``t``,
``timestamp``, ``offset_time``; integer fields are nanoseconds, absolute
times are made relative to the scan's timestamp). Timestamps come from
``timestamps.txt`` (one per scan, in name order; seconds, or nanoseconds when
integers above 1e12), else from the numbers in the file names
(``1618000000.123456.pcd``, ``1618000000123456789.pcd``). Scans are ordered by
name (numeric where names are numbers). Without either source of time the
folder is refused with a message saying how to add one.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fuse4d.data.readers._common import check_monotonic
from fuse4d.data.readers._ros_msgs import INTENSITY_FIELDS, TIME_FIELDS
from fuse4d.data.registry import register_reader
from fuse4d.data.types import Calibration, Frame, Sequence
from fuse4d.errors import DataError

_SUFFIXES = (".pcd", ".ply")
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?)$")


def _scans(path: Path) -> list[Path]:
    files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES]
    numeric = all(_NUMBER.match(p.stem) for p in files)
    return sorted(files, key=(lambda p: float(p.stem)) if numeric and files else (lambda p: p.name))


def detect(path: Path) -> bool:
    """True for a folder holding at least two ``.pcd``/``.ply`` files of one kind."""
    if not path.is_dir():
        return False
    scans = _scans(path)
    return len(scans) >= 2 and len({p.suffix.lower() for p in scans}) == 1


def _is_time(stem: str) -> bool:
    """A file name that is a timestamp: seconds with a fraction, or integer epoch seconds/nanoseconds
    (``000123`` is a frame number, not a time)."""
    return bool(_NUMBER.match(stem)) and ("." in stem or float(stem) >= 1e9)


def _seconds(values: list[str], where: Path) -> np.ndarray:
    try:
        v = np.array([float(x) for x in values], dtype=np.float64)
    except ValueError as e:
        raise DataError(where, f"timestamps must be numbers: {e}") from None
    if len(v) and all("." not in x for x in values) and v.min() > 1e12:  # integer nanoseconds
        v = np.array([int(x) for x in values], dtype=np.int64) / 1e9
    return v


def _timestamps(path: Path, scans: list[Path]) -> np.ndarray:
    tfile = path / "timestamps.txt"
    if tfile.is_file():
        lines = [ln.split()[0] for ln in tfile.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        if len(lines) != len(scans):
            raise DataError(tfile, f"has {len(lines)} timestamps for {len(scans)} scans (one per scan, in name order)")
        t = _seconds(lines, tfile)
    elif all(_is_time(p.stem) for p in scans):
        t = _seconds([p.stem for p in scans], path)
    else:
        raise DataError(path, "scans have no time: add timestamps.txt (one per scan, seconds) or name the files "
                              "by their timestamp (e.g. 1618000000.123456.pcd)")
    check_monotonic(t, tfile if tfile.is_file() else path, "scan timestamps")
    return t


def read_scan(file: Path, stamp: float) -> tuple[np.ndarray, np.ndarray | None]:
    """One scan → points ``[N, 4]`` float32 (x, y, z, intensity) and time ``[N]`` float32 s relative to ``stamp``.

    Raises:
        DataError: unreadable/empty file or non-finite coordinates.
    """
    import open3d as o3d
    if not file.is_file() or file.stat().st_size == 0:
        raise DataError(file, "scan file missing or empty")
    pc = o3d.t.io.read_point_cloud(str(file))
    if "positions" not in pc.point or pc.point.positions.shape[0] == 0:
        raise DataError(file, "cannot read a point cloud from this file (bad header or no points)")
    xyz = pc.point.positions.numpy().astype(np.float32)
    fields = {k: pc.point[k].numpy().reshape(len(xyz), -1)[:, 0] for k in pc.point if k != "positions"}
    pts = np.zeros((len(xyz), 4), np.float32)
    pts[:, :3] = xyz
    inten = next((fields[k] for k in INTENSITY_FIELDS if k in fields), None)
    if inten is not None:
        pts[:, 3] = inten
    keep = np.isfinite(xyz).all(axis=1)
    if not keep.any():
        raise DataError(file, "no finite point in the scan")
    tname = next((k for k in TIME_FIELDS if k in fields), None)
    ptime = None
    if tname is not None:
        raw = fields[tname]
        t = raw.astype(np.float64) * (1e-9 if np.issubdtype(raw.dtype, np.integer) else 1.0)
        if np.median(t[keep]) > 1e6:
            t = t - stamp
        ptime = t.astype(np.float32)[keep]
    return pts[keep], ptime


def load(path: Path) -> Sequence:
    """Open a folder of scans as a lazy LiDAR-only :class:`Sequence` (body = LiDAR frame).

    Raises:
        DataError: fewer than two scans, mixed formats, missing/mismatched timestamps
            (at open), a bad scan file (at frame load, naming it).
    """
    path = Path(path)
    scans = _scans(path)
    if len(scans) < 2:
        raise DataError(path, f"needs at least two .pcd/.ply scans, found {len(scans)}")
    t = _timestamps(path, scans)
    calibration = Calibration()  # body = LiDAR; load_sequence(path, calib=...) gives extrinsics

    def loader(i: int) -> Frame:
        pts, ptime = read_scan(scans[i], float(t[i]))
        return Frame(index=i, timestamp=float(t[i]), points=pts, point_time=ptime)

    meta = {"source": str(path), "format": "scan_folder", "scan_format": scans[0].suffix.lower()[1:],
            "ground_truth": []}
    return Sequence(t, loader, calibration, {"lidar"}, None, None, meta, name=path.name, path=path)


register_reader("scan_folder", detect, load, priority=-10,
                description="a folder of .pcd or .ply scans (timestamps.txt or timestamped names)")
