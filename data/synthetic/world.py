"""The synthetic world: ties scene, actors, ego motion and sensors into a lazy Sequence.

``World(seed, config)`` builds everything that does not depend on time once
(ground, static primitives, Embree scene, actor tables, ground-truth maps);
``World.frame(i)`` renders frame i on demand from a generator seeded by
``(seed, i)``, so a frame is bit-identical whatever order frames are read in.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np

from fuse4d.data.classes import CAR
from fuse4d.data.synthetic.actors import Actors
from fuse4d.data.synthetic.camera import Camera
from fuse4d.data.synthetic.config import SynthConfig, degradation_spans, resolve_config
from fuse4d.data.synthetic.ego import EgoTrajectory, SpeedProfile, draw_stops, rot_y, rot_z
from fuse4d.data.synthetic.groundtruth import ground_truth_maps
from fuse4d.data.synthetic.imu import imu_times, synthesize_imu
from fuse4d.data.synthetic.lidar import Lidar
from fuse4d.data.synthetic.road import Road, make_road
from fuse4d.data.synthetic.scene import StaticScene, place_static
from fuse4d.data.synthetic.terrain import Terrain
from fuse4d.data.synthetic.texture import draw_lighting
from fuse4d.data.types import Calibration, Frame, Sequence
from fuse4d.geometry import make_T

log = logging.getLogger(__name__)

GROUND_TRUTH_LAYERS = ["poses", "depth", "semantics", "dynamic_mask", "point_semantics", "point_dynamic",
                       "point_instance", "boxes", "occupancy", "elevation"]


def mounting() -> tuple[np.ndarray, np.ndarray]:
    """Sensor extrinsics ``T_body_cam, T_body_lidar`` ``[4, 4]``.

    LiDAR 1.7 m above the IMU, 0.25 m forward, slightly yawed; camera 1.2 m up and
    1.0 m forward, looking ahead (x right, y down, z forward), pitched 2° down.
    """
    R_axes = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    R_cam = rot_z(np.radians(0.5)) @ rot_y(np.radians(2.0)) @ R_axes
    T_body_cam = make_T(R_cam, [1.0, 0.0, 1.2])
    T_body_lidar = make_T(rot_z(np.radians(0.6)) @ rot_y(np.radians(0.3)), [0.25, 0.0, 1.7])
    return T_body_cam, T_body_lidar


class World:
    """A deterministic synthetic world for one seed and config.

    Args:
        seed: world seed (layout, traffic, noise).
        config: a resolved :class:`SynthConfig` (scenario already applied).
        frames: number of frames the sequence will have (sets degraded spans, IMU length).
    """

    def __init__(self, seed: int = 0, config: SynthConfig | None = None, frames: int = 200, progress: bool = False):
        self.seed, self.cfg, self.frames = int(seed), config or SynthConfig(), int(frames)
        cfg = self.cfg
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence([self.seed, 1]).spawn(4)]
        steps = _progress(progress, ["static world", "actors", "imu"])
        next(steps)
        t0 = time.perf_counter()
        static = _static_world(self.seed, _layout_key(cfg))
        log.debug("static world for seed %d ready in %.2f s", self.seed, time.perf_counter() - t0)
        self.road, self.loop, self.terrain, self.prims = static["road"], static["loop"], static["terrain"], static["prims"]
        self.parked, self.static, self.gt_maps = static["parked"], static["static"], static["gt_maps"]
        self.ego = static["ego"]
        next(steps)
        self.actors = Actors(self.terrain, self.ego, cfg, rngs[2], first_id=len(self.parked["id"]))
        self.camera, self.lidar = Camera.from_config(cfg), Lidar.from_config(cfg)
        self.lighting = draw_lighting(np.random.default_rng(np.random.SeedSequence([self.seed, 3])))
        self.T_body_cam, self.T_body_lidar = mounting()
        self.times = np.arange(self.frames) / cfg.frame_rate
        self.spans = degradation_spans(cfg, self.frames)
        next(steps)
        dt = 1.0 / cfg.frame_rate
        bursts = [((s["start"] - 1) * dt + 0.5 / cfg.imu_rate, (s["stop"] - 1) * dt + 0.5 / cfg.imu_rate)
                  for s in self.spans if s["name"] == "imu_burst"]
        t_imu = imu_times(-dt, self.times[-1] if self.frames else 0.0, cfg.imu_rate)
        self.imu = synthesize_imu(self.ego, t_imu, cfg, rngs[3], bursts)
        next(steps, None)

    def __reduce__(self):
        """Pickle as ``(seed, config, frames)``: the world is rebuilt (identically) on load."""
        return (World, (self.seed, self.cfg, self.frames))

    @property
    def calibration(self) -> Calibration:
        """Sensor calibration (intrinsics, extrinsics, LiDAR geometry, IMU noise)."""
        cfg = self.cfg
        return Calibration(K=self.camera.K, image_size=(cfg.image_width, cfg.image_height),
                           T_body_cam=self.T_body_cam, T_body_lidar=self.T_body_lidar,
                           time_offsets={"camera": 0.0, "lidar": 0.0}, lidar_beams=cfg.lidar_beams,
                           lidar_azimuth_steps=cfg.lidar_azimuth_steps, lidar_fov_deg=tuple(cfg.lidar_fov_deg),
                           imu_noise=cfg.imu_noise_dict)

    def active(self, i: int) -> set[str]:
        """Names of the degradations active in frame i."""
        return {s["name"] for s in self.spans if s["start"] <= i < s["stop"]}

    def lidar_poses(self, t: float) -> np.ndarray:
        """``T_world_lidar`` ``[J, 4, 4]`` at each LiDAR column time of the scan ending at t."""
        return self.ego.poses(t + self.lidar.column_time) @ self.T_body_lidar

    def frame(self, i: int) -> Frame:
        """Render frame i (all sensors and ground-truth layers).

        Raises:
            IndexError: i outside ``[0, frames)``.
        """
        if not 0 <= i < self.frames:
            raise IndexError(f"frame {i} out of range for a synthetic sequence of {self.frames} frames")
        cfg, t = self.cfg, float(self.times[i])
        rng_cam, rng_lidar = [np.random.default_rng(s)
                              for s in np.random.SeedSequence([self.seed, 2, i]).spawn(2)]
        active = self.active(i)
        T_wb = self.ego.poses(np.array([t]))[0]
        cam = self.camera.render(self.static, self.actors, T_wb @ self.T_body_cam, t, rng_cam,
                                 cfg.camera_noise_sigma if cfg.camera_noise else 0.0, "camera_dark" in active,
                                 self.lighting)
        frame = Frame(index=i, timestamp=t, image=cam["image"], depth=cam["depth"], T_world_body=T_wb,
                      semantics=cam["semantics"], dynamic_mask=cam["dynamic"], boxes=self.boxes(t),
                      flags=set(active))
        if "lidar_dropout" not in active:
            lid = self.lidar.render(self.static, self.actors, self.lidar_poses(t), t, rng_lidar,
                                    cfg.lidar_range_sigma if cfg.lidar_noise else 0.0,
                                    cfg.lidar_dropout if cfg.lidar_noise else 0.0,
                                    cfg.lidar_sector_deg if "lidar_sector" in active else None)
            frame.points, frame.point_time = lid["points"], lid["time"]
            frame.point_semantics, frame.point_dynamic = lid["semantics"], lid["dynamic"]
            frame.point_instance = lid["instance"]
        return frame

    def boxes(self, t: float) -> dict[str, np.ndarray]:
        """GT boxes of all actors (parked cars first, velocity 0) at time t (world frame)."""
        moving = self.actors.boxes(t)
        p = self.parked
        n = len(p["id"])
        parked = {"id": p["id"], "center": p["center"], "size": p["size"],
                  "yaw": np.mod(p["yaw"] + np.pi, 2 * np.pi) - np.pi, "velocity": np.zeros((n, 3)),
                  "cls": np.full(n, CAR, np.uint8)}
        return {k: np.concatenate([parked[k], moving[k]]) for k in moving}

    def sequence(self, scenario: str = "default") -> Sequence:
        """The lazy :class:`Sequence` of this world's frames."""
        world = dict(self.road.info, lap_time_s=float(self.cfg.lap_time), lighting=self.lighting.summary(),
                     stops=[{"t_start": round(a, 3), "t_stop": round(b, 3)} for a, b in self.ego.profile.stops])
        meta: dict[str, Any] = {"format": "synthetic", "seed": self.seed, "split": split_of(self.seed),
                                "scenario": scenario, "world": world,
                                "degradations": [dict(s, t_start=float(self.times[s["start"]]),
                                                      t_stop=float(self.times[s["stop"] - 1])) for s in self.spans],
                                "ground_truth": list(GROUND_TRUTH_LAYERS),
                                "source": f"synthetic:{scenario}:{self.seed}", "config": self.cfg.to_dict()}
        return Sequence(self.times, self.frame, calibration=self.calibration, sensors={"camera", "lidar", "imu"},
                        imu=self.imu, gt_poses=self.ego.poses(self.times) if self.frames else np.zeros((0, 4, 4)),
                        metadata=meta, name=f"synthetic-{scenario}-{self.seed}", gt_maps=self.gt_maps)


