"""Map metrics against ground-truth maps (``Sequence.gt_maps``), and the run evaluator.

Keys (registered with :func:`fuse4d.evaluation.register_run_evaluator`):

* ``occ_iou``: IoU of occupied voxels over the *observed* voxels (known to the map:
  log-odds ≠ 0) inside the ground-truth grid;
* ``occ_miou``: mean over classes 1..9 present in the ground truth's observed voxels of
  the per-class IoU over the same voxels (a free voxel has class 0), with the labels the
  run used (model or geometric);
* ``ghost_ratio``: occupied map voxels in ground-truth free space with no
  ground-truth occupied voxel among their 26 neighbours (floating voxels: trails of
  moving objects), over all occupied observed voxels;
* ``elev_rmse_m``: height RMSE over observed cells that are traversable in the
  ground truth (the traversability rule applied to the true heights and classes;
  without true classes, cells the map labels ground);
* ``trav_agreement``: fraction of observed cells whose traversability equals the
  ground truth's.

Map and ground truth are compared cell by cell: each map voxel/cell is looked up in
the ground-truth grid at its centre. This is exact when both share the lattice (the
synthetic ground truth and ``MapBuilder`` both put corners on multiples of the resolution
from the world origin, so a run on ground-truth poses is compared exactly); on another
lattice (estimated poses, a real log's raster) the nearest-centre lookup is an
approximation whose size ``occ_lattice_offset_m`` reports. A run's maps are first moved into the ground-truth world
by the trajectory alignment of its ATE (``align``, se3 by default): with estimated
poses the run's world is the odometry's, not the log's.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from fuse4d.data.classes import GROUND, NUM_CLASSES
from fuse4d.mapping.elevation import traversability

log = logging.getLogger(__name__)


def _gt_index(centres: np.ndarray, origin: np.ndarray, res: float, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    idx = np.floor((centres - np.asarray(origin, np.float64)) / res).astype(np.int64)
    ok = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)
    return idx, ok


def _apply(T: np.ndarray | None, p: np.ndarray) -> np.ndarray:
    return p if T is None else p @ np.asarray(T)[:3, :3].T + np.asarray(T)[:3, 3]


def occupancy_metrics(occ: dict, gt: dict, T_gt_map: np.ndarray | None = None) -> dict[str, float]:
    """``occ_iou``, ``occ_miou``, ``ghost_ratio``, ``occ_observed_voxels`` of a map.

    Args:
        occ: ``ijk [N, 3]``, ``log_odds [N]``, ``labels [N]``, ``origin [3]``, ``resolution``,
            optional ``threshold`` (default 0), as :meth:`MapBuilder.finish` returns.
        gt: ``labels [X, Y, Z]`` uint8 (0 free), ``origin [3]``, ``resolution``.
        T_gt_map: ``[4, 4]`` map world → ground-truth world (None = the same frame); each
            map voxel is then compared with the ground-truth voxel holding its moved centre.
    """
    from scipy.ndimage import binary_dilation
    res = float(occ["resolution"])
    centres = _apply(T_gt_map, np.asarray(occ["origin"], np.float64) + (np.asarray(occ["ijk"], np.float64) + 0.5) * res)
    labels_gt = np.asarray(gt["labels"])
    idx, ok = _gt_index(centres, gt["origin"], float(gt["resolution"]), labels_gt.shape)
    idx = idx[ok]
    shift = (_apply(T_gt_map, np.asarray(occ["origin"], np.float64)[None])[0] - np.asarray(gt["origin"], np.float64)) \
        / float(gt["resolution"])
    offset = float(np.abs(shift - np.round(shift)).max()) * float(gt["resolution"])
    lo = np.asarray(occ["log_odds"], np.float32)[ok]
    pred_occ = lo > float(occ.get("threshold", 0.0))
    observed = lo != 0
    g = labels_gt[tuple(idx.T)]
    gt_occ = g > 0
    inter = np.count_nonzero(pred_occ & gt_occ & observed)
    union = np.count_nonzero((pred_occ | gt_occ) & observed)
    pred_lab = np.where(pred_occ, np.asarray(occ["labels"])[ok], 0)
    from fuse4d.metrics import iou
    per_class, _ = iou(pred_lab[observed], g[observed], NUM_CLASSES)
    # the mean runs over the classes the ground truth has here: a class absent from it would
    # score 0 for any stray vote (those votes already cost the true class its IoU)
    present = np.bincount(g[observed].astype(np.int64), minlength=NUM_CLASSES)[:NUM_CLASSES] > 0
    cls = np.where(present, per_class, np.nan)[1:]
    near = binary_dilation(labels_gt > 0, structure=np.ones((3, 3, 3), bool))
    ghost = pred_occ & observed & ~near[tuple(idx.T)]
    n_occ = np.count_nonzero(pred_occ & observed)
    return {"occ_iou": inter / union if union else math.nan,
            "occ_miou": float(np.nanmean(cls)) if np.isfinite(cls).any() else math.nan,
            "ghost_ratio": float(np.count_nonzero(ghost) / n_occ) if n_occ else math.nan,
            "occ_observed_voxels": int(np.count_nonzero(observed)),
            # > 0: the map's lattice is not the ground truth's (estimated poses, other conventions);
            # voxels are then compared by their centres and the scores drop
            "occ_lattice_offset_m": offset}


def elevation_metrics(el: dict, gt: dict, max_slope_deg: float = 20.0, max_step: float = 0.25,
                      max_roughness: float = 0.1, T_gt_map: np.ndarray | None = None) -> dict[str, float]:
    """``elev_rmse_m``, ``trav_agreement``, ``elev_observed_cells`` of an elevation map.

    Args:
        el: ``height``, ``traversable``, ``semantics`` ``[H, W]``, ``origin [2]``, ``resolution``.
        gt: ``height [X, Y]`` (NaN unknown), optional ``semantics``, ``origin [2]``, ``resolution``.
        max_slope_deg, max_step, max_roughness: the traversability rule for the ground truth.
        T_gt_map: ``[4, 4]`` map world → ground-truth world (None = the same frame): cell centres
            at their heights are moved, then looked up.
    """
    h = np.asarray(el["height"], np.float64).copy()
    res = float(el["resolution"])
    ii, jj = np.nonzero(np.isfinite(h))
    centres = np.asarray(el["origin"], np.float64) + (np.stack([ii, jj], -1) + 0.5) * res
    if T_gt_map is not None:
        moved = _apply(T_gt_map, np.column_stack([centres, h[ii, jj]]))
        centres, h[ii, jj] = moved[:, :2], moved[:, 2]
    gh = np.asarray(gt["height"], np.float64)
    gres = float(gt["resolution"])
    idx, ok = _gt_index(centres, gt["origin"], gres, gh.shape)
    ii, jj, idx = ii[ok], jj[ok], idx[ok]
    gval = gh[tuple(idx.T)]
    fin = np.isfinite(gval)
    ii, jj, idx, gval = ii[fin], jj[fin], idx[fin], gval[fin]
    if "semantics" in gt and gt["semantics"] is not None:
        gtrav = traversability(gh, np.asarray(gt["semantics"]), gres, max_slope_deg, max_step, max_roughness)
        gt_t = gtrav[tuple(idx.T)]
        drivable = gt_t == 1
        ours = np.asarray(el["traversable"])[ii, jj]
        known = ours != 255
        agree = float(np.mean(ours[known] == gt_t[known])) if known.any() else math.nan
    else:
        drivable = np.isin(np.asarray(el["semantics"])[ii, jj], GROUND)
        agree = math.nan
    err = h[ii, jj][drivable] - gval[drivable]
    return {"elev_rmse_m": float(np.sqrt(np.mean(err ** 2))) if len(err) else math.nan,
            "trav_agreement": agree, "elev_observed_cells": int(len(ii))}


def evaluate_maps(maps: dict, gt_maps: dict | None, config=None, T_gt_map: np.ndarray | None = None) -> dict[str, float]:
    """Every map metric the ground truth allows (``{}`` without ground truth).

    Args:
        maps: ``{"occupancy": ..., "elevation": ...}`` as :meth:`MapBuilder.finish` returns
            or :func:`read_maps` reads.
        gt_maps: ``Sequence.gt_maps``. config: :class:`MappingConfig` for the traversability rule.
        T_gt_map: ``[4, 4]`` map world → ground-truth world (None = the same frame).
    """
    from fuse4d.mapping.config import MappingConfig
    cfg = config or MappingConfig()
    out: dict[str, float] = {}
    gt_maps = gt_maps or {}
    if "occupancy" in gt_maps and maps.get("occupancy") is not None:
        out.update(occupancy_metrics(maps["occupancy"], gt_maps["occupancy"], T_gt_map))
    if "elevation" in gt_maps and maps.get("elevation") is not None:
        out.update(elevation_metrics(maps["elevation"], gt_maps["elevation"], cfg.max_slope_deg, cfg.max_step,
                                     cfg.max_roughness, T_gt_map))
    return out


def read_maps(store) -> dict:
    """``{"occupancy": ..., "elevation": ...}`` from a :class:`~fuse4d.store.RunStore` (attrs merged in)."""
    out = {}
    for name in ("occupancy", "elevation"):
        key = f"maps/{name}"
        if key in store:
            out[name] = {**store.read(key), **store.attrs(key)}
    return out


def _register() -> None:
    from fuse4d.evaluation import register_run_evaluator

    @register_run_evaluator
    def map_evaluator(run_dir: Path, align: str = "se3") -> dict:
        """Map metrics of ``run_dir/run.zarr`` against its source log's ground-truth maps."""
        from fuse4d.fusion.evaluation import open_source  # the run's source log (path or synthetic:<scenario>:<seed>)
        from fuse4d.mapping.config import MappingConfig
        from fuse4d.store import RunStore
        path = Path(run_dir) / "run.zarr"
        if not path.exists():
            return {}
        store = RunStore.open(path)
        maps = read_maps(store)
        if not maps:
            return {}
        seq = open_source(store.meta, store.n_frames)
        if seq is None or not seq.gt_maps:
            return {}
        cfg = store.meta.get("config", {}).get("mapping") or {}
        config = None
        if isinstance(cfg, dict):  # a run written by another version may hold settings this one lacks
            config, dropped = MappingConfig.from_saved(cfg)
            if dropped:
                log.warning("%s: mapping settings unknown to this version left out: %s", path, ", ".join(dropped))
        return evaluate_maps(maps, seq.gt_maps, config, _run_to_gt(store, seq, align))


def _run_to_gt(store, seq, align: str) -> np.ndarray | None:
    """``[4, 4]`` run world → the log's ground-truth world: the trajectory alignment of the ATE
    (``align`` se3/sim3 over the run's poses against the log's), None when there is nothing to align."""
    from fuse4d.fusion.evaluation import source_indices
    from fuse4d.metrics import align as align_poses
    if align == "none" or seq.gt_poses is None or "poses" not in store:
        return None
    P = np.asarray(store.read("poses"), np.float64)
    idx = source_indices(store, seq)[:len(P)]
    G = np.asarray(seq.gt_poses, np.float64)
    ok = (idx >= 0) & np.isfinite(P).all((1, 2))
    ok[ok] &= np.isfinite(G[idx[ok]]).all((1, 2))
    if ok.sum() < 3:
        return None
    try:
        return align_poses(P[ok], G[idx[ok]], "se3" if align == "scale" else align)[1]
    except Exception:  # degenerate positions (a standing sensor): compare in the run's frame
        return None


_register()
