"""Fixtures for the synthetic-world tests: small sensors so a frame renders in a few ms."""

from __future__ import annotations

import pytest

from fuse4d.data.synthetic import SynthConfig, World
from fuse4d.data.synthetic.config import resolve_config

SMALL = dict(image_width=128, image_height=48, lidar_beams=16, lidar_azimuth_steps=512)


@pytest.fixture(scope="session")
def small_config() -> SynthConfig:
    """Default config with a 128 × 48 camera and a 16 × 512 LiDAR."""
    return SynthConfig(**SMALL)


@pytest.fixture(scope="session")
def default_world(small_config) -> World:
    """The default scenario, seed 0, 200 frames (frames render lazily)."""
    return World(0, resolve_config("default", small_config), frames=200)


@pytest.fixture(scope="session")
def exact_world() -> World:
    """Default world without LiDAR/IMU/camera noise (degradations off), 200 frames."""
    cfg = SynthConfig(**SMALL, lidar_noise=False, imu_noise=False, camera_noise=False)
    return World(0, resolve_config("default", cfg), frames=200)


@pytest.fixture(scope="session")
def make_world(small_config):
    """``make_world(scenario, seed=0, frames=20, **overrides) -> World`` (cached)."""
    cache: dict = {}

    def make(scenario: str, seed: int = 0, frames: int = 20, **overrides) -> World:
        key = (scenario, seed, frames, tuple(sorted(overrides.items())))
        if key not in cache:
            from dataclasses import replace
            cfg = resolve_config(scenario, replace(small_config, **overrides))
            cache[key] = World(seed, cfg, frames=frames)
        return cache[key]

    return make
