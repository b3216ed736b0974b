"""Targetless LiDAR–camera extrinsic refinement (JAX).

The cost is the (truncated) distance, in pixels, from each LiDAR edge point
projected into the image to the nearest image edge, summed over one or many
frames. A coarse grid search over rotations around the start finds the basin
(a poor start), then Levenberg–Marquardt on SE(3) with autodiff Jacobians
refines it through decreasing truncations (coarse to fine). Points that leave
the image pay the truncation, so moving points out of view is never a gain.
The standard deviation comes from the Gauss–Newton Hessian at the solution,
scaled by the residual variance.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

from fuse4d.calib.config import CalibConfig
from fuse4d.calib.features import distance_map, image_edges
from fuse4d.calib.lie import np_se3_exp, np_so3_exp, se3_exp
from fuse4d.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class EdgeFrame:
    """One frame's inputs to the cost.

    Attributes:
        points: ``[N, 3]`` LiDAR edge points (LiDAR frame at the image time, metres).
        weights: ``[N]`` per-point weights (1 depth edge, 0.5 intensity edge).
        edges: ``[H, W]`` bool image edges.
        image: ``[H, W, 3]`` uint8, kept for plots.
        all_points: ``[M, 3]`` the whole sweep (for the overlap check and plots).
        index: frame index in the log.
    """

    points: np.ndarray
    weights: np.ndarray
    edges: np.ndarray
    image: np.ndarray
    all_points: np.ndarray
    index: int = 0


@dataclass
class ExtrinsicEstimate:
    """Refined ``T_cam_lidar`` with its uncertainty.

    Attributes:
        T_cam_lidar: ``[4, 4]`` estimate.
        T_init: ``[4, 4]`` the start.
        std: ``[6]`` standard deviations (m, m, m, rad, rad, rad) of a left perturbation.
        std_rot_deg / std_trans_m: the largest rotation / translation std.
        excited: every direction is constrained to within the config's limits.
        cost_init / cost: mean squared truncated distance (px²) at the start / solution.
        n_points: edge points in view at the solution.
        notes: human-readable remarks (weak directions, search result).
        seconds / compile_seconds: wall time of the solve / of jit compilation.
    """

    T_cam_lidar: np.ndarray
    T_init: np.ndarray
    std: np.ndarray
    std_rot_deg: float
    std_trans_m: float
    excited: bool
    cost_init: float
    cost: float
    n_points: int
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    compile_seconds: float = 0.0


def _project(T, P, K):
    X = P @ T[:3, :3].T + T[:3, 3]
    z = X[..., 2]
    zs = jnp.where(z > 0.3, z, 1.0)
    u = K[0, 0] * X[..., 0] / zs + K[0, 2]
    v = K[1, 1] * X[..., 1] / zs + K[1, 2]
    return u, v, z > 0.3


def _residual(delta, T0, P, w, dmap, K, trunc):
    """``[F·N]`` residuals sqrt(w)·min(distance, trunc) of ``P [F,N,3]`` under ``Exp(δ) T0``."""
    T = se3_exp(delta) @ T0
    u, v, front = _project(T, P, K)
    F, H, W = dmap.shape
    inside = front & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    f = jnp.broadcast_to(jnp.arange(F, dtype=u.dtype)[:, None], u.shape)
    d = map_coordinates(dmap, [f, jnp.clip(v, 0, H - 1), jnp.clip(u, 0, W - 1)], order=1, mode="nearest")
    return (jnp.sqrt(w) * jnp.where(inside, jnp.minimum(d, trunc), trunc)).reshape(-1)


@jax.jit
def _residual_and_jacobian(T0, P, w, dmap, K, trunc):
    z = jnp.zeros(6, dtype=P.dtype)
    r = _residual(z, T0, P, w, dmap, K, trunc)
    J = jax.jacfwd(_residual)(z, T0, P, w, dmap, K, trunc)
    return r, J


@jax.jit
def _grid_costs(T0s, P, w, dmap, K, trunc):
    """Sum of squared residuals for each start ``T0s [G, 4, 4]``."""
    z = jnp.zeros(6, dtype=P.dtype)
    return jax.lax.map(lambda T: jnp.sum(_residual(z, T, P, w, dmap, K, trunc) ** 2), T0s)


def _stack(frames: list[EdgeFrame], max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad edge points to ``[F, N, 3]`` and weights ``[F, N]`` (N a multiple of 512)."""
    n = max(1, min(max_points, max(len(f.points) for f in frames)))
    n = int(np.ceil(n / 512) * 512)
    P = np.zeros((len(frames), n, 3), np.float32)
    w = np.zeros((len(frames), n), np.float32)
    for i, f in enumerate(frames):
        k = min(len(f.points), n)
        P[i, :k], w[i, :k] = f.points[:k, :3], f.weights[:k]
    return P, w


