"""Orchestration: sequence → estimation → (model, dynamics, maps as they land) → store.

``Pipeline`` owns the order of the stages and the run folder layout; it holds
no algorithm of its own. A run folder holds:

- ``trajectory.txt``   TUM, metric, body frame (LiDAR frame for logs without IMU)
- ``groundtruth.txt``  TUM, same frame, when the input has ground-truth poses
- ``degradations.json`` degraded frame spans of the input, when it has any
- ``config.yaml``      the resolved config
- ``run.zarr``         the run store (poses, gates, maps, ...)
- ``trajectory.png``   top view of estimate vs ground truth
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fuse4d import __version__
from fuse4d.config import PipelineConfig
from fuse4d.data.types import Sequence
from fuse4d.errors import DataError
from fuse4d.fileio import atomic_write_text

log = logging.getLogger(__name__)

#: a LiDAR gap longer than this (s) gets a drift warning in the run summary
LONG_GAP_S = 5.0


@dataclass
class Result:
    """What a pipeline run produced.

    Attributes:
        out_dir: the run folder.
        t: ``[S]`` seconds; T_world_body: ``[S, 4, 4]`` metric poses (NaN where unknown).
        frame: name of the trajectory's frame (``body`` or ``lidar``).
        status: per-frame status strings from the estimator.
        flags: run-level notes (e.g. ``needs_model`` for camera-only input).
        gaps: frame spans ``(start, stop)`` where a sensor was lost.
        metrics: evaluation against ground truth when the input has it.
    """

    out_dir: Path
    t: np.ndarray
    T_world_body: np.ndarray
    frame: str
    status: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """A few human-readable lines about the run."""
        n_ok = int(np.isfinite(self.T_world_body[:, 0, 0]).sum())
        lines = [f"run        {self.out_dir}", f"poses      {n_ok} of {len(self.t)} frames ({self.frame} frame)"]
        for f in self.flags:
            lines.append(f"note       {f}")
        if "ate_rmse_m" in self.metrics:
            m = self.metrics
            how = m.get("align_mode", "SE3").replace("_", "-")
            lines.append(f"ATE        {m['ate_rmse_m']:.3f} m rmse ({how}-aligned, {m.get('n_poses', '?')} poses)")
        lines.append(f"trajectory {self.out_dir / 'trajectory.txt'}")
        return "\n".join(lines)


class Pipeline:
    """The whole job on one sequence: ``Pipeline(config).run(seq, out_dir)``."""

    def __init__(self, config: PipelineConfig | None = None):
        from fuse4d.config import load_config
        self.config = config or load_config()

    def select(self, seq: Sequence) -> Sequence:
        """Apply ``config.data`` (start/stop/step) to ``seq``."""
        d = self.config.data
        return seq[d.start:d.stop:d.step]

    def run(self, seq: Sequence, out_dir: str | Path, progress: bool = False, overwrite: bool = False) -> Result:
        """Run every available stage on ``seq`` and write the run folder ``out_dir``.

        Raises:
            DataError: the input cannot give poses (no LiDAR, no IMU, no camera),
                or ``out_dir`` holds a different run and ``overwrite`` is False.
        """
        from fuse4d.data.trajectory import write_tum
        from fuse4d.fusion.estimation.config import EstimationConfig
        from fuse4d.fusion.estimation.estimator import estimate_trajectory
        from fuse4d.store import RunStore

        out = Path(out_dir)
        seq = self.select(seq)
        if len(seq) < 2:
            raise DataError(seq.path, f"needs at least 2 frames, got {len(seq)}")
        out.mkdir(parents=True, exist_ok=True)
        cfg_dict = self.config.to_dict()
        source = str(seq.metadata.get("source", seq.path))
        store_path = out / "run.zarr"
        if store_path.exists() and not overwrite:
            store = RunStore.open(store_path)
            from fuse4d.data.zarr_log import jsonable
            if store.meta.get("source") != source or store.meta.get("config") != jsonable(cfg_dict):
                raise DataError(out, "holds a run of a different input or config; pass overwrite=True (--overwrite) to replace it")
        else:
            store = RunStore.create(store_path, config=cfg_dict, source=source, n_frames=len(seq), overwrite=overwrite)
        atomic_write_text(out / "config.yaml", yaml.safe_dump({"fuse4d": __version__, **cfg_dict}, sort_keys=False))

        est_cfg = EstimationConfig.from_dict(self.config.estimation)
        est = estimate_trajectory(seq, est_cfg, progress=progress)

        store.write_frames("poses", 0, est.T_world_body)
        store.write_frames("timestamps", 0, est.t)
        store.update_meta(estimation=est.summary(), loops=est.loops)
        store.mark_done(len(seq))

        est.write_tum(out / "trajectory.txt")
        gt = seq.gt_poses
        if gt is not None and seq.has_ground_truth_poses:
            gt_frame = gt
            if est.frame == "lidar" and "imu" in seq.sensors:
                gt_frame = gt @ seq.calibration.T_body_lidar
            # re-base: the estimate starts at the first ground-truth pose of its frame
            write_tum(out / "groundtruth.txt", seq.timestamps, gt_frame, frame=est.frame, comment="(ground truth)")
        first, ts = int(seq.indices[0]), seq.timestamps
        spans = []
        for d in seq.degradations:
            a, b = max(0, d["start"] - first), min(len(seq), d["stop"] - first)
            if b > a:  # frame span in this run, plus the same span in seconds (exact for evaluation)
                spans.append(dict(d, start=a, stop=b, t_start=float(ts[a]), t_stop=float(ts[b - 1])))
        if spans:
            atomic_write_text(out / "degradations.json", json.dumps(spans, indent=1))

        flags = []
        if est.needs_model:
            flags.append("needs_model: no LiDAR or IMU, camera-only poses need the fusion model (no checkpoint yet)")
        if est.loops:
            flags.append(f"{len(est.loops)} loop closure(s) verified and added to the pose graph")
        for g in est.gaps:
            dur = float(g.get("t_stop", 0.0) - g.get("t_start", 0.0))
            note = f"LiDAR gap frames {g['start']}–{g['stop'] - 1} ({dur:.1f} s) carried by {g.get('carried_by', '?')}"
            if dur > LONG_GAP_S:
                note += f"; over {LONG_GAP_S:.0f} s without LiDAR the drift grows without bound: treat these poses as rough"
            flags.append(note)
        result = Result(out, est.t, est.T_world_body, est.frame, status=list(est.status),
                        flags=flags, gaps=[(int(g["start"]), int(g["stop"])) for g in est.gaps])
        if (out / "groundtruth.txt").exists() and np.isfinite(est.T_world_body[:, 0, 0]).sum() >= 2:
            from fuse4d.evaluation import evaluate_run
            try:
                result.metrics = evaluate_run(out)
            except DataError as e:
                log.warning("evaluation skipped: %s", e)
        if self.config.run.write_plots:
            from fuse4d.plots import plot_trajectories
            ref = None if gt is None else gt[:, :3, 3]
            plot_trajectories(out / "trajectory.png", est.T_world_body[:, :3, 3], ref,
                              title=f"{seq.name}: estimate vs ground truth", gaps=result.gaps,
                              loops=[(int(lc["i"]), int(lc["j"])) for lc in est.loops])
        return result
