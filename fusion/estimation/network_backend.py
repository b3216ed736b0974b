"""Trajectory of a log without LiDAR from network relative-pose factors (and the IMU when there is one).

Camera-only logs: the fusion model's relative poses ``T_i_j`` (body frame, with a
6×6 covariance) are chained into an initial trajectory over the frames they
connect and refined in a pose graph (redundant factors, e.g. from overlapping
windows, are fused by their covariances). Camera+IMU logs: every frame is a
node with pose, velocity and biases; IMU preintegration factors join
consecutive frames and the network factors give the metric motion that
dead reckoning lacks. Gravity, the first velocities and the gyro bias come
from the chained network poses and the IMU by the same linear solve as the
LiDAR-inertial start-up (:func:`~fuse4d.fusion.estimation.inertial_init.initialise`),
so a platform already moving at the start is handled.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from fuse4d.data.types import ImuSamples
from fuse4d.fusion.estimation.imu import ImuNoise, preintegrate_many, propagate_path
from fuse4d.fusion.estimation.inertial_init import initialise
from fuse4d.fusion.estimation.pose_graph import PoseGraph
from fuse4d.geometry import invert

log = logging.getLogger(__name__)

_STRONG = 1e8

#: a network factor: (frame i, frame j, ``T_i_j [4, 4]``, covariance ``[6, 6]``)
Factor = tuple[int, int, np.ndarray, np.ndarray]


@dataclass
class NetworkSolution:
    """Odometry-frame states of every frame (NaN where no factor or IMU reaches).

    Attributes:
        T: ``[S, 4, 4]`` body poses in the frame of the first reached frame.
        reached: ``[S]`` bool, frames with a pose.  networked: ``[S]`` bool, frames touched by a factor.
        velocities, biases: ``[S, 3]`` m/s and ``[S, 6]`` (gyro rad/s, acc m/s²) with an IMU, else None.
        gravity: ``[3]`` gravity in the odometry frame (m/s²) with an IMU, else None.
        info: graph size and costs.
    """

    T: np.ndarray
    reached: np.ndarray
    networked: np.ndarray
    velocities: np.ndarray | None = None
    biases: np.ndarray | None = None
    gravity: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def chain(S: int, factors: list[Factor], root: int) -> np.ndarray:
    """Initial poses ``[S, 4, 4]`` by breadth-first chaining of factors from ``root`` (identity); NaN elsewhere."""
    adj: dict[int, list[tuple[int, np.ndarray]]] = {}
    for i, j, T, _ in factors:
        adj.setdefault(i, []).append((j, T))
        adj.setdefault(j, []).append((i, invert(T)))
    T = np.full((S, 4, 4), np.nan)
    T[root] = np.eye(4)
    todo = deque([root])
    while todo:
        a = todo.popleft()
        for b, T_ab in adj.get(a, []):
            if np.isnan(T[b, 0, 0]):
                T[b] = T[a] @ T_ab
                todo.append(b)
    return T


def solve_network(t: np.ndarray, factors: list[Factor], imu: ImuSamples | None = None,
                  imu_covers: Callable[[float, float], bool] | None = None, imu_noise: ImuNoise | None = None,
                  gravity: float = 9.81, init_time: float = 2.0, iterations: int = 20) -> NetworkSolution:
    """Trajectory of ``S`` frames at times ``t [S]`` from network factors (and IMU).

    Args:
        t: ``[S]`` frame times (s).
        factors: network factors between frame positions.
        imu: the IMU stream (body frame), or None for a camera-only log.
        imu_covers: ``(t0, t1) -> bool``, whether the IMU spans an interval (default: always with ``imu``).
        imu_noise: noise densities for the preintegration covariances.
        gravity: magnitude (m/s²).
        init_time: seconds of chained network poses used for the gravity/velocity/bias start-up.
        iterations: LM steps at most.

    Raises:
        ValueError: no factors.
    """
    if not factors:
        raise ValueError("no network factors to build a trajectory from")
    S = len(t)
    networked = np.zeros(S, bool)
    for i, j, _, _ in factors:
        networked[[i, j]] = True
    root = int(np.flatnonzero(networked)[0])
    T0 = chain(S, factors, root)
    net_reached = np.isfinite(T0[:, 0, 0])
    if imu is None:
        return _camera_only(T0, net_reached, networked, factors, iterations)
    covers = imu_covers or (lambda a, b: True)
    return _camera_imu(t, T0, net_reached, networked, factors, imu, covers, imu_noise or ImuNoise(), gravity,
                       init_time, iterations)


def _camera_only(T0, reached, networked, factors, iterations) -> NetworkSolution:
    nodes = np.flatnonzero(reached)
    node_of = {int(k): n for n, k in enumerate(nodes)}
    graph = PoseGraph(T0[nodes])
    graph.add_prior(0, T0[nodes[0]], np.eye(6) * _STRONG)
    for i, j, T_ij, cov in factors:
        if i in node_of and j in node_of:
            graph.add_network_factor(node_of[i], node_of[j], T_ij, cov)
    sol = graph.optimize(max_iterations=iterations)
    T = np.full_like(T0, np.nan)
    T[nodes] = sol.poses
    return NetworkSolution(T, reached, networked, info=_info(nodes, 0, sol))


def _camera_imu(t, T0, net_reached, networked, factors, imu, covers, noise, gravity, init_time,
                iterations) -> NetworkSolution:
    S = len(t)
    ok = np.flatnonzero(net_reached)
    # initial guess: rotations from the gyro (far better than a chain of network rotations), translations
    # from the network steps turned by them; spans the IMU does not cover keep the network chain
    T = T0.copy()
    pairs = [(int(a), int(b)) for a, b in zip(ok[:-1], ok[1:]) if b == a + 1 and covers(t[a], t[b])]
    pre = dict(zip(pairs, preintegrate_many(imu, t[[a for a, _ in pairs]], t[[b for _, b in pairs]]))) \
        if pairs else {}
    for a, b in zip(ok[:-1], ok[1:]):
        step = invert(T0[a]) @ T0[b]
        T[b] = T[a] @ step
        if (a, b) in pre:
            T[b, :3, :3] = T[a, :3, :3] @ pre[(a, b)].dR
    # start-up: gravity and velocities from the first init_time seconds of those poses and the IMU
    run = [int(ok[0])]
    while (run[-1], run[-1] + 1) in pre and t[run[-1]] - t[run[0]] < init_time:
        run.append(run[-1] + 1)
    g_vec, bg, v_init = None, np.zeros(3), {}
    if len(run) >= 3:
        st = initialise(T[run, :3, :3], T[run, :3, 3], [pre[(a, a + 1)] for a in run[:-1]], gravity)
        g_vec = st.gravity
        v_init = {k: v for k, v in zip(run, st.velocities)}
        log.info("camera+IMU start-up over %.2f s: gravity %s, fit %.3f m", t[run[-1]] - t[run[0]],
                 np.round(g_vec, 3), st.residual)
    if g_vec is None:  # too few network poses: level with the accelerometer (assumes a slow start)
        from fuse4d.fusion.estimation.imu import initial_alignment
        R, bg, _ = initial_alignment(imu, t[ok[0]], min(1.0, max(t[-1] - t[ok[0]], 0.05)))
        g_vec = R.T @ np.array([0.0, 0.0, -gravity])
    # velocities: start-up solve, else finite differences of the initial poses, else IMU propagation
    v = np.full((S, 3), np.nan)
    for k in ok:
        if int(k) in v_init:
            v[k] = v_init[int(k)]
        else:
            a, b = max(k - 1, 0), min(k + 1, S - 1)
            if net_reached[a] and net_reached[b] and b > a:
                v[k] = (T[b, :3, 3] - T[a, :3, 3]) / (t[b] - t[a])
    reached = net_reached.copy()
    first = ok[0]
    for k in range(first + 1, S):
        prev = k - 1
        if not reached[prev]:
            continue
        if np.isnan(v[prev]).any():
            v[prev] = np.zeros(3)
        if reached[k] and not np.isnan(v[k]).any():
            continue
        if covers(t[prev], t[k]):
            _, P, V = propagate_path(imu, t[prev], t[k], T[prev, :3, :3], T[prev, :3, 3], v[prev], bg, None, g_vec)
            if not reached[k]:
                T[k] = P[-1]
            v[k] = V[-1]
            reached[k] = True
        elif reached[k]:
            v[k] = v[prev]
    v[reached & np.isnan(v).any(1)] = 0.0
    nodes = np.flatnonzero(reached)
    node_of = {int(k): n for n, k in enumerate(nodes)}
    graph = PoseGraph(T[nodes], v[nodes], np.tile(np.r_[bg, 0.0, 0.0, 0.0], (len(nodes), 1)), gravity=g_vec)
    R0 = T[nodes[0], :3, :3]
    up = R0.T @ (-g_vec / np.linalg.norm(g_vec))
    info = np.eye(6) * _STRONG
    info[3:, 3:] = _STRONG * np.outer(up, up) + 1e-2 * (np.eye(3) - np.outer(up, up))
    graph.add_prior(0, T[nodes[0]], info)
    pairs = [(a, b) for a, b in zip(nodes[:-1], nodes[1:]) if covers(t[a], t[b])]
    if pairs:
        pre = preintegrate_many(imu, t[[a for a, _ in pairs]], t[[b for _, b in pairs]], bg, np.zeros(3), noise)
        for (a, b), p in zip(pairs, pre):
            graph.add_imu(node_of[int(a)], node_of[int(b)], p, noise.gyro_walk, noise.acc_walk)
    graph.add_bias_prior(0, np.r_[bg, 0.0, 0.0, 0.0], np.r_[[0.01] * 3, [0.2] * 3])
    for i, j, T_ij, cov in factors:
        if i in node_of and j in node_of:
            graph.add_network_factor(node_of[i], node_of[j], T_ij, cov)
    sol = graph.optimize(max_iterations=iterations)
    T_out, v_out, b_out = np.full((S, 4, 4), np.nan), np.full((S, 3), np.nan), np.full((S, 6), np.nan)
    T_out[nodes], v_out[nodes], b_out[nodes] = sol.poses, sol.velocities, sol.biases
    return NetworkSolution(T_out, reached, networked, v_out, b_out, g_vec, _info(nodes, len(pairs), sol))


def _info(nodes, n_imu, sol) -> dict:
    return {"nodes": int(len(nodes)), "imu_factors": int(n_imu), "cost_initial": sol.cost_initial,
            "cost_final": sol.cost_final, "lm_iterations": sol.iterations}
