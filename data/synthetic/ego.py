"""The road loop and the ego trajectory, with analytic derivatives.

The ego lane centre is a closed "squircle" ``c(u)``, ``u ∈ [0, 2π)``::

    x(u) = A (sin u + k sin 3u)
    y(u) = B ((1 - k) - cos u + k cos 3u)

so ``c(0) = 0`` with heading +x. The ground height depends on y only (a hill of
height H on the far side, ``tanh`` profile), so the start is flat and the first
body pose is the identity: the world frame is gravity-aligned with its origin
at the first body pose. The ego runs ``u(t) = ω t + ε sin(ω₂ t)``; it is slower
in the corners (``|c'(u)|`` is smaller there) and returns to its start after
about ``lap_time`` seconds. Body axes: x forward, y left, z up; roll is zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fuse4d.data.synthetic.config import SynthConfig
from fuse4d.geometry import make_T

GRAVITY = 9.81


@dataclass(frozen=True)
class Loop:
    """The ego-lane centre curve and the ground height profile."""

    A: float
    B: float
    k: float
    hill_height: float
    hill_width: float
    body_height: float

    @classmethod
    def from_config(cls, cfg: SynthConfig) -> "Loop":
        """Build from ``loop_half_size``, ``loop_squareness``, hill and body height."""
        return cls(cfg.loop_half_size[0], cfg.loop_half_size[1], cfg.loop_squareness,
                   cfg.hill_height, cfg.hill_width, cfg.body_height)

    def curve(self, u: np.ndarray, order: int = 0) -> np.ndarray:
        """``order``-th derivative of ``c(u)`` w.r.t. u, ``[..., 2]`` metres."""
        u = np.asarray(u, dtype=np.float64)
        A, B, k = self.A, self.B, self.k
        s1, c1, s3, c3 = np.sin(u), np.cos(u), np.sin(3 * u), np.cos(3 * u)
        if order == 0:
            return np.stack([A * (s1 + k * s3), B * ((1 - k) - c1 + k * c3)], -1)
        if order == 1:
            return np.stack([A * (c1 + 3 * k * c3), B * (s1 - 3 * k * s3)], -1)
        if order == 2:
            return np.stack([-A * (s1 + 9 * k * s3), B * (c1 - 9 * k * c3)], -1)
        raise ValueError(f"order must be 0, 1 or 2, got {order}")

    def normal(self, u: np.ndarray) -> np.ndarray:
        """Unit left normal of the curve ``[..., 2]``."""
        d = self.curve(u, 1)
        return np.stack([-d[..., 1], d[..., 0]], -1) / np.linalg.norm(d, axis=-1, keepdims=True)

    def road_height(self, y: np.ndarray, order: int = 0) -> np.ndarray:
        """Road surface height ``G(y)`` (metres, world frame) or its y-derivative (order 1, 2)."""
        H, w = self.hill_height, self.hill_width
        y0 = self.B
        q = (np.asarray(y, dtype=np.float64) - y0) / w
        th = np.tanh(q)
        sech2 = 1.0 - th * th
        if order == 0:
            return 0.5 * H * (th - np.tanh(-y0 / w)) - self.body_height
        if order == 1:
            return 0.5 * H / w * sech2
        if order == 2:
            return -H / w ** 2 * sech2 * th
        raise ValueError(f"order must be 0, 1 or 2, got {order}")

    def offset_point(self, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Point ``c(u) + d n(u)`` at lateral offset d (left positive), xy ``[..., 2]``."""
        return self.curve(u) + np.asarray(d)[..., None] * self.normal(u)


