"""Fixtures for the estimation tests: a small raycast box world with a spinning LiDAR, and cached synthetic logs."""

from __future__ import annotations

import functools

import numpy as np
import open3d as o3d
import pytest

from fuse4d.data.types import Calibration, Frame, ImuSamples, Sequence
from fuse4d.geometry import make_T


def _rot_z(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(np.shape(a) + (3, 3))
    R[..., 0, 0], R[..., 0, 1], R[..., 1, 0], R[..., 1, 1], R[..., 2, 2] = c, -s, s, c, 1.0
    return R


class BoxWorld:
    """Ground plane plus random boxes around a circular road; an ideal 32 × 1024 spinning LiDAR.

    ``circle_pose(t)``: sensor pose on a circle of radius 25 m driven at ``speed`` m/s
    (yaw follows the heading). ``sweep(t)``: the scan ending at ``t``, with per-point
    times relative to ``t`` (the sweep lasts 0.1 s and the sensor moves during it).
    """

    def __init__(self, seed: int = 0, speed: float = 8.0, radius: float = 25.0):
        rng = np.random.default_rng(seed)
        self.speed, self.radius = speed, radius
        scene = o3d.t.geometry.RaycastingScene()
        ground = o3d.geometry.TriangleMesh.create_box(300, 300, 0.1).translate((-150, -150, -0.1))
        scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(ground))
        placed = 0
        while placed < 160:
            c = rng.uniform(-70, 70, 2)
            if abs(np.linalg.norm(c) - radius) < 5:
                continue
            size = rng.uniform([1, 1, 2], [7, 7, 10])
            box = o3d.geometry.TriangleMesh.create_box(*size).translate((c[0], c[1], 0.0))
            box.rotate(o3d.geometry.get_rotation_matrix_from_xyz((0, 0, rng.uniform(0, np.pi))), center=(c[0], c[1], 0))
            scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(box))
            placed += 1
        self.scene = scene
        B, J = 32, 1024
        el = np.radians(np.linspace(-25, 15, B))
        az = -np.pi + 2 * np.pi * (np.arange(J) + 0.5) / J
        self.dirs = np.stack([np.cos(el)[None] * np.cos(az)[:, None], np.cos(el)[None] * np.sin(az)[:, None],
                              np.broadcast_to(np.sin(el)[None], (J, B))], -1)  # [J, B, 3]
        self.column_time = -0.1 * (J - 1 - np.arange(J)) / J

    def circle_pose(self, t: np.ndarray) -> np.ndarray:
        """``T_world_lidar [T, 4, 4]`` on the circle at times ``t`` (start at (0, -R), heading +x)."""
        a = np.atleast_1d(t) * self.speed / self.radius
        p = np.stack([self.radius * np.sin(a), -self.radius * np.cos(a), np.full_like(a, 1.8)], -1)
        return make_T(_rot_z(a), p)

    def sweep(self, t: float, pose_fn=None) -> tuple[np.ndarray, np.ndarray]:
        """``points [N, 4]`` float32 (sensor frame at ``t``, intensity 1) and ``time [N]`` float32 (s, ≤ 0)."""
        pose_fn = pose_fn or self.circle_pose
        T = pose_fn(t + self.column_time)  # [J, 4, 4]
        d_world = np.einsum("jab,jkb->jka", T[:, :3, :3], self.dirs)
        origin = np.broadcast_to(T[:, None, :3, 3], d_world.shape)
        rays = np.concatenate([origin, d_world], -1).reshape(-1, 6).astype(np.float32)
        hit = self.scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
        ok = np.isfinite(hit) & (hit < 60.0)
        r = hit[ok][:, None]
        local = self.dirs.reshape(-1, 3)[ok] * r  # in the sensor frame at the column time
        col = np.repeat(np.arange(self.dirs.shape[0]), self.dirs.shape[1])[ok]
        T_end_inv = np.linalg.inv(pose_fn(np.array([t]))[0])
        # points as measured: each in the sensor frame at its own capture time (that is what skews a sweep)
        pts = local.astype(np.float32)
        tau = self.column_time[col].astype(np.float32)
        self._last_true = (np.einsum("nab,nb->na", (T_end_inv @ T)[col, :3, :3], local)
                           + (T_end_inv @ T)[col, :3, 3]).astype(np.float32)
        return np.concatenate([pts, np.ones((len(pts), 1), np.float32)], 1), tau

    def sequence(self, frames: int, rate: float = 10.0, imu: bool = False) -> Sequence:
        """A LiDAR(-IMU) :class:`Sequence` of ``frames`` sweeps on the circle, with ground truth (body = LiDAR)."""
        times = np.arange(frames) / rate
        gt = self.circle_pose(times)
        imu_samples = self.imu(times[0] - 0.1, times[-1]) if imu else None

        def load(i: int) -> Frame:
            pts, tau = self.sweep(float(times[i]))
            return Frame(index=i, timestamp=float(times[i]), points=pts, point_time=tau, T_world_body=gt[i])

        sensors = {"lidar", "imu"} if imu else {"lidar"}
        return Sequence(times, load, Calibration(), sensors, imu_samples, gt, {"format": "boxworld"}, "boxworld")

    def imu(self, t0: float, t1: float, rate: float = 200.0) -> ImuSamples:
        """Exact IMU (body = sensor frame) on the circle: specific force and angular rate."""
        t = np.arange(t0, t1 + 1e-9, 1.0 / rate)
        w = self.speed / self.radius
        acc_centripetal = np.array([0.0, self.speed * w, 0.0])  # body frame, towards the centre (left)
        acc = np.tile(acc_centripetal + np.array([0.0, 0.0, 9.81]), (len(t), 1))
        gyro = np.tile([0.0, 0.0, w], (len(t), 1))
        return ImuSamples(t, acc, gyro)


