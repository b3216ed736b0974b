"""Settings of the estimation back-end (plain fields; YAML-friendly)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from fuse4d.errors import ConfigError


@dataclass
class EstimationConfig:
    """Every knob of :func:`~fuse4d.fusion.estimation.estimate_trajectory` (units: m, s, degrees where named).

    LiDAR odometry (KISS-ICP's defaults; ``voxel_size`` None = ``max_range / 100``):
        max_range, min_range, voxel_size, max_points_per_voxel, point_to_plane,
        initial_threshold, min_motion, max_icp_iterations, deskew, min_fitness
        (a registration matching fewer source points is rejected).
    IMU: use_imu, imu_init_time (seconds of LiDAR+IMU used to find gravity and
        velocity), velocity_window (LiDAR frames in the velocity fit), gravity.
    Pose graph: keyframe_distance, keyframe_angle_deg, keyframe_max_frames,
        max_graph_nodes (keyframes are thinned above it; the sparse solver keeps every keyframe of
        any practical log), graph_iterations,
        lidar_point_sigma (m: registration information = ICP Hessian / σ²; σ is
        inflated over the sensor noise because residuals of one sweep are correlated),
        mode (``batch``: one optimisation at the end; ``window``: also a sliding
        window of ``window_size`` keyframes while streaming).
    Fusion-model factors: network_factors ``gaps`` (only across steps the LiDAR or depth-camera
        odometry did not register; with LiDAR, only where the IMU does not span the step either) or ``all``.
    Loop closure: loop_closure, loop_search_radius, loop_drift_fraction,
        loop_min_separation, loop_sc_threshold, loop_min_fitness, loop_max_rmse.
    """

    max_range: float = 100.0
    min_range: float = 1.0
    voxel_size: float | None = None
    max_points_per_voxel: int = 10
    point_to_plane: bool = True
    initial_threshold: float = 2.0
    min_motion: float = 0.1
    max_icp_iterations: int = 50
    deskew: bool = True
    min_fitness: float = 0.3
    use_imu: bool = True
    imu_init_time: float = 1.0
    velocity_window: int = 10
    gravity: float = 9.81
    keyframe_distance: float = 5.0
    keyframe_angle_deg: float = 20.0
    keyframe_max_frames: int = 15
    max_graph_nodes: int = 100_000
    graph_iterations: int = 12
    lidar_point_sigma: float = 0.1
    mode: str = "batch"
    window_size: int = 8
    loop_closure: bool = True
    loop_search_radius: float = 10.0
    loop_drift_fraction: float = 0.05
    loop_min_separation: float = 40.0
    loop_sc_threshold: float = 0.25
    loop_min_fitness: float = 0.6
    loop_max_rmse: float = 0.35
    network_factors: str = "gaps"

    def __post_init__(self) -> None:
        if self.voxel_size is None:
            self.voxel_size = self.max_range / 100.0
        for name in ("max_range", "voxel_size", "initial_threshold", "gravity", "keyframe_distance",
                     "lidar_point_sigma"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"EstimationConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.network_factors not in ("gaps", "all"):
            raise ConfigError(f"EstimationConfig.network_factors must be 'gaps' or 'all', got {self.network_factors!r}")
        if self.mode not in ("batch", "window"):
            raise ConfigError(f"EstimationConfig.mode must be 'batch' or 'window', got {self.mode!r}")
        if self.keyframe_max_frames < 1 or self.max_graph_nodes < 2 or self.window_size < 2:
            raise ConfigError("keyframe_max_frames must be >= 1, max_graph_nodes and window_size >= 2")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for YAML/zarr attrs)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "EstimationConfig":
        """Build from a dict; unknown keys raise ConfigError."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ConfigError(f"unknown estimation settings {bad}; known: {sorted(known)}")
        return cls(**d)
