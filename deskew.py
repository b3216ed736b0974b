"""Motion compensation of a LiDAR sweep with per-point capture times.

One place for every stage that deskews (estimation, mapping, calibration, the model's
inputs); stage-neutral, numpy and scipy only. Each point captured ``τ`` seconds from
the frame stamp is moved into the sensor frame at the stamp, ``p' = T_stamp_τ p``. A
motion model ``motion(τ [K]) -> T_stamp_τ [K, 4, 4]`` is evaluated on a few dozen time
bins (the exact pose of each bin, gathered per point), so the cost is one matrix product
per point whatever the model:

* :func:`constant_velocity_motion`: the relative motion over the last frame interval,
  interpolated decoupled (rotation vector and translation scaled linearly);
* :func:`polynomial_motion`: the poses of one or more earlier frames, interpolated on
  SE(3) by a polynomial in time through them and the stamp (two earlier poses: a twist
  that changes linearly, i.e. a turning, accelerating sensor);
* ``fusion.estimation.deskew.trajectory_motion``: IMU-propagated poses.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation

#: ``motion(τ [K]) -> T_stamp_τ [K, 4, 4]``
MotionModel = Callable[[np.ndarray], np.ndarray]


def constant_velocity_motion(T_prev_curr: np.ndarray, dt: float) -> MotionModel:
    """Motion model of a sensor that moved by ``T_prev_curr [4, 4]`` over the last ``dt`` seconds.

    ``T_stamp_τ = [Exp(s φ), s t]`` with ``s = τ / dt`` and ``(φ, t)`` the rotation vector and
    translation of ``T_prev_curr`` (decoupled: rotation and translation scaled independently).

    Raises:
        ValueError: ``dt <= 0``.
    """
    if dt <= 0:
        raise ValueError(f"frame interval must be positive, got {dt}")
    T = np.asarray(T_prev_curr, np.float64)
    phi = Rotation.from_matrix(T[:3, :3]).as_rotvec()

    def motion(tau: np.ndarray) -> np.ndarray:
        s = np.asarray(tau, np.float64).reshape(-1, 1) / dt
        out = np.tile(np.eye(4), (len(s), 1, 1))
        out[:, :3, :3] = Rotation.from_rotvec(s * phi).as_matrix()
        out[:, :3, 3] = s * T[:3, 3]
        return out

    return motion


def _hat(w: np.ndarray) -> np.ndarray:
    """Skew matrices ``[K, 3, 3]`` of vectors ``[K, 3]``."""
    W = np.zeros(w.shape[:-1] + (3, 3))
    W[..., 0, 1], W[..., 0, 2], W[..., 1, 2] = -w[..., 2], w[..., 1], -w[..., 0]
    return W - np.swapaxes(W, -1, -2)


def _left_jacobian(phi: np.ndarray) -> np.ndarray:
    """SO(3) left Jacobians ``[K, 3, 3]`` of rotation vectors ``[K, 3]`` (the V of SE(3)'s exp)."""
    th = np.linalg.norm(phi, axis=-1)[..., None, None]
    small = th < 1e-6
    t = np.where(small, 1.0, th)
    a = np.where(small, 0.5, (1.0 - np.cos(t)) / t ** 2)
    b = np.where(small, 1.0 / 6.0, (t - np.sin(t)) / t ** 3)
    K = _hat(phi)
    return np.eye(3) + a * K + b * (K @ K)


def polynomial_motion(times: np.ndarray, T_stamp_k: np.ndarray) -> MotionModel:
    """Motion model through the stamp and the sensor's poses at ``K`` other times.

    The SE(3) logarithms ``ξ_k = Log T_stamp_k`` (twist coordinates relative to the stamp)
    are interpolated by the degree-``K`` Lagrange polynomial through ``(0, 0)`` and
    ``(times[k], ξ_k)``, and mapped back by ``Exp``. One other pose gives the constant-twist
    path (exact for constant body velocities: a circular arc); two give a twist that changes
    linearly in time (a sensor that turns into a curve or speeds up), interpolation between
    the nodes, whose error is third order in the frame interval.

    Args:
        times: ``[K]`` seconds of the other poses relative to the stamp (distinct, non-zero;
            negative = earlier).
        T_stamp_k: ``[K, 4, 4]`` the sensor's pose at each of those times in the sensor frame
            at the stamp (``T_world_stamp⁻¹ T_world_k``).

    Raises:
        ValueError: no other pose, a zero or repeated time, or shapes that disagree.
    """
    t = np.asarray(times, np.float64).reshape(-1)
    T = np.asarray(T_stamp_k, np.float64).reshape(-1, 4, 4)
    if len(t) == 0 or len(t) != len(T):
        raise ValueError(f"polynomial_motion needs >= 1 pose and one time per pose, got {len(t)} and {len(T)}")
    nodes = np.concatenate([[0.0], t])
    if np.min(np.abs(nodes[:, None] - nodes[None] + np.eye(len(nodes)))) < 1e-9:
        raise ValueError(f"polynomial_motion needs distinct non-zero times, got {t.tolist()}")
    phi = Rotation.from_matrix(T[:, :3, :3]).as_rotvec()                        # [K, 3]
    rho = np.linalg.solve(_left_jacobian(phi), T[:, :3, 3:])[..., 0]              # [K, 3]
    xi = np.concatenate([phi, rho], 1)

    def motion(tau: np.ndarray) -> np.ndarray:
        x = np.asarray(tau, np.float64).reshape(-1, 1)
        # Lagrange basis of node k (the stamp's node has ξ = 0 and drops out)
        L = np.ones((len(x), len(t)))
        for k in range(len(t)):
            for j, tj in enumerate(nodes):
                if j != k + 1:
                    L[:, k] *= (x[:, 0] - tj) / (t[k] - tj)
        w = L @ xi                                                                # [B, 6]
        out = np.tile(np.eye(4), (len(x), 1, 1))
        out[:, :3, :3] = Rotation.from_rotvec(w[:, :3]).as_matrix()
        out[:, :3, 3] = np.einsum("bij,bj->bi", _left_jacobian(w[:, :3]), w[:, 3:])
        return out

    return motion


def deskew(points: np.ndarray, point_time: np.ndarray | None, motion: MotionModel | None,
           bins: int = 64) -> np.ndarray:
    """Move every point of a sweep into the sensor frame at the frame stamp.

    Args:
        points: ``[N, C]`` (xyz metres first), sensor frame.
        point_time: ``[N]`` seconds relative to the stamp, or None (returned unchanged).
        motion: ``T_stamp_τ`` model, or None (returned unchanged).
        bins: number of time bins the motion is evaluated on.

    Returns:
        ``[N, C]`` copy with xyz compensated (same dtype).

    Raises:
        ValueError: ``point_time`` length differs from ``points``.
    """
    if point_time is None or motion is None or len(points) == 0:
        return points
    tau = np.asarray(point_time, dtype=np.float64).reshape(-1)
    if len(tau) != len(points):
        raise ValueError(f"point_time has {len(tau)} entries for {len(points)} points")
    lo, hi = float(tau.min()), float(tau.max())
    if hi - lo < 1e-9:
        edges = np.array([lo])
        which = np.zeros(len(tau), dtype=np.int64)
    else:
        edges = np.linspace(lo, hi, bins)
        which = np.clip(np.rint((tau - lo) / (hi - lo) * (bins - 1)).astype(np.int64), 0, bins - 1)
    T = motion(edges)  # [B, 4, 4]
    xyz = points[:, :3].astype(np.float64)
    R, t = T[which, :3, :3], T[which, :3, 3]
    out = points.copy()
    out[:, :3] = (np.einsum("nij,nj->ni", R, xyz) + t).astype(points.dtype)
    return out
