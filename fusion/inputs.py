"""Frames → model input tensors, the same way for training and inference.

:class:`ImageWarp` maps an input image to the model resolution: a centred crop to the
model's aspect when it keeps ≥ 75 % of the image (KITTI 1242×375 keeps the central
1125×375), else an anisotropic resize of the whole image (7-Scenes 640×480), with K changed to
match; :meth:`ImageWarp.unwarp` takes model-resolution outputs back to the input pixels.
:func:`window_inputs` builds the model's input dict for a window of frames.

A spinning LiDAR's sweep takes a frame interval, while the camera exposes at the frame stamp:
at 10 m/s the points of the sweep's start sit up to a metre away from where the camera sees
that surface. Before LiDAR points are projected into the camera they are moved to the stamp
(:func:`camera_points`) with the sweep's motion — the LiDAR odometry's at inference
(:func:`lidar_motions`), the ground truth's in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fuse4d.encoders.imu import imu_features
from fuse4d.encoders.lidar import range_image, sparse_depth
from fuse4d.fusion.config import ModelConfig

MIN_CROP_KEEP = 0.75


@dataclass
class ImageWarp:
    """Crop ``(x0, y0, w, h)`` of an input image of ``(H_in, W_in)``, resized to ``(H, W)``."""

    in_size: tuple[int, int]
    crop: tuple[int, int, int, int]
    out_size: tuple[int, int]

    @classmethod
    def fit(cls, in_size: tuple[int, int], out_size: tuple[int, int]) -> "ImageWarp":
        """Choose the crop for an input ``(H_in, W_in)`` and model ``(H, W)`` resolution."""
        Hi, Wi = in_size
        H, W = out_size
        a_in, a_m = Wi / Hi, W / H
        if a_in >= a_m:
            w, h = int(round(Hi * a_m)), Hi
        else:
            w, h = Wi, int(round(Wi / a_m))
        if w * h < MIN_CROP_KEEP * Wi * Hi:
            w, h = Wi, Hi
        return cls((Hi, Wi), ((Wi - w) // 2, (Hi - h) // 2, w, h), (H, W))

    def K(self, K_in: np.ndarray) -> np.ndarray:
        """Intrinsics ``[3, 3]`` of the model image from the input's."""
        x0, y0, w, h = self.crop
        H, W = self.out_size
        sx, sy = W / w, H / h
        # pixel centres at integer coordinates (OpenCV): u_out + 0.5 = (u_in + 0.5 - x0) * sx
        S = np.diag([sx, sy, 1.0])
        S[0, 2], S[1, 2] = (0.5 - x0) * sx - 0.5, (0.5 - y0) * sy - 0.5
        return S @ np.asarray(K_in, np.float64)

    def image(self, img: np.ndarray) -> torch.Tensor:
        """``[H_in, W_in, 3]`` uint8 → ``[3, H, W]`` float in [0, 1] (antialiased)."""
        x0, y0, w, h = self.crop
        t = torch.from_numpy(np.array(img[y0:y0 + h, x0:x0 + w])).permute(2, 0, 1)[None].float()
        return F.interpolate(t, size=self.out_size, mode="bilinear", antialias=True, align_corners=False)[0] / 255.0

    def depth(self, d: np.ndarray) -> torch.Tensor:
        """``[H_in, W_in]`` depth (m, 0 = none) → ``[H, W]`` by nearest sampling."""
        x0, y0, w, h = self.crop
        t = torch.from_numpy(np.array(d[y0:y0 + h, x0:x0 + w], dtype=np.float32))[None, None]
        return F.interpolate(t, size=self.out_size, mode="nearest")[0, 0]

    def unwarp(self, x: torch.Tensor, fill: float | None = None, mode: str = "bilinear") -> torch.Tensor:
        """Model-resolution ``[N, C, H, W]`` → input resolution ``[N, C, H_in, W_in]``; pixels
        outside the crop get ``fill`` (None = replicate the border)."""
        x0, y0, w, h = self.crop
        Hi, Wi = self.in_size
        kw = {"align_corners": False} if mode == "bilinear" else {}
        y = F.interpolate(x, size=(h, w), mode=mode, **kw)
        pad = (x0, Wi - w - x0, y0, Hi - h - y0)
        if any(pad):
            y = F.pad(y, pad, mode="replicate") if fill is None else F.pad(y, pad, value=fill)
        return y


def reference_frame(sensors: set[str]) -> str:
    """The sensor frame the model predicts motion in: camera, else lidar, else body."""
    return "camera" if "camera" in sensors else "lidar" if "lidar" in sensors else "body"


def T_body_ref(calib, ref: str) -> np.ndarray:
    """``[4, 4]`` reference sensor → body."""
    return {"camera": calib.T_body_cam, "lidar": calib.T_body_lidar}.get(ref, np.eye(4))


def lidar_motions(T_odom_lidar: np.ndarray, t: np.ndarray) -> list[tuple[np.ndarray, float] | None]:
    """Per-frame sweep motion from a LiDAR trajectory: ``(T_prev_cur [4, 4], dt s)`` of the LiDAR
    over the interval ending at each frame, or None where unknown.

    Args:
        T_odom_lidar: ``[S, 4, 4]`` LiDAR poses in any fixed frame (NaN = no pose).
        t: ``[S]`` frame stamps, seconds.

    Frame 0 (no previous frame) takes frame 1's motion: constant velocity.
    """
    S = len(t)
    out: list = [None] * S
    for k in range(1, S):
        a, b = T_odom_lidar[k - 1], T_odom_lidar[k]
        dt = float(t[k] - t[k - 1])
        if dt > 0 and np.isfinite(a).all() and np.isfinite(b).all():
            out[k] = (np.linalg.inv(a) @ b, dt)
    if S > 1:
        out[0] = out[1]
    return out


