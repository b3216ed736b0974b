"""What a pipeline run gives back: :class:`Result` (poses, notes, metrics, gates, the store)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Result:
    """What a pipeline run produced.

    Attributes:
        out_dir: the run folder (``store_path`` is its ``run.zarr``).
        t: ``[S]`` seconds; T_world_body: ``[S, 4, 4]`` metric poses (NaN where unknown).
        frame: name of the trajectory's frame (``body`` or ``lidar``).
        status: per-frame status strings from the estimator.
        flags: run-level notes (loops, gaps, model use).
        gaps: frame spans ``(start, stop)`` where a sensor was lost.
        metrics: evaluation against ground truth when the input has it.
        gates: ``[S, 3]`` modality weights (rgb, lidar, imu; NaN absent) or None without the model.
        model: name of the checkpoint used, or None (geometric path).
    """

    out_dir: Path
    t: np.ndarray
    T_world_body: np.ndarray
    frame: str
    status: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    gates: np.ndarray | None = None
    model: str | None = None

    @property
    def store_path(self) -> Path:
        """The run store ``run.zarr``."""
        return self.out_dir / "run.zarr"

    def store(self):
        """The run store, opened (:class:`fuse4d.store.RunStore`)."""
        from fuse4d.store import RunStore
        return RunStore.open(self.store_path)

    def summary(self) -> str:
        """A few human-readable lines about the run."""
        n_ok = int(np.isfinite(self.T_world_body[:, 0, 0]).sum())
        lines = [f"run        {self.out_dir}", f"poses      {n_ok} of {len(self.t)} frames ({self.frame} frame)",
                 f"model      {self.model or 'none (geometric path)'}"]
        for f in self.flags:
            lines.append(f"note       {f}")
        m = self.metrics
        if "ate_rmse_m" in m:
            how = m.get("align_mode", "SE3").replace("_", "-")
            lines.append(f"ATE        {m['ate_rmse_m']:.3f} m rmse ({how}-aligned, {m.get('n_poses', '?')} poses)")
        for key, label in (("depth_absrel", "depth     "), ("sem_miou", "semantics "), ("dyn_iou_points", "dynamic   ")):
            if key in m and m[key] is not None:
                lines.append(f"{label} {key} {m[key]:.3f}")
        lines.append(f"trajectory {self.out_dir / 'trajectory.txt'}")
        return "\n".join(lines)
