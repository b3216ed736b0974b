"""LiDAR odometry: deskew, downsample, register against a local voxel map, update the map.

The stage follows KISS-ICP (``register_frame``): constant-velocity (or given)
motion for deskewing, a prediction for the initial guess, an adaptive
correspondence threshold, and a voxel-hash local map; it adds point-to-plane
residuals on planar voxels and returns the registration Hessian, which the
pose graph uses as the factor's information.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fuse4d.fusion.estimation.deskew import MotionModel, constant_velocity_motion, deskew
from fuse4d.fusion.estimation.geometry_checks import degeneracy
from fuse4d.fusion.estimation.lie import orthonormalize, se3_exp
from fuse4d.fusion.estimation.registration import AdaptiveThreshold, register_to_map
from fuse4d.fusion.estimation.voxel_map import VoxelMap, voxel_downsample, voxel_keys
from fuse4d.geometry import invert


@dataclass
class OdometryStep:
    """Result of registering one sweep.

    Attributes:
        T_world_lidar: ``[4, 4]`` pose of the sensor at the frame stamp (odometry frame).
        hessian: ``[6, 6]`` registration information (left perturbation, translation
            then rotation, world axes), in 1/m² units of the residual.
        fitness: fraction of source points matched to the map, [0, 1].
        rmse: residual of matched points (m).
        sigma: adaptive threshold scale used (m).
        degenerate: the registration is poorly constrained in some direction.
        points: ``[M, 3]`` deskewed, downsampled sweep (sensor frame) that entered the map.
        first: this sweep started the map (no registration was done).
        n_source: number of points used for registration.
        accepted: fitness reached ``min_fitness``; a rejected sweep is not added to the map.
    """

    T_world_lidar: np.ndarray
    hessian: np.ndarray
    fitness: float
    rmse: float
    sigma: float
    degenerate: bool
    points: np.ndarray
    first: bool = False
    n_source: int = 0
    accepted: bool = True


class LidarOdometry:
    """Scan-to-map LiDAR odometry (KISS-ICP-style, numpy + scipy KD-tree).

    Args:
        voxel_size: map cell size (m); sweeps are downsampled at half of it for the
            map and at 1.5× for registration.
        max_range / min_range: points outside this range (m) are dropped.
        max_points_per_voxel: map cell capacity.
        point_to_plane: use point-to-plane residuals on planar voxels.
        initial_threshold / min_motion: adaptive-threshold settings (m).
        max_iterations: Gauss-Newton iterations per sweep.
        deskew: compensate motion within a sweep when per-point times are given.
        min_fitness: a registration matching fewer source points than this fraction is
            rejected (not added to the map).
    """

    def __init__(self, voxel_size: float = 1.0, max_range: float = 100.0, min_range: float = 0.0,
                 max_points_per_voxel: int = 10, point_to_plane: bool = True, initial_threshold: float = 2.0,
                 min_motion: float = 0.1, max_iterations: int = 50, deskew: bool = True, min_fitness: float = 0.0):
        self.voxel_size, self.max_range, self.min_range = float(voxel_size), float(max_range), float(min_range)
        self.point_to_plane, self.max_iterations, self.deskew = point_to_plane, int(max_iterations), deskew
        self.min_fitness = float(min_fitness)
        self.map = VoxelMap(voxel_size, max_points_per_voxel, max_range)
        self.threshold = AdaptiveThreshold(initial_threshold, min_motion, max_range)
        self.last_pose: np.ndarray | None = None
        self.last_delta = np.eye(4)
        self.last_dt: float | None = None
        self.kernel_scale = 1.0
        self.tolerance = 1e-3
        self.point_weight = 0.0
        self.min_threshold, self.refine, self.refine_threshold = 1.0, False, 1.0
        self._first: tuple | None = None  # first sweep, re-deskewed once the motion is known
        #: ``[M, 3]`` the first sweep as re-deskewed by the second registration (None until then): the
        #: sweep returned for the first frame had no motion to deskew with, so keyframe stores replace it
        self.first_deskewed: np.ndarray | None = None
        #: seconds spent per stage (preprocess, registration, map_update), summed over sweeps
        self.timings: dict[str, float] = {}

    def preprocess(self, points: np.ndarray, point_time: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Range-filter and downsample a sweep at half the voxel size.

        Args:
            points: ``[N, 3+]`` sensor-frame points (metres); NaN rows are dropped.
            point_time: ``[N]`` seconds from the stamp, or None.

        Returns:
            ``[M, 3]`` float64 points (one per ``voxel_size / 2`` cell) and their times ``[M]`` (or None).
        """
        xyz = np.asarray(points)[:, :3]
        r2 = np.einsum("ij,ij->i", xyz, xyz)
        with np.errstate(invalid="ignore"):  # NaN rows get junk keys, masked below
            keys = voxel_keys(xyz, 0.5 * self.voxel_size)
        inside = (r2 <= self.max_range ** 2) & (r2 >= self.min_range ** 2)  # NaN compares False
        keys[~inside] = -1
        keep = np.flatnonzero(~pd.Series(keys).duplicated().to_numpy() & inside)
        tau = None if point_time is None else np.asarray(point_time).reshape(-1)[keep].astype(np.float64)
        return xyz[keep].astype(np.float64), tau

    def predict(self) -> np.ndarray | None:
        """Constant-velocity prediction of the next pose ``[4, 4]`` (None before the first sweep)."""
        return None if self.last_pose is None else self.last_pose @ self.last_delta

    def register(self, points: np.ndarray, point_time: np.ndarray | None = None, dt: float | None = None,
                 T_pred: np.ndarray | None = None, motion: MotionModel | None = None,
                 widen: float = 1.0) -> OdometryStep:
        """Register one sweep and add it to the map.

        Args:
            points: ``[N, 3+]`` sensor-frame points (metres).
            point_time: ``[N]`` seconds from the frame stamp, or None.
            dt: seconds since the previous sweep (for constant-velocity deskewing).
            T_pred: ``[4, 4]`` predicted ``T_world_lidar`` (e.g. from the IMU); default
                constant velocity.
            motion: deskew model ``T_stamp_τ``; default constant velocity over ``dt``.
            widen: factor on the correspondence threshold (after a sensor gap).

        Raises:
            ValueError: fewer than 10 points within range.
        """
        tic = time.perf_counter()
        frame, tau = self.preprocess(points, point_time)
        if len(frame) < 10:
            raise ValueError(f"sweep has only {len(frame)} points within range")
        if self.deskew and tau is not None:
            if motion is None and self.last_pose is not None and (self.last_dt or dt):
                motion = constant_velocity_motion(self.last_delta, self.last_dt or dt)
            frame = deskew(frame, tau, motion)
        source = voxel_downsample(frame, 1.5 * self.voxel_size)
        tic = self._tick("preprocess", tic)
        T_init = T_pred if T_pred is not None else self.predict()
        if self.map.empty:
            T = np.eye(4) if T_init is None else T_init
            self._commit(T, frame, dt)
            self._first = (points, point_time, T)
            return OdometryStep(T, np.zeros((6, 6)), 1.0, 0.0, self.threshold.sigma, False, frame, first=True)
        sigma = self.threshold.sigma * widen
        bootstrap = self._first is not None
        if bootstrap:
            res, frame, source = self._bootstrap(frame, source, points, point_time, dt, T_init)
        else:
            res = self._align(source, T_init, sigma)
            # the wide start-up threshold covered an unknown motion; from now on the prediction is informed
            self.threshold.initial = min(self.threshold.initial, self.voxel_size / 3.0)
        tic = self._tick("registration", tic)
        accepted = res.fitness >= self.min_fitness
        if accepted:
            if not bootstrap and widen == 1.0:  # a motion-less first guess or a gap says nothing of the prediction
                self.threshold.update(invert(T_init) @ res.T)
            self._commit(res.T, frame, dt)
        else:  # keep a failed alignment out of the map and fall back on the prediction
            self.reset_motion(T_init)
        self._tick("map_update", tic)
        return OdometryStep(res.T if accepted else T_init, res.hessian, res.fitness, res.rmse, sigma,
                            degeneracy(res.hessian, len(source)), frame, n_source=len(source), accepted=accepted)

    def _bootstrap(self, frame, source, points, point_time, dt, T_init):
        """Second sweep: register it to the first by point-to-plane ICP on neighbourhood normals.

        A map of one sweep holds too few points per voxel for voxel planes, and matching
        points to points of one sweep pulls the motion towards zero (both sweeps sample the
        ground on the same rings): KITTI's first step came out at half its length. Normals
        from each point's neighbours remove that bias. With per-point times both
        sweeps are then deskewed with the motion found and registered again.
        """
        first_points, first_time, T0 = self._first
        self._first = None
        T = T0 if T_init is None else T_init
        f0, tau0 = self.preprocess(first_points, first_time)
        planes = None
        for rnd in range(2):
            # deskewing moves the first sweep's points by centimetres: its normals are found once
            T, planes = self._knn_plane_icp(f0, T0, frame, T, planes, refine_only=rnd > 0)
            if rnd or not (self.deskew and point_time is not None and first_time is not None and dt):
                break
            motion = constant_velocity_motion(invert(T0) @ T, dt)
            f0 = deskew(f0, tau0, motion)
            frame, tau = self.preprocess(points, point_time)
            frame = deskew(frame, tau, motion)
        self.map.clear()
        self.map.add(f0 @ T0[:3, :3].T + T0[:3, 3], origin=T0[:3, 3])
        self.first_deskewed = f0
        source = voxel_downsample(frame, 1.5 * self.voxel_size)
        # information (and fitness) of the result against the voxel map, without moving it
        res = register_to_map(source, self.map, T, self.voxel_size, self.voxel_size / 3.0, self.point_to_plane,
                              max_iterations=1, reuse=1, point_weight=self.point_weight)
        res.T = T
        return res, frame, source

    def _knn_plane_icp(self, target: np.ndarray, T_target: np.ndarray, source: np.ndarray,
                       T_init: np.ndarray, planes: tuple | None = None,
                       refine_only: bool = False) -> tuple[np.ndarray, tuple]:
        """``T_world_source [4, 4]``: point-to-plane ICP of ``source [N, 3]`` onto ``target [M, 3]`` (both
        sensor frames, downsampled at half a voxel; target at ``T_target``) with normals from each target
        point's neighbours (as Open3D's ``registration_icp``, but deterministic), coarse to fine from 2
        voxels to 1 voxel (``refine_only``: the 1-voxel stage alone, from a pose already in the basin). Also
        returns the target's ``(normals [M, 3], usable [M])`` for reuse as ``planes``."""
        from scipy.spatial import cKDTree
        from fuse4d.fusion.estimation.registration import _normal_equations
        from fuse4d.fusion.estimation.voxel_map import smallest_eigh
        v = 0.5 * self.voxel_size
        tgt = np.asarray(target, np.float64)[:, :3]
        src = voxel_downsample(np.asarray(source, np.float64)[:, :3], v)
        tree = cKDTree(tgt)
        if planes is None:
            dist, nb = tree.query(tgt, k=min(30, len(tgt)), distance_upper_bound=3.0 * v)
            valid = np.isfinite(dist)
            nbp = tgt[np.minimum(nb, len(tgt) - 1)]
            cnt = valid.sum(1)
            mean = (nbp * valid[..., None]).sum(1) / cnt[:, None]
            c = (nbp - mean[:, None]) * valid[..., None]
            planes = (smallest_eigh(np.einsum("nki,nkj->nij", c, c) / cnt[:, None, None])[1], cnt >= 5)
        normals, has = planes
        T = invert(T_target) @ T_init
        # the wide stage finds the basin on a sparse source (one point per voxel), the fine stage refines
        # on every point from there: most iterations run on a few thousand points, whatever the sweep's size
        coarse = voxel_downsample(src, 2.0 * v)
        stages = ((4.0 * v, coarse, 1e-5), (2.0 * v, src, 1e-5))
        for thr, pts, tol in stages[1:] if refine_only else stages:
            for _ in range(50):
                p = pts @ T[:3, :3].T + T[:3, 3]
                d, i = tree.query(p, distance_upper_bound=thr)
                ok = np.isfinite(d)
                ok[ok] = has[i[ok]]
                if ok.sum() < 6:
                    break
                H, g, _, _ = _normal_equations(p[ok], tgt[i[ok]], normals[i[ok]], np.ones(ok.sum(), bool), thr)
                delta = -np.linalg.solve(H + 1e-9 * np.eye(6), g)
                T = se3_exp(delta) @ T
                if np.linalg.norm(delta) < tol:
                    break
        return T_target @ T, planes

    def _align(self, source: np.ndarray, T_init: np.ndarray, sigma: float):
        """ICP at threshold 3σ; when that is coarser than 2 voxels, continue coarse-to-fine down to one voxel.

        A wide threshold finds the basin but is biased towards the scan-ring pattern
        (rings move with the sensor); the finer stages remove the bias.
        """
        stages = [max(3.0 * sigma, self.min_threshold * self.voxel_size)]
        while stages[-1] > 2.0 * self.voxel_size:
            stages.append(stages[-1] / 2.0)
        if len(stages) > 1 or self.refine:
            stages.append(self.voxel_size * self.refine_threshold)
        T, res = T_init, None
        for thr in stages:
            res = register_to_map(source, self.map, T, thr, self.kernel_scale * thr / 3.0,
                                  self.point_to_plane, self.max_iterations, self.tolerance,
                                  point_weight=self.point_weight)
            T = res.T
        return res

    def _tick(self, stage: str, tic: float) -> float:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - tic
        return now

    def _commit(self, T: np.ndarray, frame: np.ndarray, dt: float | None) -> None:
        T = orthonormalize(T)
        self.map.add(frame @ T[:3, :3].T + T[:3, 3], origin=T[:3, 3])
        if self.last_pose is not None:
            self.last_delta = invert(self.last_pose) @ T
        self.last_pose, self.last_dt = T, dt

    def reset_motion(self, T_world_lidar: np.ndarray, delta: np.ndarray | None = None) -> None:
        """Set the current pose (and per-frame motion) without a sweep, e.g. from IMU over a LiDAR gap."""
        self.last_pose = np.asarray(T_world_lidar, dtype=np.float64)
        if delta is not None:
            self.last_delta = np.asarray(delta, dtype=np.float64)
