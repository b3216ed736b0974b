"""IMU preintegration (pypose ``IMUPreintegrator``), initial gravity alignment, propagation.

Preintegrated measurements are the gravity-free deltas of Forster et al.
(``ΔR``, ``Δv``, ``Δp`` in the body frame at the start of the interval),
with their 9×9 covariance (rotation, velocity, position) and first-order
Jacobians with respect to the gyro and accelerometer biases, so a factor can
re-use them while the bias estimate moves. Propagation of a state
``(R, p, v)`` in the gravity-aligned world frame (z up, ``g = [0, 0, -9.81]``):
``R_j = R_i ΔR``, ``v_j = v_i + g Δt + R_i Δv``, ``p_j = p_i + v_i Δt + ½ g Δt² + R_i Δp``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pypose as pp
import torch

from fuse4d.data.types import ImuSamples
from fuse4d.errors import DataError
from fuse4d.fusion.estimation.lie import skew, so3_exp, so3_log

GRAVITY = 9.81
_PAD_DT = 1e-9  # padding segments: (almost) no motion, finite covariance


@dataclass
class ImuNoise:
    """Continuous-time IMU noise densities.

    Attributes:
        gyro_noise: rad/s/√Hz.  acc_noise: m/s²/√Hz.
        gyro_walk: rad/s²/√Hz.  acc_walk: m/s³/√Hz (bias random walks).
    """

    gyro_noise: float = 1.7e-4
    acc_noise: float = 2.0e-3
    gyro_walk: float = 2.0e-5
    acc_walk: float = 3.0e-3

    @classmethod
    def from_dict(cls, d: dict[str, float] | None) -> "ImuNoise":
        """From ``Calibration.imu_noise`` (missing keys keep their defaults)."""
        d = d or {}
        return cls(**{k: float(d[k]) for k in ("gyro_noise", "acc_noise", "gyro_walk", "acc_walk") if k in d})


#: below this sampling rate (Hz) preintegration accounts for the motion between samples
LOW_RATE_HZ = 50.0


def with_sampling_noise(imu: ImuSamples | None, noise: ImuNoise) -> ImuNoise:
    """``noise`` widened by what a low-rate stream leaves out between its samples.

    Preintegration holds the measurement linear between samples. At 200 Hz that is exact
    to well under the sensor noise, but a 10 Hz stream (KITTI's OXTS) misses how the
    motion changes within each 0.1 s. The sample-to-sample differences measure it: their
    mean square, less the part white noise explains (``2 σ² / Δt``), is taken as extra
    white noise over the sampling interval ``Δt``. A stream at :data:`LOW_RATE_HZ` or more
    is left as it is (there the differences are mostly sensor noise and vibration).

    Args:
        imu: the stream (``t [N]`` s, ``acc``/``gyro [N, 3]``), or None.
        noise: the sensor's noise densities.
    Returns:
        densities with ``acc_noise``/``gyro_noise`` widened (walks unchanged).
    """
    if imu is None or len(imu) < 10:
        return noise
    dt = float(np.median(np.diff(imu.t)))
    if not dt > 1.0 / LOW_RATE_HZ:
        return noise
    out = {}
    for name, x, density in (("acc_noise", imu.acc, noise.acc_noise), ("gyro_noise", imu.gyro, noise.gyro_noise)):
        ms = float(np.mean(np.diff(x, axis=0) ** 2))  # per axis, (unit)²
        extra = max(ms - 2.0 * density ** 2 / dt, 0.0)  # what white noise of this density does not explain
        out[name] = float(np.sqrt(density ** 2 + extra * dt))
    return ImuNoise(out["gyro_noise"], out["acc_noise"], noise.gyro_walk, noise.acc_walk)


@dataclass
class Preintegration:
    """Preintegrated IMU measurements between two times.

    Attributes:
        t0, t1: interval (s).  dR: ``[3, 3]``.  dv: ``[3]`` m/s.  dp: ``[3]`` m.
        cov: ``[9, 9]`` covariance of (rotation rad, velocity m/s, position m).
        J: ``[9, 6]`` derivative of (log ΔR, Δv, Δp) with respect to (gyro bias, acc bias).
        bg, ba: ``[3]`` biases the deltas were computed with.
    """

    t0: float
    t1: float
    dR: np.ndarray
    dv: np.ndarray
    dp: np.ndarray
    cov: np.ndarray
    J: np.ndarray
    bg: np.ndarray = field(default_factory=lambda: np.zeros(3))
    ba: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @property
    def dt(self) -> float:
        """Interval length (s)."""
        return self.t1 - self.t0

    def corrected(self, bg: np.ndarray, ba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """First-order bias-corrected ``(ΔR [3,3], Δv [3], Δp [3])`` for new biases ``bg, ba [3]``."""
        db = np.concatenate([np.asarray(bg) - self.bg, np.asarray(ba) - self.ba])
        d = self.J @ db
        return self.dR @ so3_exp(d[:3]), self.dv + d[3:6], self.dp + d[6:9]

    def predict(self, R: np.ndarray, p: np.ndarray, v: np.ndarray, bg: np.ndarray | None = None,
                ba: np.ndarray | None = None,
                gravity: float | np.ndarray = GRAVITY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Propagate ``R [3,3]``, ``p [3]``, ``v [3]`` over the interval; returns ``(R, p, v)``.

        ``gravity`` is a magnitude (world z up) or the gravity vector ``[3]`` in the state's frame.
        """
        dR, dv, dp = (self.dR, self.dv, self.dp) if bg is None else self.corrected(bg, ba)
        g = gravity_vector(gravity)
        T = self.dt
        return R @ dR, p + v * T + 0.5 * g * T * T + R @ dp, v + g * T + R @ dv


def gravity_vector(gravity: float | np.ndarray) -> np.ndarray:
    """``[3]`` gravity vector (m/s²) from a magnitude (world z up → ``[0, 0, -g]``) or a vector."""
    g = np.asarray(gravity, dtype=np.float64)
    return np.array([0.0, 0.0, -float(g)]) if g.ndim == 0 else g.reshape(3)


def check_imu(imu: ImuSamples | None, path=None) -> ImuSamples | None:
    """Validate an IMU stream (finite values, strictly increasing time).

    Raises:
        DataError: naming ``path``, on NaN/inf values or non-monotonic/duplicate timestamps.
    """
    if imu is None or len(imu) == 0:
        return None
    return imu.validate(path)


def segments(imu: ImuSamples, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``[t0, t1]`` at the IMU sample times; measurements interpolated at segment midpoints.

    Returns:
        ``dt [F]`` s, ``gyro [F, 3]`` rad/s, ``acc [F, 3]`` m/s² (F ≥ 1).

    Raises:
        DataError: ``t1 <= t0`` or no IMU sample at all.
    """
    if len(imu) == 0:
        raise DataError(None, "no IMU samples to integrate")
    if not t1 > t0:
        raise DataError(None, f"IMU interval must have t1 > t0, got [{t0}, {t1}]")
    # the samples around [t0, t1] only (binary search): the cost does not grow with the log's length
    lo, hi = np.searchsorted(imu.t, t0, "right"), np.searchsorted(imu.t, t1, "left")
    knots = np.concatenate([[t0], imu.t[lo:hi], [t1]])
    mid = 0.5 * (knots[1:] + knots[:-1])
    a, b = max(lo - 1, 0), min(hi + 1, len(imu.t))  # neighbours bracket every midpoint: interp is unchanged
    ts = imu.t[a:b]
    gyro = np.stack([np.interp(mid, ts, imu.gyro[a:b, k]) for k in range(3)], -1)
    acc = np.stack([np.interp(mid, ts, imu.acc[a:b, k]) for k in range(3)], -1)
    return np.diff(knots), gyro, acc


def _integrate(dt: np.ndarray, gyro: np.ndarray, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw (gravity-free) deltas at every knot with pypose: ``[B, F, ·]`` → ``dR [B,F,3,3], dv [B,F,3], dp [B,F,3]``."""
    integrator = pp.module.IMUPreintegrator(gravity=0.0, reset=True, prop_cov=False).double()
    B = dt.shape[0]
    out = integrator(torch.from_numpy(dt[..., None]), torch.from_numpy(gyro), torch.from_numpy(acc),
                     init_state={"pos": torch.zeros(B, 1, 3, dtype=torch.float64),
                                 "rot": pp.identity_SO3(B, 1, dtype=torch.float64),
                                 "vel": torch.zeros(B, 1, 3, dtype=torch.float64)})
    return out["rot"].matrix().numpy(), out["vel"].numpy(), out["pos"].numpy()


def _cov_and_bias_jacobians(dR: np.ndarray, dt: np.ndarray, gyro: np.ndarray, acc: np.ndarray,
                            noise: ImuNoise) -> tuple[np.ndarray, np.ndarray]:
    """Forster et al.'s discrete covariance and bias-Jacobian recursions, batched over intervals.

    Args:
        dR: ``[B, F, 3, 3]`` rotation deltas after each segment; dt ``[B, F]``;
        gyro, acc: ``[B, F, 3]`` bias-corrected measurements.

    Returns:
        ``cov [B, 9, 9]`` and ``J [B, 9, 6]`` (rows: rotation, velocity, position; columns: bg, ba).
    """
    B, F = dt.shape
    I3 = np.eye(3)
    cov = np.zeros((B, 9, 9))
    J = np.zeros((B, 9, 6))
    Rik = np.broadcast_to(I3, (B, 3, 3))
    qg, qa = noise.gyro_noise ** 2, noise.acc_noise ** 2
    for k in range(F):  # over IMU samples, vectorised over intervals
        h = dt[:, k, None, None]
        Rk1 = np.swapaxes(Rik, -1, -2) @ dR[:, k]  # ΔR_{k,k+1}
        ax = skew(acc[:, k])
        Jr = I3 - 0.5 * skew(gyro[:, k] * dt[:, k, None])
        A = np.tile(np.eye(9), (B, 1, 1))
        A[:, :3, :3] = np.swapaxes(Rk1, -1, -2)
        A[:, 3:6, :3] = -Rik @ ax * h
        A[:, 6:9, :3] = -0.5 * Rik @ ax * h * h
        A[:, 6:9, 3:6] = I3 * h
        Bg = np.zeros((B, 9, 3))
        Ba = np.zeros((B, 9, 3))
        Bg[:, :3] = Jr * h
        Ba[:, 3:6] = Rik * h
        Ba[:, 6:9] = 0.5 * Rik * h * h
        safe = np.maximum(h, 1e-12)
        cov = A @ cov @ np.swapaxes(A, -1, -2) + (Bg @ np.swapaxes(Bg, -1, -2)) * (qg / safe) \
            + (Ba @ np.swapaxes(Ba, -1, -2)) * (qa / safe)
        dRg = J[:, :3, :3]
        J_new = J.copy()
        J_new[:, :3, :3] = np.swapaxes(Rk1, -1, -2) @ dRg - Jr * h
        J_new[:, 3:6, :3] = J[:, 3:6, :3] - Rik @ ax @ dRg * h
        J_new[:, 3:6, 3:] = J[:, 3:6, 3:] - Rik * h
        J_new[:, 6:9, :3] = J[:, 6:9, :3] + J[:, 3:6, :3] * h - 0.5 * Rik @ ax @ dRg * h * h
        J_new[:, 6:9, 3:] = J[:, 6:9, 3:] + J[:, 3:6, 3:] * h - 0.5 * Rik * h * h
        J = J_new
        Rik = dR[:, k]
    return cov, J


def preintegrate_many(imu: ImuSamples, t0: np.ndarray, t1: np.ndarray, bg: np.ndarray | None = None,
                      ba: np.ndarray | None = None, noise: ImuNoise | None = None) -> list[Preintegration]:
    """Preintegrate K intervals ``[t0[k], t1[k]]`` in one batched pypose call.

    Args:
        imu: the IMU stream (body frame).
        t0, t1: ``[K]`` interval bounds (s).
        bg, ba: ``[3]`` or ``[K, 3]`` gyro (rad/s) and accelerometer (m/s²) biases.
        noise: noise densities for the covariance.

    Raises:
        DataError: an empty interval or an empty stream.
    """
    noise = noise or ImuNoise()
    t0, t1 = np.atleast_1d(np.asarray(t0, float)), np.atleast_1d(np.asarray(t1, float))
    K = len(t0)
    bg = np.broadcast_to(np.zeros(3) if bg is None else np.asarray(bg, float), (K, 3))
    ba = np.broadcast_to(np.zeros(3) if ba is None else np.asarray(ba, float), (K, 3))
    segs = [segments(imu, a, b) for a, b in zip(t0, t1)]
    F = max(len(s[0]) for s in segs)
    dt = np.full((K, F), _PAD_DT)
    gyro = np.zeros((K, F, 3))
    acc = np.zeros((K, F, 3))
    for k, (d, g, a) in enumerate(segs):  # one row per interval (not per sample)
        n = len(d)
        dt[k, :n], gyro[k, :n], acc[k, :n] = d, g - bg[k], a - ba[k]
        acc[k, n:] = acc[k, n - 1]
    dR, dv, dp = _integrate(dt, gyro, acc)
    cov, J = _cov_and_bias_jacobians(dR, dt, gyro, acc, noise)
    return [Preintegration(float(t0[k]), float(t1[k]), dR[k, -1], dv[k, -1], dp[k, -1], cov[k], J[k],
                           bg[k].copy(), ba[k].copy()) for k in range(K)]


def _log_rel(R0: np.ndarray, R1: np.ndarray) -> np.ndarray:
    return so3_log(np.swapaxes(R0, -1, -2) @ R1)


def preintegrate(imu: ImuSamples, t0: float, t1: float, bg: np.ndarray | None = None, ba: np.ndarray | None = None,
                 noise: ImuNoise | None = None) -> Preintegration:
    """Preintegrate one interval ``[t0, t1]`` (see :func:`preintegrate_many`)."""
    return preintegrate_many(imu, np.array([t0]), np.array([t1]), bg, ba, noise)[0]


def _integrate_path(dt: np.ndarray, gyro: np.ndarray, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The recursion of pypose's ``IMUPreintegrator.integrate`` in numpy for one short interval.

    Per-frame dead reckoning runs at every LiDAR frame; a pypose call costs ~20 ms
    of overhead there against ~0.3 ms here (same numbers, see the tests).
    Returns ``dR [F, 3, 3]``, ``dv [F, 3]``, ``dp [F, 3]`` after each segment.
    """
    step = so3_exp(gyro * dt[:, None])
    R = np.empty((len(dt) + 1, 3, 3))
    R[0] = np.eye(3)
    for k in range(len(dt)):  # over IMU samples (a few dozen per frame)
        R[k + 1] = R[k] @ step[k]
    a = np.einsum("kij,kj->ki", R[:-1], acc)
    dv = np.cumsum(a * dt[:, None], axis=0)
    v_before = np.concatenate([np.zeros((1, 3)), dv[:-1]])
    dp = np.cumsum(v_before * dt[:, None] + 0.5 * a * dt[:, None] ** 2, axis=0)
    return R[1:], dv, dp


def propagate_path(imu: ImuSamples, t0: float, t1: float, R: np.ndarray, p: np.ndarray, v: np.ndarray,
                   bg: np.ndarray | None = None, ba: np.ndarray | None = None,
                   gravity: float | np.ndarray = GRAVITY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dead-reckon the body from state ``(R [3,3], p [3], v [3])`` at ``t0`` to ``t1``.

    ``gravity``: magnitude (z up) or the gravity vector ``[3]`` in the state's frame.

    Returns:
        ``t [F+1]`` knot times (s), ``T_world_body [F+1, 4, 4]`` and ``v [F+1, 3]`` (m/s) at them.

    Raises:
        DataError: ``t1 <= t0`` or an empty stream.
    """
    dt, gyro, acc = segments(imu, t0, t1)
    gyro = gyro - (0 if bg is None else np.asarray(bg))
    acc = acc - (0 if ba is None else np.asarray(ba))
    dR, dv, dp = _integrate_path(dt, gyro, acc)
    tk = np.cumsum(dt)
    g = gravity_vector(gravity)
    T = np.tile(np.eye(4), (len(dt) + 1, 1, 1))
    T[0, :3, :3], T[0, :3, 3] = R, p
    T[1:, :3, :3] = R @ dR
    T[1:, :3, 3] = p + v * tk[:, None] + 0.5 * g * tk[:, None] ** 2 + dp @ R.T
    vel = np.concatenate([v[None], v + g * tk[:, None] + dv @ R.T])
    return np.concatenate([[t0], t0 + tk]), T, vel


def initial_alignment(imu: ImuSamples, t0: float, duration: float = 1.0,
                      gyro_static: float = 0.02, acc_static: float = 0.2) -> tuple[np.ndarray, np.ndarray, bool]:
    """Gravity direction and gyro bias from the first ``duration`` seconds after ``t0``.

    The mean specific force is taken as gravity (exact when static or at constant
    velocity); the rotation returned is the smallest one taking it to +z (yaw 0).
    When the window looks static (gyro and accelerometer spread below the
    thresholds), the mean gyro reading is the gyro bias; otherwise it is zero.

    Returns:
        ``R_world_body [3, 3]``, gyro bias ``[3]`` rad/s, static flag.

    Raises:
        DataError: fewer than 10 samples in the window.
    """
    m = (imu.t >= t0) & (imu.t <= t0 + duration)
    if m.sum() < 10:
        raise DataError(None, f"need >= 10 IMU samples in the first {duration} s for gravity alignment, got {int(m.sum())}")
    acc, gyro = imu.acc[m], imu.gyro[m]
    a = acc.mean(0)
    z = a / np.linalg.norm(a)
    axis = np.cross(z, [0.0, 0.0, 1.0])
    angle = np.arctan2(np.linalg.norm(axis), z[2])
    R = so3_exp(axis / max(np.linalg.norm(axis), 1e-12) * angle)
    static = bool(np.linalg.norm(gyro.std(0)) < gyro_static and np.linalg.norm(gyro.mean(0)) < gyro_static
                  and np.linalg.norm(acc.std(0)) < acc_static)
    return R, gyro.mean(0) if static else np.zeros(3), static
