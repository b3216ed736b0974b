"""Export a :class:`Sequence` in the KITTI raw layout, OXTS at the frame rate included.

``write_kitti_raw(seq, DIR)`` writes what :mod:`fuse4d.data.readers.kitti_raw` reads::

    DIR/2011_09_26/calib_cam_to_cam.txt, calib_velo_to_cam.txt, calib_imu_to_velo.txt
    DIR/2011_09_26/2011_09_26_drive_NNNN_sync/
        velodyne_points/data/0000000000.bin, timestamps.txt, timestamps_start.txt, timestamps_end.txt
        image_02/data/0000000000.png, timestamps.txt
        oxts/data/0000000000.txt, dataformat.txt, timestamps.txt
        lidar_timing.json

Choices:

- the day folder is KITTI's first recording day (any ``YYYY_MM_DD`` works); the drive
  number is the synthetic seed (``metadata["seed"]``), else 1. Times are the log's
  own seconds after midnight of that day, written as KITTI's ``YYYY-MM-DD hh:mm:ss.f``
  (nanoseconds), so they read back exactly to 1 ns.
- calibration: the only camera is the rectified camera 2 and camera 0 is the same
  camera (``R_rect_00 = I``, ``P_rect_02 = P_rect_00 = K [I | 0]``), so
  ``T_cam0_velo = T_cam_lidar`` and ``T_velo_imu = inv(T_body_lidar)``: the reader
  recovers ``T_body_cam`` and ``T_body_lidar`` to rounding (12 significant digits).
- OXTS: one record per frame (KITTI's synced 10 Hz OXTS). Position and attitude are
  the ground-truth body pose on a Mercator grid around (49.0° N, 8.4° E, 115 m), so
  the reader's re-based poses match ``seq.gt_poses`` re-based the same way. The IMU
  fields are the log's IMU averaged over each frame's interval, between the midpoints
  to its neighbours (:func:`frame_edges`: the anti-aliasing a 10 Hz output needs): ``ax ay az``/``wx wy wz`` in the body
  frame, ``af al au``/``wf wl wu`` in the level (yaw-only) frame. Velocities come
  from central differences of the ground-truth positions.
- KITTI scans carry no per-point time: ``lidar_timing.json`` holds the azimuth
  timing model fitted on the first sweep's own times (as the KITTI odometry export).
- a frame without LiDAR gets an empty (0-byte) ``.bin``; a frame without an image
  gets no PNG (the reader flags both); a frame without a ground-truth pose gets no
  OXTS record.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

from fuse4d.data.readers._oxts import EARTH_RADIUS_M
from fuse4d.data.types import ImuSamples, Sequence
from fuse4d.data.zarr_log import swap_into_place
from fuse4d.errors import DataError
from fuse4d.fileio import atomic_write_text
from fuse4d.geometry import invert

DAY = "2011_09_26"
#: Mercator origin of the exported world: latitude, longitude (deg), altitude (m)
ORIGIN = (49.0, 8.4, 115.0)
_DATAFORMAT = ("lat lon alt roll pitch yaw vn ve vf vl vu ax ay az af al au wx wy wz wf wl wu "
               "pos_accuracy vel_accuracy navstat numsats posmode velmode orimode").split()


def _stamp_lines(t: np.ndarray) -> str:
    """Seconds after midnight of :data:`DAY` ``[S]`` → KITTI timestamp lines (nanosecond resolution)."""
    base = np.datetime64(DAY.replace("_", "-"), "ns")
    ns = np.round(np.asarray(t, np.float64) * 1e9).astype(np.int64)
    return "".join(str(base + np.timedelta64(int(v), "ns")).replace("T", " ") + "\n" for v in ns)


def _fmt(values) -> str:
    return " ".join(f"{v:.12e}" for v in np.asarray(values, np.float64).reshape(-1))


def _calib_files(seq: Sequence) -> dict[str, str]:
    """The three day-folder calibration files (KITTI ``key: values`` text)."""
    c = seq.calibration
    T_velo_imu = invert(c.T_body_lidar)
    T_cam_velo = c.T_cam_lidar
    K = np.eye(3) if c.K is None else np.asarray(c.K, np.float64)
    P = np.hstack([K, np.zeros((3, 1))])
    w, h = c.image_size if c.image_size is not None else (0, 0)
    cam = ["calib_time: 01-Jan-2000 00:00:00", "corner_dist: 0.000000e+00"]
    for k in range(4):
        cam += [f"S_0{k}: {w:.6e} {h:.6e}", f"K_0{k}: {_fmt(K)}", f"D_0{k}: {_fmt(np.zeros(5))}",
                f"R_0{k}: {_fmt(np.eye(3))}", f"T_0{k}: {_fmt(np.zeros(3))}", f"S_rect_0{k}: {w:.6e} {h:.6e}",
                f"R_rect_0{k}: {_fmt(np.eye(3))}", f"P_rect_0{k}: {_fmt(P)}"]
    velo = ["calib_time: 01-Jan-2000 00:00:00", f"R: {_fmt(T_cam_velo[:3, :3])}", f"T: {_fmt(T_cam_velo[:3, 3])}",
            "delta_f: 0.000000e+00 0.000000e+00", "delta_c: 0.000000e+00 0.000000e+00"]
    imu = ["calib_time: 01-Jan-2000 00:00:00", f"R: {_fmt(T_velo_imu[:3, :3])}", f"T: {_fmt(T_velo_imu[:3, 3])}"]
    return {"calib_cam_to_cam.txt": "\n".join(cam) + "\n", "calib_velo_to_cam.txt": "\n".join(velo) + "\n",
            "calib_imu_to_velo.txt": "\n".join(imu) + "\n"}


def frame_edges(t: np.ndarray) -> np.ndarray:
    """``[S + 1]`` bounds of each frame's interval: midpoints between frame times ``t [S]`` (s), the ends
    half an interval out. An OXTS record averages the IMU samples in ``(edges[k], edges[k + 1]]``."""
    t = np.asarray(t, np.float64)
    if len(t) < 2:
        return np.r_[t - 0.05, t + 0.05]
    mid = 0.5 * (t[1:] + t[:-1])
    return np.r_[t[0] - (mid[0] - t[0]), mid, t[-1] + (t[-1] - mid[-1])]


def oxts_records(t: np.ndarray, poses: np.ndarray, imu: ImuSamples | None) -> np.ndarray:
    """OXTS records ``[S, 30]`` for body poses ``T_world_body [S, 4, 4]`` (world z up) at times ``t [S]`` (s).

    The world origin is placed at :data:`ORIGIN` on the KITTI devkit's Mercator grid
    (x east, y north); the IMU fields average ``imu`` over each record's frame interval
    (zeros without an IMU). Inverse of :func:`fuse4d.data.readers._oxts.oxts_poses`.
    """
    t = np.asarray(t, np.float64)
    lat0, lon0, alt0 = ORIGIN
    scale = np.cos(np.deg2rad(lat0))
    x0 = scale * np.deg2rad(lon0) * EARTH_RADIUS_M
    y0 = scale * EARTH_RADIUS_M * np.log(np.tan(np.deg2rad(90.0 + lat0) / 2.0))
    p = poses[:, :3, 3]
    lon = np.rad2deg((p[:, 0] + x0) / (scale * EARTH_RADIUS_M))
    lat = 2.0 * np.rad2deg(np.arctan(np.exp((p[:, 1] + y0) / (scale * EARTH_RADIUS_M)))) - 90.0
    ypr = Rotation.from_matrix(poses[:, :3, :3]).as_euler("ZYX")  # yaw, pitch, roll
    yaw, pitch, roll = ypr[:, 0], ypr[:, 1], ypr[:, 2]
    v = np.gradient(p, t, axis=0) if len(t) > 1 else np.zeros_like(p)
    R_level = Rotation.from_euler("Z", yaw[:, None]).as_matrix()  # level (yaw-only) frame → world
    v_level = np.einsum("kba,kb->ka", R_level, v)
    acc, gyro = np.zeros((len(t), 3)), np.zeros((len(t), 3))
    if imu is not None and len(imu):
        edges = frame_edges(t)
        lo = np.searchsorted(imu.t, edges[:-1], side="right")
        hi = np.maximum(np.searchsorted(imu.t, edges[1:], side="right"), lo + 1)
        cs_a = np.vstack([np.zeros(3), np.cumsum(imu.acc, 0)])
        cs_g = np.vstack([np.zeros(3), np.cumsum(imu.gyro, 0)])
        lo, hi = np.clip(lo, 0, len(imu) - 1), np.clip(hi, 1, len(imu))
        n = (hi - lo)[:, None]
        acc, gyro = (cs_a[hi] - cs_a[lo]) / n, (cs_g[hi] - cs_g[lo]) / n
    R_level_body = np.einsum("kba,kbc->kac", R_level, poses[:, :3, :3])
    acc_level = np.einsum("kab,kb->ka", R_level_body, acc)
    gyro_level = np.einsum("kab,kb->ka", R_level_body, gyro)
    status = np.tile([0.02, 0.01, 4, 11, 6, 6, 6], (len(t), 1))
    return np.column_stack([lat, lon, p[:, 2] + alt0, roll, pitch, yaw, v[:, 1], v[:, 0], v_level[:, :3],
                            acc, acc_level, gyro, gyro_level, status])


def _record_line(r: np.ndarray) -> str:
    head = " ".join(f"{v:.15g}" for v in r[:25])
    return head + " " + " ".join(str(int(v)) for v in r[25:]) + "\n"


def write_kitti_raw(seq: Sequence, out_dir: str | Path, progress: bool = False, overwrite: bool = False) -> Path:
    """Write ``seq`` as a KITTI raw day folder under ``out_dir`` (see the module notes).

    Returns:
        the drive folder (``out_dir/2011_09_26/2011_09_26_drive_NNNN_sync``).
    Raises:
        DataError: the drive folder exists and ``overwrite`` is False, or a frame's points
            are not ``[N, >=4]``.
    """
    out = Path(out_dir).expanduser()
    day = out / DAY
    seed = seq.metadata.get("seed") if isinstance(seq.metadata, dict) else None
    number = int(seed) % 10000 if isinstance(seed, (int, np.integer)) else 1
    drive = day / f"{DAY}_drive_{number:04d}_sync"
    if drive.exists() and not overwrite:
        raise DataError(drive, "already exists; pass overwrite=True to replace it")
    day.mkdir(parents=True, exist_ok=True)
    for name, text in _calib_files(seq).items():
        atomic_write_text(day / name, text)
    tmp = drive.with_name(f".{drive.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        _write_drive(seq, tmp, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_into_place(tmp, drive)
    return drive


def _write_drive(seq: Sequence, drive: Path, progress: bool) -> None:
    from fuse4d.fusion.estimation.deskew import fit_timing
    velo, cam, oxts = (drive / d / "data" for d in ("velodyne_points", "image_02", "oxts"))
    for d in (velo, cam, oxts):
        d.mkdir(parents=True)
    t = np.asarray(seq.timestamps, np.float64)
    poses = np.full((len(seq), 4, 4), np.nan) if seq.gt_poses is None else np.array(seq.gt_poses, np.float64)
    timing, sweep = None, 0.1
    frames = enumerate(seq)
    if progress:
        from tqdm import tqdm
        frames = tqdm(frames, total=len(seq), desc="export kitti-raw", unit="frame")
    for i, f in frames:
        name = f"{i:010d}"
        if f.T_world_body is not None:
            poses[i] = f.T_world_body
        if f.points is None:
            (velo / f"{name}.bin").write_bytes(b"")
        else:
            pts = np.asarray(f.points)
            if pts.ndim != 2 or pts.shape[1] < 4:
                raise DataError(seq.path, f"frame {i}: points have shape {list(pts.shape)}, expected [N, 4]")
            np.ascontiguousarray(pts[:, :4], dtype=np.float32).tofile(velo / f"{name}.bin")
            if timing is None and f.point_time is not None and len(pts) >= 10:
                timing = fit_timing(pts, f.point_time)
                sweep = 1.0 / timing["rate_hz"]
        if f.image is not None:
            Image.fromarray(np.asarray(f.image, dtype=np.uint8)).save(cam / f"{name}.png")
    if timing is not None:
        atomic_write_text(drive / "lidar_timing.json", json.dumps(timing) + "\n")
    frac = 1.0 if timing is None else float(timing["stamp_fraction"])  # where in the sweep the stamp falls
    atomic_write_text(drive / "velodyne_points" / "timestamps.txt", _stamp_lines(t))
    atomic_write_text(drive / "velodyne_points" / "timestamps_start.txt", _stamp_lines(t - frac * sweep))
    atomic_write_text(drive / "velodyne_points" / "timestamps_end.txt", _stamp_lines(t + (1 - frac) * sweep))
    atomic_write_text(drive / "image_02" / "timestamps.txt", _stamp_lines(t))
    ok = np.isfinite(poses.reshape(len(poses), -1)).all(1)
    if ok.any():
        rec = oxts_records(t[ok], poses[ok], seq.imu)
        for i, r in zip(np.flatnonzero(ok), rec):
            (oxts / f"{i:010d}.txt").write_text(_record_line(r))
        atomic_write_text(drive / "oxts" / "timestamps.txt", _stamp_lines(t))
        atomic_write_text(drive / "oxts" / "dataformat.txt", "\n".join(_DATAFORMAT) + "\n")
