"""Evaluate an estimated trajectory (and, later, maps) against ground truth.

Two entry points, used by ``fuse4d eval``:

- :func:`evaluate_files` compares two trajectory files (TUM, KITTI, EuRoC);
- :func:`evaluate_run` evaluates a run folder (``trajectory.txt`` against
  ``groundtruth.txt``, both TUM) by running every function in
  :data:`RUN_EVALUATORS` and merging their flat dicts. Other capabilities add
  their metrics (``depth_absrel``, ``sem_miou``, ...) with
  :func:`register_run_evaluator`.

Metric keys carry their unit (``_m``, ``_deg``, ``_pct``). The numbers are
evo's (see :mod:`fuse4d.metrics`): ``evo_ape -a`` for ATE, ``evo_rpe`` with
delta 1 frame for RPE, and the KITTI devkit for the drift percentages.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np

from fuse4d import metrics
from fuse4d.data.trajectory import Trajectory, guess_format, read_kitti, read_trajectory
from fuse4d.errors import ConfigError, DataError

#: ``fn(run_dir, align) -> {key: value}``; evaluate_run merges the results of all, in order.
#: ``align`` is the trajectory alignment asked for; evaluators that do not align ignore it.
RunEvaluator = Callable[[Path, str], dict]
RUN_EVALUATORS: list[RunEvaluator] = []

#: modules whose import registers more run evaluators (model outputs, maps, dynamics);
#: :func:`evaluate_run` imports those that exist, so each capability owns its metrics.
EVALUATOR_MODULES = ("fuse4d.fusion.evaluation", "fuse4d.mapping.evaluation", "fuse4d.dynamics.evaluation")


def _load_evaluator_modules() -> None:
    import importlib
    for name in EVALUATOR_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:  # the module exists but something it imports does not
                raise


def register_run_evaluator(fn: RunEvaluator) -> RunEvaluator:
    """Add ``fn(run_dir, align) -> dict`` to the evaluators :func:`evaluate_run` calls (usable as a decorator)."""
    if fn not in RUN_EVALUATORS:
        RUN_EVALUATORS.append(fn)
    return fn


def _pair(est: Trajectory, ref: Trajectory, by_index: bool, max_diff: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices pairing est and ref: by index (equal lengths) or by evo's time association."""
    if by_index:
        if len(est) != len(ref):
            raise DataError(None, f"{len(est)} estimated poses but {len(ref)} reference poses, and without "
                                  "timestamps they can only be paired by index; pass a KITTI times file")
        return np.arange(len(est)), np.arange(len(ref))
    return metrics.associate(est.t, ref.t, max_diff)


def trajectory_errors(est: Trajectory, ref: Trajectory, align: str = "se3", max_diff: float = 0.01,
                      by_index: bool = False) -> tuple[dict, np.ndarray, np.ndarray]:
    """Trajectory metrics plus the per-pose ATE.

    Args:
        est, ref: trajectories; paired by time (evo's association within ``max_diff`` s) or,
            with ``by_index``, one to one.
        align: ``se3`` | ``sim3`` | ``scale`` | ``none`` (RPE and KITTI drift use the aligned
            estimate too: the same as unaligned for se3, scale-corrected for sim3/scale).
    Returns:
        (metrics dict as :func:`evaluate_files`, ``ate [K]`` metres per paired pose,
        ``i_ref [K]`` the reference indices of those poses).
    Raises:
        ConfigError: unknown ``align``. DataError (no path): no pairs, degenerate alignment.
    """
    if align not in metrics.ALIGN_MODES:
        raise ConfigError(f"unknown alignment {align!r}; use one of {', '.join(metrics.ALIGN_MODES)}")
    i_est, i_ref = _pair(est, ref, by_index, max_diff)
    Q = ref.poses[i_ref]
    align_mode = align
    if len(Q) < 2:
        raise DataError(None, f"degenerate point set ({len(Q)} paired pose): at least 2 are needed to compare trajectories")
    if align in ("se3", "sim3") and len(Q) < 3:
        # Umeyama needs 3 non-collinear positions; with fewer, anchor the first pose instead
        align_mode = "first_pose"
        P = (Q[0] @ np.linalg.inv(est.poses[i_est][0])) @ est.poses[i_est]
        scale = 1.0
    else:
        P, _, scale = metrics.align(est.poses[i_est], Q, align)
    err = np.linalg.norm(P[:, :3, 3] - Q[:, :3, 3], axis=1)
    a = metrics.error_stats(err)
    path = float(np.linalg.norm(np.diff(Q[:, :3, 3], axis=0), axis=1).sum())
    nan_rpe = {"rmse": math.nan, "mean": math.nan}
    rt = metrics.rpe(P, Q, 1, "frames") if len(P) > 1 else nan_rpe
    rr = metrics.rpe(P, Q, 1, "frames", rot=True) if len(P) > 1 else nan_rpe
    kitti = metrics.kitti_errors(P, Q)
    out = {
        "ate_rmse_m": a["rmse"], "ate_mean_m": a["mean"], "ate_median_m": a["median"],
        "ate_std_m": a["std"], "ate_max_m": a["max"],
        "rpe_trans_rmse_m": rt["rmse"], "rpe_trans_mean_m": rt["mean"],
        "rpe_rot_rmse_deg": rr["rmse"], "rpe_rot_mean_deg": rr["mean"],
        "kitti_trans_pct": kitti["trans_pct"], "kitti_rot_deg_per_100m": kitti["rot_deg_per_100m"],
        "n_poses": int(len(P)), "n_est": len(est), "n_ref": len(ref),
        "path_length_m": path, "ate_pct_of_path": 100.0 * a["rmse"] / path if path > 0 else math.nan,
        "align_scale": float(scale),
    }
    if align_mode != align:
        out["align_mode"] = align_mode
    return out, err, i_ref


