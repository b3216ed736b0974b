"""The ego drive around the loop: a per-seed speed profile with stops, and exact kinematics.

The ego-lane centre ``c(u)`` and road height ``h(u)`` come from :mod:`road`. The
ego's arc length ``S(t)`` is the integral of a speed profile ``v(t)`` (a PCHIP
interpolant: C1, never negative, flat zero while stopped), so position,
velocity and acceleration are exact derivatives of one function and the IMU
agrees with the poses. The profile slows for corners (lateral acceleration
bound), wobbles, brakes to a standstill of 1-2 s at random places (or before a
junction) and is scaled so that one lap takes exactly ``lap_time``: the ego is
back at its start pose at ``t = lap_time`` (frame 185 at 10 Hz), and the drive
repeats lap after lap. The start is on a flat straight at constant speed, so
the first body pose is the identity: the world frame is gravity-aligned with its
origin at the first body pose. Body axes: x forward, y left, z up; roll is zero.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import PchipInterpolator

from fuse4d.data.synthetic.config import SynthConfig
from fuse4d.data.synthetic.road import TWO_PI, Loop

GRAVITY = 9.81


class SpeedProfile:
    """Arc length ``S(t)`` of the ego along the loop, one lap per ``lap_time``, periodic.

    Args:
        loop: the road loop; cfg: ``lap_time``, ``speed_wobble``, ``max_lateral_acc``,
            ``stop_count``, ``stop_duration``; rng: generator for wobble and stops;
        stop_s: arc lengths (m) where the ego stops (drawn from rng when None);
        durations: standstill durations (s), one per stop.
    """

    def __init__(self, loop: Loop, cfg: SynthConfig, rng: np.random.Generator,
                 stop_s: list[float] | None = None, durations: list[float] | None = None):
        L, T = loop.length, float(cfg.lap_time)
        self.length, self.lap_time = L, T
        ds = 0.5
        n = int(np.ceil(L / ds))
        s = L * np.arange(n + 1) / n  # s[n] = L closes the lap
        ds = L / n
        kappa = np.abs(loop.curvature(TWO_PI * s / L))
        k = int(round(6.0 / ds))
        kappa = np.convolve(np.r_[kappa[-k - 1:-1], kappa, kappa[1:k + 1]], np.ones(2 * k + 1) / (2 * k + 1), "valid")
        v_curve = np.sqrt(cfg.max_lateral_acc / np.maximum(kappa, 1e-5))
        wob = 1.0 + cfg.speed_wobble * np.sin(TWO_PI * int(rng.integers(2, 4)) * s / L + rng.uniform(0, TWO_PI))
        stop_s = [] if stop_s is None else list(stop_s)
        durations = list(rng.uniform(*cfg.stop_duration, len(stop_s))) if durations is None else list(durations)
        stop_idx = [int(round(x / ds)) % n for x in stop_s]
        D = float(sum(durations))
        start = (s < 12.0) | (s > L - 12.0)  # constant speed around the start: v' = 0 there, C1 at the lap seam
        v_top = L / (T - D)
        for _ in range(6):
            v = np.minimum(min(v_top, 19.0) * wob, v_curve)
            v[stop_idx] = 0.0
            v = _limit_accel(v, ds, 3.0, 4.0)
            v[start] = v[start].min()
            v = _limit_accel(v, ds, 3.0, 4.0)
            dt = ds / np.maximum(0.5 * (v[:-1] + v[1:]), 1e-3)
            t_move = dt.sum()
            v_top *= t_move / (T - D)
        scale = t_move / (T - D)  # ≈ 1 after the iterations: exact lap time
        #: how much the speeds had to be raised beyond the corner/acceleration limits to make the lap time
        self.overdrive = float(scale)
        v = v * scale
        tau = np.concatenate([[0.0], np.cumsum(dt / scale)])
        # knots in time: every 0.2 s of moving time, then the standstills inserted
        tk = np.unique(np.r_[np.arange(0.0, tau[-1], 0.2), tau[-1], tau[stop_idx]])
        sk = np.interp(tk, tau, s)
        vk = np.interp(sk, s, v)
        for i in stop_idx:
            vk[np.isclose(tk, tau[i])] = 0.0
        shift = np.zeros_like(tk)
        knots_t, knots_v = [tk], [vk]
        self.stops = []
        for i, dur in sorted(zip(stop_idx, durations)):
            t0 = tau[i] + sum(d for j, d in zip(stop_idx, durations) if tau[j] < tau[i])
            shift += np.where(tk > tau[i] + 1e-9, dur, 0.0)
            knots_t.append(np.array([t0 + dur])), knots_v.append(np.array([0.0]))
            self.stops.append((float(t0), float(t0 + dur)))
        knots_t[0] = tk + shift
        t_all = np.concatenate(knots_t)
        v_all = np.concatenate(knots_v)
        order = np.argsort(t_all, kind="stable")
        t_all, v_all = t_all[order], v_all[order]
        keep = np.r_[True, np.diff(t_all) > 1e-6]
        self._v = PchipInterpolator(t_all[keep], v_all[keep])
        self._a = self._v.derivative()
        self._S = self._v.antiderivative()
        self._gain = L / float(self._S(T))  # exact closure: S(T) = L

    def __call__(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Arc length ``S`` (m, unwrapped over laps), speed (m/s) and acceleration (m/s²) at ``t [...]``."""
        t = np.asarray(t, dtype=np.float64)
        laps = np.floor(t / self.lap_time)
        tm = t - laps * self.lap_time
        g = self._gain
        return (laps * self.length + g * self._S(tm), g * self._v(tm), g * self._a(tm))


