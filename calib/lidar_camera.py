"""Targetless LiDAR–camera extrinsic refinement (JAX).

The cost is the smoothed, truncated distance (pixels) from each LiDAR edge point
projected into the image to the nearest image edge of a compatible orientation:
scan-row depth jumps (vertical silhouettes) meet near-vertical image edges,
jumps across beams (horizontal silhouettes) meet near-horizontal ones, intensity
steps meet any edge. Each point is weighted down by the image-edge density
around it, so cluttered areas (foliage, texture) do not dominate. The cost sums
over one or many frames. A coarse grid search over rotations around the start
finds the basin (a poor start); Levenberg–Marquardt on SE(3) with autodiff
Jacobians then refines it through a pyramid of truncations and blurs (coarse to
fine). Points leaving the image pay the truncation, so moving points out of
view is never a gain. The standard deviation comes from a bootstrap: the finest
level is re-solved on frames (or image tiles, for a single frame) drawn with
replacement.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

from fuse4d.calib.config import CalibConfig
from fuse4d.calib.features import edge_density, smooth_distance_map
from fuse4d.calib.lie import np_se3_exp, rotation_error_deg, se3_exp
from fuse4d.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class EdgeFrame:
    """One frame's inputs to the cost.

    Attributes:
        points: ``[N, 3]`` LiDAR edge points (LiDAR frame at the image time, metres).
        weights: ``[N]`` per-point weights (1 depth edge, 0.5 intensity edge).
        edges: ``[3, H, W]`` bool image edges per LiDAR edge kind (near-vertical,
            near-horizontal, all; see ``features.oriented_edges``), or ``[H, W]`` for all kinds.
        image: ``[H, W, 3]`` uint8, kept for plots.
        all_points: ``[M, 3]`` the whole sweep (for the overlap check and plots).
        index: frame index in the log.
        kinds: ``[N]`` int8 edge kind of each point (0 row jump, 1 jump across beams,
            2 intensity step); None = all 0.
    """

    points: np.ndarray
    weights: np.ndarray
    edges: np.ndarray
    image: np.ndarray
    all_points: np.ndarray
    index: int = 0
    kinds: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kinds is None:
            self.kinds = np.zeros(len(self.points), np.int8)
        if self.edges.ndim == 2:
            self.edges = np.broadcast_to(self.edges, (3,) + self.edges.shape)

    def subset(self, keep: np.ndarray) -> "EdgeFrame":
        """The frame with only the edge points ``keep`` (bool ``[N]`` or indices)."""
        return EdgeFrame(self.points[keep], self.weights[keep], self.edges, self.image, self.all_points,
                         self.index, self.kinds[keep])


@dataclass
class ExtrinsicEstimate:
    """Refined ``T_cam_lidar`` with its uncertainty.

    Attributes:
        T_cam_lidar: ``[4, 4]`` estimate.
        T_init: ``[4, 4]`` the start.
        std: ``[6]`` standard deviations (m, m, m, rad, rad, rad) of a left perturbation
            (bootstrap when ``std_method == "bootstrap"``, else Gauss–Newton).
        std_rot_deg / std_trans_m: the largest rotation / translation std.
        excited: rotation and translation are both constrained within the config's limits.
        rot_excited / trans_excited: each part on its own.
        cost_init / cost: mean squared smoothed distance (px²) at the start / solution (finest level).
        n_points: edge points near an image edge at the solution.
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
    rot_excited: bool = True
    trans_excited: bool = True
    std_method: str = "bootstrap"


def _project(T, P, K):
    X = P @ T[:3, :3].T + T[:3, 3]
    z = X[..., 2]
    zs = jnp.where(z > 0.3, z, 1.0)
    u = K[0, 0] * X[..., 0] / zs + K[0, 2]
    v = K[1, 1] * X[..., 1] / zs + K[1, 2]
    return u, v, z > 0.3


