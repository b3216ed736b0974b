"""The output of the estimation stage: a metric trajectory with per-frame status and diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fuse4d.data.trajectory import Trajectory, write_tum

#: per-frame status values
STATUSES = ("ok", "network", "rgbd", "imu_only", "extrapolated", "lidar_rejected", "needs_model")


@dataclass
class EstimationResult:
    """Metric trajectory of one sequence.

    Attributes:
        t: ``[S]`` float64 frame times (s).
        T_world_body: ``[S, 4, 4]`` poses of the frame named by :attr:`frame` in the
            world frame (gravity-aligned with origin at the first pose when an IMU
            is used; else the first LiDAR pose); NaN for frames with no estimate.
        frame: ``"body"`` (IMU frame) or ``"lidar"`` (logs without IMU).
        status: ``[S]`` one of :data:`STATUSES` per frame — ``ok`` LiDAR-registered,
            ``imu_only`` carried by the IMU (LiDAR missing or rejected),
            ``extrapolated`` constant velocity (no LiDAR, no IMU),
            ``needs_model`` no geometric sensor (camera only).
        flags: ``[S]`` sets of notes (``keyframe``, ``degenerate``, ``loop``, ``lidar_rejected``).
        gaps: spans without LiDAR registration, ``{"start", "stop"}`` frame indices
            (stop exclusive), ``t_start``/``t_stop`` (s) and ``carried_by`` (imu / constant_velocity).
        loops: verified loop closures ``{"i", "j", "fitness", "rmse"}`` (frame indices, j the later).
        fitness: ``[S]`` registration inlier fraction (NaN where not registered).
        velocities: ``[S, 3]`` world velocities (m/s) with an IMU, else None.
        biases: ``[S, 6]`` gyro (rad/s) and accelerometer (m/s²) biases with an IMU, else None.
        T_body_lidar: ``[4, 4]`` LiDAR → body used (identity when ``frame == "lidar"``).
        needs_model: no pose could be estimated without the fusion model.
        timings: seconds per stage.
        info: free-form diagnostics (graph cost, gravity, keyframe count, …).
    """

    t: np.ndarray
    T_world_body: np.ndarray
    frame: str
    status: list[str]
    flags: list[set[str]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    loops: list[dict[str, Any]] = field(default_factory=list)
    fitness: np.ndarray | None = None
    velocities: np.ndarray | None = None
    biases: np.ndarray | None = None
    T_body_lidar: np.ndarray = field(default_factory=lambda: np.eye(4))
    needs_model: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.t)

    @property
    def T_world_lidar(self) -> np.ndarray:
        """``[S, 4, 4]`` LiDAR poses in the world frame."""
        return self.T_world_body @ self.T_body_lidar

    def trajectory(self) -> Trajectory:
        """The poses as a :class:`~fuse4d.data.trajectory.Trajectory` (frames with NaN poses dropped)."""
        ok = np.isfinite(self.T_world_body).all(axis=(1, 2))
        return Trajectory(self.t[ok], self.T_world_body[ok], frame=self.frame)

    def write_tum(self, path: str | Path) -> None:
        """Write the trajectory as TUM text (atomic), with a header naming the frame and the gaps."""
        traj = self.trajectory()
        gaps = ", ".join(f"{g['start']}-{g['stop']}" for g in self.gaps) or "none"
        write_tum(path, traj.t, traj.poses, frame=self.frame,
                  comment=f"fuse4d estimation; frame: {self.frame}; LiDAR gaps (frames): {gaps}")

    def summary(self) -> dict[str, Any]:
        """Counts per status, gaps, loops and timings (JSON-safe)."""
        counts = {s: int(sum(1 for x in self.status if x == s)) for s in STATUSES}
        return {"frames": len(self), "frame": self.frame, "status": counts, "gaps": list(self.gaps),
                "loops": len(self.loops), "needs_model": self.needs_model,
                "timings": {k: round(v, 3) for k, v in self.timings.items()}}
