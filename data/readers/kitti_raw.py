"""KITTI raw reader (``"kitti_raw"``): ``YYYY_MM_DD/YYYY_MM_DD_drive_NNNN_sync/``.

Body frame = IMU (OXTS) frame, x forward, y left, z up:
``T_body_lidar = inv(T_velo_imu)`` and ``T_body_cam = T_body_lidar @ inv(T_cam2rect_velo)``
with ``T_cam2rect_velo = T_cam2_cam0rect @ R_rect_00 @ T_cam0_velo`` (camera 2 is the
rectified left colour camera, ``K = P_rect_02[:, :3]``).

Frames are the union of the frame indices of ``image_02``, ``velodyne_points``
and ``oxts`` files and of the timestamp files. A frame stamp comes from
``velodyne_points/timestamps.txt``, else ``image_02``'s, else ``oxts``'; a frame
with none gets ``index × 0.1 s`` and the flag ``no_timestamp``. A frame without an
OXTS record has no pose (flag ``no_pose``); missing images/scans give the flags
``no_camera``/``no_lidar``. Each such acceptance is listed in ``metadata["problems"]``.
OXTS records also give the IMU stream (one sample per record, ~10 Hz; see
:mod:`._oxts` for the axes) — with fewer than two records there is no usable
stream, so ``imu`` is not claimed. Ground truth from lat/lon/alt/roll/pitch/yaw
(Mercator) is re-based with ``rebase`` (default ``"gravity"``: origin at the first
pose, first yaw removed, roll/pitch kept so the world stays gravity-aligned).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fuse4d.data.readers import _common, _oxts
from fuse4d.data.readers._poses import rebase_poses
from fuse4d.data.registry import register_reader
from fuse4d.data.types import Calibration, Frame, ImuSamples, Sequence
from fuse4d.errors import DataError
from fuse4d.geometry import invert, make_T

NAME = "kitti_raw"
_DATA = {"camera": ("image_02", ".png"), "lidar": ("velodyne_points", ".bin"), "oxts": ("oxts", ".txt")}
_DAY = re.compile(r"^\d{4}_\d{2}_\d{2}$")


def _is_drive(p: Path) -> bool:
    return p.is_dir() and "_drive_" in p.name and any((p / d).is_dir() for d, _ in _DATA.values())


def _drives(p: Path) -> list[Path]:
    if not p.is_dir():
        return []
    if (p / "calib_cam_to_cam.txt").is_file():
        days = [p]
    else:
        days = sorted(c for c in p.iterdir() if c.is_dir() and _DAY.match(c.name))
    return sorted(d for day in days for d in day.iterdir() if _is_drive(d))


def detect(path: Path) -> bool:
    """True for a KITTI raw drive folder, a day folder (with ``calib_cam_to_cam.txt``), or a folder of days."""
    return _is_drive(path) or bool(_drives(path))


def _resolve(path: Path, drive: str | None) -> Path:
    if _is_drive(path):
        return path
    drives = _drives(path)
    if drive is not None:
        hits = [d for d in drives if d.name == drive or f"_drive_{drive}_" in d.name]
        if len(hits) == 1:
            return hits[0]
        raise DataError(path, f"no single drive {drive!r}; found {[d.name for d in drives]}")
    if len(drives) == 1:
        return drives[0]
    raise DataError(path, f"holds {len(drives)} drives {[d.name for d in drives]}; pick one with --drive (drive=...)")


def _calibration(day: Path) -> Calibration:
    cam_path, velo_path, imu_path = (day / f for f in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt",
                                                       "calib_imu_to_velo.txt"))
    cam, velo, imu = (_common.parse_kitti_calib(p) for p in (cam_path, velo_path, imu_path))
    T_cam0_velo = _common.rigid(_common.calib_matrix(velo, "R", (3, 3), velo_path),
                                _common.calib_matrix(velo, "T", (3, 1), velo_path), velo_path)
    T_velo_imu = _common.rigid(_common.calib_matrix(imu, "R", (3, 3), imu_path),
                               _common.calib_matrix(imu, "T", (3, 1), imu_path), imu_path)
    R_rect = _common.rigid(_common.calib_matrix(cam, "R_rect_00", (3, 3), cam_path), np.zeros(3), cam_path)
    P2 = _common.calib_matrix(cam, "P_rect_02", (3, 4), cam_path)
    K = P2[:, :3].copy()
    T_cam2_cam0 = make_T(np.eye(3), np.linalg.solve(K, P2[:, 3]))
    T_body_lidar = invert(T_velo_imu)
    T_body_cam = T_body_lidar @ invert(T_cam2_cam0 @ R_rect @ T_cam0_velo)
    size = cam.get("S_rect_02")
    return Calibration(K=K, image_size=None if size is None else (int(size[0]), int(size[1])),
                       T_body_cam=T_body_cam, T_body_lidar=T_body_lidar, lidar_beams=64,
                       lidar_azimuth_steps=2048, lidar_fov_deg=(-24.9, 2.0))


def _indexed(folder: Path, ext: str) -> dict[int, Path]:
    if not folder.is_dir():
        return {}
    return {int(f.stem): f for f in folder.iterdir() if f.suffix == ext and f.stem.isdigit()}


def _stamps(drive: Path) -> dict[str, np.ndarray]:
    out = {}
    for key, sub in (("lidar", "velodyne_points"), ("camera", "image_02"), ("oxts", "oxts")):
        p = drive / sub / "timestamps.txt"
        if p.is_file():
            out[key] = _common.check_monotonic(_common.parse_datetimes(p), p)
    return out


def load(path: Path, drive: str | None = None, rebase: str = "gravity", oxts_axes: str = "body") -> Sequence:
    """Open one KITTI raw drive lazily.

    Args:
        path: a drive folder, its day folder, or a folder of day folders.
        drive: drive number or folder name when the path holds several drives.
        rebase: ground-truth world frame (``"gravity"``, ``"first"``, ``"none"`` = Mercator).
        oxts_axes: ``"body"`` (ax ay az, wx wy wz) or ``"level"`` (af al au, wf wl wu).

    Raises:
        DataError: missing calibration file, bad timestamps, odd-sized scan, bad OXTS record.
    """
    drive_dir = _resolve(Path(path), drive)
    cal = _calibration(drive_dir.parent)
    files = {k: _indexed(drive_dir / sub / "data", ext) for k, (sub, ext) in _DATA.items()}
    stamps, problems = _stamps(drive_dir), []
    n = max([max(f) + 1 for f in files.values() if f] + [len(t) for t in stamps.values()] + [0])
    if n == 0:
        raise DataError(drive_dir, "drive has no frames (no images, scans, OXTS records or timestamps)")
    sizes = {i: _common.check_scan_size(f) for i, f in files["lidar"].items()}
    key = next((k for k in ("lidar", "camera", "oxts") if k in stamps), None)
    t = np.arange(n) * 0.1
    has_t = np.zeros(n, bool)
    if key is None:
        problems.append("no timestamps files: frame times are index × 0.1 s")
    else:
        m = min(n, len(stamps[key]))
        t[:m], has_t[:m] = stamps[key][:m], True
        if m < n:
            t[m:] = t[m - 1] + 0.1 * np.arange(1, n - m + 1)
            problems.append(f"{n - m} frames past the end of the timestamps file: times extrapolated at 0.1 s")
    sensors = {s for s in ("camera", "lidar") if files[s]}
    for s in sensors:
        if len(files[s]) < n:
            problems.append(f"{n - len(files[s])} of {n} frames have no {_DATA[s][0]} file")
    if files["camera"]:
        cal.image_size = _common.image_size(next(iter(files["camera"].values())))
    else:
        cal.K, cal.image_size = None, None

    oxts_idx = np.array(sorted(files["oxts"]), dtype=np.int64)
    records = _oxts.read_oxts([files["oxts"][i] for i in oxts_idx])
    gt, imu = np.full((n, 4, 4), np.nan), None
    if len(oxts_idx):
        gt[oxts_idx], _ = rebase_poses(_oxts.oxts_poses(records), rebase)
        t_imu = stamps["oxts"][oxts_idx] if "oxts" in stamps and len(stamps["oxts"]) > oxts_idx[-1] else t[oxts_idx]
        acc, gyro = _oxts.oxts_imu(records, oxts_axes)
        stream = ImuSamples(t_imu, acc, gyro).validate(drive_dir / "oxts")
        if len(oxts_idx) >= 2:
            imu = stream
            sensors.add("imu")
        else:
            problems.append("only 1 OXTS record: no usable IMU stream (it gives the pose of that frame only)")
    if len(oxts_idx) < n:
        problems.append(f"{n - len(oxts_idx)} of {n} frames have no OXTS record (no pose)")

    def loader(i: int) -> Frame:
        flags = set() if has_t[i] else {"no_timestamp"}
        img_f, scan_f = files["camera"].get(i), files["lidar"].get(i)
        if files["camera"] and img_f is None:
            flags.add("no_camera")
        if files["lidar"] and (scan_f is None or sizes[i] == 0):
            flags.add("no_lidar")
        pose = _common.pose_or_none(gt, i)
        if pose is None:
            flags.add("no_pose")
        return Frame(index=i, timestamp=float(t[i]),
                     image=None if img_f is None else _common.read_rgb(img_f, cal.image_size),
                     points=None if "no_lidar" in flags or scan_f is None else _common.read_scan(scan_f),
                     T_world_body=pose, flags=flags)

    meta = _common.base_metadata(NAME, drive_dir, ["poses"] if len(oxts_idx) else [], problems,
                                 drive=drive_dir.name, rebase=rebase, oxts_axes=oxts_axes,
                                 world_frame=f"OXTS Mercator frame re-based with {rebase!r}",
                                 lidar_timing=_common.lidar_timing(drive_dir))
    return Sequence(t, loader, cal, sensors, imu, gt if len(oxts_idx) else None, meta,
                    name=drive_dir.name, path=drive_dir)


register_reader(NAME, detect, load, priority=5,
                description="KITTI raw drive: image_02, velodyne_points, oxts + day calibration files")