def _residual(delta, T0, P, w, kind, dmap, K, trunc):
    """``[F·N]`` residuals sqrt(w)·D(u, v) of ``P [F,N,3]`` under ``Exp(δ) T0``; ``dmap [F,3,H,W]``
    holds the smoothed truncated distance per frame and edge kind (``kind [F,N]``)."""
    T = se3_exp(delta) @ T0
    u, v, front = _project(T, P, K)
    F, _, H, W = dmap.shape
    inside = front & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    f = jnp.broadcast_to(jnp.arange(F, dtype=u.dtype)[:, None], u.shape)
    d = map_coordinates(dmap, [f, kind.astype(u.dtype), jnp.clip(v, 0, H - 1), jnp.clip(u, 0, W - 1)], order=1,
                        mode="nearest")
    return (jnp.sqrt(w) * jnp.where(inside, d, trunc)).reshape(-1)


@jax.jit
def _residual_and_jacobian(T0, P, w, kind, dmap, K, trunc):
    z = jnp.zeros(6, dtype=P.dtype)
    r = _residual(z, T0, P, w, kind, dmap, K, trunc)
    J = jax.jacfwd(_residual)(z, T0, P, w, kind, dmap, K, trunc)
    return r, J


@jax.jit
def _grid_costs(T0s, P, w, kind, dmap, K, trunc):
    """Sum of squared residuals for each start ``T0s [G, 4, 4]``."""
    z = jnp.zeros(6, dtype=P.dtype)
    return jax.lax.map(lambda T: jnp.sum(_residual(z, T, P, w, kind, dmap, K, trunc) ** 2), T0s)