@pytest.fixture(scope="session")
def box_world() -> BoxWorld:
    """The raycast box world (built once)."""
    return BoxWorld()


@functools.lru_cache(maxsize=4)
def _synthetic(frames: int, scenario: str, seed: int = 0):
    from fuse4d.data.synthetic import synthesize
    return synthesize(seed, frames, scenario), {}


@pytest.fixture(scope="session")
def synthetic():
    """``synthetic(frames, scenario) -> Sequence``; each frame is rendered once per session, on first use."""
    try:
        import fuse4d.data.synthetic  # noqa: F401
    except ImportError as e:  # pragma: no cover
        pytest.skip(f"synthetic world unavailable: {e}")

    def make(frames: int = 40, scenario: str = "default") -> Sequence:
        seq, cache = _synthetic(frames, scenario)

        def load(i: int) -> Frame:
            if i not in cache:
                cache[i] = seq[i]
            return cache[i]

        return Sequence(seq.timestamps, load, seq.calibration, seq.sensors, seq.imu, seq.gt_poses,
                        seq.metadata, seq.name)

    return make


class SmoothTrajectory:
    """An analytic 3D body trajectory (moving from t = 0, turning, pitching and rolling) with its exact IMU.

    ``pose(t)``: ``T_world_body [T, 4, 4]`` (world z up, gravity -9.81 z). ``imu(t0, t1, rate, ...)``:
    specific force and angular rate in the body frame, with optional constant biases and white noise.
    """

    def __init__(self, speed: float = 6.0):
        self.speed = speed

    def _state(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from scipy.spatial.transform import Rotation
        t = np.asarray(t, float)
        w, k = 0.25, self.speed / 6.0
        p = np.stack([k * (25 * np.sin(w * t) + 2 * t), k * 18 * (1 - np.cos(w * t)), 0.8 * np.sin(0.3 * t)], -1)
        yaw = np.arctan2(18 * w * np.sin(w * t), 25 * w * np.cos(w * t) + 2)  # heading follows the velocity
        R = Rotation.from_euler("ZYX", np.stack([yaw, 0.05 * np.sin(0.9 * t), 0.04 * np.cos(0.6 * t)], -1)).as_matrix()
        return R, p

    def pose(self, t: np.ndarray) -> np.ndarray:
        """``[T, 4, 4]`` body poses at times ``t [T]``."""
        R, p = self._state(np.atleast_1d(t))
        return make_T(R, p)

    def imu(self, t0: float, t1: float, rate: float = 200.0, gyro_bias=(0.0, 0.0, 0.0), acc_bias=(0.0, 0.0, 0.0),
            gyro_noise: float = 0.0, acc_noise: float = 0.0, seed: int = 0) -> ImuSamples:
        """IMU samples on ``[t0, t1]`` (derivatives by central differences of the analytic path)."""
        from fuse4d.fusion.estimation.lie import so3_log
        t = np.arange(t0, t1 + 1e-9, 1.0 / rate)
        h = 1e-3
        R, p = self._state(t)
        Rp, pp_ = self._state(t + h)
        Rm, pm = self._state(t - h)
        acc_w = (pp_ - 2 * p + pm) / h ** 2
        gyro = so3_log(np.swapaxes(Rm, -1, -2) @ Rp) / (2 * h)
        acc = np.einsum("kba,kb->ka", R, acc_w + np.array([0.0, 0.0, 9.81]))
        rng = np.random.default_rng(seed)
        gyro = gyro + np.asarray(gyro_bias) + rng.normal(0, gyro_noise * np.sqrt(rate), gyro.shape)
        acc = acc + np.asarray(acc_bias) + rng.normal(0, acc_noise * np.sqrt(rate), acc.shape)
        return ImuSamples(t, acc, gyro)


@pytest.fixture(scope="session")
def smooth_trajectory() -> SmoothTrajectory:
    """An analytic moving trajectory with its exact IMU (see :class:`SmoothTrajectory`)."""
    return SmoothTrajectory()
