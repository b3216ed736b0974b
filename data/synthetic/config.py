"""Configuration of the synthetic world and the table of named scenarios.

:class:`SynthConfig` groups every knob of the generator (sensors, noise, traffic,
world layout, ground-truth resolutions). A :class:`Scenario` is a named preset:
config overrides plus degraded frame spans. Spans are given as fractions of the
sequence length so that a scenario works for any number of frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from fuse4d.errors import ConfigError

#: degradations the renderer knows
DEGRADATIONS = ("camera_dark", "lidar_dropout", "lidar_sector", "imu_burst")


@dataclass(frozen=True)
class SynthConfig:
    """Every parameter of the synthetic world (units: m, s, rad unless named ``_deg``).

    Sensor noise can be switched off per sensor (``imu_noise``, ``lidar_noise``,
    ``camera_noise``) to get exact measurements; degradations still apply.
    ``degradations`` holds extra ``(name, start_fraction, stop_fraction)`` spans
    on top of the scenario's.
    """

    # timing
    frame_rate: float = 10.0
    imu_rate: float = 200.0
    # camera (pinhole, forward-looking)
    image_width: int = 384
    image_height: int = 128
    camera_hfov_deg: float = 90.0
    camera_noise: bool = True
    camera_noise_sigma: float = 2.0
    # spinning LiDAR
    lidar_beams: int = 32
    lidar_azimuth_steps: int = 1024
    lidar_fov_deg: tuple[float, float] = (-25.0, 15.0)
    lidar_max_range: float = 80.0
    lidar_noise: bool = True
    lidar_range_sigma: float = 0.02
    lidar_dropout: float = 0.05
    lidar_sector_deg: tuple[float, float] = (90.0, 180.0)
    # IMU (consumer MEMS, densities per sqrt(Hz))
    imu_noise: bool = True
    acc_noise_density: float = 2.0e-3
    gyro_noise_density: float = 1.7e-4
    acc_random_walk: float = 3.0e-3
    gyro_random_walk: float = 2.0e-5
    acc_bias_sigma: float = 0.03
    gyro_bias_sigma: float = 2.0e-3
    imu_burst_scale: float = 30.0
    # road network and ego drive (drawn per seed from these ranges, see road.py and ego.py)
    loop_length: tuple[float, float] = (150.0, 255.0)
    lap_time: float = 18.5
    max_mean_speed: float = 13.5
    speed_wobble: float = 0.12
    max_lateral_acc: float = 4.0
    stop_count: tuple[int, int] = (0, 1)
    stop_duration: tuple[float, float] = (1.0, 1.6)
    hill_height: tuple[float, float] = (1.0, 4.5)
    hill_width: tuple[float, float] = (20.0, 40.0)
    side_streets: tuple[int, int] = (1, 2)
    body_height: float = 0.3
    # traffic
    cars_same_lane: int = 2
    cars_oncoming: int = 4
    trucks: int = 1
    pedestrians: int = 8
    parked_car_probability: float = 0.45
    # static world
    world_margin: float = 46.0
    terrain_spacing: float = 0.25
    tree_count: int = 60
    # ground truth
    occupancy_resolution: float = 0.5
    elevation_resolution: float = 0.5
    # execution
    raycast_threads: int = 0
    degradations: tuple[tuple[str, float, float], ...] = ()

    def __post_init__(self) -> None:
        positive = ("frame_rate", "imu_rate", "image_width", "image_height", "lidar_beams",
                    "lidar_azimuth_steps", "lidar_max_range", "lap_time", "terrain_spacing",
                    "occupancy_resolution", "elevation_resolution")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"SynthConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.lidar_dropout < 1.0:
            raise ConfigError(f"SynthConfig.lidar_dropout must be in [0, 1), got {self.lidar_dropout}")
        lo, hi = self.lidar_fov_deg
        if not -90.0 < lo < hi < 90.0:
            raise ConfigError(f"SynthConfig.lidar_fov_deg must be (down, up) within ±90°, got {self.lidar_fov_deg}")
        for name in ("loop_length", "stop_count", "stop_duration", "hill_height", "hill_width", "side_streets"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ConfigError(f"SynthConfig.{name} must be a range (low, high) with 0 <= low <= high, "
                                  f"got {getattr(self, name)!r}")
        if self.loop_length[0] < 100.0:
            raise ConfigError(f"SynthConfig.loop_length must start at >= 100 m, got {self.loop_length!r}")
        if self.stop_count[1] * self.stop_duration[1] > 0.4 * self.lap_time:
            raise ConfigError("SynthConfig: stops may take at most 40 % of lap_time "
                              f"({self.stop_count[1]} x {self.stop_duration[1]} s of {self.lap_time} s)")
        for d in self.degradations:
            _check_span(d)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (tuples become lists), as stored in ``metadata["config"]``."""
        return {f.name: _lists(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SynthConfig":
        """Inverse of :meth:`to_dict`; raises ConfigError on unknown fields or bad values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown SynthConfig fields {unknown}")
        return cls(**{k: _tuples(v) for k, v in d.items()})

    @property
    def imu_noise_dict(self) -> dict[str, float]:
        """Noise densities as stored in ``Calibration.imu_noise``."""
        return {"acc_noise": self.acc_noise_density, "gyro_noise": self.gyro_noise_density,
                "acc_walk": self.acc_random_walk, "gyro_walk": self.gyro_random_walk}


def _lists(v: Any) -> Any:
    return [_lists(x) for x in v] if isinstance(v, (list, tuple)) else v


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, (list, tuple)) else v


def _check_span(d: tuple[str, float, float]) -> None:
    name, a, b = d
    if name not in DEGRADATIONS:
        raise ConfigError(f"unknown degradation {name!r}; known: {', '.join(DEGRADATIONS)}")
    if not 0.0 <= a < b <= 1.0:
        raise ConfigError(f"degradation {name!r} span must satisfy 0 <= start < stop <= 1, got ({a}, {b})")


@dataclass(frozen=True)
class Scenario:
    """A named preset: config overrides and degraded spans (fractions of the sequence)."""

    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    degradations: tuple[tuple[str, float, float], ...] = ()


SCENARIOS: dict[str, Scenario] = {
    "default": Scenario("a closed road loop with light traffic, clean sensors"),
    "dense_traffic": Scenario(
        "many moving cars, trucks and pedestrians",
        overrides={"cars_same_lane": 4, "cars_oncoming": 12, "trucks": 3, "pedestrians": 30}),
    "camera_dark": Scenario("a span of near-black noisy images",
                            degradations=(("camera_dark", 0.3, 0.5),)),
    "lidar_dropout": Scenario("a span without LiDAR and a span with a 90° sector lost",
                              degradations=(("lidar_dropout", 0.25, 0.4), ("lidar_sector", 0.6, 0.8))),
    "imu_burst": Scenario("a span of heavy IMU noise and bias jumps",
                          degradations=(("imu_burst", 0.4, 0.55),)),
    "degraded": Scenario(
        "all degradations, in separate spans",
        degradations=(("imu_burst", 0.1, 0.2), ("camera_dark", 0.3, 0.4),
                      ("lidar_dropout", 0.5, 0.6), ("lidar_sector", 0.7, 0.85))),
}


def resolve_config(scenario: str, config: SynthConfig | None = None) -> SynthConfig:
    """Config for ``scenario``: its overrides fill fields the given config left at default.

    Raises:
        ConfigError: unknown scenario name or bad override.
    """
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown synthetic scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    sc = SCENARIOS[scenario]
    base = config or SynthConfig()
    defaults = SynthConfig()
    known = {f.name for f in fields(SynthConfig)}
    changes = {}
    for k, v in sc.overrides.items():
        if k not in known:
            raise ConfigError(f"scenario {scenario!r} overrides unknown field {k!r}")
        if getattr(base, k) == getattr(defaults, k):
            changes[k] = v
    changes["degradations"] = tuple(sc.degradations) + tuple(base.degradations)
    return replace(base, **changes)


def degradation_spans(config: SynthConfig, frames: int) -> list[dict[str, Any]]:
    """Frame spans ``[{"name", "start", "stop"}]`` (stop exclusive) for ``frames`` frames."""
    spans = []
    for name, a, b in config.degradations:
        start = min(int(round(a * frames)), max(frames - 1, 0))
        stop = max(start + 1, min(int(round(b * frames)), frames))
        spans.append({"name": name, "start": start, "stop": stop})
    return spans
