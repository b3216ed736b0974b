"""LiDAR-inertial initialisation and velocity tracking by linear least squares.

Given body poses from LiDAR odometry (in the odometry frame, whose axes are
not gravity-aligned) and the IMU deltas between them, the kinematics

    v_{m+1} = v_m + g Δt_m + R_m Δv_m
    p_{m+1} = p_m + v_m Δt_m + ½ g Δt_m² + R_m Δp_m

are linear in the first velocity and the gravity vector, so both follow from
one least-squares solve (as in VINS-Mono's initialisation, with LiDAR in
place of up-to-scale vision). The gyro bias comes first, from the rotation
mismatch between LiDAR and the gyro. Works while the vehicle moves, where
averaging the accelerometer would mistake centripetal acceleration for gravity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fuse4d.fusion.estimation.imu import GRAVITY, Preintegration
from fuse4d.fusion.estimation.lie import so3_log


@dataclass
class InertialState:
    """Result of :func:`initialise`.

    Attributes:
        gravity: ``[3]`` gravity vector in the odometry frame (m/s², norm = g).
        velocities: ``[K, 3]`` body velocities at the K poses (odometry frame, m/s).
        gyro_bias: ``[3]`` rad/s.
        residual: RMS of the position equations (m) — large values mean a bad fit.
    """

    gravity: np.ndarray
    velocities: np.ndarray
    gyro_bias: np.ndarray
    residual: float


def solve_gyro_bias(R: np.ndarray, preints: list[Preintegration]) -> np.ndarray:
    """Gyro bias ``[3]`` (rad/s) that best explains the LiDAR rotations ``R [K, 3, 3]`` (K-1 preintegrations)."""
    A, b = [], []
    for k, pre in enumerate(preints):
        e = so3_log(pre.dR.T @ R[k].T @ R[k + 1])
        A.append(pre.J[:3, :3])
        b.append(e)
    sol, *_ = np.linalg.lstsq(np.concatenate(A), np.concatenate(b), rcond=None)
    return pre_bias(preints) + sol


def pre_bias(preints: list[Preintegration]) -> np.ndarray:
    """The gyro bias the preintegrations were computed with (that of the first)."""
    return preints[0].bg.copy()


def _increments(R: np.ndarray, deltas: list[tuple[float, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """Per interval: Δt ``[M]``, elapsed τ ``[M]``, A_m = Σ_{n<m} R_n Δv_n ``[M, 3]``, R_m Δp_m ``[M, 3]``."""
    dt = np.array([d[0] for d in deltas])
    Rdv = np.einsum("mij,mj->mi", R[:-1], np.stack([d[1] for d in deltas]))
    Rdp = np.einsum("mij,mj->mi", R[:-1], np.stack([d[2] for d in deltas]))
    tau = np.concatenate([[0.0], np.cumsum(dt)[:-1]])
    A = np.concatenate([np.zeros((1, 3)), np.cumsum(Rdv, 0)[:-1]])
    return dt, tau, A, Rdp, Rdv


def initialise(R: np.ndarray, p: np.ndarray, preints: list[Preintegration],
               gravity: float = GRAVITY) -> InertialState:
    """Gravity, velocities and gyro bias from K ≥ 3 LiDAR body poses and the K-1 IMU preintegrations.

    Args:
        R: ``[K, 3, 3]`` body rotations, p: ``[K, 3]`` positions (odometry frame).
        preints: preintegrations between consecutive poses (any gyro bias; corrected here).
        gravity: magnitude (m/s²) the solution is scaled to.

    Raises:
        ValueError: fewer than 3 poses or a mismatched number of preintegrations.
    """
    if len(R) < 3 or len(preints) != len(R) - 1:
        raise ValueError(f"need K >= 3 poses and K-1 preintegrations, got {len(R)} and {len(preints)}")
    bg = solve_gyro_bias(R, preints)
    deltas = [(pre.dt, *pre.corrected(bg, pre.ba)[1:]) for pre in preints]
    dt, tau, A, Rdp, Rdv = _increments(R, deltas)
    M = len(dt)
    # unknowns x = [v0, g]:  v0 Δt + g (τ Δt + ½ Δt²) = Δp_obs - A Δt - R Δp
    lhs = np.zeros((3 * M, 6))
    lhs[:, :3] = np.kron(dt[:, None], np.eye(3))
    lhs[:, 3:] = np.kron((tau * dt + 0.5 * dt * dt)[:, None], np.eye(3))
    rhs = (np.diff(p, axis=0) - A * dt[:, None] - Rdp).reshape(-1)
    x, *_ = np.linalg.lstsq(lhs, rhs, rcond=None)
    g = x[3:] / max(np.linalg.norm(x[3:]), 1e-9) * gravity
    # re-solve v0 with |g| fixed
    rhs_g = rhs - lhs[:, 3:] @ g
    v0, *_ = np.linalg.lstsq(lhs[:, :3], rhs_g, rcond=None)
    res = float(np.sqrt(np.mean((lhs[:, :3] @ v0 - rhs_g) ** 2)))
    v = v0 + g * np.concatenate([tau, [tau[-1] + dt[-1]]])[:, None] + np.concatenate([A, A[-1:] + Rdv[-1:]])
    return InertialState(g, v, bg, res)


def track_velocity(R: np.ndarray, p: np.ndarray, deltas: list[tuple[float, np.ndarray, np.ndarray]],
                   gravity: np.ndarray) -> np.ndarray:
    """Velocity ``[3]`` (m/s) at the last of K poses, fitted over the whole window.

    Args:
        R: ``[K, 3, 3]``, p: ``[K, 3]`` body poses (odometry frame).
        deltas: K-1 tuples ``(Δt, Δv [3], Δp [3])`` of bias-corrected IMU deltas.
        gravity: ``[3]`` gravity vector in the same frame.

    Raises:
        ValueError: fewer than 2 poses.
    """
    if len(R) < 2:
        raise ValueError("need at least two poses to fit a velocity")
    dt, tau, A, Rdp, Rdv = _increments(R, deltas)
    rhs = np.diff(p, axis=0) - A * dt[:, None] - Rdp - gravity * (tau * dt + 0.5 * dt * dt)[:, None]
    v0 = (rhs * dt[:, None]).sum(0) / (dt * dt).sum()
    return v0 + gravity * (tau[-1] + dt[-1]) + A[-1] + Rdv[-1]
