"""Rigid registration of a moving object's points between scans (its velocity measurement).

:func:`axis_search` finds a coarse displacement along the object's long axis (the
aperture problem of a car's flat side); :func:`icp_translation` refines it point to
plane, with an optional turn about the object's centre.
"""

from __future__ import annotations

import numpy as np

_MAX_SOURCE = 400        # points of the new scan a velocity registration uses (evenly strided)


def _thin(points: np.ndarray, most: int) -> np.ndarray:
    """At most ``most`` of ``points [N, 3]``, evenly strided (all when fewer)."""
    if len(points) <= most:
        return points
    return points[np.linspace(0, len(points) - 1, most).astype(np.int64)]


def _normals(points: np.ndarray, tree, k: int = 8, at: np.ndarray | None = None) -> np.ndarray:
    """Unit normals ``[M, 3]`` of points ``[M, 3]`` (or of ``points[at]``, ``at [K]`` indices) from their
    k nearest neighbours among ``points`` (``tree`` holds them; PCA; NaN when < 4 within 1 m)."""
    k = min(k, len(points))
    idx = np.arange(len(points)) if at is None else np.asarray(at)
    q = points[idx]
    d, j = tree.query(q, k=k, distance_upper_bound=1.0)
    ok = np.isfinite(d)
    j = np.where(ok, j, idx[:, None])
    nb = points[j] - q[:, None]
    w = ok[..., None].astype(np.float64)
    cnt = np.maximum(ok.sum(1), 1)[:, None]
    c = nb - (nb * w).sum(1)[:, None] / cnt[..., None]
    cov = np.einsum("mki,mkj->mij", c * w, c) / cnt[..., None]
    _, vec = np.linalg.eigh(cov)
    out = vec[:, :, 0].copy()
    out[ok.sum(1) < 4] = np.nan
    return out


