"""IMU–LiDAR rotation by hand-eye on rotations (JAX).

For each odometry interval the gyro-integrated body rotation ``a_k`` (rotation
vector, IMU frame) and the LiDAR odometry rotation ``b_k`` (LiDAR frame) satisfy
``a_k = R_body_lidar b_k + b_g Δt_k`` (small-angle form with a gyro bias ``b_g``).
A closed-form Kabsch solution starts Gauss–Newton over ``(φ, b_g)`` with
``R = Exp(φ) R_0`` and autodiff Jacobians. Its std comes from the Hessian and the
residual variance; rotation about a single axis (planar driving) leaves the
rotation of the mount about that axis unconstrained (a yaw-only drive: the mount's
yaw about the body's vertical). Those directions (std above the limit, found
from the eigenvectors of the rotation covariance) are flagged and keep the start's
value; the remaining directions are solved again from the start and applied.
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
    """``R_body_lidar [3, 3]`` with ``std_deg [3]`` (about the body axes) and flags.

    ``cov [3, 3]``: covariance (rad², body axes) of the rotation before weak directions are reset.
    ``excited``: every direction is determined. ``weak_axes [K, 3]``: unit vectors (body
    frame) of the K undetermined directions, along which ``R_body_lidar`` keeps the start
    (``R_init``); ``applied``: at least one direction was determined (K < 3) and a start
    was given or K == 0, i.e. ``R_body_lidar`` is worth using.
    """

    R_body_lidar: np.ndarray
    std_deg: np.ndarray
    gyro_bias: np.ndarray
    excited: bool
    n_intervals: int
    notes: list[str] = field(default_factory=list)
    weak_axes: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    applied: bool = False
    cov: np.ndarray = field(default_factory=lambda: np.full((3, 3), np.inf))


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


def _res_sub(y, P, R0, a, b, dt):
    """Residuals with the rotation restricted to the columns of ``P [3, m]``: ``R = Exp(P y_r) R0``."""
    return _res(jnp.concatenate([P @ y[:-3], y[-3:]]), R0, a, b, dt)


_res_j = jax.jit(_res)
_jac = jax.jit(jax.jacfwd(_res))
_res_sub_j = jax.jit(_res_sub)
_jac_sub = jax.jit(jax.jacfwd(_res_sub))


def _gauss_newton(res, jac, x, args, iterations=10):
    for _ in range(iterations):
        r = np.asarray(res(jnp.asarray(x), *args))
        J = np.asarray(jac(jnp.asarray(x), *args))
        step = -np.linalg.solve(J.T @ J + 1e-12 * np.eye(len(x)), J.T @ r)
        x = x + step
        if np.abs(step).max() < 1e-10:
            break
    return x


def estimate_rotation(a: np.ndarray, b: np.ndarray, dt: np.ndarray, R_init: np.ndarray | None = None,
                      min_rotation_deg: float = 0.3, min_pairs: int = 10, max_std_deg: float = 0.5,
                      source: str = "log") -> RotationEstimate:
    """Solve ``a_k = R b_k + b_g Δt_k`` for ``R_body_lidar`` and the gyro bias.

    Args:
        a: ``[P, 3]`` gyro rotations (rad, body frame); b: ``[P, 3]`` odometry rotations (rad,
            LiDAR frame); dt: ``[P]`` interval lengths (s).
        R_init: the start (``[3, 3]``): undetermined directions keep it. Without one,
            they keep the closed form's (and ``applied`` is False when any is undetermined).

    Raises:
        DataError: fewer than ``min_pairs`` intervals rotate by ``min_rotation_deg`` ("no motion").
    """
    a, b, dt = (np.asarray(x, np.float64) for x in (a, b, dt))
    moving = np.linalg.norm(b, axis=1) >= np.radians(min_rotation_deg)
    if moving.sum() < min_pairs:
        raise DataError(source, f"no motion: only {int(moving.sum())} intervals rotate by {min_rotation_deg} deg or "
                                f"more (need {min_pairs}); the IMU-LiDAR rotation needs turns")
    R0 = _kabsch(a[moving], b[moving])
    args = [jnp.asarray(v) for v in (R0, a, b, dt)]
    x = _gauss_newton(_res_j, _jac, np.zeros(6), args)
    r = np.asarray(_res_j(jnp.asarray(x), *args))
    J = np.asarray(_jac(jnp.asarray(x), *args))
    R = np_so3_exp(x[:3]) @ R0
    # robust scale: residuals of 3 axes per interval
    sigma2 = float(r @ r) / max(len(r) - 6, 1)
    try:
        cov = sigma2 * np.linalg.inv(J.T @ J)[:3, :3]
        std = np.degrees(np.sqrt(np.clip(np.diag(cov), 0, None)))
        ev, U = np.linalg.eigh(cov)
        weak = U[:, np.degrees(np.sqrt(np.clip(ev, 0, None))) > max_std_deg].T
    except np.linalg.LinAlgError:
        cov, std, weak = np.full((3, 3), np.inf), np.full(3, np.inf), np.eye(3)
    excited = len(weak) == 0
    bias = x[3:]
    notes = []
    if not excited:
        axes = "; ".join(f"({', '.join(f'{c:+.2f}' for c in w)})" for w in weak)
        notes.append(f"IMU-LiDAR rotation weakly determined about {axes} in the body frame (std "
                     f"{np.round(std, 2).tolist()} deg about x, y, z): the motion turns about too few axes"
                     + (f"; the start is kept about {'that axis' if len(weak) == 1 else 'those axes'}"
                        if R_init is not None and len(weak) < 3 else ""))
        if R_init is not None and len(weak) < 3:
            # solve the determined directions again, from the start, leaving the weak ones at it
            P = np.linalg.svd(np.eye(3) - weak.T @ weak)[0][:, :3 - len(weak)]
            sargs = [jnp.asarray(v) for v in (P, np.asarray(R_init, np.float64), a, b, dt)]
            y = _gauss_newton(_res_sub_j, _jac_sub, np.concatenate([np.zeros(P.shape[1]), bias]), sargs)
            R, bias = np_so3_exp(P @ y[:-3]) @ R_init, y[-3:]
    applied = excited or (R_init is not None and len(weak) < 3)
    return RotationEstimate(R, std, bias, excited, int(moving.sum()), notes, weak, applied, cov)


def rotation_vectors(T_prev_curr: np.ndarray) -> np.ndarray:
    """``[P, 3]`` rotation vectors (rad) of ``[P, 4, 4]`` relative poses."""
    return np_so3_log(np.asarray(T_prev_curr)[:, :3, :3])