def _read(path: Path, fmt: str | None, times: str | Path | None) -> tuple[Trajectory, bool]:
    """Read a trajectory file; returns it and whether its stamps are real (KITTI without times: not)."""
    fmt = fmt or guess_format(path)
    if fmt == "kitti":
        return read_kitti(path, times), times is not None
    return read_trajectory(path, fmt), True


def evaluate_files(est_path: str | Path, ref_path: str | Path, align: str = "se3", est_format: str | None = None,
                   ref_format: str | None = None, max_diff: float = 0.01, est_times: str | Path | None = None,
                   ref_times: str | Path | None = None) -> dict:
    """Compare an estimated trajectory file with a reference file.

    Formats (``tum``, ``kitti``, ``euroc``) are guessed when None. KITTI files have no stamps:
    they are paired by index when both lack stamps or when one does and the counts match;
    ``est_times`` / ``ref_times`` (KITTI ``times.txt``) give them stamps.

    Returns:
        flat dict: ``ate_rmse_m``, ``ate_mean_m``, ``ate_median_m``, ``ate_std_m``, ``ate_max_m``,
        ``rpe_trans_rmse_m``, ``rpe_trans_mean_m``, ``rpe_rot_rmse_deg``, ``rpe_rot_mean_deg``
        (delta 1 frame), ``kitti_trans_pct``, ``kitti_rot_deg_per_100m``, ``n_poses`` (paired),
        ``n_est``, ``n_ref``, ``path_length_m`` (reference, paired poses), ``ate_pct_of_path``,
        ``align_scale``.
    Raises:
        DataError: naming the estimate file (or the file at fault) for unreadable, empty,
            unmatched or degenerate input. ConfigError: unknown ``align``.
    """
    est_path, ref_path = Path(est_path), Path(ref_path)
    est, est_stamped = _read(est_path, est_format, est_times)
    ref, ref_stamped = _read(ref_path, ref_format, ref_times)
    try:
        return trajectory_errors(est, ref, align, max_diff, by_index=not (est_stamped and ref_stamped))[0]
    except DataError as e:
        if e.path is not None:
            raise
        raise DataError(est_path, f"{e.problem} (reference: {ref_path})") from None


def _run_files(run_dir: Path) -> tuple[Path, Path]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(run_dir, "run folder not found")
    gt = run_dir / "groundtruth.txt"
    if not gt.is_file():
        raise DataError(run_dir, "no ground truth (groundtruth.txt) in the run folder: the input had none, "
                                 "so there is nothing to evaluate against")
    return run_dir / "trajectory.txt", gt


@register_run_evaluator
def trajectory_evaluator(run_dir: Path, align: str = "se3") -> dict:
    """Metrics of ``trajectory.txt`` against ``groundtruth.txt``, as :func:`evaluate_files`."""
    est, gt = _run_files(run_dir)
    return evaluate_files(est, gt, align, "tum", "tum")


