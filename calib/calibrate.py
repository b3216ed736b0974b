"""Calibrate a log from its own data: time offset, IMU–LiDAR rotation, LiDAR–camera extrinsic.

``calibrate_sequence(seq, config)`` runs each estimate the log's sensors allow
and returns a :class:`CalibResult`: the refined :class:`Calibration` (estimates
that are not excited keep the starting value), and a flat report with values,
standard deviations, flags and, given the truth, the errors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fuse4d.calib.config import CalibConfig
from fuse4d.calib.lie import np_so3_exp, np_so3_log, rotation_error_deg
from fuse4d.data.types import Calibration, Sequence
from fuse4d.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class CalibResult:
    """Refined calibration, report (JSON-safe dict) and what the plots need."""

    calibration: Calibration
    report: dict[str, Any]
    extrinsic: Any = None
    frames: list = field(default_factory=list)


def calibrate_sequence(seq: Sequence, config: CalibConfig | None = None, truth: Calibration | None = None,
                       dynamic: dict | None = None) -> CalibResult:
    """Estimate time offset, IMU–LiDAR rotation and LiDAR–camera extrinsic of ``seq``.

    Args:
        seq: the log; its calibration is the starting guess.
        config: what to run and how.
        truth: the true calibration, when known, to report errors.
        dynamic: optional ``{index: (point_mask [N], pixel_mask [H, W])}`` of moving objects.

    Raises:
        DataError: too few frames, no motion, no overlap between LiDAR and image, no
            structure in view, or a log without the sensors any estimate needs.
    """
    from fuse4d.calib.motion import lidar_track
    cfg = config or CalibConfig()
    src = str(seq.path or seq.name)
    cal0 = seq.calibration
    if len(seq) < 2 and not (cfg.lidar_camera and {"camera", "lidar"} <= seq.sensors):
        raise DataError(src, f"too few frames: {len(seq)} (need 2 or more)")
    has = seq.sensors
    if "lidar" not in has:
        raise DataError(src, "the log has no LiDAR: nothing to calibrate (LiDAR-camera and IMU-LiDAR both need it)")
    rep: dict[str, Any] = {"source": src, "notes": []}
    cal = cal0
    track = None
    tic = time.perf_counter()
    need_track = ("imu" in has and seq.imu is not None and (cfg.imu_rotation or cfg.time_offset)) or len(seq) > 1
    imu_ok = "imu" in has and seq.imu is not None and len(seq.imu) > 10
    if need_track:
        track = lidar_track(seq, cfg.max_frames_motion or None, gyro=_gyro(seq, cal0) if imu_ok else None)
        rep["odometry_s"] = time.perf_counter() - tic
    if track is not None and imu_ok:
        cal, track = _imu_part(seq, track, cfg, cal, rep, src)
    elif cfg.imu_rotation or cfg.time_offset:
        rep["notes"].append("no IMU stream: IMU rotation and time offset skipped")
    est, frames = None, []
    if cfg.lidar_camera and {"camera", "lidar"} <= has and cal0.K is not None:
        from fuse4d.calib.frames import edge_frames
        from fuse4d.calib.lidar_camera import refine_extrinsic
        frames = edge_frames(seq, cfg.frames, track, dynamic=dynamic, sigma=cfg.edge_sigma)
        est = refine_extrinsic(frames, cal0.K, cal0.T_cam_lidar, cfg, src)
        rep.update(lidar_camera_seconds=est.seconds, lidar_camera_compile_seconds=est.compile_seconds,
                   lidar_camera_frames=len(frames), lidar_camera_points=est.n_points,
                   lidar_camera_std_rot_deg=est.std_rot_deg, lidar_camera_std_trans_m=est.std_trans_m,
                   lidar_camera_excited=est.excited, lidar_camera_rot_excited=est.rot_excited,
                   lidar_camera_trans_excited=est.trans_excited, lidar_camera_std_method=est.std_method,
                   lidar_camera_cost_before=est.cost_init,
                   lidar_camera_cost_after=est.cost,
                   rot_change_deg=rotation_error_deg(cal0.T_cam_lidar[:3, :3], est.T_cam_lidar[:3, :3]),
                   trans_change_m=float(np.linalg.norm(cal0.T_cam_lidar[:3, 3] - est.T_cam_lidar[:3, 3])))
        rep["notes"] += est.notes
        far = rep["rot_change_deg"] > cfg.search_deg + 1.0 or rep["trans_change_m"] > 0.3
        if far:  # the edge cost has spurious minima on texture; a big jump is not trusted
            est.excited = est.rot_excited = False
            rep["lidar_camera_excited"] = rep["lidar_camera_rot_excited"] = False
            rep["notes"].append(f"LiDAR-camera estimate moved {rep['rot_change_deg']:.1f} deg / "
                                f"{rep['trans_change_m']:.2f} m from the start: not trusted, start kept")
        if est.rot_excited:  # an unexcited translation is already the start's (see refine_extrinsic)
            cal = replace(cal, T_body_cam=cal.T_body_lidar @ np.linalg.inv(est.T_cam_lidar))
        else:
            cal = replace(cal, T_body_cam=cal.T_body_lidar @ np.linalg.inv(cal0.T_cam_lidar))
    elif cfg.lidar_camera:
        rep["notes"].append("no camera (or no intrinsics): LiDAR-camera extrinsic skipped")
    rep["T_cam_lidar"] = cal.T_cam_lidar.tolist()
    rep["T_body_lidar"] = cal.T_body_lidar.tolist()
    rep["time_offsets"] = dict(cal.time_offsets)
    rep["seconds"] = time.perf_counter() - tic
    if truth is not None:
        rep.update(errors(cal, truth, cal0))
        W = np.asarray(rep.get("imu_rot_weak_axes") or np.zeros((0, 3))).reshape(-1, 3)
        e = np_so3_log(cal.T_body_lidar[:3, :3] @ truth.T_body_lidar[:3, :3].T)  # error about body axes
        rep["imu_rot_err_determined_deg"] = float(np.degrees(np.linalg.norm(e - W.T @ (W @ e))))
    return CalibResult(cal, rep, est, frames)


def _gyro(seq, cal: Calibration, bias=None):
    from fuse4d.calib.motion import GyroDeskew
    return GyroDeskew(seq.imu, float(cal.time_offsets.get("lidar", 0.0)), cal.T_body_lidar[:3, :3], bias)


def _imu_part(seq, track, cfg: CalibConfig, cal: Calibration, rep: dict, src: str):
    """Time offset and IMU–LiDAR rotation; the odometry (deskewed with the gyro at the
    calibration it was run with) is re-run with the new estimate until the offset moves by
    less than 1 ms and the rotation by less than 0.2 deg, at most ``cfg.motion_passes``
    passes (a deskew offset off by 20 ms moves the estimate by ~0.8 ms: each pass shrinks
    the error ~25x). Returns ``(calibration, track)``."""
    from fuse4d.calib.motion import lidar_track
    used = cal
    for p in range(max(cfg.motion_passes, 1)):
        new, bias, notes = _imu_estimates(seq, track, cfg, cal, rep, src)
        rep["motion_passes"] = p + 1
        rep.setdefault("time_offset_passes_ms", []).append(rep.get("time_offset_ms"))
        moved_ms = abs(new.time_offsets.get("lidar", 0.0) - used.time_offsets.get("lidar", 0.0)) * 1e3
        moved_deg = rotation_error_deg(new.T_body_lidar[:3, :3], used.T_body_lidar[:3, :3])
        if p + 1 >= cfg.motion_passes or (moved_ms < 1.0 and moved_deg < 0.2):
            break
        tic = time.perf_counter()
        used = new
        track = lidar_track(seq, cfg.max_frames_motion or None, gyro=_gyro(seq, new, bias))
        rep["odometry_s"] = rep.get("odometry_s", 0.0) + time.perf_counter() - tic
    rep["notes"] += notes
    return new, track


def _imu_estimates(seq, track, cfg: CalibConfig, cal: Calibration, rep: dict, src: str):
    from fuse4d.calib.hand_eye import estimate_rotation, gyro_rotations, rotation_vectors
    from fuse4d.calib.time_offset import estimate_time_offset
    from fuse4d.geometry import invert
    k = np.flatnonzero(np.diff(track.index) == 1) + 1
    if len(k) < cfg.min_motion_pairs:
        raise DataError(src, f"too few frames: {len(k)} consecutive LiDAR sweep pairs (need {cfg.min_motion_pairs})")
    t0, t1 = track.t[k - 1], track.t[k]
    rel = np.stack([invert(track.T_odom_lidar[i - 1]) @ track.T_odom_lidar[i] for i in k])
    b = rotation_vectors(rel)
    theta = np.linalg.norm(b, axis=1)
    if np.sum(theta >= np.radians(cfg.min_rotation_deg)) < cfg.min_motion_pairs:
        raise DataError(src, f"no motion: only {int(np.sum(theta >= np.radians(cfg.min_rotation_deg)))} frame "
                             f"intervals turn by {cfg.min_rotation_deg} deg or more (need {cfg.min_motion_pairs})")
    off = float(cal.time_offsets.get("lidar", 0.0))
    notes: list[str] = []
    bias = None
    if cfg.time_offset:
        te = estimate_time_offset(t0, t1, theta, seq.imu, cfg.time_search_s, cfg.max_std_ms * 1e-3, src,
                                  cfg.min_motion_pairs)
        rep.update(time_offset_ms=te.offset_s * 1e3, time_offset_std_ms=te.std_s * 1e3, time_offset_excited=te.excited)
        notes += te.notes
        if te.excited:
            off = te.offset_s
            cal = replace(cal, time_offsets={**cal.time_offsets, "camera": off, "lidar": off})
    if cfg.imu_rotation:
        a = gyro_rotations(seq.imu, t0, t1, off)
        re = estimate_rotation(a, b, t1 - t0, cal.T_body_lidar[:3, :3], cfg.min_rotation_deg, cfg.min_motion_pairs,
                               cfg.max_std_deg, src)
        rep.update(imu_rot_std_deg=re.std_deg.tolist(), imu_rot_excited=re.excited,
                   imu_rot_weak_axes=re.weak_axes.tolist(), imu_rot_applied=re.applied,
                   imu_rot_change_deg=rotation_error_deg(cal.T_body_lidar[:3, :3], re.R_body_lidar),
                   gyro_bias=re.gyro_bias.tolist())
        notes += re.notes
        bias = re.gyro_bias
        R = re.R_body_lidar if re.applied else cal.T_body_lidar[:3, :3]  # weakly determined directions keep the start
        if cfg.yaw_from_acceleration:
            R = _fuse_acceleration_yaw(seq, track, cfg, cal, re, R, off, rep, notes)
        if re.applied or not np.allclose(R, cal.T_body_lidar[:3, :3]):
            T_cl = cal.T_cam_lidar
            T_bl = cal.T_body_lidar.copy()
            T_bl[:3, :3] = R
            cal = replace(cal, T_body_lidar=T_bl, T_body_cam=T_bl @ np.linalg.inv(T_cl))
    return cal, bias, notes


def _fuse_acceleration_yaw(seq, track, cfg: CalibConfig, cal: Calibration, re, R: np.ndarray, off: float,
                           rep: dict, notes: list) -> np.ndarray:
    """``R_body_lidar [3, 3]`` with its rotation about the body's vertical (the mean specific
    force) corrected by the yaw from horizontal accelerations, weighted against the hand-eye's
    variance along that axis (none when the hand-eye left it at the start)."""
    from fuse4d.calib.acceleration import estimate_yaw
    up = np.mean(seq.imu.acc, axis=0)
    up = up / max(np.linalg.norm(up), 1e-9)
    ye = estimate_yaw(track.t, track.T_odom_lidar, seq.imu, R, cal.T_body_lidar[:3, 3], off, up,
                      cfg.acceleration_segment_frames, index=track.index)
    weak = re.weak_axes.reshape(-1, 3)
    s_he = np.inf if not re.applied or (len(weak) and np.abs(weak @ up).max() > 0.5) \
        else float(np.sqrt(max(up @ re.cov @ up, 0.0)))
    s_acc = ye.std
    w = 1.0 if not np.isfinite(s_he) else s_he ** 2 / (s_he ** 2 + s_acc ** 2)
    fused = s_acc if not np.isfinite(s_he) else float(1.0 / np.sqrt(1.0 / s_he ** 2 + 1.0 / s_acc ** 2))
    rep.update(imu_yaw_acc_deg=float(np.degrees(ye.psi)), imu_yaw_acc_std_deg=float(np.degrees(s_acc)),
               imu_yaw_hand_eye_std_deg=float(np.degrees(s_he)), imu_yaw_std_deg=float(np.degrees(min(fused, s_he))))
    if not np.isfinite(s_acc) or np.degrees(s_acc) > cfg.max_std_deg:
        notes.append(f"yaw of the IMU mount from accelerations not applied (std {np.degrees(s_acc):.2f} deg > "
                     f"{cfg.max_std_deg} deg): too little horizontal acceleration")
        return R
    return np_so3_exp(w * ye.psi * up) @ R


def errors(cal: Calibration, truth: Calibration, start: Calibration | None = None) -> dict[str, float]:
    """Errors of ``cal`` against ``truth`` (and of ``start``, suffixed ``_before``)."""
    out = {}
    for suffix, c in (("", cal), ("_before", start)):
        if c is None:
            continue
        Tc, Tt = c.T_cam_lidar, truth.T_cam_lidar
        out["rot_err_deg" + suffix] = rotation_error_deg(Tc[:3, :3], Tt[:3, :3])
        out["trans_err_m" + suffix] = float(np.linalg.norm(Tc[:3, 3] - Tt[:3, 3]))
        out["imu_rot_err_deg" + suffix] = rotation_error_deg(c.T_body_lidar[:3, :3], truth.T_body_lidar[:3, :3])
        out["time_offset_err_ms" + suffix] = abs(float(c.time_offsets.get("lidar", 0.0))
                                                 - float(truth.time_offsets.get("lidar", 0.0))) * 1e3
    return out