class EgoTrajectory:
    """Analytic ego motion on the loop: pose, velocity, acceleration, angular rate.

    Args:
        loop: the road loop.
        lap_time: seconds per lap at the mean rate.
        wobble: amplitude ε (rad of u) of the speed variation.
    """

    def __init__(self, loop: Loop, lap_time: float, wobble: float = 0.05):
        self.loop = loop
        self.omega = 2 * np.pi / lap_time
        self.wobble = wobble
        self.omega2 = 2 * np.pi / 7.0

    def param(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``u(t)``, ``u'(t)``, ``u''(t)`` for times ``t [...]`` seconds."""
        t = np.asarray(t, dtype=np.float64)
        e, w2 = self.wobble, self.omega2
        return (self.omega * t + e * np.sin(w2 * t), self.omega + e * w2 * np.cos(w2 * t),
                -e * w2 * w2 * np.sin(w2 * t))

    def kinematics(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Exact state at times ``t [T]``.

        Returns dict with ``p, v, a`` ``[T, 3]`` (world, m, m/s, m/s²), ``R`` ``[T, 3, 3]``
        (``R_world_body``), ``omega`` ``[T, 3]`` (body angular rate, rad/s) and
        ``f`` ``[T, 3]`` (specific force in the body frame, ``R^T (a - g)``, m/s²).
        """
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        L = self.loop
        u, du, ddu = self.param(t)
        c, c1, c2 = L.curve(u), L.curve(u, 1), L.curve(u, 2)
        y, y1, y2 = c[:, 1], c1[:, 1], c2[:, 1]
        g0, g1, g2 = L.road_height(y), L.road_height(y, 1), L.road_height(y, 2)
        p = np.column_stack([c, g0 + L.body_height])
        pu = np.column_stack([c1, g1 * y1])
        puu = np.column_stack([c2, g2 * y1 * y1 + g1 * y2])
        v = pu * du[:, None]
        a = puu * (du * du)[:, None] + pu * ddu[:, None]
        vh2 = v[:, 0] ** 2 + v[:, 1] ** 2
        vh = np.sqrt(vh2)
        yaw = np.arctan2(v[:, 1], v[:, 0])
        pitch = np.arctan2(v[:, 2], vh)
        dyaw = (v[:, 0] * a[:, 1] - v[:, 1] * a[:, 0]) / vh2
        dvh = (v[:, 0] * a[:, 0] + v[:, 1] * a[:, 1]) / vh
        dpitch = (vh * a[:, 2] - v[:, 2] * dvh) / (vh2 + v[:, 2] ** 2)
        R = rot_z(yaw) @ rot_y(-pitch)
        ey_rot = np.column_stack([-np.sin(yaw), np.cos(yaw), np.zeros_like(yaw)])
        omega_w = -dpitch[:, None] * ey_rot
        omega_w[:, 2] += dyaw
        Rt = np.swapaxes(R, 1, 2)
        omega_b = np.einsum("tij,tj->ti", Rt, omega_w)
        f = np.einsum("tij,tj->ti", Rt, a + np.array([0.0, 0.0, GRAVITY]))
        return {"p": p, "v": v, "a": a, "R": R, "omega": omega_b, "f": f, "u": u}

    def poses(self, t: np.ndarray) -> np.ndarray:
        """``T_world_body`` at times ``t [T]`` → ``[T, 4, 4]`` (same values as :meth:`kinematics`)."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        L = self.loop
        u, du, _ = self.param(t)
        c, c1 = L.curve(u), L.curve(u, 1)
        T = np.zeros((len(t), 4, 4))
        T[:, :2, 3] = c
        T[:, 2, 3] = L.road_height(c[:, 1]) + L.body_height
        vx, vy = c1[:, 0] * du, c1[:, 1] * du
        vz = L.road_height(c[:, 1], 1) * c1[:, 1] * du
        vh = np.sqrt(vx * vx + vy * vy)
        cy, sy = vx / vh, vy / vh
        n = np.sqrt(vh * vh + vz * vz)
        cp, sp = vh / n, vz / n
        # R = Rz(yaw) Ry(-pitch)
        T[:, 0, 0], T[:, 0, 1], T[:, 0, 2] = cy * cp, -sy, -cy * sp
        T[:, 1, 0], T[:, 1, 1], T[:, 1, 2] = sy * cp, cy, -sy * sp
        T[:, 2, 0], T[:, 2, 2] = sp, cp
        T[:, 3, 3] = 1.0
        return T


def rot_z(a: np.ndarray) -> np.ndarray:
    """Rotations about z by angles ``a [T]`` → ``[T, 3, 3]``."""
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(np.shape(a) + (3, 3))
    R[..., 0, 0], R[..., 0, 1], R[..., 1, 0], R[..., 1, 1], R[..., 2, 2] = c, -s, s, c, 1.0
    return R


def rot_y(a: np.ndarray) -> np.ndarray:
    """Rotations about y by angles ``a [T]`` → ``[T, 3, 3]``."""
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(np.shape(a) + (3, 3))
    R[..., 0, 0], R[..., 0, 2], R[..., 2, 0], R[..., 2, 2], R[..., 1, 1] = c, s, -s, c, 1.0
    return R