def camera_points(frame, motion: tuple[np.ndarray, float] | None, timing: dict | None = None) -> np.ndarray:
    """The frame's LiDAR points ``[N, 3]`` (LiDAR frame, metres) moved to the frame stamp.

    Args:
        frame: a Frame with ``points`` (and ``point_time``, seconds from the stamp, when known).
        motion: ``(T_prev_cur, dt)`` of the LiDAR over the last frame interval (see
            :func:`lidar_motions`), or None (points returned as captured).
        timing: the sensor's azimuth timing model (``seq.metadata["lidar_timing"]``) for sweeps
            without per-point times.
    """
    from fuse4d.fusion.estimation.deskew import azimuth_time, constant_velocity_motion, deskew
    pts = np.asarray(frame.points)[:, :3].astype(np.float64)
    tau = frame.point_time
    if tau is None and timing is not None:
        tau = azimuth_time(pts, timing)
    if motion is None or tau is None:
        return pts
    return deskew(pts, tau, constant_velocity_motion(motion[0], motion[1]))


def window_inputs(frames: list, calib, cfg: ModelConfig, sensors: set[str], depth_sensor: bool = False,
                  warp: ImageWarp | None = None, motions: list | None = None,
                  timing: dict | None = None) -> tuple[dict, dict]:
    """Model inputs (batch of one window) for ``frames``.

    Args:
        frames: S :class:`~fuse4d.data.types.Frame`; calib: the log's Calibration.
        sensors: sensors to use (subset of camera, lidar, imu).
        depth_sensor: ``Frame.depth`` is a measured depth image (RGB-D), used as ``depth_view``.
        warp: image warp (None = fitted to the first image).
        motions: per frame ``(T_prev_cur, dt)`` LiDAR sweep motion or None (:func:`lidar_motions`):
            points projected into the camera are first moved to the frame stamp.
        timing: azimuth timing model for sweeps without per-point times.

    Returns:
        inputs: dict of ``[1, S, ...]`` tensors with ``<name>_valid [1, S]`` (see FusionModel),
        aux: ``warp``, ``K`` (model image), ``ref`` frame name, ``point_rc`` list of
        ``(row, col)`` per frame (None without points).
    """
    S = len(frames)
    inputs: dict = {}
    aux: dict = {"ref": reference_frame(sensors), "point_rc": [None] * S, "warp": warp, "K": None,
                 "motions": motions, "timing": timing}
    cam = "camera" in sensors and calib.K is not None and any(f.image is not None for f in frames)
    if cam:
        first = next(f.image for f in frames if f.image is not None)
        warp = warp or ImageWarp.fit(first.shape[:2], cfg.image_size)
        aux["warp"], aux["K"] = warp, warp.K(calib.K)
        H, W = cfg.image_size
        img = torch.zeros(S, 3, H, W)
        ok = torch.zeros(S, dtype=torch.bool)
        for i, f in enumerate(frames):
            if f.image is not None:
                img[i], ok[i] = warp.image(f.image), True
        inputs["image"], inputs["image_valid"] = img[None], ok[None]
        if depth_sensor:
            dv = torch.zeros(S, H, W)
            okd = torch.zeros(S, dtype=torch.bool)
            for i, f in enumerate(frames):
                if f.depth is not None:
                    dv[i], okd[i] = warp.depth(f.depth), True
            if okd.any():
                inputs["depth_view"], inputs["depth_view_valid"] = dv[None], okd[None]
    if "lidar" in sensors and any(f.points is not None for f in frames):
        rng = torch.zeros(S, 4, *cfg.range_size)
        okl = torch.zeros(S, dtype=torch.bool)
        view = torch.zeros(S, *cfg.image_size) if cam else None
        T_cam_lidar = calib.T_cam_lidar
        for i, f in enumerate(frames):
            if f.points is None or len(f.points) == 0:
                continue
            img_r, r, c = range_image(f.points, cfg.range_size, calib.lidar_fov_deg)
            rng[i], okl[i] = torch.from_numpy(img_r), True
            aux["point_rc"][i] = (r, c)
            if view is not None:
                p = camera_points(f, None if motions is None else motions[i], timing)
                p = p @ T_cam_lidar[:3, :3].T + T_cam_lidar[:3, 3]
                view[i] = torch.from_numpy(sparse_depth(p, aux["K"], cfg.image_size))
        if okl.any():
            inputs["range"], inputs["range_valid"] = rng[None], okl[None]
            if view is not None:
                inputs["lidar_view"] = view[None]
    if "imu" in sensors:
        R = T_body_ref(calib, aux["ref"])[:3, :3].T
        samples = [None if f.imu is None or len(f.imu) < 2 else (f.imu.t, f.imu.acc, f.imu.gyro) for f in frames]
        feats, ok = imu_features(samples, cfg.imu_bins, R)
        if ok.any():
            inputs["imu"], inputs["imu_valid"] = torch.from_numpy(feats)[None], torch.from_numpy(ok)[None]
    return inputs, aux
