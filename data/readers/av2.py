"""Argoverse 2 sensor-log reader (``"av2"``): ``sensors/lidar/*.feather`` + ``city_SE3_egovehicle.feather``.

Frames are the LiDAR sweeps. AV2 sweeps are already motion-compensated and
expressed in the egovehicle frame (both 32-beam LiDARs merged), so body =
egovehicle frame and ``T_body_lidar = I``; the two LiDAR extrinsics are kept in
``metadata["av2_lidar_extrinsics"]``. Points: float16 x, y, z → float32, uint8
intensity → float32; ``point_time`` = ``offset_ns`` × 1e-9 s relative to the sweep stamp
(informational: ``metadata["lidar_deskewed"] = True`` tells consumers the points are
already motion-compensated).

Ground truth:
    * poses from ``city_SE3_egovehicle`` (exact stamp, else SLERP between
      neighbours ≤ 0.2 s apart, else NaN), re-based with ``rebase`` (default
      ``"gravity"``: origin at the first sweep, its yaw removed, z up as in the city frame);
    * ``flow_labels.feather`` (rows = points of the first sweep) → frame 0's
      ``point_dynamic`` and ``point_semantics`` (annotated object categories mapped
      by :data:`AV2_TO_CLASS`; unannotated points, ground included, are 0 = unlabeled);
    * the ground-height raster (``map/*ground_height_surface*.npy`` + ``*Sim2_city.json``)
      → ``gt_maps["elevation"]`` resampled (nearest cell, same 0.3 m resolution) onto a
      grid aligned with our world frame; this is exact up to the resampling because the
      world is a z-rotation + translation of the city frame. With ``rebase="first"`` it
      is not, and only ``metadata["av2_ground_height"]`` (path + Sim2) is set.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fuse4d.data import classes as C
from fuse4d.data.readers import _common
from fuse4d.data.readers._poses import interpolate_poses, rebase_poses
from fuse4d.data.registry import register_reader
from fuse4d.data.types import Calibration, Frame, Sequence
from fuse4d.errors import DataError
from fuse4d.geometry import make_T, quat_to_matrix

NAME = "av2"
_CATEGORIES = (  # av2 AnnotationCategories; flow-label class id = 1 + position, 0 = NONE
    "ANIMAL", "ARTICULATED_BUS", "BICYCLE", "BICYCLIST", "BOLLARD", "BOX_TRUCK", "BUS",
    "CONSTRUCTION_BARREL", "CONSTRUCTION_CONE", "DOG", "LARGE_VEHICLE", "MESSAGE_BOARD_TRAILER",
    "MOBILE_PEDESTRIAN_CROSSING_SIGN", "MOTORCYCLE", "MOTORCYCLIST", "OFFICIAL_SIGNALER", "PEDESTRIAN",
    "RAILED_VEHICLE", "REGULAR_VEHICLE", "SCHOOL_BUS", "SIGN", "STOP_SIGN", "STROLLER",
    "TRAFFIC_LIGHT_TRAILER", "TRUCK", "TRUCK_CAB", "VEHICULAR_TRAILER", "WHEELCHAIR", "WHEELED_DEVICE",
    "WHEELED_RIDER")
_OURS = {"REGULAR_VEHICLE": C.CAR, "PEDESTRIAN": C.PEDESTRIAN, "OFFICIAL_SIGNALER": C.PEDESTRIAN,
         "STROLLER": C.PEDESTRIAN, "WHEELCHAIR": C.PEDESTRIAN, "BOLLARD": C.POLE, "SIGN": C.POLE,
         "STOP_SIGN": C.POLE}
_OTHER_VEHICLE = ("ARTICULATED_BUS", "BICYCLE", "BICYCLIST", "BOX_TRUCK", "BUS", "LARGE_VEHICLE",
                  "MESSAGE_BOARD_TRAILER", "MOTORCYCLE", "MOTORCYCLIST", "RAILED_VEHICLE", "SCHOOL_BUS",
                  "TRAFFIC_LIGHT_TRAILER", "TRUCK", "TRUCK_CAB", "VEHICULAR_TRAILER", "WHEELED_DEVICE",
                  "WHEELED_RIDER")
#: flow-label class id → fuse4d class id (``[31]`` uint8); unmapped categories → unlabeled
AV2_TO_CLASS = np.array([C.UNLABELED] + [_OURS.get(c, C.OTHER_VEHICLE if c in _OTHER_VEHICLE else C.UNLABELED)
                                         for c in _CATEGORIES], dtype=np.uint8)
_POINT_COLS = ["x", "y", "z", "intensity", "offset_ns"]


def detect(path: Path) -> bool:
    """True for an AV2 log folder (``city_SE3_egovehicle.feather`` and ``sensors/lidar/``)."""
    return (path / "city_SE3_egovehicle.feather").is_file() and (path / "sensors" / "lidar").is_dir()


def _read_feather(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        df = pd.read_feather(path)
    except Exception as e:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(path, f"cannot read feather file: {e}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(path, f"missing columns {missing}")
    return df


def _poses_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    df = _read_feather(path, ["timestamp_ns", "qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m"])
    ns = df["timestamp_ns"].to_numpy(np.int64)
    _common.check_monotonic(ns, path)
    q = df[["qx", "qy", "qz", "qw"]].to_numpy(np.float64)
    tr = df[["tx_m", "ty_m", "tz_m"]].to_numpy(np.float64)
    _common.check_finite(np.hstack([q, tr]), path, "pose values")
    return ns, make_T(quat_to_matrix(q), tr)


def _ground_height(log: Path, T_world_city: np.ndarray) -> tuple[dict | None, dict | None, list[str]]:
    npy = sorted((log / "map").glob("*ground_height_surface*.npy")) if (log / "map").is_dir() else []
    sim = sorted((log / "map").glob("*Sim2_city.json")) if (log / "map").is_dir() else []
    if not npy or not sim:
        return None, None, []
    d = json.loads(sim[0].read_text())
    R, t, s = np.asarray(d["R"], float).reshape(2, 2), np.asarray(d["t"], float).reshape(2), float(d["s"])
    meta = {"path": str(npy[0]), "Sim2": {"R": R.tolist(), "t": t.tolist(), "s": s}}
    A, b = T_world_city[:2, :2], T_world_city[:2, 3]
    if not (np.allclose(T_world_city[2, :3], [0, 0, 1]) and np.allclose(T_world_city[:2, 2], 0)):
        return None, meta, ["ground-height raster not resampled: world frame is not a z-rotation of the city frame"]
    H = np.load(npy[0]).astype(np.float32)
    res = 1.0 / s
    rows, cols = H.shape
    corners_img = np.array([[0, 0], [cols, 0], [0, rows], [cols, rows]], float)
    corners_city = (corners_img / s - t) @ R  # inverse of img = s (R city + t), R orthonormal
    corners_w = corners_city @ A.T + b
    lo, hi = corners_w.min(0), corners_w.max(0)
    nx, ny = np.ceil((hi - lo) / res).astype(int)
    cx = lo[0] + (np.arange(nx) + 0.5) * res
    cy = lo[1] + (np.arange(ny) + 0.5) * res
    w = np.stack(np.meshgrid(cx, cy, indexing="ij"), -1).reshape(-1, 2)
    img = s * (((w - b) @ A) @ R.T + t)
    col, row = np.floor(img[:, 0]).astype(np.int64), np.floor(img[:, 1]).astype(np.int64)
    ok = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
    height = np.full(len(w), np.nan, np.float32)
    height[ok] = H[row[ok], col[ok]] + np.float32(T_world_city[2, 3])
    grid = {"height": height.reshape(nx, ny), "origin": lo.astype(np.float64), "resolution": res}
    return grid, meta, []


def load(path: Path, rebase: str = "gravity") -> Sequence:
    """Open an AV2 sensor log lazily (one feather file read per frame).

    Raises:
        DataError: missing/corrupt feather files or columns, non-increasing pose stamps,
            a sweep whose file name is not a nanosecond stamp, NaN points, flow labels
            whose row count differs from the first sweep.
    """
    log = Path(path)
    sweeps = sorted((log / "sensors" / "lidar").glob("*.feather"))
    if not sweeps:
        raise DataError(log / "sensors" / "lidar", "no LiDAR sweeps (*.feather)")
    try:
        ns = np.array([int(f.stem) for f in sweeps], dtype=np.int64)
    except ValueError:
        raise DataError(log / "sensors" / "lidar", "sweep file names must be integer nanosecond stamps") from None
    order = np.argsort(ns)
    sweeps, ns = [sweeps[i] for i in order], ns[order]
    t = _common.ns_to_seconds(ns)
    problems: list[str] = []
    ns_pose, T_city = _poses_table(log / "city_SE3_egovehicle.feather")
    T_city_ego = interpolate_poses(_common.ns_to_seconds(ns_pose), T_city, t, max_gap=0.2)
    n_miss = int((~np.isfinite(T_city_ego[:, 0, 0])).sum())
    if n_miss:
        problems.append(f"{n_miss} of {len(t)} sweeps have no city_SE3_egovehicle pose")
    gt, T_world_city = rebase_poses(T_city_ego, rebase)
    calib_df = _read_feather(log / "calibration" / "egovehicle_SE3_sensor.feather",
                             ["sensor_name", "qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m"])
    lidars = calib_df[calib_df["sensor_name"].str.contains("lidar")]
    extr = {r.sensor_name: make_T(quat_to_matrix([r.qx, r.qy, r.qz, r.qw]), [r.tx_m, r.ty_m, r.tz_m]).tolist()
            for r in lidars.itertuples()}
    flow_path = log / "flow_labels.feather"
    try:
        grid, gh_meta, gh_problems = _ground_height(log, T_world_city)
    except (ValueError, KeyError, TypeError, OSError, EOFError) as e:  # a corrupt map/*.json or *.npy
        raise DataError(log / "map", f"unreadable ground-height map: {type(e).__name__}: {e}") from None
    problems += gh_problems
    layers = ["poses"] + (["point_dynamic", "point_semantics"] if flow_path.is_file() else []) + \
        (["elevation"] if grid else [])

    def loader(i: int) -> Frame:
        df = _read_feather(sweeps[i], _POINT_COLS)
        pts = df[["x", "y", "z", "intensity"]].to_numpy(np.float32)
        _common.check_finite(pts, sweeps[i], "points")
        frame = Frame(index=i, timestamp=float(t[i]), points=pts,
                      point_time=(df["offset_ns"].to_numpy(np.float64) * 1e-9).astype(np.float32),
                      T_world_body=_common.pose_or_none(gt, i))
        if frame.T_world_body is None:
            frame.flags.add("no_pose")
        if i == 0 and flow_path.is_file():
            fl = _read_feather(flow_path, ["dynamic", "classes"])
            if len(fl) != len(pts):
                raise DataError(flow_path, f"has {len(fl)} rows but the first sweep has {len(pts)} points")
            frame.point_dynamic = fl["dynamic"].to_numpy(bool)
            cls = fl["classes"].to_numpy(np.int64)
            frame.point_semantics = AV2_TO_CLASS[np.clip(cls, 0, len(AV2_TO_CLASS) - 1)]
        return frame

    cal = Calibration(T_body_lidar=np.eye(4), lidar_beams=64)
    meta = _common.base_metadata(NAME, log, layers, problems, log_id=log.name, av2_lidar_extrinsics=extr,
                                 world_frame=f"city frame re-based with {rebase!r}",
                                 T_world_city=T_world_city.tolist(),
                                 lidar_deskewed=True)  # sweeps are motion-compensated upstream: do not deskew again
    if gh_meta:
        meta["av2_ground_height"] = gh_meta
    return Sequence(t, loader, cal, {"lidar"}, None, gt, meta, name=log.name, path=log,
                    gt_maps={"elevation": grid} if grid else None)


register_reader(NAME, detect, load, priority=5,
                description="Argoverse 2 sensor log: sensors/lidar/*.feather + city_SE3_egovehicle.feather")
