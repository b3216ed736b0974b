"""The shared sweep motion models (fuse4d.deskew) the map builder deskews with."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fuse4d.deskew import constant_velocity_motion, deskew, polynomial_motion


def _pose(t: np.ndarray) -> np.ndarray:
    """``T_world_sensor [K, 4, 4]`` of a car at 10 m/s entering a bend: yaw rate 0.3 + 0.7 t rad/s
    (the synthetic ego's yaw rate changes by up to ~0.7 rad/s per second, train seed 2)."""
    t = np.asarray(t, np.float64).reshape(-1)
    yaw = 0.3 * t + 0.35 * t ** 2
    s = np.linspace(0.0, 1.0, 401)[None] * t[:, None]           # integrate the heading numerically
    h = 0.3 * s + 0.35 * s ** 2
    x = np.trapezoid(10.0 * np.cos(h), s, axis=1)
    y = np.trapezoid(10.0 * np.sin(h), s, axis=1)
    T = np.tile(np.eye(4), (len(t), 1, 1))
    T[:, :3, :3] = Rotation.from_euler("z", yaw[:, None]).as_matrix()
    T[:, :3, 3] = np.column_stack([x, y, np.zeros_like(x)])
    return T


def _sweep(stamp: float, n: int = 2000):
    """Points of walls 30 m around, captured over the 0.1 s before ``stamp``: (local [N, 3], τ [N], world [N, 3])."""
    rng = np.random.default_rng(0)
    tau = -np.sort(rng.uniform(0.0, 0.1, n))[::-1]
    world = np.column_stack([30.0 * np.cos(np.linspace(0, 2 * np.pi, n)), 30.0 * np.sin(np.linspace(0, 2 * np.pi, n)),
                             rng.uniform(-1, 2, n)]) + _pose(np.array([stamp]))[0, :3, 3]
    T = _pose(stamp + tau)
    local = np.einsum("nji,nj->ni", T[:, :3, :3], world - T[:, :3, 3])   # R^T (p - t)
    return local, tau, world


def test_two_earlier_poses_follow_a_bend_that_tightens():
    stamp, dt = 1.0, 0.2                     # every second frame of a 10 Hz log
    local, tau, world = _sweep(stamp)
    T_w = _pose(np.array([stamp - 2 * dt, stamp - dt, stamp]))
    inv = np.linalg.inv(T_w[2])
    in_world = lambda p: p @ T_w[2, :3, :3].T + T_w[2, :3, 3]  # noqa: E731
    raw = np.linalg.norm(in_world(local) - world, axis=1).max()
    cv = deskew(local, tau, constant_velocity_motion(np.linalg.inv(T_w[1]) @ T_w[2], dt))
    one = deskew(local, tau, polynomial_motion([-dt], (inv @ T_w[1])[None]), bins=256)
    two = deskew(local, tau, polynomial_motion([-2 * dt, -dt], np.stack([inv @ T_w[0], inv @ T_w[1]])), bins=256)
    err = {k: np.linalg.norm(in_world(p) - world, axis=1).max() for k, p in (("cv", cv), ("one", one), ("two", two))}
    assert raw > 1.0                          # 10 m/s and a turn over the sweep
    assert err["cv"] > 0.08 and err["one"] > 0.08  # measured 0.145 / 0.114 m: the mean motion over 0.2 s
    assert err["two"] < 0.015                 # measured 0.008 m


def test_polynomial_motion_passes_through_its_poses_and_rejects_bad_nodes():
    T = _pose(np.array([0.8, 1.0, 1.1]))
    inv = np.linalg.inv(T[1])
    rel = np.stack([inv @ T[0], inv @ T[2]])
    m = polynomial_motion([-0.2, 0.1], rel)
    out = m(np.array([-0.2, 0.0, 0.1]))
    assert np.abs(out[[0, 2]] - rel).max() < 1e-12 and np.abs(out[1] - np.eye(4)).max() < 1e-12
    with pytest.raises(ValueError, match="distinct"):
        polynomial_motion([-0.1, -0.1], rel)
    with pytest.raises(ValueError, match="distinct"):
        polynomial_motion([0.0], rel[:1])
    with pytest.raises(ValueError, match=">= 1 pose"):
        polynomial_motion([], np.zeros((0, 4, 4)))
