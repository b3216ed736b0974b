"""Metrics of the dynamics stage in a run store, against the run's source log.

Registered with :func:`fuse4d.evaluation.register_run_evaluator`; keys are absent
when the run or its source lacks what they need:

- ``dyn_iou_points``: ``lidar/dynamic`` > 0.5 vs ``Frame.point_dynamic``, pooled over points;
- ``track_vel_err_mps``: median over track rows of |v − v_gt| (m/s), each row matched to the
  nearest ground-truth box centre (world frame) within 2 m at the same stamp;
  ``track_rows_matched`` the share of rows that found a box;
- ``dyn_iou_pixels_<cue>`` for cue in attention, consistency, head, combined: the camera
  masks ``dynamics/pixel_<cue>`` (probability × 255) > 0.5 vs ``Frame.dynamic_mask``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fuse4d.evaluation import register_run_evaluator

CAMERA_CUES = ("attention", "consistency", "head", "combined")


def box_velocity_errors(table: dict[str, np.ndarray], boxes_at: dict[float, dict[str, np.ndarray]],
                        T_gt_run: np.ndarray | None = None, gate: float = 2.0) -> np.ndarray:
    """|v_track − v_box| (m/s) of each track row matched to a ground-truth box (NaN = unmatched).

    Args:
        table: tracks table (``t``, ``x, y, z``, ``vx, vy, vz``), run world frame.
        boxes_at: ground-truth boxes per stamp (``center [K, 3]``, ``velocity [K, 3]``), GT world frame.
        T_gt_run: ``[4, 4]`` run world → ground-truth world (None = the same frame).
        gate: largest centre distance (m) of a match, in the ground plane.
    Returns:
        ``[R]`` float64 errors per row.
    """
    T = np.eye(4) if T_gt_run is None else np.asarray(T_gt_run, np.float64)
    n = len(table["t"])
    err = np.full(n, np.nan)
    pos = np.stack([table["x"], table["y"], table["z"]], 1) @ T[:3, :3].T + T[:3, 3]
    vel = np.stack([table["vx"], table["vy"], table["vz"]], 1) @ T[:3, :3].T
    stamps = np.array(sorted(boxes_at))
    for r in range(n):  # one row per track and frame: hundreds, not points
        if not len(stamps):
            break
        k = int(np.argmin(np.abs(stamps - table["t"][r])))
        if abs(stamps[k] - table["t"][r]) > 1e-3:
            continue
        b = boxes_at[float(stamps[k])]
        if not len(b["center"]):
            continue
        d = np.linalg.norm(b["center"][:, :2] - pos[r, :2], axis=1)
        j = int(np.argmin(d))
        if d[j] <= gate:
            err[r] = float(np.linalg.norm(vel[r] - b["velocity"][j]))
    return err


@register_run_evaluator
def dynamics_evaluator(run_dir: Path, align: str = "se3") -> dict:
    """``dyn_iou_points``, ``track_vel_err_mps`` and per-cue camera IoUs of a run (see the module)."""
    from fuse4d.fusion.evaluation import open_source, source_indices
    from fuse4d.store import RunStore

    store_path = Path(run_dir) / "run.zarr"
    if not store_path.exists():
        return {}
    store = RunStore.open(store_path)
    have_points = "lidar" in store.root and "dynamic" in store.root["lidar"]
    have_tracks = "dynamics/tracks" in store
    cue_names = [c for c in CAMERA_CUES if f"dynamics/pixel_{c}" in store]
    if not (have_points or have_tracks or cue_names):
        return {}
    seq = open_source(store.meta, store.n_frames)
    if seq is None:
        return {}
    stamps = np.asarray(store.read("timestamps"), np.float64)
    idx = source_indices(store, seq)
    pts = store.read_points("dynamic") if have_points else []
    cues = {c: store.root[f"dynamics/pixel_{c}"] for c in cue_names}
    inter = {k: 0 for k in ["points", *cue_names]}
    union = dict(inter)
    boxes_at: dict[float, dict] = {}
    for k in range(min(store.frames_done or store.n_frames, len(idx))):
        if idx[k] < 0:
            continue
        f = seq[int(idx[k])]
        if have_points and f.point_dynamic is not None and k < len(pts) and len(pts[k]) == len(f.point_dynamic):
            p, g = np.nan_to_num(pts[k]) > 0.5, np.asarray(f.point_dynamic, bool)
            inter["points"] += int((p & g).sum())
            union["points"] += int((p | g).sum())
        if f.dynamic_mask is not None:
            for c in cue_names:
                m = np.asarray(cues[c][k])
                if m.shape == f.dynamic_mask.shape:
                    p, g = m > 127, np.asarray(f.dynamic_mask, bool)
                    inter[c] += int((p & g).sum())
                    union[c] += int((p | g).sum())
        if have_tracks and f.boxes is not None:
            boxes_at[float(stamps[k])] = f.boxes
    out: dict = {}
    if union["points"]:
        out["dyn_iou_points"] = inter["points"] / union["points"]
    for c in cue_names:
        if union[c]:
            out[f"dyn_iou_pixels_{c}"] = inter[c] / union[c]
    if have_tracks and boxes_at:
        table = store.read("dynamics/tracks")
        gt = seq.gt_poses
        T_gt_run = None
        if gt is not None and idx[0] >= 0 and np.isfinite(gt[idx[0]]).all():
            # the run's world starts at its first pose; the log's ground truth may not
            T_run0 = np.asarray(store.read("poses"))[0]
            if np.isfinite(T_run0).all():
                T_gt_run = gt[idx[0]] @ np.linalg.inv(T_run0)
        err = box_velocity_errors(table, boxes_at, T_gt_run)
        ok = np.isfinite(err)
        out["track_vel_err_mps"] = float(np.median(err[ok])) if ok.any() else math.nan
        out["track_rows_matched"] = float(ok.mean()) if len(err) else math.nan
    return out
