"""Evaluation metrics, numpy only, one section per family (trajectories, depth, segmentation, ...).

Trajectory metrics reproduce evo (``sync``, ``geometry``, ``filters``, ``metrics.APE/RPE``)
number for number, vectorised; the KITTI drift follows the devkit's ``evaluate_odometry.cpp``.
Trajectory inputs are :class:`fuse4d.data.trajectory.Trajectory` objects (associated by
timestamp first, :func:`associate`) or ``[S, 4, 4]`` pose arrays already paired one to one.
Empty, mismatched or degenerate input raises :class:`fuse4d.errors.DataError` without a path;
callers that read files re-raise it with theirs.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from fuse4d.data.trajectory import Trajectory
from fuse4d.errors import DataError
from fuse4d.geometry import invert

#: KITTI devkit segment lengths in metres
KITTI_LENGTHS = (100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0)
ALIGN_MODES = ("se3", "sim3", "scale", "none")


def error_stats(err: np.ndarray) -> dict[str, float]:
    """evo's statistics of errors ``[N]``: rmse, mean, median, std, min, max, sse, and n."""
    err = np.asarray(err, dtype=np.float64).reshape(-1)
    if err.size == 0:
        raise DataError(None, "no errors to summarise (empty input)")
    sq = np.power(err, 2)
    return {"rmse": math.sqrt(np.mean(sq)), "mean": float(np.mean(err)), "median": float(np.median(err)),
            "std": float(np.std(err)), "min": float(np.min(err)), "max": float(np.max(err)),
            "sse": float(np.sum(sq)), "n": int(err.size)}


# --- trajectories: association and alignment ---------------------------------------------------

def _match_indices(stamps_1: np.ndarray, stamps_2: np.ndarray, max_diff: float) -> tuple[np.ndarray, np.ndarray]:
    """evo ``sync.matching_time_indices``: for each stamp of 1, the nearest of 2 within ``max_diff``."""
    if len(stamps_2) == 0 or len(stamps_1) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if not np.all(np.diff(stamps_2) >= 0):  # evo's linear search: first argmin
        best = np.empty(len(stamps_1), dtype=np.int64)
        for lo in range(0, len(stamps_1), 1024):  # chunks bound memory to 1024 x len(stamps_2)
            best[lo:lo + 1024] = np.argmin(np.abs(stamps_2[None, :] - stamps_1[lo:lo + 1024, None]), axis=1)
        keep = np.abs(stamps_2[best] - stamps_1) <= max_diff
        return np.nonzero(keep)[0], best[keep]
    inside = (stamps_1 >= stamps_2[0] - max_diff) & (stamps_1 <= stamps_2[-1] + max_diff)
    idx2 = np.minimum(np.searchsorted(stamps_2, stamps_1, side="right"), len(stamps_2) - 1)
    diff_ub = stamps_2[idx2] - stamps_1
    diff_lb = np.where(idx2 > 0, stamps_1 - stamps_2[np.maximum(idx2 - 1, 0)], np.inf)
    take_ub = (diff_ub <= max_diff) & (diff_ub < diff_lb)
    take_lb = ~take_ub & (diff_lb <= max_diff) & (diff_lb <= diff_ub)
    ok = inside & (take_ub | take_lb)
    best = np.where(take_ub, idx2, idx2 - 1)
    return np.nonzero(ok)[0], best[ok]


