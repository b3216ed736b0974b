"""Settings of the calibration stage (light module: no jax/torch/open3d import)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fuse4d.errors import ConfigError


@dataclass
class CalibConfig:
    """What ``fuse4d calib`` estimates and how.

    Attributes:
        lidar_camera / imu_rotation / time_offset: which estimates to run (each is
            skipped with a note when the log lacks the sensors it needs).
        frames: how many frames (spread evenly over the log) the LiDAR–camera
            refinement uses; 0 = all.
        max_frames_motion: frames read for the IMU/odometry estimates (0 = all).
        search_deg: half-width (degrees) of the coarse rotation search around the start.
        search_step_deg: step of that grid (degrees).
        truncate_deg: distance-transform truncations of the coarse-to-fine local
            solver, as angles (degrees; converted to pixels with the focal length);
            each level's distance map is blurred by a quarter of its truncation.
        rotation_only_levels: the first levels solve the rotation alone (wide basins
            would let the translation drift onto dense texture).
        density_weights: weight each LiDAR edge point by ``1 / (1 + ρ/ρ̄)``, ρ the
            image-edge density around it, so cluttered areas do not dominate.
        horizontal_min_range / vertical_min_range: horizontal-silhouette LiDAR edges
            (jumps across beams) / vertical ones (jumps along a row) nearer than this many
            LiDAR-camera baselines are dropped (parallax: an object's outline is a
            different physical edge from the two viewpoints, biased into the object).
        translation_prior_m / translation_prior_px2: a Gaussian prior keeps the
            translation near the start: moving it by ``translation_prior_m`` costs
            ``translation_prior_px2`` px² per edge point of one frame (translation is weakly
            observable from one frame's edges at a distance and would otherwise drift onto
            texture; over many frames the data outweighs it); 0 = none.
        prior_max_frames: the prior applies only to fewer frames than this. Even at one
            frame's weight it held 20 frames' translation near the start's error (train seeds
            2/12/22, true-motion deskew, from 2 deg / 10 cm: 2.8/6.9/3.5 cm with it, 2.5/4.0/1.8
            cm without; rotation 0.171/0.300/0.163 -> 0.047/0.313/0.146 deg), and it held every
            bootstrap resample there too, shrinking the std.
        edge_sigma: Gaussian blur (px) of the image before its gradient. Less blur keeps
            an outline from merging with the texture beside it: from the truth, the cost's
            minimum on train seeds 2/12/22 moved 0.128/0.214/0.086 deg off at 1 px and
            0.043/0.170/0.064 deg at 0.5 px (with the depth image's own edges instead: 0.014 deg).
        bootstrap: bootstrap draws (frames, or image tiles for one frame) for the
            std; 0 or 1 = Gauss-Newton std (optimistic).
        bootstrap_blocks: frames are drawn in this many blocks of consecutive frames
            (neighbouring frames see the same structures: not independent draws); 0 = each
            frame on its own.
        std_floor_deg / std_floor_m: added in quadrature to each component's std: the cost's
            own bias, which no resampling of the same scene reveals (from the truth its minimum
            sat 0.04/0.27/0.04 deg and 1.2/1.9/0.7 cm off on train seeds 2/12/22, 20 frames).
        max_points: LiDAR edge points kept per frame (strongest first).
        min_edge_points: fewer edge points in view than this over all frames = "no
            structure in view" (a DataError).
        lm_iterations: Levenberg-Marquardt iterations per truncation level.
        time_search_s: half-width (s) of the coarse time-offset search.
        min_rotation_deg: hand-eye/time-offset intervals rotating less than this are
            ignored; fewer than ``min_motion_pairs`` such intervals = "no motion".
        min_motion_pairs: see above.
        motion_passes: most LiDAR odometry passes for the IMU estimates: each pass deskews
            the sweeps with the gyro at the previous pass's offset and rotation (the first at
            the start calibration's); passes stop once the offset moves < 1 ms and the
            rotation < 0.2 deg.
        yaw_from_acceleration: also estimate the IMU mount's rotation about the body's
            vertical from horizontal accelerations (odometry velocity changes vs the
            accelerometer) and fuse it with the hand-eye's by inverse variance along that axis
            (hand-eye cannot see it on a yaw-only drive). Applied when its std is within
            ``max_std_deg``. Off by default: its std from the LiDAR odometry's velocities is
            0.3-0.5 deg, no better than the hand-eye's, and fusing the two traded seeds (end to
            end, 150 frames; train 2/12/22/3 on their odometry tracks: 0.353/0.202/0.153/0.347 -> 0.422/0.114/0.093/0.114
            deg; held-out 0/10/20/1: 0.06/0.06/0.15/0.41 -> 0.249/0.076/0.196/0.167 deg). On true
            motion its std is 0.02-0.05 deg (train 2/3/22): better odometry translations would make it count.
        acceleration_segment_frames: frames per segment of that fit (each segment has its own
            start velocity; the bootstrap resamples segments).
        max_std_deg / max_std_m / max_std_ms: an estimate whose standard deviation
            exceeds these is flagged ``excited: false`` and not applied.
    """

    lidar_camera: bool = True
    imu_rotation: bool = True
    time_offset: bool = True
    frames: int = 60
    max_frames_motion: int = 0
    search_deg: float = 2.0
    search_step_deg: float = 1.0
    truncate_deg: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)
    rotation_only_levels: int = 1
    density_weights: bool = True
    horizontal_min_range: float = 17.0
    vertical_min_range: float = 11.0
    translation_prior_m: float = 0.1
    translation_prior_px2: float = 0.25
    prior_max_frames: int = 4
    edge_sigma: float = 0.5
    bootstrap: int = 20
    bootstrap_blocks: int = 8
    std_floor_deg: float = 0.1
    std_floor_m: float = 0.01
    max_points: int = 4000
    min_edge_points: int = 150
    lm_iterations: int = 15
    time_search_s: float = 0.2
    min_rotation_deg: float = 0.3
    min_motion_pairs: int = 10
    motion_passes: int = 3
    yaw_from_acceleration: bool = False
    acceleration_segment_frames: int = 20
    max_std_deg: float = 0.5
    max_std_m: float = 0.1
    max_std_ms: float = 5.0

    def __post_init__(self) -> None:
        if self.frames < 0 or self.max_frames_motion < 0:
            raise ConfigError(f"calib.frames and calib.max_frames_motion must be >= 0, got {self.frames}, "
                              f"{self.max_frames_motion}")
        if self.search_deg < 0 or self.search_step_deg <= 0:
            raise ConfigError("calib.search_deg must be >= 0 and calib.search_step_deg > 0")
        self.truncate_deg = tuple(float(t) for t in self.truncate_deg)
        if not self.truncate_deg or min(self.truncate_deg) <= 0:
            raise ConfigError(f"calib.truncate_deg must be positive numbers, got {self.truncate_deg}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (YAML/JSON-safe)."""
        d = asdict(self)
        d["truncate_deg"] = list(self.truncate_deg)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "CalibConfig":
        """Build from a YAML ``calib:`` section; unknown keys raise ConfigError."""
        from fuse4d.sections import section_from_dict
        return section_from_dict(cls, d, "calib")