#: config fields that shape the static world and the ego drive (everything else leaves them unchanged)
LAYOUT_FIELDS = ("loop_length", "lap_time", "max_mean_speed", "speed_wobble", "max_lateral_acc", "stop_count",
                 "stop_duration", "hill_height", "hill_width", "side_streets", "body_height", "world_margin",
                 "terrain_spacing", "tree_count", "parked_car_probability", "occupancy_resolution",
                 "elevation_resolution", "raycast_threads")


def _layout_key(cfg: SynthConfig) -> tuple:
    return tuple((f, getattr(cfg, f)) for f in LAYOUT_FIELDS)


def split_of(seed: int) -> str:
    """Dataset split of a world seed: ``"test"`` when ``seed % 10 == 0``, ``"val"`` when 1, else ``"train"``."""
    r = int(seed) % 10
    return "test" if r == 0 else "val" if r == 1 else "train"


def seeds_of(split: str, n: int, start: int = 0) -> list[int]:
    """The first ``n`` seeds ``>= start`` of a split (``train``, ``val`` or ``test``), ascending.

    Raises:
        ConfigError: unknown split or negative n.
    """
    from fuse4d.errors import ConfigError

    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    out, seed = [], max(0, int(start))
    while len(out) < n:
        if split_of(seed) == split:
            out.append(seed)
        seed += 1
    return out


