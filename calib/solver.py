"""Levenberg–Marquardt on SE(3) (left perturbations ``T ← Exp(δ) T``) over a residual
function, and a bootstrap standard deviation of its solution."""

from __future__ import annotations

from typing import Callable

import numpy as np

from fuse4d.calib.lie import np_se3_exp, np_so3_log

Residuals = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def lm(T: np.ndarray, fn: Residuals, iterations: int, free: np.ndarray | None = None,
       weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Levenberg–Marquardt from ``T [4, 4]`` on ``fn(T) -> (r [M], J [M, 6])`` over the twist
    components ``free`` (indices, all when None); ``weights [M]`` multiply the squared
    residuals (bootstrap counts; rows beyond them weigh 1). Returns ``T``, and ``r``, ``J`` (unweighted) at it."""
    lam = 1e-3
    free = np.arange(6) if free is None else np.asarray(free)
    s = None if weights is None else np.sqrt(weights)
    r, J = fn(T)
    if s is not None and len(s) < len(r):  # rows past the weights (priors) count once
        s = np.r_[s, np.ones(len(r) - len(s))]
    rw = r if s is None else r * s
    cost = float(rw @ rw)
    for _ in range(iterations):
        Jf = J[:, free] if s is None else J[:, free] * s[:, None]
        H, g = Jf.T @ Jf, Jf.T @ rw
        D = np.diag(np.maximum(np.diag(H), 1e-9))
        for _ in range(6):
            step = np.zeros(6)
            try:
                step[free] = -np.linalg.solve(H + lam * D, g)
            except np.linalg.LinAlgError:
                lam *= 8
                continue
            T_new = np_se3_exp(step) @ T
            r_new, J_new = fn(T_new)
            rw_new = r_new if s is None else r_new * s
            c_new = float(rw_new @ rw_new)
            if c_new < cost:
                T, r, J, rw, lam = T_new, r_new, J_new, rw_new, max(lam / 3, 1e-7)
                break
            lam *= 8
        else:
            break
        done = cost - c_new < 1e-7 * cost or np.abs(step).max() < 1e-7
        cost = c_new
        if done:
            break
    T = T.copy()
    T[:3, :3] = orthonormal(T[:3, :3])
    return T, r, J


def orthonormal(R: np.ndarray) -> np.ndarray:
    """Nearest rotation ``[3, 3]`` to ``R``."""
    U, _, Vt = np.linalg.svd(R)
    return U @ np.diag([1, 1, np.linalg.det(U @ Vt)]) @ Vt


def twist(T: np.ndarray, T_ref: np.ndarray) -> np.ndarray:
    """``[6]`` (translation m, rotation rad) left difference of ``T`` from ``T_ref``
    (``T ≈ Exp(δ) T_ref``, first-order translation as in :func:`np_se3_exp`)."""
    D = T @ np.linalg.inv(T_ref)
    return np.r_[D[:3, 3], np_so3_log(D[:3, :3])]


def bootstrap_std(T: np.ndarray, fn: Residuals, w: np.ndarray, groups: np.ndarray, draws: int,
                  iterations: int, seed: int = 0, free: np.ndarray | None = None) -> np.ndarray:
    """``[6]`` std (m, m, m, rad, rad, rad) of the solution over ``draws`` bootstrap
    resamples of the point ``groups [M]`` (frames or image tiles; ``w [M]`` > 0 marks
    real points), each re-solved from ``T`` by :func:`lm`. Components not in ``free`` get 0."""
    g = np.asarray(groups).reshape(-1)
    real = np.asarray(w).reshape(-1) > 0
    ids = np.unique(g[real])
    if len(ids) < 3:
        return np.full(6, np.inf)
    rng = np.random.default_rng(seed)
    pos = np.searchsorted(ids, g)
    pos = np.clip(pos, 0, len(ids) - 1)
    out = []
    for _ in range(draws):
        counts = np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids)).astype(np.float64)
        weights = np.where(real & (ids[pos] == g), counts[pos], 0.0)
        Tb, _, _ = lm(T, fn, iterations, free, weights)
        out.append(twist(Tb, T))
    return np.std(np.asarray(out), axis=0, ddof=1)
