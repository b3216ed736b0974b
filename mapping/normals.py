"""Surface normals of a LiDAR scan from its nearest neighbours (PCA of each point's k-neighbourhood)."""

from __future__ import annotations

import numpy as np


def scan_normals(points: np.ndarray, k: int = 10, max_dist: float = 1.0, min_planarity: float = 0.0,
                 thin: float = 0.0, return_centroids: bool = False):
    """Unit normals ``[N, 3]`` of a scan's points (NaN where the neighbourhood does not define one).

    Each point's normal is the least-variance direction of its ``k`` nearest neighbours
    within ``max_dist`` m (scipy cKDTree, batched 3 × 3 eigen-decompositions). The sign is
    arbitrary (orient it against the ray where it matters).

    Args:
        points: ``[N, 3]`` m, any frame.
        k: neighbours per point (including itself); fewer than 4 within ``max_dist`` → NaN.
        max_dist: neighbourhood radius, m.
        min_planarity: (λ2 − λ1) / λ3 below this → NaN (a line or a blob, not a surface).
        thin: when > 0, normals are computed on the scan thinned to one point per ``thin`` m
            voxel and each point takes its nearest thinned point's normal: a spinning
            LiDAR's rings are far denser along than across, so without thinning the k
            nearest neighbours of a distant point all lie on its own ring (a line).
        return_centroids: also return ``[N, 3]``, the mean of the neighbourhood each normal
            was fitted to (a point of that plane), and ``[N]`` the RMS distance (m) of that
            neighbourhood to its plane (√ of the least eigenvalue: how flat it is).
    """
    if thin > 0 and len(points):
        from scipy.spatial import cKDTree
        p = np.asarray(points, np.float64).reshape(-1, 3)
        _, first = np.unique(np.floor(p / thin).astype(np.int64), axis=0, return_index=True)
        sub = p[first]
        nrm, cen, rms = scan_normals(sub, k, max_dist, min_planarity, return_centroids=True)
        _, j = cKDTree(sub).query(p, k=1)
        return (nrm[j], cen[j], rms[j]) if return_centroids else nrm[j]
    from scipy.spatial import cKDTree
    p = np.asarray(points, np.float64).reshape(-1, 3)
    n = len(p)
    out = np.full((n, 3), np.nan)
    if n < 4:
        return (out, out.copy(), np.full(n, np.nan)) if return_centroids else out
    k = min(k, n)
    d, idx = cKDTree(p).query(p, k=k, distance_upper_bound=max_dist)
    valid = np.isfinite(d)
    cnt = valid.sum(1)
    idx = np.where(valid, idx, np.arange(n)[:, None])  # missing neighbours repeat the point (weight 0)
    w = valid.astype(np.float64)
    nb = p[idx] - p[:, None, :]
    mean = (nb * w[..., None]).sum(1) / np.maximum(cnt, 1)[:, None]
    c = nb - mean[:, None, :]
    cov = np.einsum("nki,nkj->nij", c * w[..., None], c) / np.maximum(cnt, 1)[:, None, None]
    lam, vec = np.linalg.eigh(cov)
    ok = (cnt >= 4) & ((lam[:, 1] - lam[:, 0]) >= min_planarity * np.maximum(lam[:, 2], 1e-12))
    out[ok] = vec[ok, :, 0]
    return (out, p + mean, np.sqrt(np.maximum(lam[:, 0], 0.0))) if return_centroids else out
