"""Small batched SO(3)/SE(3) helpers on numpy arrays for the estimation hot paths.

pypose ``LieTensor`` is used where gradients are needed (pose graph, IMU
factors); these float64 numpy helpers serve the per-point and per-frame code,
where a torch round trip would cost more than the arithmetic.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from fuse4d.geometry import orthonormalize, rotation_angle  # noqa: F401 (re-exported for the estimation code)


def skew(v: np.ndarray) -> np.ndarray:
    """Skew-symmetric matrices ``[..., 3, 3]`` of vectors ``[..., 3]``."""
    v = np.asarray(v, dtype=np.float64)
    z = np.zeros(v.shape[:-1])
    return np.stack([
        np.stack([z, -v[..., 2], v[..., 1]], -1),
        np.stack([v[..., 2], z, -v[..., 0]], -1),
        np.stack([-v[..., 1], v[..., 0], z], -1),
    ], -2)


def so3_exp(phi: np.ndarray) -> np.ndarray:
    """Rotation vectors ``[..., 3]`` (radians) → rotation matrices ``[..., 3, 3]``."""
    phi = np.asarray(phi, dtype=np.float64)
    return Rotation.from_rotvec(phi.reshape(-1, 3)).as_matrix().reshape(phi.shape[:-1] + (3, 3))


def so3_log(R: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` → rotation vectors ``[..., 3]`` (radians)."""
    R = np.asarray(R, dtype=np.float64)
    return Rotation.from_matrix(R.reshape(-1, 3, 3)).as_rotvec().reshape(R.shape[:-2] + (3,))


def se3_exp(xi: np.ndarray) -> np.ndarray:
    """Decoupled exponential: ``xi [..., 6]`` = (translation m, rotation vector rad) → ``[..., 4, 4]``.

    The rotation and translation parts are applied independently (``T = [Exp(φ), ρ]``),
    matching the left-perturbation update ``T ← Exp(δ) T`` used by the ICP solver.
    """
    xi = np.asarray(xi, dtype=np.float64)
    T = np.zeros(xi.shape[:-1] + (4, 4))
    T[..., :3, :3] = so3_exp(xi[..., 3:])
    T[..., :3, 3] = xi[..., :3]
    T[..., 3, 3] = 1.0
    return T


def se3_log(T: np.ndarray) -> np.ndarray:
    """Inverse of :func:`se3_exp`: ``[..., 4, 4]`` → ``[..., 6]`` (translation, rotation vector)."""
    T = np.asarray(T, dtype=np.float64)
    return np.concatenate([T[..., :3, 3], so3_log(T[..., :3, :3])], -1)