def associate(t_est: np.ndarray, t_ref: np.ndarray, max_diff: float = 0.01,
              offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Associate stamps as ``evo.core.sync.associate_trajectories(ref, est)`` (nearest-time) does.

    Like evo, the search runs from the trajectory with fewer poses (the
    estimate when both are equally long): each of its stamps takes the
    nearest stamp of the other within ``max_diff``; ``offset`` (seconds,
    evo's ``offset_2``, default 0) is added to the estimate's stamps.

    Args:
        t_est: ``[N]`` seconds; t_ref: ``[M]`` seconds.
    Returns:
        ``idx_est [K]``, ``idx_ref [K]`` int64 indices of the matched pairs.
    Raises:
        DataError: when no stamp matches.
    """
    t_est, t_ref = np.asarray(t_est, dtype=np.float64).ravel(), np.asarray(t_ref, dtype=np.float64).ravel()
    if len(t_est) > len(t_ref):
        i_ref, i_est = _match_indices(t_ref, t_est + offset, max_diff)
    else:
        i_est, i_ref = _match_indices(t_est, t_ref - offset, max_diff)
    if len(i_est) == 0:
        raise DataError(None, f"found no matching timestamps between estimate ({len(t_est)} stamps) and "
                              f"reference ({len(t_ref)} stamps) with max. time diff {max_diff} s, offset {offset} s")
    return i_est.astype(np.int64), i_ref.astype(np.int64)


def umeyama_alignment(x: np.ndarray, y: np.ndarray, with_scale: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares Sim(m)/SE(m) with ``y ≈ s R x + t`` (Umeyama 1991; as evo's ``geometry.umeyama_alignment``).

    Args:
        x, y: ``[m, N]`` point sets (m = 3 for positions in metres).
        with_scale: also estimate the scale ``s`` (else ``s = 1``).
    Returns:
        ``R [m, m]``, ``t [m]``, ``s`` float.
    Raises:
        DataError: shapes differ, or the points are degenerate (covariance rank < m - 1).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2 or x.shape[1] == 0:
        raise DataError(None, f"Umeyama alignment needs two [m, N] arrays of one shape, got {x.shape} and {y.shape}")
    m, n = x.shape
    mean_x, mean_y = x.mean(axis=1), y.mean(axis=1)
    sigma_x = 1.0 / n * (np.linalg.norm(x - mean_x[:, None]) ** 2)
    cov_xy = ((y - mean_y[:, None]) @ (x - mean_x[:, None]).T) / n
    u, d, v = np.linalg.svd(cov_xy)
    if np.count_nonzero(d > np.finfo(d.dtype).eps) < m - 1:
        raise DataError(None, f"degenerate point set ({n} points, covariance rank < {m - 1}): "
                              "Umeyama alignment is not possible")
    s_mat = np.eye(m)
    if np.linalg.det(u) * np.linalg.det(v) < 0.0:
        s_mat[m - 1, m - 1] = -1
    r = u @ s_mat @ v
    c = 1.0 / sigma_x * np.trace(np.diag(d) @ s_mat) if with_scale else 1.0
    return r, mean_y - c * (r @ mean_x), float(c)


def align(est_poses: np.ndarray, ref_poses: np.ndarray, mode: str = "se3") -> tuple[np.ndarray, np.ndarray, float]:
    """Align associated estimate poses to the reference as evo's ``-a`` / ``-as`` / ``-s`` do.

    Modes: ``se3`` (R, t), ``sim3`` (R, t, s), ``scale`` (s only), ``none``.
    The aligned pose i is ``[R_a R_i | s R_a p_i + t_a]`` (rotations stay orthonormal).

    Args:
        est_poses, ref_poses: ``[S, 4, 4]`` associated one to one.
    Returns:
        ``aligned [S, 4, 4]``, ``T_align [4, 4]`` (the Sim(3) ``[s R_a | t_a]`` applied
        to positions), ``scale`` float.
    Raises:
        DataError: unknown mode, mismatched or empty input, degenerate positions.
    """
    P, Q = _check_pair(est_poses, ref_poses)
    if mode not in ALIGN_MODES:
        raise DataError(None, f"unknown alignment {mode!r}; use one of {', '.join(ALIGN_MODES)}")
    if mode == "none":
        return P.copy(), np.eye(4), 1.0
    r, t, s = umeyama_alignment(P[:, :3, 3].T, Q[:, :3, 3].T, mode in ("sim3", "scale"))
    if mode == "scale":
        r, t = np.eye(3), np.zeros(3)
    out = P.copy()
    out[:, :3, :3] = r @ P[:, :3, :3]
    out[:, :3, 3] = (s * P[:, :3, 3]) @ r.T + t
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = s * r, t
    return out, T, s


_align = align  # ate/rpe take a parameter named ``align``


def _check_pair(est: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    P, Q = np.asarray(est, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if P.ndim != 3 or P.shape[1:] != (4, 4) or Q.shape != P.shape:
        raise DataError(None, f"need two [S, 4, 4] pose arrays of one shape, got {P.shape} and {Q.shape}")
    if len(P) == 0:
        raise DataError(None, "empty trajectory: no poses to compare")
    return P, Q


def paired_poses(est: Trajectory | np.ndarray, ref: Trajectory | np.ndarray,
                 max_diff: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """``[K, 4, 4]`` estimate and reference poses paired by :func:`associate` (Trajectories) or by index (arrays)."""
    if isinstance(est, Trajectory) and isinstance(ref, Trajectory):
        if len(est) == 0 or len(ref) == 0:
            raise DataError(None, f"empty trajectory ({len(est)} estimate, {len(ref)} reference poses)")
        i_est, i_ref = associate(est.t, ref.t, max_diff)
        return est.poses[i_est], ref.poses[i_ref]
    est = est.poses if isinstance(est, Trajectory) else est
    ref = ref.poses if isinstance(ref, Trajectory) else ref
    return _check_pair(est, ref)


# --- trajectories: absolute and relative errors ------------------------------------------------

def ate(est: Trajectory | np.ndarray, ref: Trajectory | np.ndarray, align: str = "se3",
        max_diff: float = 0.01) -> dict[str, float]:
    """Absolute trajectory error: evo ``APE`` (translation part) after alignment.

    Args:
        est, ref: Trajectories (associated by time within ``max_diff`` s) or ``[S, 4, 4]`` arrays.
        align: ``se3`` | ``sim3`` | ``scale`` | ``none``.
    Returns:
        :func:`error_stats` in metres plus ``scale`` of the alignment.
    Raises:
        DataError: see :func:`paired_poses`, :func:`align`.
    """
    P, Q = paired_poses(est, ref, max_diff)
    aligned, _, s = _align(P, Q, align)
    out = error_stats(np.linalg.norm(aligned[:, :3, 3] - Q[:, :3, 3], axis=1))
    out["scale"] = s
    return out


def _pairs_by_path(positions: np.ndarray, delta: float, tol: float, all_pairs: bool) -> tuple[np.ndarray, np.ndarray]:
    """evo ``filters.filter_pairs_by_path`` on ``positions [S, 3]``; returns ``(i [K], j [K])``."""
    steps = np.linalg.norm(positions[:-1] - positions[1:], axis=1)
    if all_pairs:  # evo: argmin_j>i |(d_j - d_i) - delta|, first index on ties, then the tolerance
        dist = np.concatenate(([0.0], np.cumsum(steps)))
        last = len(dist) - 1
        i = np.arange(last)
        k = np.searchsorted(dist, dist[i] + delta, side="left")
        cand = np.clip(k[:, None] + np.arange(-2, 2)[None, :], (i + 1)[:, None], last)
        err = np.abs(dist[cand] - dist[i, None] - delta)
        jc = cand[np.arange(len(i)), np.argmin(err, axis=1)]
        j = np.maximum(np.searchsorted(dist, dist[jc], side="left"), i + 1)  # first of a plateau
        keep = np.abs(dist[j] - dist[i] - delta) <= tol
        return i[keep], j[keep]
    ids, start, n = [0], 0, len(steps)
    while start < n:  # per segment: sequential sums as evo's running total (cumsum is sequential)
        width = 64
        while True:
            cs = np.cumsum(steps[start:start + width])
            hit = np.nonzero(cs >= delta)[0]
            if len(hit) or start + width >= n:
                break
            width *= 4
        if not len(hit):
            break
        start = start + int(hit[0]) + 1
        ids.append(start)
    ids = np.asarray(ids)
    return ids[:-1], ids[1:]


def relative_errors(P: np.ndarray, Q: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """evo's RPE error poses ``E = (Q_i^-1 Q_j)^-1 (P_i^-1 P_j)`` for index pairs; ``[K, 4, 4]``."""
    Q_rel = invert(Q[i]) @ Q[j]
    P_rel = invert(P[i]) @ P[j]
    return invert(Q_rel) @ P_rel


def rpe(est: Trajectory | np.ndarray, ref: Trajectory | np.ndarray, delta: float = 1, delta_unit: str = "frames",
        rot: bool = False, all_pairs: bool = False, align: str = "none", rel_delta_tol: float = 0.1,
        pairs_from_reference: bool = False, max_diff: float = 0.01) -> dict[str, float]:
    """Relative pose error as evo ``RPE`` (pairs chosen on the estimate unless ``pairs_from_reference``).

    Args:
        est, ref: Trajectories (associated by time) or associated ``[S, 4, 4]`` arrays.
        delta: pair distance, in frames (integer) or metres of travelled path (``delta_unit="m"``).
        rot: False → translation part of E (metres); True → rotation angle of E (degrees).
        all_pairs: every start index instead of consecutive segments; ``rel_delta_tol`` is
            the relative path tolerance for metre deltas in that mode.
        align: alignment applied first (SE(3) leaves RPE unchanged; ``sim3`` and ``scale`` do not).
    Returns:
        :func:`error_stats` (metres or degrees).
    Raises:
        DataError: bad delta or unit, no pairs, plus those of :func:`paired_poses`.
    """
    P, Q = paired_poses(est, ref, max_diff)
    P = _align(P, Q, align)[0]
    base = Q if pairs_from_reference else P
    if delta_unit == "frames":
        if delta < 1 or float(delta) != int(delta):
            raise DataError(None, f"RPE delta must be a positive integer number of frames, got {delta}")
        d = int(delta)
        ids = np.arange(len(base) - d) if all_pairs else np.arange(0, len(base), d)
        i, j = (ids, ids + d) if all_pairs else (ids[:-1], ids[1:])
    elif delta_unit == "m":
        if not delta > 0:
            raise DataError(None, f"RPE delta must be > 0 m, got {delta}")
        i, j = _pairs_by_path(base[:, :3, 3], float(delta), float(delta) * rel_delta_tol, all_pairs)
    else:
        raise DataError(None, f"unknown RPE delta unit {delta_unit!r}; use 'frames' or 'm'")
    if len(i) == 0:
        raise DataError(None, f"RPE delta = {delta} ({delta_unit}) gives no pose pairs among {len(base)} poses")
    E = relative_errors(P, Q, i, j)
    if rot:
        err = np.rad2deg(np.linalg.norm(Rotation.from_matrix(E[:, :3, :3]).as_rotvec(), axis=1))
    else:
        err = np.linalg.norm(E[:, :3, 3], axis=1)
    return error_stats(err)


def kitti_errors(est: Trajectory | np.ndarray, ref: Trajectory | np.ndarray,
                 lengths: tuple[float, ...] = KITTI_LENGTHS, step: int = 10, max_diff: float = 0.01) -> dict:
    """KITTI odometry drift as the devkit's ``evaluate_odometry.cpp`` computes it.

    Every ``step`` frames and for each length L, the segment ends at the first frame whose
    reference path distance exceeds L; errors of ``(ΔP)^-1 ΔQ`` are divided by L and averaged
    over all segments. When the path is too short for any L (under 100 m), the lengths become
    ``(0.1, 0.2, ..., 0.8) × total path`` — the same spread relative to a 1 km route —
    so short runs still get a number; ``lengths_m`` in the result says which were used.

    Returns:
        ``trans_pct`` (%), ``rot_deg_per_100m``, ``n_segments``, ``lengths_m`` (tuple);
        NaN errors when the path is shorter than 1 mm or there are fewer than 2 poses.
    Raises:
        DataError: see :func:`paired_poses`.
    """
    P, Q = paired_poses(est, ref, max_diff)
    dist = np.concatenate(([0.0], np.cumsum(np.linalg.norm(np.diff(Q[:, :3, 3], axis=0), axis=1))))
    nan = {"trans_pct": math.nan, "rot_deg_per_100m": math.nan, "n_segments": 0, "lengths_m": ()}
    if len(P) < 2 or dist[-1] < 1e-3:
        return nan
    first = np.arange(0, len(P), step)
    lens = np.asarray(lengths, dtype=np.float64)
    if not np.any(dist[-1] > dist[first, None] + lens[None, :]):
        lens = dist[-1] * np.arange(1, 9) / 10.0
    f = np.repeat(first, len(lens))
    L = np.tile(lens, len(first))
    last = np.searchsorted(dist, dist[f] + L, side="right")  # first frame with dist > dist[f] + L
    ok = last < len(dist)
    f, L, last = f[ok], L[ok], last[ok]
    if len(f) == 0:
        return nan
    E = invert(relative_errors(P, Q, f, last))  # (ΔP)^-1 ΔQ, the devkit's pose_error
    r = np.arccos(np.clip(0.5 * (np.trace(E[:, :3, :3], axis1=1, axis2=2) - 1.0), -1.0, 1.0))
    t = np.linalg.norm(E[:, :3, 3], axis=1)
    return {"trans_pct": float(np.mean(t / L) * 100.0), "rot_deg_per_100m": float(np.degrees(np.mean(r / L)) * 100.0),
            "n_segments": int(len(f)), "lengths_m": tuple(float(x) for x in lens)}


# --- depth -------------------------------------------------------------------------------------

def depth_errors(pred: np.ndarray, gt: np.ndarray, max_depth: float | None = None) -> dict[str, float]:
    """Standard depth errors over pixels with valid ground truth (``gt > 0``, finite, ``≤ max_depth``).

    Args:
        pred, gt: ``[..., H, W]`` float depth in metres, 0 = no value.
    Returns:
        ``absrel``, ``sqrel`` (m), ``rmse`` (m), ``delta1`` (fraction with max(p/g, g/p) < 1.25),
        ``coverage`` (fraction of valid-gt pixels with a valid prediction) and ``n`` (pixels scored:
        valid gt and valid prediction). NaN errors when nothing is scored.
    Raises:
        DataError: shapes differ.
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise DataError(None, f"depth prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    valid_gt = np.isfinite(gt) & (gt > 0) & ((gt <= max_depth) if max_depth else True)
    m = valid_gt & np.isfinite(pred) & (pred > 0)
    n_gt = int(valid_gt.sum())
    if not m.any():
        return {"absrel": math.nan, "sqrel": math.nan, "rmse": math.nan, "delta1": math.nan,
                "coverage": 0.0, "n": 0}
    p, g = pred[m], gt[m]
    d = p - g
    return {"absrel": float(np.mean(np.abs(d) / g)), "sqrel": float(np.mean(d ** 2 / g)),
            "rmse": float(np.sqrt(np.mean(d ** 2))), "delta1": float(np.mean(np.maximum(p / g, g / p) < 1.25)),
            "coverage": int(m.sum()) / n_gt, "n": int(m.sum())}


# --- semantics / occupancy / dynamics ----------------------------------------------------------

def iou(pred: np.ndarray, gt: np.ndarray, num_classes: int,
        ignore_index: int | None = None) -> tuple[np.ndarray, float]:
    """Per-class IoU from the confusion matrix, and their mean over classes present.

    Args:
        pred, gt: integer labels ``[...]`` of one shape (values outside ``[0, num_classes)`` in gt are ignored).
        ignore_index: a gt label left out of scoring (e.g. 0, unlabeled); its IoU is NaN.
    Returns:
        ``per_class [num_classes]`` float64 (NaN for classes in neither pred nor gt),
        ``miou`` (nanmean; NaN when no class is present).
    Raises:
        DataError: shapes differ.
    """
    pred, gt = np.asarray(pred).reshape(-1).astype(np.int64), np.asarray(gt).reshape(-1).astype(np.int64)
    if pred.shape != gt.shape:
        raise DataError(None, f"label prediction ({pred.size}) and ground truth ({gt.size}) differ in size")
    keep = (gt >= 0) & (gt < num_classes) & (pred >= 0) & (pred < num_classes)
    if ignore_index is not None:
        keep &= gt != ignore_index
    conf = np.bincount(gt[keep] * num_classes + pred[keep], minlength=num_classes ** 2).reshape(num_classes, num_classes)
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(union > 0, tp / union, np.nan)
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        per_class[ignore_index] = np.nan
    miou = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else math.nan
    return per_class, miou


def binary_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two boolean masks ``[...]`` (e.g. dynamic points); NaN when both are empty.

    Raises:
        DataError: shapes differ.
    """
    pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if pred.shape != gt.shape:
        raise DataError(None, f"mask prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    union = int(np.count_nonzero(pred | gt))
    return int(np.count_nonzero(pred & gt)) / union if union else math.nan


__all__ = ["KITTI_LENGTHS", "ALIGN_MODES", "error_stats", "associate", "umeyama_alignment", "align", "paired_poses",
           "ate", "rpe", "relative_errors", "kitti_errors", "depth_errors", "iou", "binary_iou"]
