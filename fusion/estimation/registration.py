"""Robust scan-to-map ICP (point-to-point, and point-to-plane on planar voxels) and KISS-ICP's adaptive threshold.

The solver is Gauss-Newton on a left perturbation ``T ← Exp(δ) T`` with
``δ = (ρ, φ)`` (translation m, rotation rad) and a Geman-McClure kernel;
correspondences come from :class:`VoxelMap`'s KD-trees, so every step is a
handful of vectorised numpy operations over the source points.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fuse4d.fusion.estimation.lie import orthonormalize, rotation_angle, se3_exp, skew
from fuse4d.fusion.estimation.voxel_map import LINEAR, PLANAR, VoxelMap

log = logging.getLogger(__name__)
SKIP_LINEAR = True


@dataclass
class RegistrationResult:
    """Outcome of one ICP alignment.

    Attributes:
        T: ``[4, 4]`` estimated ``T_map_source``.
        hessian: ``[6, 6]`` Gauss-Newton information ``Σ w Jᵀ J`` at the solution
            (left perturbation, order translation then rotation; units 1/m², 1/rad²
            once divided by the residual variance).
        fitness: fraction of source points with a correspondence within the
            final threshold, in [0, 1].
        rmse: root-mean-square residual (m) of those correspondences.
        iterations: Gauss-Newton iterations run.
        converged: the last update was below the tolerance.
    """

    T: np.ndarray
    hessian: np.ndarray
    fitness: float
    rmse: float
    iterations: int
    converged: bool


def _normal_equations(p: np.ndarray, q: np.ndarray, n: np.ndarray | None, plane: np.ndarray | None,
                      kernel: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted normal equations for transformed source ``p [K,3]`` and targets ``q [K,3]``.

    Point-to-plane rows (where ``plane``) use ``J = [nᵀ, (p × n)ᵀ]``; point-to-point rows
    use ``J = [I, -[p]x]``. Weights: Geman-McClure on the residual.

    Returns:
        ``H_plane [6,6], g_plane [6], H_point [6,6], g_point [6]`` (kept apart so the
        caller can weight the point rows).
    """
    d = p - q
    k2 = kernel * kernel
    H_pl, g_pl, H_pt, g_pt = np.zeros((6, 6)), np.zeros(6), np.zeros((6, 6)), np.zeros(6)
    if n is not None and plane.any():
        pp, nn = p[plane], n[plane]
        e = np.einsum("ij,ij->i", d[plane], nn)
        w = (k2 / (k2 + e * e)) ** 2
        J = np.empty((len(pp), 6))
        J[:, :3] = nn
        J[:, 3:] = np.cross(pp, nn)
        Jw = J * w[:, None]
        H_pl = Jw.T @ J
        g_pl = Jw.T @ e
        pt = ~plane
    else:
        pt = slice(None)
    pq, dq = p[pt], d[pt]
    if len(pq):
        wq = (k2 / (k2 + np.einsum("ij,ij->i", dq, dq))) ** 2
        wpq = pq * wq[:, None]
        sw, swp = wq.sum(), wpq.sum(0)
        H_pt[:3, :3] = np.eye(3) * sw
        H_pt[:3, 3:] = -skew(swp)
        H_pt[3:, :3] = skew(swp)
        H_pt[3:, 3:] = np.eye(3) * float(np.einsum("ij,ij->", wpq, pq)) - wpq.T @ pq
        g_pt[:3] = wq @ dq
        g_pt[3:] = np.cross(wpq, dq).sum(0)
    return H_pl, g_pl, H_pt, g_pt


