"""Metrics of the fusion model's outputs in a run store, against the run's source log.

Registered with :func:`fuse4d.evaluation.register_run_evaluator`, so
``fuse4d eval RUN --json`` reports, when the run holds the array and the
source log has the ground truth (keys are absent otherwise):

- ``depth_absrel``: ``frames/depth`` vs the log's ground-truth ``Frame.depth``, pooled over
  pixels (not on RGB-D logs: there ``Frame.depth`` is a sensor input, kept in the output);
  ``depth_absrel_lidar``: vs the LiDAR points projected into the camera (real logs);
- ``sem_miou`` / ``sem_miou_points``: ``frames/semantics`` / ``lidar/semantics`` vs
  ``Frame.semantics`` / ``Frame.point_semantics`` (class 0 = unlabeled not scored);
- ``dyn_iou_pixels`` / ``dyn_iou_points``: ``frames/dynamic`` / ``lidar/dynamic`` > 0.5
  vs ``Frame.dynamic_mask`` / ``Frame.point_dynamic``;
- ``net_rpe_trans_m`` / ``net_rpe_rot_deg``: RMSE of ``net/T_prev_cur`` against the
  ground-truth relative body motion between consecutive run frames;
- ``gate_<rgb|lidar|imu>_<clean|span>``: mean ``gates`` weight per modality over the
  frames outside every degraded span and over each span present (``camera_dark``,
  ``lidar_dropout``, ``imu_burst``, ...: ``degradations.json`` of the run folder, else
  the source's ``seq.degradations``).

Every statistic is pooled over all scored pixels/points/frames of the run, not
averaged per frame.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np

from fuse4d import metrics
from fuse4d.data.classes import NUM_CLASSES
from fuse4d.data.prediction import GATE_MODALITIES
from fuse4d.data.types import Sequence
from fuse4d.errors import DataError
from fuse4d.evaluation import register_run_evaluator
from fuse4d.geometry import invert, rotation_angle

log = logging.getLogger(__name__)

def open_source(meta: dict, n_frames: int) -> Sequence | None:
    """The run's source log from its store ``meta``, or None when it cannot be found.

    ``meta["source_path"]`` or ``meta["source"]`` naming a readable path is opened
    with ``load_sequence``; ``synthetic:<scenario>:<seed>`` is synthesised again
    (enough frames to cover the run's ``data`` selection).
    """
    from fuse4d.data.registry import load_sequence

    for key in ("source_path", "source"):
        src = meta.get(key)
        if src and not str(src).startswith("synthetic:") and Path(src).expanduser().exists():
            return load_sequence(Path(src).expanduser())
    m = re.fullmatch(r"synthetic:(\w+):(\d+)", str(meta.get("source", "")))
    if m:
        from fuse4d.data.synthetic import synthesize
        data = (meta.get("config") or {}).get("data") or {}
        start, step = int(data.get("start") or 0), int(data.get("step") or 1)
        frames = data.get("stop") or start + step * n_frames
        return synthesize(seed=int(m.group(2)), frames=int(frames), scenario=m.group(1))
    return None


def source_indices(store, seq: Sequence) -> np.ndarray:
    """``[S]`` position in ``seq`` of each run frame (-1 = not found).

    Matched by timestamp (within 1 ms) where the run wrote them, else by the run
    config's ``data`` selection ``seq[start:stop:step]``.
    """
    n = store.n_frames
    t_run = store.read("timestamps") if "timestamps" in store else np.full(n, np.nan)
    data = (store.meta.get("config") or {}).get("data") or {}
    by_config = np.arange(len(seq))[int(data.get("start") or 0):data.get("stop"):int(data.get("step") or 1)]
    out = np.full(n, -1, np.int64)
    out[:min(n, len(by_config))] = by_config[:n]
    t_src = seq.timestamps
    ok = np.isfinite(t_run)
    if ok.any() and len(t_src):
        j = np.clip(np.searchsorted(t_src, t_run[ok]), 1, len(t_src) - 1) if len(t_src) > 1 else np.zeros(ok.sum(), int)
        if len(t_src) > 1:
            j = np.where(np.abs(t_src[j - 1] - t_run[ok]) <= np.abs(t_src[j] - t_run[ok]), j - 1, j)
        out[ok] = np.where(np.abs(t_src[j] - t_run[ok]) <= 1e-3, j, -1)
    return out


def _resize_nearest(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resample of ``a [h, w]`` to ``hw``."""
    if a.shape == tuple(hw):
        return a
    r = (np.arange(hw[0]) * a.shape[0] // hw[0])
    c = (np.arange(hw[1]) * a.shape[1] // hw[1])
    return a[r][:, c]


def _confusion(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``[C, C]`` counts (row gt, column pred) over labelled ground truth (class 0 skipped)."""
    gt, pred = np.asarray(gt).reshape(-1).astype(np.int64), np.asarray(pred).reshape(-1).astype(np.int64)
    keep = (gt > 0) & (gt < NUM_CLASSES) & (pred >= 0) & (pred < NUM_CLASSES)
    return np.bincount(gt[keep] * NUM_CLASSES + pred[keep], minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)


def miou_from_confusion(conf: np.ndarray) -> float:
    """Mean IoU over classes present in prediction or ground truth (class 0 excluded), as ``metrics.iou``."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    present = union[1:] > 0
    return float(np.mean(tp[1:][present] / union[1:][present])) if present.any() else math.nan


class _Pool:
    """Running pooled statistics of the evaluator."""

    def __init__(self) -> None:
        self.absrel = {"depth_absrel": [0.0, 0], "depth_absrel_lidar": [0.0, 0]}
        self.conf = {"sem_miou": None, "sem_miou_points": None}
        self.bin: dict[str, list[int]] = {}

    def depth(self, key: str, pred: np.ndarray, gt: np.ndarray) -> None:
        e = metrics.depth_errors(_resize_nearest(pred, gt.shape), gt)
        if e["n"]:
            self.absrel[key][0] += e["absrel"] * e["n"]
            self.absrel[key][1] += e["n"]

    def labels(self, key: str, pred: np.ndarray, gt: np.ndarray) -> None:
        c = _confusion(pred, gt)
        self.conf[key] = c if self.conf[key] is None else self.conf[key] + c

    def mask(self, key: str, pred: np.ndarray, gt: np.ndarray) -> None:
        pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
        self.bin.setdefault(key, [0, 0])
        self.bin[key][0] += int(np.count_nonzero(pred & gt))
        self.bin[key][1] += int(np.count_nonzero(pred | gt))

    def result(self) -> dict:
        out = {k: s / n for k, (s, n) in self.absrel.items() if n}
        out.update({k: miou_from_confusion(c) for k, c in self.conf.items() if c is not None and c.sum()})
        out.update({k: (i / u if u else math.nan) for k, (i, u) in self.bin.items()})
        return out


def _frame_metrics(store, seq: Sequence, idx: np.ndarray) -> dict:
    """Pixel and point metrics over the run frames that map to a source frame."""
    from fuse4d.fusion.sparse_depth import frame_lidar_depth

    root = store.root
    arr = {k: root[k] for k in ("frames/depth", "frames/semantics", "frames/dynamic") if k in store}
    pts = {}
    for name in ("semantics", "dynamic"):
        if "lidar" in root and name in root["lidar"]:
            pts[name] = store.read_points(name)
    pool = _Pool()
    depth_is_gt = not seq.metadata.get("depth_sensor")
    done = store.frames_done or store.n_frames
    for k in range(min(done, len(idx))):
        if idx[k] < 0:
            continue
        f = seq[int(idx[k])]
        if "frames/depth" in arr:
            d = np.asarray(arr["frames/depth"][k], np.float64)
            if f.depth is not None and depth_is_gt:   # a depth camera's depth is the run's own input
                pool.depth("depth_absrel", d, np.asarray(f.depth))
            if not depth_is_gt or f.depth is None:
                gt = frame_lidar_depth(f.points, seq.calibration, d.shape if f.image is None else f.image.shape[:2])
                if gt is not None:
                    pool.depth("depth_absrel_lidar", d, gt)
        if "frames/semantics" in arr and f.semantics is not None:
            pool.labels("sem_miou", _resize_nearest(np.asarray(arr["frames/semantics"][k]), f.semantics.shape),
                        f.semantics)
        if "frames/dynamic" in arr and f.dynamic_mask is not None:
            p = _resize_nearest(np.asarray(arr["frames/dynamic"][k]), f.dynamic_mask.shape)
            pool.mask("dyn_iou_pixels", np.nan_to_num(p) > 0.5, f.dynamic_mask)
        for name, key, gt in (("semantics", "sem_miou_points", f.point_semantics),
                              ("dynamic", "dyn_iou_points", f.point_dynamic)):
            if name not in pts or gt is None or k >= len(pts[name]):
                continue
            p = pts[name][k]
            if len(p) != len(gt):
                raise DataError(store.path, f"lidar/{name}: run frame {k} has {len(p)} points, its source frame "
                                            f"{int(idx[k])} has {len(gt)}: the run does not match its source log")
            if name == "semantics":
                pool.labels(key, p, gt)
            else:
                pool.mask(key, np.nan_to_num(p) > 0.5, gt)
    return pool.result()


def net_pose_errors(T_prev_cur: np.ndarray, gt_poses: np.ndarray) -> dict:
    """RMSE of the network's relative poses against ground truth.

    Args:
        T_prev_cur: ``[S, 4, 4]`` predicted ``T_{body,i-1}^{-1} T_{body,i}`` (row 0 and NaN rows skipped).
        gt_poses: ``[S, 4, 4]`` ground-truth ``T_world_body`` of the same frames (NaN = unknown).
    Returns:
        ``net_rpe_trans_m``, ``net_rpe_rot_deg`` (and ``net_n_pairs``); empty when no pair is scored.
    """
    rel = invert(gt_poses[:-1]) @ gt_poses[1:]
    pred = T_prev_cur[1:]
    ok = np.isfinite(rel).all((1, 2)) & np.isfinite(pred).all((1, 2))
    if not ok.any():
        return {}
    E = invert(rel[ok]) @ pred[ok]
    t = np.linalg.norm(E[:, :3, 3], axis=1)
    r = np.degrees(rotation_angle(E))
    return {"net_rpe_trans_m": float(np.sqrt(np.mean(t ** 2))), "net_rpe_rot_deg": float(np.sqrt(np.mean(r ** 2))),
            "net_n_pairs": int(ok.sum())}


def _spans(run_dir: Path, seq: Sequence | None, idx: np.ndarray | None) -> list[tuple[str, int, int]]:
    """Degraded spans ``(name, start, stop)`` in run frames."""
    path = run_dir / "degradations.json"
    if path.is_file():
        try:
            return [(str(s["name"]), int(s["start"]), int(s["stop"])) for s in json.loads(path.read_text())]
        except (ValueError, TypeError, KeyError) as e:
            raise DataError(path, f"expected a JSON list of {{'name', 'start', 'stop'}} objects: {e!r}") from None
    out = []
    if seq is not None and idx is not None:
        for s in seq.degradations:
            inside = np.flatnonzero((idx >= int(s["start"])) & (idx < int(s["stop"])))
            if len(inside):
                out.append((str(s["name"]), int(inside[0]), int(inside[-1]) + 1))
    return out


def gate_means(gates: np.ndarray, spans: list[tuple[str, int, int]]) -> dict:
    """``gate_<modality>_<clean|span name>``: mean weight per modality (NaN = absent ignored).

    Args:
        gates: ``[S, 3]`` weights for rgb, lidar, imu.
        spans: ``(name, start, stop)`` run-frame spans (stop exclusive); ``clean`` = frames in none.
    Returns:
        keys only for (modality, span) pairs with at least one finite weight.
    """
    n = len(gates)
    masks = {"clean": np.ones(n, bool)}
    for name, a, b in spans:
        masks.setdefault(name, np.zeros(n, bool))[max(a, 0):min(b, n)] = True
        masks["clean"][max(a, 0):min(b, n)] = False
    out = {}
    for name, m in masks.items():
        for c, mod in enumerate(GATE_MODALITIES):
            v = gates[m, c]
            v = v[np.isfinite(v)]
            if len(v):
                out[f"gate_{mod}_{name}"] = float(v.mean())
    return out


def evaluate_store(store, seq: Sequence | None, run_dir: Path | None = None) -> dict:
    """All of this module's metrics for an open ``RunStore`` and its source log (None: gates only)."""
    out: dict = {}
    idx = None if seq is None else source_indices(store, seq)
    if seq is not None:
        out.update(_frame_metrics(store, seq, idx))
        gt = seq.gt_poses
        if "net/T_prev_cur" in store and gt is not None:
            gt_run = np.where((idx >= 0)[:, None, None], gt[np.clip(idx, 0, len(gt) - 1)], np.nan)
            out.update(net_pose_errors(store.read("net/T_prev_cur"), gt_run))
    if "gates" in store:
        out.update(gate_means(store.read("gates"), _spans(Path(run_dir or store.path.parent), seq, idx)))
    return out


@register_run_evaluator
def fusion_evaluator(run_dir: Path, align: str = "se3") -> dict:
    """The fusion model's metrics of ``run_dir/run.zarr`` (see the module docstring); {} without a store."""
    from fuse4d.store import RunStore

    path = Path(run_dir) / "run.zarr"
    if not path.exists():
        return {}
    store = RunStore.open(path)
    if "gates" not in store or not np.isfinite(store.read("gates")).any():
        return {}  # geometric-only run: the model wrote nothing
    try:
        seq = open_source(store.meta, store.n_frames)
    except DataError as e:
        log.warning("fusion metrics without ground truth: cannot read the source log (%s)", e)
        seq = None
    if seq is None:
        log.warning("fusion metrics without ground truth: source %r not found", store.meta.get("source"))
    return evaluate_store(store, seq, Path(run_dir))


__all__ = ["fusion_evaluator", "evaluate_store", "open_source", "source_indices", "net_pose_errors", "gate_means",
           "miou_from_confusion"]
