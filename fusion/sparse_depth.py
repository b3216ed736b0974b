"""Sparse depth images from LiDAR points: the reference that adaptation trains
against and evaluation scores a real log's predicted depth with."""

from __future__ import annotations

import numpy as np

from fuse4d.data.types import Calibration


def lidar_depth_image(points: np.ndarray, T_cam_lidar: np.ndarray, K: np.ndarray, hw: tuple[int, int],
                      min_depth: float = 0.5) -> np.ndarray:
    """Project LiDAR points into the camera: a sparse depth image, nearest point per pixel.

    Args:
        points: ``[N, >=3]`` x, y, z in the LiDAR frame, metres.
        T_cam_lidar: ``[4, 4]`` LiDAR → camera.
        K: ``[3, 3]`` camera intrinsics, pixels.
        hw: ``(H, W)`` of the image.
        min_depth: points closer than this (m) along the optical axis are dropped.
    Returns:
        ``[H, W]`` float32 depth in metres along the camera z axis, 0 = no point.
    """
    H, W = hw
    out = np.zeros((H, W), np.float32)
    if points is None or len(points) == 0:
        return out
    from fuse4d.encoders.lidar import nearest_per_pixel     # lazily: that module imports torch
    xyz = np.asarray(points, np.float64)[:, :3] @ T_cam_lidar[:3, :3].T + T_cam_lidar[:3, 3]
    z = xyz[:, 2]
    front = z > min_depth
    xyz, z = xyz[front], z[front]
    uv = xyz @ K.T
    u = np.floor(uv[:, 0] / z + 0.5).astype(np.int64)   # nearest pixel centre
    v = np.floor(uv[:, 1] / z + 0.5).astype(np.int64)
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    u, v, z = u[inside], v[inside], z[inside]
    pix, win = nearest_per_pixel(v * W + u, z, H * W)      # the nearest point wins a pixel
    out.reshape(-1)[pix] = z[win].astype(np.float32)
    return out


def frame_lidar_depth(points: np.ndarray | None, calibration: Calibration, hw: tuple[int, int] | None = None
                      ) -> np.ndarray | None:
    """:func:`lidar_depth_image` of a frame's points with the log's calibration (None without LiDAR/camera).

    Args:
        points: ``[N, 4]`` the frame's LiDAR points, or None.
        calibration: the log's calibration (needs ``K`` and ``image_size``, or ``hw``).
        hw: ``(H, W)`` overriding ``calibration.image_size``.
    """
    if points is None or calibration.K is None:
        return None
    if hw is None:
        if calibration.image_size is None:
            return None
        hw = (calibration.image_size[1], calibration.image_size[0])
    return lidar_depth_image(points, calibration.T_cam_lidar, calibration.K, hw)


def refine_with_lidar(depth: np.ndarray, lidar: np.ndarray, weight: float = 1.0, tol: float = 0.2) -> np.ndarray:
    """The model's dense depth corrected by the LiDAR points that agree with it.

    Where a projected point lies within ``tol`` in log depth of the prediction (points the
    camera cannot see, behind a nearer surface, do not), the pixel takes the point's depth,
    and the log ratio point / prediction is spread to the neighbourhood by normalised
    convolution (a Gaussian of ``0.5 / sqrt(coverage)`` pixels: about one point's spacing),
    fading out where no point is near. The model keeps the shape of the scene; the points fix
    its local scale.

    Args:
        depth: ``[H, W]`` predicted depth, metres (0 = none).
        lidar: ``[H, W]`` sparse LiDAR depth at the same pixels (:func:`lidar_depth_image` of
            points moved to the camera's stamp), metres, 0 = no point.
        weight: in [0, 1], how much to trust the points (the LiDAR gate of the frame).
    Returns:
        ``[H, W]`` float32 depth, metres.
    """
    from scipy.ndimage import gaussian_filter
    d = np.asarray(depth, np.float64)
    m = (lidar > 0) & (d > 0)
    if weight <= 0 or not m.any():
        return np.asarray(depth, np.float32)
    r = np.zeros_like(d)
    r[m] = np.log(lidar[m] / d[m])
    inl = m & (np.abs(r) < tol)
    sigma = float(np.clip(0.5 / np.sqrt(max(m.mean(), 1e-4)), 1.0, 8.0))
    num = gaussian_filter(np.where(inl, r, 0.0), sigma)
    den = gaussian_filter(inl.astype(np.float64), sigma)
    ratio = np.where(den > 1e-3, num / np.maximum(den, 1e-6), 0.0)
    out = d * np.exp(weight * den / (den + 0.02) * ratio)
    out[inl] = (1 - weight) * d[inl] + weight * lidar[inl]
    out[d <= 0] = 0.0
    return out.astype(np.float32)
