"""Scan-to-map ICP, adaptive threshold and degeneracy on a raycast box world."""

from __future__ import annotations

import numpy as np
import pytest

from fuse4d.fusion.estimation.geometry_checks import degeneracy
from fuse4d.fusion.estimation.lie import rotation_angle, se3_exp
from fuse4d.fusion.estimation.registration import AdaptiveThreshold, register_to_map
from fuse4d.fusion.estimation.voxel_map import VoxelMap, voxel_downsample
from fuse4d.geometry import invert


def _static_sweep(world, T_world_lidar):
    """A sweep taken without motion from ``T_world_lidar``."""
    pts, _ = world.sweep(0.0, pose_fn=lambda t: np.repeat(T_world_lidar[None], len(np.atleast_1d(t)), 0))
    return pts[:, :3].astype(np.float64)


@pytest.fixture(scope="module")
def five_sweep_map(box_world):
    """Map from five level sweeps along the road, and the middle pose."""
    Ts = box_world.circle_pose(np.array([-0.5, -0.25, 0.0, 0.25, 0.5]))
    vm = VoxelMap(1.0)
    for T in Ts:
        vm.add(voxel_downsample(_static_sweep(box_world, T), 0.5) @ T[:3, :3].T + T[:3, 3])
    return vm, Ts[2]


@pytest.mark.parametrize("point_weight, tol_m, tol_deg", [(0.0, 0.01, 0.1), (1.0, 0.06, 0.8)])
def test_recovers_known_offset(box_world, five_sweep_map, point_weight, tol_m, tol_deg):
    """0.45 m / 2.6° offset. Point-to-point pairs on sparse voxels bias roll/pitch towards the
    map's sampling; down-weighting them (the default in odometry) removes most of the bias."""
    vm, T0 = five_sweep_map
    T_true = T0 @ se3_exp(np.array([0.4, -0.2, 0.05, 0.01, -0.005, 0.04]))
    src = voxel_downsample(voxel_downsample(_static_sweep(box_world, T_true), 0.5), 1.5)
    res = register_to_map(src, vm, T0, 1.5, 0.5, True, max_iterations=60, point_weight=point_weight)
    err = invert(T_true) @ res.T
    assert np.linalg.norm(err[:3, 3]) < tol_m
    assert np.degrees(rotation_angle(err)) < tol_deg
    assert res.fitness > 0.9 and res.converged


def test_point_to_point_only(box_world, five_sweep_map):
    vm, T0 = five_sweep_map
    T_true = T0 @ se3_exp(np.array([0.3, 0.1, 0.0, 0.0, 0.0, 0.03]))
    src = voxel_downsample(voxel_downsample(_static_sweep(box_world, T_true), 0.5), 1.5)
    res = register_to_map(src, vm, T0, 1.5, 0.5, point_to_plane=False, max_iterations=60)
    err = invert(T_true) @ res.T
    assert np.linalg.norm(err[:3, 3]) < 0.08 and np.degrees(rotation_angle(err)) < 0.5


def test_empty_map_and_bad_shape_raise(box_world):
    with pytest.raises(ValueError, match="empty map"):
        register_to_map(np.zeros((10, 3)), VoxelMap(1.0), np.eye(4), 1.0, 0.3)
    vm = VoxelMap(1.0)
    vm.add(np.random.default_rng(0).normal(size=(100, 3)))
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        register_to_map(np.zeros((10, 2)), vm, np.eye(4), 1.0, 0.3)


def test_adaptive_threshold_follows_prediction_errors():
    th = AdaptiveThreshold(initial=2.0, min_motion=0.1, max_range=100.0)
    assert th.sigma == 2.0
    th.update(se3_exp(np.array([0.05, 0, 0, 0, 0, 0])))  # below min_motion: ignored
    assert th.sigma == 2.0
    th.update(se3_exp(np.array([0.3, 0, 0, 0, 0, 0])))
    th.update(se3_exp(np.array([0.0, 0.4, 0, 0, 0, 0])))
    assert th.sigma == pytest.approx(np.sqrt((0.3 ** 2 + 0.4 ** 2) / 2))


def test_degeneracy_of_a_flat_floor():
    g = np.arange(-10, 10, 0.2)
    floor = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    floor = np.c_[floor, np.zeros(len(floor))]
    vm = VoxelMap(1.0, max_points_per_voxel=20)
    vm.add(floor)
    src = floor[::7] + [0, 0, 0.05]
    res = register_to_map(src, vm, np.eye(4), 1.0, 0.3, point_weight=0.0)
    assert degeneracy(res.hessian, len(src))  # x, y and yaw are unobservable on a plane
    assert abs(res.T[2, 3] + 0.05) < 0.005  # height still recovered


def test_structured_scene_is_not_degenerate(box_world):
    T0 = box_world.circle_pose(np.array([0.0]))[0]
    pts = _static_sweep(box_world, T0)
    vm = VoxelMap(1.0)
    vm.add(voxel_downsample(pts, 0.5))
    src = voxel_downsample(pts, 1.5)
    res = register_to_map(src, vm, np.eye(4), 1.0, 0.3)
    assert not degeneracy(res.hessian, len(src))
