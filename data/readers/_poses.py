"""Pose helpers shared by the readers: re-basing a world frame, interpolation, time association."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from fuse4d.errors import DataError
from fuse4d.geometry import invert, make_T

#: how a reader re-expresses ground-truth poses given in some far-away world frame
REBASE_MODES = ("gravity", "first", "none")


def rebase_poses(poses: np.ndarray, mode: str = "gravity") -> tuple[np.ndarray, np.ndarray]:
    """Re-express ``T_src_body [S, 4, 4]`` (NaN rows allowed) in a new world frame.

    Modes:
        ``gravity``: origin at the first known body position, z kept (the
            source world must be gravity-aligned, z up), first yaw removed, so
            the first pose keeps only its roll and pitch (yaw is the heading
            of body x, or of body y when x is within 30° of vertical);
        ``first``: the first known pose becomes the identity;
        ``none``: unchanged.

    Returns:
        ``(T_world_body [S, 4, 4], T_world_src [4, 4])``.

    Raises:
        ValueError: unknown mode.
    """
    if mode not in REBASE_MODES:
        raise ValueError(f"rebase mode must be one of {REBASE_MODES}, got {mode!r}")
    poses = np.asarray(poses, dtype=np.float64)
    known = np.flatnonzero(np.isfinite(poses.reshape(len(poses), -1)).all(axis=1))
    if mode == "none" or known.size == 0:
        return poses.copy(), np.eye(4)
    T0 = poses[known[0]]
    if mode == "first":
        T_world_src = invert(T0)
    else:
        x, y = T0[:3, 0], T0[:3, 1]
        if np.hypot(x[0], x[1]) >= 0.5:  # heading of body x (vehicles), x within 60° of level
            yaw = np.arctan2(x[1], x[0])
        else:  # body x near vertical (e.g. EuRoC's IMU): use y, which is then near level
            yaw = np.arctan2(y[1], y[0]) - np.pi / 2
        Rz = Rotation.from_euler("z", yaw).as_matrix()
        T_world_src = invert(make_T(Rz, T0[:3, 3]))
    return np.einsum("ij,sjk->sik", T_world_src, poses), T_world_src


def interpolate_poses(t_ref: np.ndarray, poses_ref: np.ndarray, t: np.ndarray,
                      max_gap: float = np.inf, exact_tol: float = 1e-6) -> np.ndarray:
    """Poses ``[S, 4, 4]`` at times ``t [S]`` from a reference trajectory (SLERP + linear).

    ``t_ref [M]`` must increase strictly. Queries outside the reference span, or
    between two reference stamps further apart than ``max_gap`` seconds, get
    NaN rows. A query within ``exact_tol`` of a reference stamp gets that pose exactly.
    """
    t_ref = np.asarray(t_ref, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    out = np.full((len(t), 4, 4), np.nan)
    if len(t_ref) == 0 or len(t) == 0:
        return out
    exact = nearest_within(t_ref, t, exact_tol)
    hit = exact >= 0
    out[hit] = poses_ref[exact[hit]]
    if len(t_ref) < 2:
        return out
    j = np.searchsorted(t_ref, t, side="right")
    inside = (~hit) & (j > 0) & (j < len(t_ref))
    jj = np.clip(j, 1, len(t_ref) - 1)
    inside &= (t_ref[jj] - t_ref[jj - 1]) <= max_gap
    if inside.any():
        rots = Rotation.from_matrix(poses_ref[:, :3, :3])
        tq = t[inside]
        R = Slerp(t_ref, rots)(tq).as_matrix()
        a, b = jj[inside] - 1, jj[inside]
        w = ((tq - t_ref[a]) / (t_ref[b] - t_ref[a]))[:, None]
        p = (1 - w) * poses_ref[a, :3, 3] + w * poses_ref[b, :3, 3]
        out[inside] = make_T(R, p)
    return out


def nearest_within(t_ref: np.ndarray, t: np.ndarray, max_diff: float) -> np.ndarray:
    """Index into sorted ``t_ref`` of the stamp nearest each ``t`` (``[S]`` int), -1 when further than ``max_diff``."""
    t_ref = np.asarray(t_ref, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if len(t_ref) == 0:
        return np.full(len(t), -1, dtype=np.int64)
    j = np.searchsorted(t_ref, t)
    lo = np.clip(j - 1, 0, len(t_ref) - 1)
    hi = np.clip(j, 0, len(t_ref) - 1)
    pick = np.where(np.abs(t_ref[lo] - t) <= np.abs(t_ref[hi] - t), lo, hi)
    return np.where(np.abs(t_ref[pick] - t) <= max_diff, pick, -1).astype(np.int64)


def check_rotations(poses: np.ndarray, path, tol: float = 1e-3) -> None:
    """Raise DataError naming ``path`` when a finite pose's rotation block is not orthonormal."""
    P = np.asarray(poses)
    ok = np.isfinite(P.reshape(len(P), -1)).all(axis=1)
    if not ok.any():
        return
    R = P[ok, :3, :3]
    err = np.abs(np.einsum("sji,sjk->sik", R, R) - np.eye(3)).max(axis=(1, 2))
    bad = np.flatnonzero(err > tol)
    if bad.size:
        raise DataError(path, f"pose {int(np.flatnonzero(ok)[bad[0]])} has a non-orthonormal rotation "
                              f"(|RᵀR − I| = {err[bad[0]]:.2g})")
