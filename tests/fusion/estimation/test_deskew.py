"""Motion compensation with per-point times (exact, constant-velocity and IMU-path models)."""

from __future__ import annotations

import numpy as np
import pytest

from fuse4d.fusion.estimation.deskew import constant_velocity_motion, deskew, trajectory_motion
from fuse4d.geometry import invert


def test_exact_motion_recovers_the_unskewed_sweep(box_world):
    t = 1.0
    pts, tau = box_world.sweep(t)
    true = box_world._last_true
    raw_err = np.abs(pts[:, :3] - true).max()
    ts = t + np.linspace(-0.1, 0.0, 11)
    out = deskew(pts, tau, trajectory_motion(ts, box_world.circle_pose(ts), t), bins=256)
    assert raw_err > 0.5  # 8 m/s over a 0.1 s sweep
    assert np.abs(out[:, :3] - true).max() < 0.01
    assert out.dtype == pts.dtype and np.array_equal(out[:, 3], pts[:, 3])


def test_constant_velocity_model(box_world):
    t = 1.0
    pts, tau = box_world.sweep(t)
    T = box_world.circle_pose(np.array([t - 0.1, t]))
    out = deskew(pts, tau, constant_velocity_motion(invert(T[0]) @ T[1], 0.1))
    assert np.abs(out[:, :3] - box_world._last_true).max() < 0.05


def test_passthrough_and_errors():
    pts = np.ones((5, 4), np.float32)
    assert deskew(pts, None, None) is pts
    with pytest.raises(ValueError, match="point_time"):
        deskew(pts, np.zeros(3), constant_velocity_motion(np.eye(4), 0.1))
    with pytest.raises(ValueError, match="positive"):
        constant_velocity_motion(np.eye(4), 0.0)
    with pytest.raises(ValueError, match="increasing"):
        trajectory_motion(np.array([1.0, 1.0]), np.stack([np.eye(4)] * 2), 1.0)