SPLITS = ("train", "val", "test")


def road_and_drive(seed: int, cfg: SynthConfig) -> tuple[Road, EgoTrajectory]:
    """The road network and the ego drive of a seed (no ground, no rendering: cheap).

    A loop too long to drive in ``lap_time`` within plausible speeds and accelerations is
    redrawn smaller (same shape and draws, shorter length).
    """
    seeds = np.random.SeedSequence([seed, 1]).spawn(6)
    shrink = 1.0
    for _ in range(5):
        rng_road, rng_drive = np.random.default_rng(seeds[4]), np.random.default_rng(seeds[5])
        n_stops = int(rng_drive.integers(cfg.stop_count[0], cfg.stop_count[1] + 1))
        durations = rng_drive.uniform(*cfg.stop_duration, n_stops)
        road = make_road(cfg, rng_road, max_stop_time=float(durations.sum()), shrink=shrink)
        where = draw_stops(road, n_stops, rng_drive)
        profile = SpeedProfile(road.loop, cfg, rng_drive, where, list(durations[:len(where)]))
        if profile.overdrive <= (1.15 if where else 1.08):  # a standstill costs time: allow a brisker drive
            break
        shrink /= profile.overdrive ** 1.5
    return road, EgoTrajectory(road.loop, profile)


@functools.lru_cache(maxsize=2)
def _static_world(seed: int, layout: tuple) -> dict[str, Any]:
    """Road, ego drive, ground, static primitives, Embree scene and GT maps for a seed (cached:
    scenarios of one seed share them). GT map arrays are read-only."""
    cfg = replace(SynthConfig(), **dict(layout))
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1]).spawn(4)]
    road, ego = road_and_drive(seed, cfg)
    terrain = Terrain(road, cfg, rngs[0])
    prims, parked = place_static(terrain, cfg, rngs[1])
    gt_maps = ground_truth_maps(terrain, prims, cfg)
    for layer in gt_maps.values():
        for v in layer.values():
            if isinstance(v, np.ndarray):
                v.setflags(write=False)
    return {"road": road, "loop": road.loop, "ego": ego, "terrain": terrain, "prims": prims, "parked": parked,
            "gt_maps": gt_maps, "static": StaticScene(terrain, prims, cfg.raycast_threads)}


def _progress(enabled: bool, stages: list[str]):
    """Yield once per stage, showing a tqdm bar when enabled."""
    if enabled:
        from tqdm import tqdm
        bar = tqdm(total=len(stages), desc="building synthetic world")
        for s in stages:
            bar.set_postfix_str(s)
            yield
            bar.update(1)
        bar.close()
        yield
    else:
        for _ in range(len(stages) + 1):
            yield


def synthesize(seed: int = 0, frames: int = 200, scenario: str = "default", config: SynthConfig | None = None,
               progress: bool = False) -> Sequence:
    """Build the synthetic world and return it as a lazy multi-sensor :class:`Sequence`.

    Args:
        seed: world seed; the same seed gives bit-identical frames.
        frames: number of frames (10 Hz by default; the ego closes its loop at ~18.5 s).
        scenario: a name in ``SCENARIOS`` (default, dense_traffic, camera_dark, lidar_dropout,
            imu_burst, degraded).
        config: base config; the scenario's overrides fill fields left at their defaults.
        progress: show a progress bar while building.

    Raises:
        ConfigError: unknown scenario or invalid config.
        ValueError: ``frames < 1``.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    cfg = resolve_config(scenario, config)
    return World(seed, cfg, frames, progress).sequence(scenario)