@register_run_evaluator
def degradation_evaluator(run_dir: Path, align: str = "se3") -> dict:
    """``ate_rmse_m@<name>`` and ``n_poses@<name>`` per span of ``degradations.json``.

    Spans are ``[{"name", "start", "stop"}]`` frame indices of the run (stop exclusive, as
    ``Sequence.degradations``); frame k is the k-th distinct stamp of ``trajectory.txt`` and
    ``groundtruth.txt`` together (exact unless a frame has neither). A span may instead give
    ``t_start``/``t_stop`` in seconds (inclusive), which take precedence. The ATE comes from the
    globally aligned trajectory, restricted to the poses in the span; spans sharing a name are
    merged; NaN for a span holding no pose. Nothing when the file is absent.

    Raises:
        DataError: malformed ``degradations.json``.
    """
    path = Path(run_dir) / "degradations.json"
    if not path.is_file():
        return {}
    est_path, gt_path = _run_files(run_dir)
    est, ref = _read(est_path, "tum", None)[0], _read(gt_path, "tum", None)[0]
    frame_t = np.unique(np.concatenate([est.t, ref.t]))
    try:
        spans = [(str(s["name"]), *_span_seconds(s, frame_t)) for s in json.loads(path.read_text())]
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise DataError(path, f"expected a JSON list of {{'name', 'start', 'stop'}} objects: {e!r}") from None
    try:
        _, err, i_ref = trajectory_errors(est, ref, align)
    except DataError as e:
        raise DataError(est_path, f"{e.problem} (reference: {gt_path})") from None
    t = ref.t[i_ref]
    out = {}
    for name in dict.fromkeys(n for n, _, _ in spans):
        inside = np.zeros(len(t), dtype=bool)
        for _, start, stop in (s for s in spans if s[0] == name):
            inside |= (t >= start) & (t <= stop)
        out[f"ate_rmse_m@{name}"] = math.sqrt(np.mean(err[inside] ** 2)) if inside.any() else math.nan
        out[f"n_poses@{name}"] = int(inside.sum())
    return out


def _span_seconds(span: dict, frame_t: np.ndarray) -> tuple[float, float]:
    """``(t_start, t_stop)`` seconds, inclusive, of a degradation span (see :func:`degradation_evaluator`)."""
    if "t_start" in span:
        return float(span["t_start"]), float(span["t_stop"])
    start, stop = int(span["start"]), min(int(span["stop"]), len(frame_t))
    if start >= stop:
        return math.inf, -math.inf  # empty: holds no pose
    return float(frame_t[start]), float(frame_t[stop - 1])


def evaluate_run(run_dir: str | Path, align: str = "se3") -> dict:
    """Evaluate a run folder: every registered evaluator's keys merged into one flat dict.

    Args:
        run_dir: folder with ``trajectory.txt`` and ``groundtruth.txt`` (TUM).
        align: trajectory alignment, ``se3`` | ``sim3`` | ``scale`` | ``none``.
    Raises:
        DataError: ``run_dir`` missing, no ``groundtruth.txt`` in it, or bad files inside.
        ConfigError: unknown ``align``.
    """
    run_dir = Path(run_dir)
    _run_files(run_dir)
    _load_evaluator_modules()
    out: dict = {}
    for fn in RUN_EVALUATORS:
        out.update(fn(run_dir, align))
    return out


def _fmt(v: object) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else str(v)
    return f"{v:.4f}" if abs(v) >= 1000 else f"{v:.6g}"


def format_table(metrics: dict, title: str = "fuse4d evaluation") -> str:
    """Plain-text two-column table of a flat metrics dict (keys in their given order).

    Returns:
        the table as one string (no trailing newline).
    """
    rows = [(str(k), _fmt(v)) for k, v in metrics.items()]
    kw = max([len("metric")] + [len(k) for k, _ in rows])
    vw = max([len("value")] + [len(v) for _, v in rows])
    lines = [title, f"{'metric':<{kw}}  {'value':>{vw}}", f"{'-' * kw}  {'-' * vw}"]
    lines += [f"{k:<{kw}}  {v:>{vw}}" for k, v in rows]
    return "\n".join(lines)


__all__ = ["RUN_EVALUATORS", "register_run_evaluator", "trajectory_errors", "evaluate_files", "evaluate_run",
           "trajectory_evaluator", "degradation_evaluator", "format_table"]
