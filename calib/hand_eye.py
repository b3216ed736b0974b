"""IMU–LiDAR rotation by hand-eye on rotations (JAX).

For each odometry interval the gyro-integrated body rotation ``a_k`` (rotation
vector, IMU frame) and the LiDAR odometry rotation ``b_k`` (LiDAR frame) satisfy
``a_k = R_body_lidar b_k + b_g Δt_k`` (small-angle form with a gyro bias ``b_g``).
A closed-form Kabsch solution starts Gauss–Newton over ``(φ, b_g)`` with
``R = Exp(φ) R_0`` and autodiff Jacobians. Its std comes from the Hessian and the
residual variance; rotation about a single axis (planar driving) leaves the
other axes unconstrained, which the std and ``excited`` flag report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from fuse4d.calib.lie import np_so3_exp, np_so3_log, so3_exp
from fuse4d.calib.time_offset import cumulative_rotation
from fuse4d.data.types import ImuSamples
from fuse4d.errors import DataError


@dataclass
class RotationEstimate:
    """``R_body_lidar [3, 3]`` with ``std_deg [3]`` (about the body axes) and a flag."""

    R_body_lidar: np.ndarray
    std_deg: np.ndarray
    gyro_bias: np.ndarray
    excited: bool
    n_intervals: int
    notes: list[str] = field(default_factory=list)


def gyro_rotations(imu: ImuSamples, t0: np.ndarray, t1: np.ndarray, offset_s: float = 0.0) -> np.ndarray:
    """``[P, 3]`` rotation vectors (rad) of the gyro over ``[t0+offset, t1+offset]`` (small-interval form)."""
    G = cumulative_rotation(imu)
    g = lambda t: np.stack([np.interp(t + offset_s, imu.t, G[:, k]) for k in range(3)], -1)
    return g(np.asarray(t1)) - g(np.asarray(t0))


def _kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(a.T @ b)
    return U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt


def _res(x, R0, a, b, dt):
    R = so3_exp(x[:3]) @ R0
    return (b @ R.T - (a - x[3:] * dt[:, None])).reshape(-1)


_res_j = jax.jit(_res)
_jac = jax.jit(jax.jacfwd(_res))


def estimate_rotation(a: np.ndarray, b: np.ndarray, dt: np.ndarray, R_init: np.ndarray | None = None,
                      min_rotation_deg: float = 0.3, min_pairs: int = 10, max_std_deg: float = 0.5,
                      source: str = "log") -> RotationEstimate:
    """Solve ``a_k = R b_k + b_g Δt_k`` for ``R_body_lidar`` and the gyro bias.

    Args:
        a: ``[P, 3]`` gyro rotations (rad, body frame); b: ``[P, 3]`` odometry rotations (rad,
            LiDAR frame); dt: ``[P]`` interval lengths (s).
        R_init: unused start (the closed form does not need one); kept for the record.

    Raises:
        DataError: fewer than ``min_pairs`` intervals rotate by ``min_rotation_deg`` ("no motion").
    """
    a, b, dt = (np.asarray(x, np.float64) for x in (a, b, dt))
    moving = np.linalg.norm(b, axis=1) >= np.radians(min_rotation_deg)
    if moving.sum() < min_pairs:
        raise DataError(source, f"no motion: only {int(moving.sum())} intervals rotate by {min_rotation_deg} deg or "
                                f"more (need {min_pairs}); the IMU-LiDAR rotation needs turns")
    R0 = _kabsch(a[moving], b[moving])
    x = np.zeros(6)
    args = [jnp.asarray(v) for v in (R0, a, b, dt)]
    for _ in range(10):
        r = np.asarray(_res_j(jnp.asarray(x), *args))
        J = np.asarray(_jac(jnp.asarray(x), *args))
        H = J.T @ J + 1e-12 * np.eye(6)
        step = -np.linalg.solve(H, J.T @ r)
        x = x + step
        if np.abs(step).max() < 1e-10:
            break
    r = np.asarray(_res_j(jnp.asarray(x), *args))
    J = np.asarray(_jac(jnp.asarray(x), *args))
    R = np_so3_exp(x[:3]) @ R0
    # robust scale: residuals of 3 axes per interval
    sigma2 = float(r @ r) / max(len(r) - 6, 1)
    try:
        cov = sigma2 * np.linalg.inv(J.T @ J)
        std = np.degrees(np.sqrt(np.clip(np.diag(cov)[:3], 0, None)))
    except np.linalg.LinAlgError:
        std = np.full(3, np.inf)
    excited = bool(np.all(std <= max_std_deg))
    notes = [] if excited else [f"IMU-LiDAR rotation weakly determined (std {np.round(std, 2).tolist()} deg about "
                                "x, y, z): the motion turns about too few axes"]
    return RotationEstimate(R, std, x[3:], excited, int(moving.sum()), notes)


def rotation_vectors(T_prev_curr: np.ndarray) -> np.ndarray:
    """``[P, 3]`` rotation vectors (rad) of ``[P, 4, 4]`` relative poses."""
    return np_so3_log(np.asarray(T_prev_curr)[:, :3, :3])