def _stack(frames: list[EdgeFrame], max_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad edge points to ``[F, N, 3]``, weights ``[F, N]`` and kinds ``[F, N]`` (N a multiple of 512)."""
    n = max(1, min(max_points, max(len(f.points) for f in frames)))
    n = int(np.ceil(n / 512) * 512)
    P = np.zeros((len(frames), n, 3), np.float32)
    w = np.zeros((len(frames), n), np.float32)
    k = np.zeros((len(frames), n), np.int32)
    for i, f in enumerate(frames):
        m = min(len(f.points), n)
        P[i, :m], w[i, :m], k[i, :m] = f.points[:m, :3], f.weights[:m], f.kinds[:m]
    return P, w, k


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
        H, W = f.edges.shape[-2:]
        n = int(_in_view(T, f.all_points, K, (W, H)).sum())
        if n >= max(200, 0.02 * len(f.all_points)):
            return
    idx = ", ".join(str(f.index) for f in frames[:5])
    raise DataError(source, f"no overlap between LiDAR and image (frames {idx}...): almost no LiDAR point "
                            "projects into the camera under the starting extrinsic; check T_cam_lidar and K")


def _near_view(f: EdgeFrame, T: np.ndarray, K: np.ndarray, margin_deg: float, max_points: int) -> EdgeFrame:
    """``f`` keeping only edge points that project within ``margin_deg`` of the image under
    ``T`` (depth edges first, nearest first, at most ``max_points``)."""
    H, W = f.edges.shape[-2:]
    m = int(np.ceil(K[0, 0] * np.tan(np.radians(margin_deg))))
    Ks = K.copy()
    Ks[:2, 2] += m
    keep = np.flatnonzero(_in_view(T, f.points, Ks, (W + 2 * m, H + 2 * m)))
    r = np.linalg.norm(f.points[keep, :3], axis=1)
    keep = keep[np.lexsort((r, -f.weights[keep]))][:max_points]
    return f.subset(keep)


def _drop_near_silhouettes(f: EdgeFrame, min_range_h: float, min_range_v: float) -> EdgeFrame:
    """``f`` without silhouette points nearer than the given ranges (m): horizontal ones (kind 1)
    within ``min_range_h``, vertical ones (kind 0) within ``min_range_v``. A LiDAR point on an
    object projects inside the object's silhouette as the camera sees it, so the camera's
    silhouette is a different, wider physical edge when the sensors sit apart (parallax);
    the bias shrinks with range (synthetic, measured against the true depth image: 0.6-0.9 px
    inward within 10 m, 0.1 px beyond; rotation bias at the truth 0.26 deg -> 0.10 deg)."""
    if min_range_h <= 0 and min_range_v <= 0:
        return f
    r = np.linalg.norm(f.points[:, :3], axis=1)
    drop = ((f.kinds == 1) & (r < min_range_h)) | ((f.kinds == 0) & (r < min_range_v))
    return f.subset(~drop) if drop.any() else f


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
        K: ``[3, 3]`` intrinsics (pixels, OpenCV convention: pixel centres at integers;
            undistorted images).
        T_init: ``[4, 4]`` starting ``T_cam_lidar``.
        config: search and solver settings.
        source: name used in error messages (the log path).

    Raises:
        DataError: no frames, no overlap between LiDAR and image, or too few edge
            points in view ("no structure in view").
    """
    from fuse4d.calib.solver import bootstrap_std, lm
    cfg = config or CalibConfig()
    if not frames:
        raise DataError(source, "no frame with both an image and a LiDAR sweep: cannot calibrate LiDAR-camera")
    t_start = time.perf_counter()
    T_init = np.asarray(T_init, np.float64)
    K = np.asarray(K, np.float64)
    check_overlap(frames, T_init, K, source)
    base = float(np.linalg.norm(T_init[:3, 3]))
    frames = [_near_view(_drop_near_silhouettes(f, cfg.horizontal_min_range * base, cfg.vertical_min_range * base),
                         T_init, K, cfg.search_deg + 3.0, cfg.max_points) for f in frames]
    P, w0, kind = _stack(frames, cfg.max_points)
    Kj = jnp.asarray(K, jnp.float32)
    truncs = [float(K[0, 0] * np.tan(np.radians(d))) for d in cfg.truncate_deg]
    Pj, kj = jnp.asarray(P), jnp.asarray(kind)
    compile_s = _warm(Pj, kj, frames, Kj)
    notes: list[str] = []

    def level(T: np.ndarray, t: float):
        dmap = jnp.asarray(np.stack([[smooth_distance_map(e, t) for e in f.edges] for f in frames]))
        w = _density_weights(frames, P, w0, kind, T, K, t) if cfg.density_weights else w0
        return (Pj, jnp.asarray(w), kj, dmap, Kj, t), w

    n_real = max(int(np.sum(w0 > 0)), 1)
    # the prior weighs as one frame's worth of points: it holds a single frame's weakly observed
    # translation, and fades as frames add information (at a fixed weight per point it pinned a
    # 60-frame solution to the start's 10 cm error); from prior_max_frames frames on there is none
    prior = (T_init[:3, 3].copy(), np.sqrt(n_real / len(frames) * cfg.translation_prior_px2)
             / cfg.translation_prior_m) if cfg.translation_prior_m > 0 and len(frames) < cfg.prior_max_frames else None
    coarse, _ = level(T_init, truncs[0])
    starts = [T_init]
    if cfg.search_deg > 0:
        grid = _rotation_grid(cfg.search_deg, cfg.search_step_deg)
        T0s = np.stack([np_se3_exp(np.r_[0, 0, 0, g]) @ T_init for g in grid])
        costs = np.asarray(_grid_costs(jnp.asarray(T0s, jnp.float32), *coarse))
        best = np.argsort(costs)[:3]
        starts += [T0s[i] for i in best if np.linalg.norm(grid[i]) > 0]
        notes.append(f"coarse search: best of {len(grid)} rotations is {np.degrees(np.linalg.norm(grid[best[0]])):.1f}"
                     " deg from the start")
    cands = []
    for T in starts:
        for i, t in enumerate(truncs):
            args, _ = level(T, t) if (i or T is not T_init) else (coarse, None)
            free = _ROT if i < cfg.rotation_only_levels else _ALL
            T, r, J = lm(T, _call(args, prior), cfg.lm_iterations, free)
        cands.append((float(r @ r), T))
    # a solution beyond the searched range is a spurious minimum on texture (KITTI: 5-6 deg)
    near = [c for c in cands if rotation_error_deg(c[1][:3, :3], T_init[:3, :3]) <= cfg.search_deg + 1.0]
    if not near:
        notes.append(f"every local solution moved more than {cfg.search_deg + 1.0:.1f} deg from the start: "
                     "not trusted, start kept")
    T_best = min(near, key=lambda c: c[0])[1] if near else T_init
    args, w = level(T_best, truncs[-1])
    T_best, r, J = lm(T_best, _call(args, prior), cfg.lm_iterations, _ALL)
    fine = truncs[-1]
    M = w.size
    r_init = np.asarray(_call(args)(T_init)[0])
    r, J = r[:M], J[:M]  # the edge rows, without the prior's
    n_w = max(int(np.sum(w > 0)), 1)
    act = (r < 0.999 * fine * np.sqrt(np.maximum(w.reshape(-1), 1e-12))) & (w.reshape(-1) > 0)
    n_in = int(act.sum())
    if n_in < cfg.min_edge_points:
        raise DataError(source, f"no structure in view: only {n_in} LiDAR edge points land near image edges "
                                f"(need {cfg.min_edge_points}); use frames with nearby objects, poles, buildings")
    groups = _groups(frames, P, w, T_best, K, cfg.bootstrap_blocks)
    std = bootstrap_std(T_best, _call(args, prior), w, groups, cfg.bootstrap, max(4, cfg.lm_iterations // 2), seed=0) \
        if cfg.bootstrap > 1 else _gn_std(r, J, act)
    floor = np.r_[np.full(3, cfg.std_floor_m), np.full(3, np.radians(cfg.std_floor_deg))]
    std = np.hypot(std, floor)
    std_rot, std_tr = float(np.degrees(std[3:].max())), float(std[:3].max())
    rot_ok, tr_ok = std_rot <= cfg.max_std_deg, std_tr <= cfg.max_std_m
    if not tr_ok and rot_ok:  # translation unobservable: keep the start's, refine the rotation only
        notes.append(f"translation weakly constrained (std {std_tr:.3f} m > {cfg.max_std_m} m): the start's "
                     "translation is kept and only the rotation refined")
        T_rot = T_best.copy()
        T_rot[:3, 3] = T_init[:3, 3]
        T_best, r, J = lm(T_rot, _call(args, prior), cfg.lm_iterations, _ROT)
        r, J = r[:M], J[:M]
        std[3:] = bootstrap_std(T_best, _call(args, prior), w, groups, cfg.bootstrap, max(4, cfg.lm_iterations // 2),
                                seed=1, free=_ROT)[3:] if cfg.bootstrap > 1 else std[3:]
        std[3:] = np.hypot(std[3:], floor[3:])
        std_rot = float(np.degrees(std[3:].max()))
        rot_ok = std_rot <= cfg.max_std_deg
    rot_ok = rot_ok and bool(near)
    if not rot_ok and near:
        notes.append(f"weakly constrained: rotation std {std_rot:.2f} deg exceeds {cfg.max_std_deg} deg; the scene "
                     "lacks structure in some direction")
    return ExtrinsicEstimate(T_best, T_init, std, std_rot, std_tr, rot_ok and tr_ok, float(r_init @ r_init) / n_w,
                             float(r @ r) / n_w, n_in, notes, time.perf_counter() - t_start - compile_s, compile_s,
                             rot_ok, tr_ok, "bootstrap" if cfg.bootstrap > 1 else "hessian")


_ROT, _ALL = np.array([3, 4, 5]), np.arange(6)
_WARMED: set = set()


def _call(args, prior: tuple[np.ndarray, float] | None = None):
    """``T [4,4] -> (r [M], J [M, 6])`` as float64 numpy for the solver; ``prior = (t0 [3], s)``
    appends 3 rows ``s·(t - t0)`` (a Gaussian prior on the translation around the start)."""
    def f(T):
        r, J = _residual_and_jacobian(jnp.asarray(T, jnp.float32), *args)
        r, J = np.asarray(r, np.float64), np.asarray(J, np.float64)
        if prior is None:
            return r, J
        t0, s = prior
        t = T[:3, 3]
        Jp = np.zeros((3, 6))
        Jp[:, :3] = s * np.eye(3)
        Jp[:, 3:] = -s * np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])  # d(φ×t)/dφ
        return np.r_[r, s * (t - t0)], np.r_[J, Jp]
    return f


def _warm(Pj, kj, frames, Kj) -> float:
    """Compile the jitted functions for these shapes once; returns the seconds it took."""
    H, W = frames[0].edges.shape[-2:]
    key = (Pj.shape, H, W)
    if key in _WARMED:
        return 0.0
    tic = time.perf_counter()
    dmap = jnp.ones((len(frames), 3, H, W), jnp.float32)
    w = jnp.ones(Pj.shape[:2], jnp.float32)
    jax.block_until_ready(_residual_and_jacobian(jnp.eye(4, dtype=jnp.float32), Pj, w, kj, dmap, Kj, 1.0))
    _WARMED.add(key)
    return time.perf_counter() - tic


def _pixels(P: np.ndarray, T: np.ndarray, K: np.ndarray, H: int, W: int):
    X = P @ T[:3, :3].T + T[:3, 3]
    z = np.where(X[..., 2] > 0.3, X[..., 2], np.inf)
    u, v = K[0, 0] * X[..., 0] / z + K[0, 2], K[1, 1] * X[..., 1] / z + K[1, 2]
    ok = np.isfinite(z) & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    return np.where(ok, np.rint(u), 0).astype(int), np.where(ok, np.rint(v), 0).astype(int), ok


def _density_weights(frames, P, w0, kind, T, K, trunc) -> np.ndarray:
    """``w0 [F, N]`` divided by ``1 + ρ/ρ̄``: ρ the image-edge density (of the point's kind)
    in a ``4·trunc`` box around its projection under ``T``, ρ̄ that image's mean density."""
    w = w0.copy()
    for i, f in enumerate(frames):
        H, W = f.edges.shape[-2:]
        u, v, ok = _pixels(P[i], T, K, H, W)
        for k in range(3):
            m = ok & (kind[i] == k)
            if not m.any():
                continue
            dens = edge_density(f.edges[k], 4 * trunc)
            mean = max(float(f.edges[k].mean()), 1e-6)
            w[i, m] = w0[i, m] / (1.0 + dens[v[m], u[m]] / mean)
    return w


def _groups(frames, P, w, T, K, blocks: int = 0) -> np.ndarray:
    """``[F, N]`` bootstrap group of each point: its frame when there are 4 or more frames (or its
    block of consecutive frames, ``blocks`` > 0 of them), else its tile in a 4 × 8 grid over the
    image (a single frame)."""
    F = len(frames)
    if F >= 4:
        b = np.arange(F) * blocks // F if 3 <= blocks < F else np.arange(F)
        return np.broadcast_to(b[:, None], w.shape).copy()
    H, W = frames[0].edges.shape[-2:]
    g = np.zeros(w.shape, int)
    for i in range(F):
        u, v, _ = _pixels(P[i], T, K, H, W)
        g[i] = i * 32 + (v * 4 // H) * 8 + (u * 8 // W)
    return g


def _gn_std(r: np.ndarray, J: np.ndarray, act: np.ndarray) -> np.ndarray:
    """``[6]`` std from ``σ² (JᵀJ)⁻¹`` over the active residuals (optimistic: residuals correlate)."""
    n = int(act.sum())
    if n <= 6:
        return np.full(6, np.inf)
    Ja, ra = J[act], r[act]
    try:
        cov = float(ra @ ra) / (n - 6) * np.linalg.inv(Ja.T @ Ja)
    except np.linalg.LinAlgError:
        return np.full(6, np.inf)
    return np.sqrt(np.clip(np.diag(cov), 0, None))