def icp_translation(source: np.ndarray, target: np.ndarray, init: np.ndarray, iterations: int = 8,
                    inlier: float = 0.5, prior: float = 0.01, pivot: np.ndarray | None = None,
                    yaw_prior: float = 0.0) -> tuple[np.ndarray, float]:
    """Translation ``d [3]`` (m) that moves ``target [M, 3]`` (earlier scan) onto ``source [N, 3]``
    (point-to-plane ICP on the target's normals, trimmed at ``inlier`` m, run from each start in
    ``init [3]`` or ``[K, 3]``; the start ending with the most inliers, then the smallest residual, wins).

    Point-to-plane, because consecutive scans sample a car's faces at different places: a
    point-to-point fit slides along the faces with the sampling (a lateral velocity bias); the
    plane residuals constrain only the faces' normals. Along a direction no face constrains (a
    car's flat side) a weak pull (``prior`` × inliers) keeps ``d`` at its start.

    With ``pivot [3]`` the fit also turns the target about the vertical through ``pivot`` (a
    turning car: a translation alone slides it sideways): ``source ≈ R(θ)(target − pivot) +
    pivot + d``, ``θ`` pulled weakly to 0 (``yaw_prior`` × inliers, per rad²); ``d`` is then the
    pivot's displacement.

    Returns ``(d, inlier_share)``, or ``(d, inlier_share, θ)`` with a pivot.
    """
    from scipy.spatial import cKDTree

    source = _thin(source, _MAX_SOURCE)
    tree = cKDTree(target)
    nrm = np.full((len(target), 3), np.nan)  # normals of the target points matched so far (lazily)
    have = np.zeros(len(target), bool)
    yaw = pivot is not None
    c = np.zeros(3) if pivot is None else np.asarray(pivot, np.float64)
    best = (np.asarray(init, np.float64).reshape(-1, 3)[0], -1.0, np.inf, 0.0)
    for start in np.asarray(init, np.float64).reshape(-1, 3):
        d, th = start.copy(), 0.0
        share, resid = 0.0, np.inf
        for _ in range(iterations):
            cs, sn = np.cos(th), np.sin(th)
            R = np.array([[cs, -sn, 0.0], [sn, cs, 0.0], [0.0, 0.0, 1.0]])
            back = (source - c - d) @ R + c                      # source in the target's pose
            dist, j = tree.query(back, distance_upper_bound=inlier)
            ok = np.isfinite(dist)
            share = float(ok.mean()) if len(ok) else 0.0
            if ok.sum() < 5:
                break
            resid = float(dist[ok].mean())
            need = np.unique(j[ok][~have[j[ok]]])
            if len(need):
                nrm[need], have[need] = _normals(target, tree, at=need), True
            n = nrm[j[ok]]
            good = np.isfinite(n).all(1)
            if good.sum() < 5:
                break
            n, s, x = n[good], source[ok][good], target[j[ok]][good]
            rn = n @ R.T                                          # target normals turned into the source
            r = np.einsum("ij,ij->i", s - c - d, rn) - np.einsum("ij,ij->i", x - c, n)
            w = np.minimum(1.0, 0.1 / np.maximum(np.abs(r), 1e-9))  # Huber weights, 10 cm
            lam = prior * len(r)
            if yaw:  # r(d + δ, θ + ω) ≈ r − rn·δ + ((ẑ × rn)·(s − c − d)) ω
                jt = -rn[:, 1] * (s - c - d)[:, 0] + rn[:, 0] * (s - c - d)[:, 1]
                J = np.column_stack([rn, -jt])                    # r decreases by J·[δ, ω]
                A = (J * w[:, None]).T @ J + np.diag([lam, lam, lam, yaw_prior * len(r)])
                b = (J * (w * r)[:, None]).sum(0) + np.r_[lam * (start - d), -yaw_prior * len(r) * th]
                step = np.linalg.solve(A, b)
                d, th = d + step[:3], th + step[3]
                if np.linalg.norm(step[:3]) < 1e-3 and abs(step[3]) < 1e-4:
                    break
                continue
            A = (rn * w[:, None]).T @ rn + lam * np.eye(3)
            step = np.linalg.solve(A, (rn * (w * r)[:, None]).sum(0) + lam * (start - d))
            d = d + step
            if np.linalg.norm(step) < 1e-3:
                break
        if (share, -resid) > (best[1], -best[2]):
            best = (d, share, resid, th)
    if yaw:
        return best[0], max(best[1], 0.0), float(best[3])
    return best[0], max(best[1], 0.0)


def axis_search(source: np.ndarray, target: np.ndarray, predicted: np.ndarray, reach: float,
                step: float = 0.1, radius: float = 0.2) -> np.ndarray:
    """Coarse translation ``[3]`` of ``target`` onto ``source`` (points ``[N, 3]``, ``[M, 3]``).

    Vehicles move along their long side, where a registration started at the wrong place slides
    without resistance (the aperture problem); so candidates are laid along the objects' principal
    ground-plane axis (±``reach`` m, every ``step`` m) plus the ``predicted`` displacement, and the
    one putting most source points within ``radius`` of the target wins (ties: nearest the prediction).
    """
    from scipy.spatial import cKDTree

    xy = np.vstack([source[:, :2], target[:, :2]])
    w, v = np.linalg.eigh(np.cov((xy - xy.mean(0)).T)) if len(xy) >= 3 else (np.ones(2), np.eye(2))
    axis = np.r_[v[:, np.argmax(w)], 0.0]
    n = int(round(reach / step))
    cands = np.vstack([np.asarray(predicted, np.float64)[None],
                       np.arange(-n, n + 1)[:, None] * step * axis[None]])
    tree = cKDTree(target)
    source = _thin(source, _MAX_SOURCE)
    shifted = source[None] - cands[:, None, :]
    dist, _ = tree.query(shifted.reshape(-1, 3), distance_upper_bound=radius)
    score = np.isfinite(dist).reshape(len(cands), -1).sum(1) - 1e-3 * np.linalg.norm(cands - predicted, axis=1)
    return cands[int(np.argmax(score))]
