"""SO(3)/SE(3) exponential and logarithm in JAX (differentiable), plus numpy helpers.

Perturbations are left-multiplied: ``T ← Exp(δ) T`` with ``δ = (ρ, φ)``,
translation ρ in metres first, rotation φ in radians second.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def hat(w):
    """Skew-symmetric matrix ``[3, 3]`` of a vector ``w [3]``."""
    z = jnp.zeros((), w.dtype)
    return jnp.array([[z, -w[2], w[1]], [w[2], z, -w[0]], [-w[1], w[0], z]])


def so3_exp(w):
    """Rotation matrix ``[3, 3]`` of a rotation vector ``w [3]`` (radians); smooth at 0."""
    th2 = jnp.dot(w, w)
    small = th2 < 1e-10
    th2s = jnp.where(small, 1.0, th2)
    th = jnp.sqrt(th2s)
    a = jnp.where(small, 1.0 - th2 / 6.0, jnp.sin(th) / th)
    b = jnp.where(small, 0.5 - th2 / 24.0, (1.0 - jnp.cos(th)) / th2s)
    W = hat(w)
    return jnp.eye(3, dtype=w.dtype) + a * W + b * (W @ W)


def se3_exp(d):
    """``[4, 4]`` transform of a twist ``d [6]`` = (ρ m, φ rad), using the first-order
    translation ``ρ`` (a valid chart of SE(3) near 0, enough for small steps)."""
    R = so3_exp(d[3:])
    top = jnp.concatenate([R, d[:3, None]], axis=1)
    return jnp.concatenate([top, jnp.array([[0.0, 0.0, 0.0, 1.0]], dtype=d.dtype)], axis=0)


def np_so3_exp(w: np.ndarray) -> np.ndarray:
    """numpy rotation matrix ``[3, 3]`` of a rotation vector ``w [3]`` (radians)."""
    from scipy.spatial.transform import Rotation
    return Rotation.from_rotvec(np.asarray(w, dtype=np.float64)).as_matrix()


def np_so3_log(R: np.ndarray) -> np.ndarray:
    """numpy rotation vector ``[..., 3]`` (radians) of rotation matrices ``[..., 3, 3]``."""
    from scipy.spatial.transform import Rotation
    R = np.asarray(R, dtype=np.float64)
    return Rotation.from_matrix(R.reshape(-1, 3, 3)).as_rotvec().reshape(R.shape[:-2] + (3,))


def np_se3_exp(d: np.ndarray) -> np.ndarray:
    """numpy counterpart of :func:`se3_exp`: ``[4, 4]`` from ``d [6]`` (ρ m, φ rad)."""
    T = np.eye(4)
    T[:3, :3] = np_so3_exp(d[3:])
    T[:3, 3] = d[:3]
    return T


def rotation_error_deg(R_a: np.ndarray, R_b: np.ndarray) -> float:
    """Angle (degrees) of ``R_aᵀ R_b``."""
    c = (np.trace(np.asarray(R_a).T @ np.asarray(R_b)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def perturb(T: np.ndarray, rot_deg: float, trans_m: float, rng: np.random.Generator) -> np.ndarray:
    """``Exp(δ) T`` with a random rotation of exactly ``rot_deg`` degrees about a random
    axis and a random translation of exactly ``trans_m`` metres (``[4, 4]`` float64)."""
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    dirn = rng.standard_normal(3)
    dirn /= np.linalg.norm(dirn)
    d = np.concatenate([dirn * trans_m, axis * np.radians(rot_deg)])
    return np_se3_exp(d) @ np.asarray(T, dtype=np.float64)
