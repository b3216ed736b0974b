"""Settings of the dynamics stage (plain fields; YAML section ``dynamics``). Light: no heavy imports."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fuse4d.errors import ConfigError


@dataclass
class DynamicsConfig:
    """Every knob of :class:`~fuse4d.dynamics.stage.DynamicsStage` (units: m, s, degrees where named).

    LiDAR moving-object segmentation (:mod:`~fuse4d.dynamics.lidar_mos`):
        history: past scans each new scan is checked against (their range grids are kept).
        azimuth_res_deg / elevation_res_deg: spherical grid cell of the range grids (None =
            from the calibration's ``lidar_azimuth_steps`` / ``lidar_beams`` and FoV, else 0.2° / 1.0°).
        window_az / window_el: half-width in cells of the neighbourhood a point is compared with.
        free_margin / free_margin_rel: a point is in space seen free when every past ray of its
            neighbourhood went at least ``max(free_margin, free_margin_rel * range)`` beyond it.
        l_free / l_occ / l_prior / l_carry: log-odds of one free observation (toward moving),
            of one observation occupied by a static surface (toward static), the prior, and the
            weight of the posterior carried from the previous scan (Bayes filter over time).
        l_clamp: log-odds are clamped to ±l_clamp (the filter can change its mind).
        min_range / max_range: points outside are left static (0).
        ray_origin_lidar: where the rays start, in the LiDAR frame (m; None = its origin). Logs whose
            points are given in another frame than the sensor's (Argoverse 2: the vehicle frame,
            ``T_body_lidar = I``) set the real sensor position here.
        ground_cell / ground_height: ground = within ``ground_height`` of the lowest point seen
            in its ``ground_cell`` × ``ground_cell`` world cell (kept over time).
        cluster_eps / cluster_min_points: non-ground points within ``cluster_eps`` join one object.
        cluster_fraction: an object is moving whole when, among its points voted moving or seen static,
            the moving share exceeds this.
        l_model: weight of the fusion model's per-point log-odds when the pipeline passes them.
        pair_fraction: two-sweep mode: share of an object's points that must violate free space.
        revise_previous: backward evidence: the previous scan's points in the space a new scan sees
            free are moving (receding objects, a car ahead at the ego's speed); its posterior is revised
            before it is carried on and kept in the history.
        backward_frames: offline backward pass: once an object is moving, its points in up to this many
            earlier scans (moved back by its track's velocity) are moving too, and those scans' outputs
            are revised (0 = streaming only: each scan's output is final when returned).
        backward_min_speed: only objects whose track moves at least this fast (m/s) reach back.
        carry_radius: a point takes the posterior of the previous scan's nearest point within it
            (after moving that point with its track's velocity).
    Tracking (:mod:`~fuse4d.dynamics.tracking`):
        track_gate: association gate (m) between a predicted track and a detection centroid.
        track_min_hits / track_max_missed: frames to confirm a track / to drop an unseen one.
        track_min_points: smallest detection (points) that starts or updates a track.
        accel_sigma / vel_sigma: velocity Kalman filter: process (m/s², horizontal; vertical 0.1 ×)
            and noise (m/s) of the velocity measured by registering an object's previous points
            onto its new ones (translation and turn about its centre).
        track_baseline: frames back the velocity registration reaches (its error / baseline).
        track_smooth / smooth_accel_sigma / smooth_disp_sigma: the tracks table's horizontal velocities
            come from an offline smoother over each track's registrations, each dated at the middle of
            its span (random walk, variance + smooth_accel_sigma² per s; noise smooth_disp_sigma m / span).
        vel_gate: a settled track rejects velocity measurements farther than this (m/s).
        max_speed: fastest object (m/s) the velocity search considers.
        icp_min_inliers: share of points that must register for a velocity measurement.
    Camera masks (:mod:`~fuse4d.dynamics.attention`, :mod:`~fuse4d.dynamics.consistency`):
        attn_layers: which exposed attention layers to use (None = all).
        attn_topk: best matches per token averaged in the cross-frame similarity.
        consistency_tau: relative depth disagreement counted as a free-space violation.
        cue_weights: log-odds weights of the attention, consistency and head cues when combined.
    """

    history: int = 10
    azimuth_res_deg: float | None = None
    elevation_res_deg: float | None = None
    window_az: int = 2
    window_el: int = 1
    free_margin: float = 0.3
    free_margin_rel: float = 0.02
    l_free: float = 1.5
    l_occ: float = 0.4
    l_prior: float = -1.5
    l_carry: float = 0.6
    l_clamp: float = 6.0
    min_range: float = 1.0
    ray_origin_lidar: list[float] | None = None
    max_range: float = 60.0
    ground_cell: float = 0.5
    ground_height: float = 0.25
    cluster_eps: float = 0.6
    cluster_min_points: int = 3
    cluster_fraction: float = 0.5
    carry_radius: float = 0.3
    revise_previous: bool = True
    backward_frames: int = 10
    backward_min_speed: float = 0.5
    pair_fraction: float = 0.05
    l_model: float = 0.5
    track_gate: float = 2.5
    track_min_hits: int = 3
    track_max_missed: int = 3
    track_min_points: int = 8
    accel_sigma: float = 10.0
    vel_sigma: float = 0.5
    icp_min_inliers: float = 0.5
    max_speed: float = 25.0
    track_baseline: int = 4
    vel_gate: float = 3.0
    track_smooth: bool = True
    smooth_accel_sigma: float = 1.0
    smooth_disp_sigma: float = 0.1
    attn_layers: list[int] | None = None
    attn_topk: int = 1
    consistency_tau: float = 0.05
    cue_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        self.cue_weights = tuple(float(w) for w in self.cue_weights)
        for name in ("free_margin", "max_range", "ground_cell", "cluster_eps", "track_gate", "accel_sigma",
                     "vel_sigma", "consistency_tau", "l_free", "l_clamp"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"DynamicsConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.backward_frames < 0:
            raise ConfigError(f"DynamicsConfig.backward_frames must be >= 0, got {self.backward_frames!r}")
        if self.history < 1 or self.track_min_hits < 1 or self.attn_topk < 1:
            raise ConfigError("DynamicsConfig.history, track_min_hits and attn_topk must be >= 1")
        if len(self.cue_weights) != 3:
            raise ConfigError(f"DynamicsConfig.cue_weights needs 3 weights (attention, consistency, head), "
                              f"got {self.cue_weights}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for YAML/zarr attrs)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "DynamicsConfig":
        """Build from a dict; unknown keys raise ConfigError."""
        from fuse4d.sections import section_from_dict
        return section_from_dict(cls, d, "dynamics")
