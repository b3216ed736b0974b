"""IMU time offset from angular-rate magnitudes (JAX).

The LiDAR odometry turns by ``θ_k = |log ΔR_k|`` between stamps ``t_{k-1}, t_k``;
the gyro, whose clock runs ``δ`` ahead, turns by ``|G(t_k+δ) − G(t_{k-1}+δ)|``
with ``G`` the running integral of the rate. Magnitudes do not depend on the
IMU–LiDAR rotation. A coarse scan over δ (IMU-sample steps) finds the peak;
Gauss–Newton with an autodiff derivative refines it to a fraction of a sample.
The std comes from the residual variance and the 1-D Hessian; straight driving
(a constant rate) leaves it large and the estimate is flagged, not applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from fuse4d.data.types import ImuSamples
from fuse4d.errors import DataError


@dataclass
class TimeOffsetEstimate:
    """``offset_s``: seconds to add to LiDAR/camera stamps to reach IMU time; ``std_s`` its
    standard deviation; ``excited`` False when the motion does not determine it (large std,
    or a flat fit profile: ``contrast`` = (median − min)/min of the coarse SSE below 1)."""

    offset_s: float
    std_s: float
    excited: bool
    n_intervals: int
    notes: list[str] = field(default_factory=list)
    contrast: float = 0.0


def cumulative_rotation(imu: ImuSamples) -> np.ndarray:
    """``[M, 3]`` running trapezoid integral of the gyro (rad) at the IMU sample times."""
    dt = np.diff(imu.t)
    inc = 0.5 * (imu.gyro[1:] + imu.gyro[:-1]) * dt[:, None]
    return np.vstack([np.zeros(3), np.cumsum(inc, axis=0)])


def _angles(delta, t0, t1, ti, G):
    g0 = jnp.stack([jnp.interp(t0 + delta, ti, G[:, k]) for k in range(3)], -1)
    g1 = jnp.stack([jnp.interp(t1 + delta, ti, G[:, k]) for k in range(3)], -1)
    return jnp.sqrt(jnp.sum((g1 - g0) ** 2, -1) + 1e-18)


@jax.jit
def _residuals(delta, t0, t1, theta, ti, G):
    return _angles(delta, t0, t1, ti, G) - theta


_jac = jax.jit(jax.jacfwd(_residuals))
_profile = jax.jit(jax.vmap(lambda d, *a: jnp.sum(_residuals(d, *a) ** 2), in_axes=(0, None, None, None, None, None)))


def estimate_time_offset(t0: np.ndarray, t1: np.ndarray, theta: np.ndarray, imu: ImuSamples,
                         search_s: float = 0.2, max_std_s: float = 0.005, source: str = "log",
                         min_pairs: int = 10) -> TimeOffsetEstimate:
    """Offset ``δ`` (s) with IMU time = sensor time + δ.

    Args:
        t0, t1: ``[P]`` start/end stamps (s, LiDAR clock) of odometry intervals.
        theta: ``[P]`` rotation angle (rad) of the LiDAR over each interval.
        imu: the IMU stream (its own clock).
        search_s: half-width of the coarse search (s).
        max_std_s: larger std = not excited.

    Raises:
        DataError: fewer than ``min_pairs`` intervals inside the IMU stream.
    """
    t0, t1, theta = (np.asarray(a, np.float64) for a in (t0, t1, theta))
    ok = (t0 - search_s > imu.t[0]) & (t1 + search_s < imu.t[-1])
    if ok.sum() < min_pairs:
        raise DataError(source, f"too few frames for the time offset: {int(ok.sum())} odometry intervals inside "
                                f"the IMU stream (need {min_pairs})")
    t0, t1, theta = t0[ok], t1[ok], theta[ok]
    G = cumulative_rotation(imu)
    args = [jnp.asarray(a) for a in (t0, t1, theta, imu.t, G)]
    step = 0.25 / max(imu.rate_hz, 1.0)
    grid = np.arange(-search_s, search_s + step / 2, step)
    sse = np.asarray(_profile(jnp.asarray(grid), *args))
    d = float(grid[np.argmin(sse)])
    for _ in range(20):
        r = np.asarray(_residuals(jnp.asarray(d), *args))
        J = np.asarray(_jac(jnp.asarray(d), *args))
        h = float(J @ J)
        if h <= 0:
            break
        s = -float(J @ r) / h
        s = float(np.clip(s, -step, step))
        d_new = d + s
        if np.sum(np.asarray(_residuals(jnp.asarray(d_new), *args)) ** 2) > r @ r:
            break
        d = d_new
        if abs(s) < 1e-7:
            break
    r = np.asarray(_residuals(jnp.asarray(d), *args))
    n = len(r)
    sigma2 = float(r @ r) / max(n - 1, 1)
    # information from the *smoothed* rate: the Jacobian is the change of the rate between
    # an interval's ends, and gyro noise alone would otherwise pass for excitation
    from scipy.ndimage import uniform_filter1d
    win = max(1, int(round(0.05 * imu.rate_hz)))
    m = uniform_filter1d(np.linalg.norm(imu.gyro, axis=1), win, mode="nearest")
    J = np.interp(t1 + d, imu.t, m) - np.interp(t0 + d, imu.t, m)
    h = float(J @ J)
    std = float(np.sqrt(sigma2 / h)) if h > 0 else float("inf")
    notes = []
    # the profile must have a real valley: away from the peak the fit must be clearly worse
    contrast = float((np.median(sse) - sse.min()) / max(sse.min(), 1e-300))
    excited = std <= max_std_s and abs(d) < search_s - step and contrast >= 1.0
    if not excited:
        notes.append(f"time offset not determined (std {std * 1e3:.1f} ms): the angular rate barely changes "
                     "(straight or constant-rate driving); need turns that start and stop")
    return TimeOffsetEstimate(d, std, excited, n, notes, contrast)
