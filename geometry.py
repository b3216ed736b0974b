"""Small rigid-transform helpers on numpy arrays (4×4 ``T_a_b`` matrices).

The estimation code works with pypose ``SE3``; these helpers are for I/O,
data generation and maps, where plain arrays are simpler. Quaternions are
scalar-last ``(qx, qy, qz, qw)`` as in the TUM format.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def make_T(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Stack rotations ``[..., 3, 3]`` and translations ``[..., 3]`` into ``[..., 4, 4]``."""
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    T = np.zeros(R.shape[:-2] + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms ``[..., 4, 4]`` (exact, no general matrix inverse)."""
    T = np.asarray(T, dtype=np.float64)
    R = T[..., :3, :3]
    Rt = np.swapaxes(R, -1, -2)
    return make_T(Rt, -np.einsum("...ij,...j->...i", Rt, T[..., :3, 3]))


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``T [4, 4]`` to ``points [N, 3]`` (extra columns are kept unchanged)."""
    points = np.asarray(points)
    out = points.copy()
    xyz = points[:, :3].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    out[:, :3] = xyz.astype(points.dtype) if np.issubdtype(points.dtype, np.floating) else xyz
    return out


def quat_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """Unit quaternions ``[..., 4]`` (x, y, z, w) → rotation matrices ``[..., 3, 3]``."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    return Rotation.from_quat(q.reshape(-1, 4)).as_matrix().reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` → quaternions ``[..., 4]`` (x, y, z, w), w ≥ 0."""
    R = np.asarray(R, dtype=np.float64)
    q = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat()
    q = np.where(q[:, 3:4] < 0, -q, q)
    return q.reshape(R.shape[:-2] + (4,))


def pose_from_tq(t: np.ndarray, q_xyzw: np.ndarray) -> np.ndarray:
    """Translations ``[..., 3]`` and quaternions ``[..., 4]`` → ``[..., 4, 4]``."""
    return make_T(quat_to_matrix(q_xyzw), t)


def rotation_angle(R: np.ndarray) -> np.ndarray:
    """Rotation angle in radians of rotations ``[..., 3, 3]`` or rigid transforms ``[..., 4, 4]``."""
    R = np.asarray(R, dtype=np.float64)[..., :3, :3]
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.arccos(np.clip(cos, -1.0, 1.0))


def orthonormalize(T: np.ndarray) -> np.ndarray:
    """Project the rotation block of ``T [..., 4, 4]`` (or ``[..., 3, 3]``) back onto SO(3) (SVD).

    Used on calibration files printed to ~7 digits and on poses accumulated in
    floating point, so later inverses stay exact.
    """
    T = np.array(T, dtype=np.float64)
    R = T[..., :3, :3]
    U, _, Vt = np.linalg.svd(R)
    D = np.ones(R.shape[:-1])
    D[..., -1] = np.sign(np.linalg.det(U @ Vt))
    T[..., :3, :3] = (U * D[..., None, :]) @ Vt
    return T