def register_to_map(source: np.ndarray, voxel_map: VoxelMap, T_init: np.ndarray, max_correspondence: float,
                    kernel: float, point_to_plane: bool = True, max_iterations: int = 50,
                    tolerance: float = 1e-4, reuse: int = 2, point_weight: float = 1.0) -> RegistrationResult:
    """Align ``source [N, 3]`` (sensor frame, metres) to ``voxel_map`` starting from ``T_init [4, 4]``.

    Args:
        max_correspondence: pairs farther apart than this (m) are ignored.
        kernel: Geman-McClure scale (m).
        point_to_plane: use point-to-plane residuals where the map voxel is planar.
        tolerance: stop when the update norm falls below this.
        reuse: Gauss-Newton steps taken per nearest-neighbour search (the search
            dominates the cost; correspondences change little between steps).
        point_weight: weight of point-to-point rows (voxels that are not planar) when
            point-to-plane is on. Matching a point to a sparse voxel's nearest sample
            biases the pose towards the map's sampling pattern, so planes should
            dominate; the weight rises to 1 when fewer than a third of the pairs are planar
            or when the planes alone leave a translation unconstrained.

    Raises:
        ValueError: the map is empty or ``source`` is not ``[N, 3+]``.
    """
    if voxel_map.empty:
        raise ValueError("cannot register against an empty map")
    source = np.asarray(source, dtype=np.float64)
    if source.ndim != 2 or source.shape[1] < 3:
        raise ValueError(f"source must be [N, 3], got shape {source.shape}")
    source = source[:, :3]
    T = orthonormalize(T_init)
    H = np.zeros((6, 6))
    converged, it, fitness, rmse = False, 0, 0.0, float("inf")
    while it < max_iterations and not converged:
        p = source @ T[:3, :3].T + T[:3, 3]
        dist, idx = voxel_map.nearest(p, max_correspondence)
        ok = np.isfinite(dist)
        fitness = float(ok.mean()) if len(ok) else 0.0
        rmse = float(np.sqrt(np.mean(dist[ok] ** 2))) if ok.any() else float("inf")
        q, n, kind = voxel_map.at(idx[ok])
        if point_to_plane and SKIP_LINEAR:
            line = kind == LINEAR  # a line (a scan ring) says nothing reliable across it
            ok[ok] = ~line
            q, n, kind = q[~line], n[~line], kind[~line]
        if ok.sum() < 6:
            log.debug("ICP: only %d correspondences", int(ok.sum()))
            break
        src = source[ok]
        n, pl = (n, kind == PLANAR) if point_to_plane else (None, None)
        pw = point_weight if pl is not None and pl.mean() > 1 / 3 else 1.0
        for _ in range(reuse):  # Gauss-Newton steps per correspondence search
            it += 1
            H_pl, g_pl, H_pt, g_pt = _normal_equations(src @ T[:3, :3].T + T[:3, 3], q, n, pl, kernel)
            if pw < 1.0 and np.linalg.eigvalsh(H_pl[:3, :3])[0] < 0.05 * max(int(pl.sum()), 1):
                pw = 1.0  # planes alone leave a direction free (a corridor): use every pair
            H, g = H_pl + pw * H_pt, g_pl + pw * g_pt
            try:
                delta = -np.linalg.solve(H + 1e-6 * max(np.trace(H), 1e-9) * np.eye(6), g)
            except np.linalg.LinAlgError:
                return RegistrationResult(T, H, fitness, rmse, it, False)
            if not np.isfinite(delta).all() or np.linalg.norm(delta[:3]) > 2 * max_correspondence \
                    or np.linalg.norm(delta[3:]) > 0.5:
                log.debug("ICP: step out of bounds, stopping")
                return RegistrationResult(T, H, fitness, rmse, it, False)
            T = se3_exp(delta) @ T
            if np.linalg.norm(delta) < tolerance:
                converged = True
                break
    return RegistrationResult(T, H, fitness, rmse, it, converged)


class AdaptiveThreshold:
    """KISS-ICP's correspondence threshold from the spread of past prediction errors.

    Args:
        initial: threshold (m) used until a frame with motion above ``min_motion`` is seen.
        min_motion: model errors (m) below this do not update the estimate.
        max_range: sensor range (m) that converts rotation error into metres.
    """

    def __init__(self, initial: float = 2.0, min_motion: float = 0.1, max_range: float = 100.0):
        self.initial, self.min_motion, self.max_range = float(initial), float(min_motion), float(max_range)
        self._sse, self._count = 0.0, 0

    def update(self, model_deviation: np.ndarray) -> None:
        """Record ``[4, 4]`` deviation between the predicted and the registered pose."""
        theta = float(rotation_angle(model_deviation))
        err = float(np.linalg.norm(model_deviation[:3, 3])) + 2.0 * self.max_range * np.sin(theta / 2.0)
        if err > self.min_motion:
            self._sse += err * err
            self._count += 1

    @property
    def sigma(self) -> float:
        """Current threshold scale (m)."""
        return self.initial if self._count == 0 else float(np.sqrt(self._sse / self._count))
