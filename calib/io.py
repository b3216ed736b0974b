"""Calibration files: ``calib.yaml`` (the sidecar format ``load_sequence(..., calib=)``
accepts), ``calib_true.yaml``, seeded calibration errors, and the OpenCalib
(pjlab SensorsCalibration) LiDAR–camera sample layout."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fuse4d.calib.lie import perturb
from fuse4d.data.types import Calibration, ImuSamples, Sequence
from fuse4d.errors import ConfigError, DataError
from fuse4d.fileio import atomic_write_text

TRUE_NAME = "calib_true.yaml"


def read_calibration(path: str | Path) -> Calibration:
    """Read a ``calib.yaml`` (``calibration:`` section, as export writes it) or a bare
    :meth:`Calibration.to_dict` mapping. Raises DataError naming the file when unreadable."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(p, "calibration file not found")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise DataError(p, f"not valid YAML ({e.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise DataError(p, "expected a mapping with a 'calibration' section")
    d = doc.get("calibration", doc)
    try:
        return Calibration.from_dict(d)
    except (TypeError, ValueError, KeyError) as e:
        raise DataError(p, f"bad calibration: {e}") from None


def write_calibration(path: str | Path, calibration: Calibration, report: dict[str, Any] | None = None) -> Path:
    """Write ``calibration`` (and an optional ``calib_report`` section) as YAML, atomically."""
    doc: dict[str, Any] = {"calibration": calibration.to_dict()}
    if report is not None:
        doc["calib_report"] = json.loads(json.dumps(report, default=float))
    return atomic_write_text(Path(path).expanduser(), yaml.safe_dump(doc, sort_keys=False))


def parse_error_spec(spec: str) -> dict[str, float]:
    """``"rot_deg=2,trans_m=0.1,time_ms=20"`` → dict; raises ConfigError on a bad key or value."""
    out = {"rot_deg": 0.0, "trans_m": 0.0, "time_ms": 0.0}
    for part in filter(None, (s.strip() for s in spec.split(","))):
        k, _, v = part.partition("=")
        if k not in out or not v:
            raise ConfigError(f"--calib-error: bad entry {part!r}; use rot_deg=2,trans_m=0.1,time_ms=20")
        try:
            out[k] = float(v)
        except ValueError:
            raise ConfigError(f"--calib-error: {k} must be a number, got {v!r}") from None
    return out


def with_calibration_error(seq: Sequence, rot_deg: float, trans_m: float, time_ms: float,
                           seed: int) -> tuple[Sequence, Calibration]:
    """A view of ``seq`` whose calibration is off, and the true calibration.

    The LiDAR–camera extrinsic is off by exactly ``rot_deg`` / ``trans_m`` about a random
    axis (``T_body_cam`` changes), the IMU–LiDAR rotation by ``rot_deg / 2`` (``T_body_lidar``
    rotation), and the IMU clock really runs ``±time_ms`` ahead of the LiDAR/camera
    clock: the IMU stream is re-stamped and the truth's ``time_offsets`` hold it, while
    the written calibration keeps the nominal offsets. Random draws come from ``seed``.
    """
    rng = np.random.default_rng([int(seed), 9])
    true = seq.calibration
    off = float(rng.choice([-1.0, 1.0]) * time_ms * 1e-3)
    truth = replace(true, time_offsets={k: float(v) + off for k, v in
                                        ({"camera": 0.0, "lidar": 0.0} | dict(true.time_offsets)).items()})
    T_bl = np.asarray(true.T_body_lidar).copy()
    if rot_deg:
        R = perturb(np.eye(4), rot_deg / 2.0, 0.0, rng)[:3, :3]
        T_bl[:3, :3] = R @ T_bl[:3, :3]
    T_cl = perturb(true.T_cam_lidar, rot_deg, trans_m, rng)
    wrong = replace(true, T_body_lidar=T_bl, T_body_cam=T_bl @ np.linalg.inv(T_cl),
                    time_offsets=dict(true.time_offsets))
    view = seq.with_metadata(calib_error={"rot_deg": rot_deg, "trans_m": trans_m, "time_ms": time_ms, "seed": seed})
    view.calibration = wrong
    if off and seq.imu is not None:
        view.imu = ImuSamples(seq.imu.t + off, seq.imu.acc, seq.imu.gyro)
    return view, truth


def apply_calibration(seq: Sequence, calibration: Calibration) -> Sequence:
    """A view of ``seq`` using ``calibration``; when its camera/LiDAR time offset differs from
    the log's, the IMU stream is re-stamped by the difference so frames and IMU share one clock."""
    view = seq.with_metadata(calibration_override=True)
    old = float(seq.calibration.time_offsets.get("lidar", 0.0))
    new = float(calibration.time_offsets.get("lidar", 0.0))
    view.calibration = calibration
    if seq.imu is not None and abs(new - old) > 0:
        view.imu = ImuSamples(seq.imu.t - (new - old), seq.imu.acc, seq.imu.gyro)
    return view


def load_opencalib_pair(folder: str | Path) -> dict[str, Any]:
    """Read an OpenCalib ``lidar2camera/*/data`` folder: the image, the PCD and both JSONs.

    Returns:
        ``{"image": [H, W, 3] uint8, "points": [N, 4] float32 (x, y, z, intensity),
        "K": [3, 3], "T_cam_lidar": [4, 4]}``.
    Raises:
        DataError: a file is missing or malformed.
    """
    from PIL import Image
    d = Path(folder)
    try:
        img = next(p for p in sorted(d.glob("*.png")))
        pcd = next(p for p in sorted(d.glob("*.pcd")))
        intr = json.loads(next(d.glob("*intrinsic.json")).read_text())
        extr = json.loads(next(d.glob("*extrinsic.json")).read_text())
    except StopIteration:
        raise DataError(d, "expected *.png, *.pcd, *intrinsic.json and *extrinsic.json") from None
    K = np.asarray(_first_matrix(intr, "intrinsic", d, 9), np.float64).reshape(3, 3)
    T = np.asarray(_first_matrix(extr, "extrinsic", d, 16), np.float64).reshape(4, 4)
    import open3d as o3d
    t = o3d.t.io.read_point_cloud(str(pcd))
    xyz = t.point.positions.numpy().astype(np.float32)
    inten = t.point.intensity.numpy().reshape(-1, 1).astype(np.float32) if "intensity" in t.point \
        else np.zeros((len(xyz), 1), np.float32)
    return {"image": np.asarray(Image.open(img).convert("RGB")), "points": np.hstack([xyz, inten]), "K": K,
            "T_cam_lidar": T}


def _first_matrix(doc: Any, name: str, folder: Path, size: int) -> list:
    """The first nested ``data`` list with ``size`` numbers (OpenCalib JSON schema)."""
    stack = [doc]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            if "data" in x and isinstance(x["data"], list) and np.size(x["data"]) == size:
                return np.asarray(x["data"], np.float64).reshape(-1).tolist()
            stack.extend(x.values())
    raise DataError(folder, f"no {name} matrix ('data') in the JSON")
