"""Sparse Levenberg-Marquardt for :class:`~fuse4d.fusion.estimation.pose_graph.PoseGraph` (scipy).

Every factor touches one or two nodes, so the Jacobian is block-sparse and the
normal matrix ``JᵀJ`` is block-banded plus the loop/network entries: it is
assembled as a ``scipy.sparse`` matrix and factorised by SuperLU (COLAMD
ordering), so time and memory grow linearly with the number of nodes and every
keyframe can be kept (no thinning, no dense matrix over all nodes).

Residuals are those of the pypose model, evaluated in batched numpy: relative
and prior factors use ``[t, Log R]`` of ``Z⁻¹ T_i⁻¹ T_j`` (translation first);
IMU factors are Forster et al.'s with first-order bias correction; bias and
velocity priors are plain differences. A node's tangent is
``[δp (world, m), δφ (body, rad), δv (m/s), δb_g, δb_a]``, applied as
``p ← p + δp``, ``R ← R Exp(δφ)``. Jacobians are central differences per factor
block (every factor of a kind at once), exact to ~1e-9 for these smooth residuals.
Robust kernels are applied by iteratively reweighting whole factors (Huber /
Cauchy on the whitened residual norm).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from fuse4d.fusion.estimation.lie import so3_exp, so3_log

log = logging.getLogger(__name__)

_EPS = 1e-6
_POSE, _VEL, _BIAS = slice(0, 6), slice(6, 9), slice(9, 15)


def _rel(Ri, pi, Rj, pj):
    """``[t, Log R]`` of ``T_i⁻¹ T_j``: rotation ``[K,3,3]`` and translation ``[K,3]``."""
    Rit = np.swapaxes(Ri, -1, -2)
    return Rit @ Rj, np.einsum("kab,kb->ka", Rit, pj - pi)


def _pose_residual(Zinv_R, Zinv_p, Ri, pi, Rj, pj):
    """Decoupled log of ``Z⁻¹ T_i⁻¹ T_j`` → ``[K, 6]``."""
    R, p = _rel(Ri, pi, Rj, pj)
    E_R = Zinv_R @ R
    E_p = np.einsum("kab,kb->ka", Zinv_R, p) + Zinv_p
    return np.concatenate([E_p, so3_log(E_R)], -1)


def _kernel_weights(s2: np.ndarray, kernel) -> np.ndarray:
    """IRLS weights ``[K]`` and nothing else, for squared whitened norms ``s2 [K]``."""
    if kernel is None or kernel[0] is None:
        return np.ones_like(s2)
    name, d = kernel
    s = np.sqrt(s2)
    if name == "huber":
        return np.where(s <= d, 1.0, d / np.maximum(s, 1e-300))
    if name == "cauchy":
        return 1.0 / (1.0 + s2 / d ** 2)
    raise ValueError(f"unknown robust kernel {name!r} (use 'huber', 'cauchy' or None)")


def _kernel_cost(s2: np.ndarray, kernel) -> np.ndarray:
    if kernel is None or kernel[0] is None:
        return s2
    name, d = kernel
    if name == "huber":
        s = np.sqrt(s2)
        return np.where(s <= d, s2, 2.0 * d * s - d * d)
    return d * d * np.log1p(s2 / d ** 2)


class _Group:
    """One kind of factor: node slots ``idx [K, m]``, the state dims it reads, and its residual."""

    def __init__(self, kind: str, idx: np.ndarray, dims: slice, fn, kernel):
        self.kind, self.idx, self.dims, self.fn, self.kernel = kind, np.asarray(idx).reshape(len(idx), -1), dims, \
            fn, kernel


class SparseSolver:
    """LM over a PoseGraph's factors (see module doc); ``solve`` updates the graph's states in place."""

    def __init__(self, graph, kernels: dict):
        self.g = graph
        self.with_imu = graph.velocities is not None
        self.D = 15 if self.with_imu else 6
        self.groups = self._build(kernels)

    # -- factor groups --------------------------------------------------------------------------
    def _build(self, kernels: dict) -> list[_Group]:
        g, out = self.g, []
        for kind in sorted({f[4] for f in g.relative}):
            rows = [f for f in g.relative if f[4] == kind]
            Z = np.stack([f[2] for f in rows])
            ZR = np.swapaxes(Z[:, :3, :3], -1, -2)
            Zp = -np.einsum("kab,kb->ka", ZR, Z[:, :3, 3])
            U = np.stack([f[3] for f in rows])

            def fn(S, ZR=ZR, Zp=Zp, U=U):
                (Ri, pi, _, _), (Rj, pj, _, _) = S
                return np.einsum("kab,kb->ka", U, _pose_residual(ZR, Zp, Ri, pi, Rj, pj))
            out.append(_Group(kind, np.array([[f[0], f[1]] for f in rows]), _POSE, fn,
                              kernels.get(kind, ("huber", 3.0))))
        if g.priors:
            P = np.stack([p[1] for p in g.priors])
            PR = np.swapaxes(P[:, :3, :3], -1, -2)
            Pp = -np.einsum("kab,kb->ka", PR, P[:, :3, 3])
            U = np.stack([p[2] for p in g.priors])
            eye = np.broadcast_to(np.eye(3), PR.shape)

            def fn(S, PR=PR, Pp=Pp, U=U, eye=eye):
                ((R, p, _, _),) = S
                return np.einsum("kab,kb->ka", U, _pose_residual(PR, Pp, eye, np.zeros_like(p), R, p))
            out.append(_Group("prior", np.array([[p[0]] for p in g.priors]), _POSE, fn, kernels.get("prior")))
        for kind in sorted({f[5] for f in g.imu}):
            out.append(self._imu_group([f for f in g.imu if f[5] == kind], kind, kernels.get(kind, kernels.get("imu"))))
        if g.bias_priors:
            mean = np.stack([p[1] for p in g.bias_priors])
            w = np.stack([p[2] for p in g.bias_priors])
            out.append(_Group("bias_prior", np.array([[p[0]] for p in g.bias_priors]), _BIAS,
                              lambda S, m=mean, w=w: (S[0][3] - m) * w, kernels.get("bias_prior")))
        if g.velocity_priors:
            mean = np.stack([p[1] for p in g.velocity_priors])
            w = np.stack([p[2] for p in g.velocity_priors])
            out.append(_Group("velocity_prior", np.array([[p[0]] for p in g.velocity_priors]), _VEL,
                              lambda S, m=mean, w=w: (S[0][2] - m) * w, kernels.get("velocity_prior")))
        return out

    def _imu_group(self, rows: list, kind: str, kernel) -> _Group:
        pre = [f[2] for f in rows]
        dRt = np.swapaxes(np.stack([p.dR for p in pre]), -1, -2)
        dv, dp = np.stack([p.dv for p in pre]), np.stack([p.dp for p in pre])
        Jb = np.stack([p.J for p in pre])
        b_lin = np.stack([np.concatenate([p.bg, p.ba]) for p in pre])
        dt = np.array([p.dt for p in pre])[:, None]
        U = np.stack([f[3] for f in rows])
        Uw = np.stack([f[4] for f in rows])
        gv = self.g.gravity

        def fn(S):
            (Ri, pi, vi, bi), (Rj, pj, vj, bj) = S
            corr = np.einsum("kab,kb->ka", Jb, bi - b_lin)
            Rit = np.swapaxes(Ri, -1, -2)
            rR = so3_log(dRt @ Rit @ Rj) - corr[:, :3]
            rv = np.einsum("kab,kb->ka", Rit, vj - vi - gv * dt) - (dv + corr[:, 3:6])
            rp = np.einsum("kab,kb->ka", Rit, pj - pi - vi * dt - 0.5 * gv * dt * dt) - (dp + corr[:, 6:9])
            r9 = np.einsum("kab,kb->ka", U, np.concatenate([rR, rv, rp], -1))
            return np.concatenate([r9, (bj - bi) * Uw], -1)
        return _Group(kind, np.array([[f[0], f[1]] for f in rows]), slice(0, 15), fn, kernel)

    # -- states ---------------------------------------------------------------------------------
    def _slots(self, grp: _Group, R, p, v, b):
        return [(R[grp.idx[:, s]], p[grp.idx[:, s]], None if v is None else v[grp.idx[:, s]],
                 None if b is None else b[grp.idx[:, s]]) for s in range(grp.idx.shape[1])]

    @staticmethod
    def _perturb(slot, d: int, h: float):
        R, p, v, b = slot
        if d < 3:
            p = p.copy()
            p[:, d] += h
        elif d < 6:
            e = np.zeros(3)
            e[d - 3] = h
            R = R @ so3_exp(e)
        elif d < 9:
            v = v.copy()
            v[:, d - 6] += h
        else:
            b = b.copy()
            b[:, d - 9] += h
        return R, p, v, b

    def _linearise(self, R, p, v, b):
        """Weighted residual ``[M]``, sparse Jacobian ``[M, N·D]`` and robust cost."""
        rows, cols, vals, res, cost, off = [], [], [], [], 0.0, 0
        for grp in self.groups:
            S = self._slots(grp, R, p, v, b)
            r = grp.fn(S)
            K, m = r.shape
            s2 = np.einsum("km,km->k", r, r)
            cost += float(_kernel_cost(s2, grp.kernel).sum())
            w = np.sqrt(_kernel_weights(s2, grp.kernel))[:, None]
            res.append((r * w).reshape(-1))
            rix = off + np.arange(K)[:, None] * m + np.arange(m)[None, :]  # [K, m]
            dims = range(grp.dims.start, grp.dims.stop)
            for s in range(grp.idx.shape[1]):
                for d in dims:
                    Sp, Sm = list(S), list(S)
                    Sp[s] = self._perturb(S[s], d, _EPS)
                    Sm[s] = self._perturb(S[s], d, -_EPS)
                    col = (grp.fn(Sp) - grp.fn(Sm)) / (2 * _EPS) * w  # [K, m]
                    rows.append(rix.reshape(-1))
                    cols.append(np.repeat(grp.idx[:, s] * self.D + d, m))
                    vals.append(col.reshape(-1))
            off += K * m
        n = len(self.g.poses) * self.D
        J = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(off, n))
        return np.concatenate(res), J, cost

    def _cost(self, R, p, v, b) -> float:
        total = 0.0
        for grp in self.groups:
            r = grp.fn(self._slots(grp, R, p, v, b))
            total += float(_kernel_cost(np.einsum("km,km->k", r, r), grp.kernel).sum())
        return total

    def plain_cost(self) -> float:
        """Sum of squared whitened residuals at the graph's current states (no robust kernel)."""
        g = self.g
        total = 0.0
        for grp in self.groups:
            r = grp.fn(self._slots(grp, g.poses[:, :3, :3], g.poses[:, :3, 3], g.velocities, g.biases))
            total += float(np.einsum("km,km->", r, r))
        return total

    def _retract(self, R, p, v, b, dx: np.ndarray):
        dx = dx.reshape(-1, self.D)
        R = R @ so3_exp(dx[:, 3:6])
        p = p + dx[:, :3]
        if self.with_imu:
            v, b = v + dx[:, 6:9], b + dx[:, 9:15]
        return R, p, v, b

    # -- LM -------------------------------------------------------------------------------------
    def solve(self, max_iterations: int, tolerance: float) -> tuple[float, float, int]:
        """Run LM; returns ``(initial cost, final cost, iterations)`` (robust costs)."""
        g = self.g
        R, p = g.poses[:, :3, :3].copy(), g.poses[:, :3, 3].copy()
        v = None if g.velocities is None else g.velocities.copy()
        b = None if g.biases is None else g.biases.copy()
        r, J, cost = self._linearise(R, p, v, b)
        cost0, lam, it = cost, 1e-4, 0
        for it in range(1, max_iterations + 1):
            H = (J.T @ J).tocsc()
            grad = J.T @ r
            diag = H.diagonal()
            improved = False
            while lam < 1e10:
                A = H + sp.diags(lam * np.maximum(diag, 1e-9 * max(diag.max(), 1.0)) + 1e-12, format="csc")
                dx = spsolve(A, -grad, permc_spec="COLAMD")
                if not np.all(np.isfinite(dx)):
                    lam *= 10.0
                    continue
                cand = self._retract(R, p, v, b, dx)
                c_new = self._cost(*cand)
                if c_new < cost:
                    improved = True
                    break
                lam *= 4.0
            if not improved:
                break
            R, p, v, b = cand
            lam = max(lam / 3.0, 1e-9)
            done = cost - c_new <= tolerance * max(cost, 1e-12)
            cost = c_new
            if done:
                break
            r, J, cost = self._linearise(R, p, v, b)
        T = np.tile(np.eye(4), (len(R), 1, 1))
        T[:, :3, :3], T[:, :3, 3] = R, p
        g.poses = T
        if self.with_imu:
            g.velocities, g.biases = v, b
        log.debug("sparse pose graph: %d nodes, cost %.3g -> %.3g in %d LM steps", len(T), cost0, cost, it)
        return cost0, cost, it
