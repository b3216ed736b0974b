"""Motion compensation of a LiDAR sweep from two poses (constant velocity between them)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def deskew_to_world(points: np.ndarray, point_time: np.ndarray | None, T_world_sensor: np.ndarray,
                    T_world_sensor_prev: np.ndarray | None, dt: float, bins: int = 64) -> np.ndarray:
    """Points of a sweep ``[N, >=3]`` (sensor frame at each point's capture time) → world ``[N, 3]`` float64.

    Each point captured ``τ = point_time`` seconds from the stamp (τ ≤ 0 for a sweep ending at the
    stamp) is placed with the pose interpolated between ``T_world_sensor_prev`` (stamp − ``dt``) and
    ``T_world_sensor`` (stamp): linear in translation, slerp in rotation, extrapolated outside.
    Without times or a previous pose, every point takes ``T_world_sensor``.
    """
    xyz = np.asarray(points, np.float64)[:, :3]
    if point_time is None or T_world_sensor_prev is None or dt <= 0 or not len(xyz):
        return xyz @ T_world_sensor[:3, :3].T + T_world_sensor[:3, 3]
    s = 1.0 + np.asarray(point_time, np.float64).reshape(-1) / dt  # fraction along prev → current
    lo, hi = float(s.min()), float(s.max())
    edges = np.linspace(lo, hi, bins) if hi - lo > 1e-9 else np.array([lo])
    which = np.clip(np.rint((s - lo) / max(hi - lo, 1e-12) * (len(edges) - 1)).astype(np.int64), 0, len(edges) - 1)
    rel = np.linalg.inv(T_world_sensor_prev) @ T_world_sensor
    rotvec = Rotation.from_matrix(rel[:3, :3]).as_rotvec()
    R = Rotation.from_matrix(T_world_sensor_prev[:3, :3]) * Rotation.from_rotvec(edges[:, None] * rotvec[None])
    Rm = R.as_matrix()  # [B, 3, 3] world orientation at each bin
    t_prev, t_cur = T_world_sensor_prev[:3, 3], T_world_sensor[:3, 3]
    tb = t_prev[None] + edges[:, None] * (t_cur - t_prev)[None]
    return np.einsum("nij,nj->ni", Rm[which], xyz) + tb[which]