def _in_view(T: np.ndarray, pts: np.ndarray, K: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    X = pts[:, :3] @ T[:3, :3].T + T[:3, 3]
    z = X[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = K[0, 0] * X[:, 0] / z + K[0, 2], K[1, 1] * X[:, 1] / z + K[1, 2]
    return (z > 0.3) & (u >= 0) & (u < size[0]) & (v >= 0) & (v < size[1])


def check_overlap(frames: list[EdgeFrame], T: np.ndarray, K: np.ndarray, source: str = "log") -> None:
    """Raise DataError when the LiDAR and the image do not overlap under ``T [4, 4]``.

    At least 2 % of a sweep's points (and 200) must project into the image in some frame.
    """
    for f in frames:
        H, W = f.edges.shape
        n = int(_in_view(T, f.all_points, K, (W, H)).sum())
        if n >= max(200, 0.02 * len(f.all_points)):
            return
    idx = ", ".join(str(f.index) for f in frames[:5])
    raise DataError(source, f"no overlap between LiDAR and image (frames {idx}...): almost no LiDAR point "
                            "projects into the camera under the starting extrinsic; check T_cam_lidar and K")


def _near_view(f: EdgeFrame, T: np.ndarray, K: np.ndarray, margin_deg: float) -> EdgeFrame:
    """``f`` keeping only edge points that project within ``margin_deg`` of the image under ``T``."""
    H, W = f.edges.shape
    m = int(np.ceil(K[0, 0] * np.tan(np.radians(margin_deg))))
    Ks = K.copy()
    Ks[:2, 2] += m
    keep = _in_view(T, f.points, Ks, (W + 2 * m, H + 2 * m))
    return EdgeFrame(f.points[keep], f.weights[keep], f.edges, f.image, f.all_points, f.index)


def _rotation_grid(half_deg: float, step_deg: float) -> np.ndarray:
    k = int(np.floor(half_deg / step_deg + 1e-9))
    a = np.radians(np.arange(-k, k + 1) * step_deg)
    g = np.stack(np.meshgrid(a, a, a, indexing="ij"), -1).reshape(-1, 3)
    return g


def refine_extrinsic(frames: list[EdgeFrame], K: np.ndarray, T_init: np.ndarray,
                     config: CalibConfig | None = None, source: str = "log") -> ExtrinsicEstimate:
    """Refine ``T_cam_lidar`` from a start by aligning LiDAR edges with image edges.

    Args:
        frames: one or more :class:`EdgeFrame` (points already deskewed to the image time).
        K: ``[3, 3]`` intrinsics (pixels; undistorted images).
        T_init: ``[4, 4]`` starting ``T_cam_lidar``.
        config: search and solver settings.
        source: name used in error messages (the log path).

    Raises:
        DataError: no frames, no overlap between LiDAR and image, or too few edge
            points in view ("no structure in view").
    """
    cfg = config or CalibConfig()
    if not frames:
        raise DataError(source, "no frame with both an image and a LiDAR sweep: cannot calibrate LiDAR-camera")
    t_start = time.perf_counter()
    T_init = np.asarray(T_init, np.float64)
    K = np.asarray(K, np.float64)
    check_overlap(frames, T_init, K, source)
    frames = [_near_view(f, T_init, K, cfg.search_deg + 3.0) for f in frames]
    P, w = _stack(frames, cfg.max_points)
    Kj = jnp.asarray(K, jnp.float32)
    truncs = tuple(float(K[0, 0] * np.tan(np.radians(d))) for d in cfg.truncate_deg)
    maps = {t: jnp.asarray(np.stack([distance_map(f.edges, t) for f in frames])) for t in truncs}
    args = (jnp.asarray(P), jnp.asarray(w))
    compile_s = _warm(args, maps, Kj)
    notes: list[str] = []
    coarse = truncs[0]
    cost_init = _cost(T_init, args, maps[coarse], Kj, coarse)
    starts = [T_init]
    if cfg.search_deg > 0:
        grid = _rotation_grid(cfg.search_deg, cfg.search_step_deg)
        T0s = np.stack([np_se3_exp(np.r_[0, 0, 0, g]) @ T_init for g in grid])
        costs = np.asarray(_grid_costs(jnp.asarray(T0s, jnp.float32), *args, maps[coarse], Kj, coarse))
        best = np.argsort(costs)[:3]
        starts += [T0s[i] for i in best if np.linalg.norm(grid[i]) > 0]
        notes.append(f"coarse search: best of {len(grid)} rotations is {np.degrees(np.linalg.norm(grid[best[0]])):.1f} deg "
                     "from the start")
    results = [_lm_levels(T, args, maps, Kj, truncs, cfg.lm_iterations) for T in starts]
    fine = truncs[-1]
    T_best, r, J = min(results, key=lambda x: float(np.sum(x[1] ** 2)))
    std, n_in = _std(r, J, fine)
    if n_in < cfg.min_edge_points:
        raise DataError(source, f"no structure in view: only {n_in} LiDAR edge points land near image edges "
                                f"(need {cfg.min_edge_points}); use frames with nearby objects, poles, buildings")
    std_rot, std_tr = float(np.degrees(std[3:].max())), float(std[:3].max())
    excited = std_rot <= cfg.max_std_deg and std_tr <= cfg.max_std_m
    if not excited:
        notes.append(f"weakly constrained: std {std_rot:.2f} deg / {std_tr:.3f} m exceeds the limits "
                     f"({cfg.max_std_deg} deg / {cfg.max_std_m} m); the scene lacks structure in some direction")
    cost = float(np.sum(r ** 2) / max(np.sum(np.asarray(w) > 0), 1))
    return ExtrinsicEstimate(T_best, T_init, std, std_rot, std_tr, excited, cost_init, cost, n_in, notes,
                             time.perf_counter() - t_start - compile_s, compile_s)


_WARMED: set = set()


def _warm(args, maps, Kj) -> float:
    """Compile the jitted functions for these shapes once; returns the seconds it took."""
    key = (args[0].shape, next(iter(maps.values())).shape)
    if key in _WARMED:
        return 0.0
    tic = time.perf_counter()
    t = next(iter(maps))
    T = jnp.eye(4, dtype=jnp.float32)
    jax.block_until_ready(_residual_and_jacobian(T, *args, maps[t], Kj, t))
    _WARMED.add(key)
    return time.perf_counter() - tic


def _cost(T, args, dmap, Kj, trunc) -> float:
    r, _ = _residual_and_jacobian(jnp.asarray(T, jnp.float32), *args, dmap, Kj, trunc)
    w = np.asarray(args[1]).reshape(-1)
    return float(np.sum(np.asarray(r) ** 2) / max(np.sum(w > 0), 1))


def _lm_levels(T, args, maps, Kj, truncs: tuple[float, ...], iterations: int):
    """Rotation only at every truncation (the wide basins would let the translation drift
    to pull points onto dense texture), then all six parameters at the two finest."""
    levels = [(t, _ROT) for t in truncs] + [(t, _ALL) for t in truncs[-2:]]
    for t, free in levels:
        T, r, J = _lm(T, args, maps[t], Kj, t, iterations, free)
    return T, r, J


_ROT, _ALL = np.array([3, 4, 5]), np.arange(6)


def _lm(T, args, dmap, Kj, trunc, iterations, free=None):
    """Levenberg–Marquardt on ``Exp(δ) T`` over the parameters ``free`` (indices into δ, all
    when None); returns ``T [4,4]``, residuals and the full Jacobian at it."""
    lam = 1e-3
    free = _ALL if free is None else free
    r, J = (np.asarray(a, np.float64) for a in _residual_and_jacobian(jnp.asarray(T, jnp.float32), *args, dmap, Kj, trunc))
    cost = float(r @ r)
    for _ in range(iterations):
        Jf = J[:, free]
        H, g = Jf.T @ Jf, Jf.T @ r
        D = np.diag(np.maximum(np.diag(H), 1e-9))
        for _ in range(6):
            step = np.zeros(6)
            step[free] = -np.linalg.solve(H + lam * D, g)
            T_new = np_se3_exp(step) @ T
            r_new, J_new = (np.asarray(a, np.float64) for a in _residual_and_jacobian(
                jnp.asarray(T_new, jnp.float32), *args, dmap, Kj, trunc))
            c_new = float(r_new @ r_new)
            if c_new < cost:
                T, r, J, lam = T_new, r_new, J_new, max(lam / 3, 1e-7)
                break
            lam *= 8
        else:
            break
        if cost - c_new < 1e-7 * cost or np.abs(step).max() < 1e-7:
            cost = c_new
            break
        cost = c_new
    T[:3, :3] = _orthonormal(T[:3, :3])
    return T, r, J


def _orthonormal(R: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(R)
    return U @ np.diag([1, 1, np.linalg.det(U @ Vt)]) @ Vt


def _std(r: np.ndarray, J: np.ndarray, trunc: float) -> tuple[np.ndarray, int]:
    """``[6]`` std from ``σ² (JᵀJ)⁻¹`` over the residuals below the truncation; and their count."""
    act = (np.abs(J).sum(1) > 0) & (r < trunc * 0.999)
    n = int(act.sum())
    if n <= 6:
        return np.full(6, np.inf), n
    Ja, ra = J[act], r[act]
    sigma2 = float(ra @ ra) / (n - 6)
    try:
        cov = sigma2 * np.linalg.inv(Ja.T @ Ja)
    except np.linalg.LinAlgError:
        return np.full(6, np.inf), n
    return np.sqrt(np.clip(np.diag(cov), 0, None)), n