def draw_stops(road, n: int, rng: np.random.Generator) -> list[float]:
    """Where (arc length, m, sorted) the ego stands still, ``n`` places at most, 20 % of a lap apart
    in the middle of the lap; the first is just before a junction when one lies there."""
    L = road.loop.length
    where: list[float] = []
    junctions = [st.u0 * L / TWO_PI - 9.0 for st in road.side_streets]
    for _ in range(40):
        if len(where) >= n:
            break
        cand = [j for j in junctions if 0.3 * L < j < 0.85 * L]
        x = cand[0] if (not where and cand and rng.random() < 0.6) else rng.uniform(0.3 * L, 0.85 * L)
        if all(abs(x - w) > 0.2 * L for w in where):
            where.append(float(x))
    return sorted(where)


def _limit_accel(v: np.ndarray, ds: float, acc: float, dec: float) -> np.ndarray:
    """Speeds ``v [n+1]`` on a closed loop (``v[0]`` and ``v[n]`` are the same place) lowered so that
    speeding up stays below ``acc`` and braking below ``dec`` (m/s²)."""
    n = len(v) - 1
    w = v[:-1].tolist()
    a2, d2 = 2 * acc * ds, 2 * dec * ds
    for _ in range(2):
        for i in range(1, 2 * n + 1):  # forward: acceleration limit
            j, p = i % n, (i - 1) % n
            w[j] = min(w[j], math.sqrt(w[p] * w[p] + a2))
        for i in range(2 * n, 0, -1):  # backward: braking limit
            j, q = (i - 1) % n, i % n
            w[j] = min(w[j], math.sqrt(w[q] * w[q] + d2))
    return np.array(w + w[:1])


class EgoTrajectory:
    """Exact ego motion on the loop: pose, velocity, acceleration, angular rate.

    Args:
        loop: the road loop; profile: the ego's arc length over time.
    """

    def __init__(self, loop: Loop, profile: SpeedProfile):
        self.loop, self.profile = loop, profile
        self.lap_time = profile.lap_time
        #: mean rate of the loop parameter u (rad/s)
        self.omega = TWO_PI / profile.lap_time

    def param(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``u(t)``, ``u'(t)``, ``u''(t)`` for times ``t [...]`` seconds (u unwrapped over laps)."""
        S, v, a = self.profile(t)
        k = TWO_PI / self.profile.length
        return k * S, k * v, k * a

    def kinematics(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Exact state at times ``t [T]``.

        Returns dict with ``p, v, a`` ``[T, 3]`` (world, m, m/s, m/s²), ``R`` ``[T, 3, 3]``
        (``R_world_body``), ``omega`` ``[T, 3]`` (body angular rate, rad/s), ``f`` ``[T, 3]``
        (specific force in the body frame, ``R^T (a - g)``, m/s²) and ``u [T]``.
        Heading and pitch follow the road tangent, so they stay defined while the ego stands still.
        """
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        L = self.loop
        u, du, ddu = self.param(t)
        c, c1, c2 = L.curve(u), L.curve(u, 1), L.curve(u, 2)
        h0, h1, h2 = L.heights(u, 2)
        p = np.column_stack([c, h0 + L.body_height])
        pu = np.column_stack([c1, h1])
        puu = np.column_stack([c2, h2])
        v = pu * du[:, None]
        a = puu * (du * du)[:, None] + pu * ddu[:, None]
        g2 = c1[:, 0] ** 2 + c1[:, 1] ** 2
        g = np.sqrt(g2)
        yaw = np.arctan2(c1[:, 1], c1[:, 0])
        pitch = np.arctan2(h1, g)
        g_u = (c1[:, 0] * c2[:, 0] + c1[:, 1] * c2[:, 1]) / g
        dyaw = (c1[:, 0] * c2[:, 1] - c1[:, 1] * c2[:, 0]) / g2 * du
        dpitch = (g * h2 - h1 * g_u) / (g2 + h1 * h1) * du
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
        u = self.param(t)[0]
        c, c1 = L.curve(u), L.curve(u, 1)
        h0, h1 = L.heights(u, 1)
        T = np.zeros((len(t), 4, 4))
        T[:, :2, 3] = c
        T[:, 2, 3] = h0 + L.body_height
        g = np.sqrt(c1[:, 0] ** 2 + c1[:, 1] ** 2)
        cy, sy = c1[:, 0] / g, c1[:, 1] / g
        n = np.sqrt(g * g + h1 * h1)
        cp, sp = g / n, h1 / n
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
