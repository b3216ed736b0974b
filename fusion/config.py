"""Configuration of the fusion model and its training (a light module: no torch import).

:class:`ModelConfig` fixes the architecture (token width, blocks, resolutions) and is
stored inside every checkpoint, so a checkpoint rebuilds its own model.
:class:`TrainConfig` holds the training run (pool of synthetic seeds, steps, augmentation).
``load_train_config(path)`` reads ``configs/tiny_model.yaml``-style files
(sections ``model`` and ``train``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fuse4d.errors import ConfigError

#: modality ids of the token type embedding (the gate has one output per gated modality)
MODALITIES = ("rgb", "lidar", "imu", "depth")


@dataclass
class ModelConfig:
    """Architecture of the fusion transformer.

    Attributes:
        image_size: ``(H, W)`` model image resolution (inputs are resized to it).
        patch: RGB patch size in pixels (stem stride 8 then a ``patch/8`` conv).
        depth_patch: patch size of the projected sparse depth image (camera view).
        range_size: ``(rows, cols)`` of the LiDAR range image.
        range_patch: ``(rows, cols)`` range-image patch.
        dim: token width D; heads: attention heads; blocks: number of
            (frame, global) attention pairs; mlp_ratio: MLP hidden / D.
        registers: register tokens per frame; state_tokens: recurrent state tokens.
        imu_tokens: tokens per frame from the IMU; imu_bins: raw-sample bins per frame.
        classes: semantic classes (data/classes.py); desc_dim: descriptor channels.
        max_depth: metres, upper bound of predicted depth.
        coords: pixel-coordinate channels (CoordConv) in the dense and range decoders: where a
            pixel sits in the image (its ray) is what gives a ground pixel its depth, and the
            decoders' convolutions cannot see it otherwise. False in checkpoints made before it.
    """

    image_size: tuple[int, int] = (64, 192)
    patch: int = 16
    depth_patch: int = 16
    range_size: tuple[int, int] = (32, 256)
    range_patch: tuple[int, int] = (8, 32)
    dim: int = 96
    heads: int = 4
    blocks: int = 2
    mlp_ratio: float = 2.0
    registers: int = 2
    state_tokens: int = 8
    imu_tokens: int = 2
    imu_bins: int = 8
    classes: int = 10
    desc_dim: int = 16
    max_depth: float = 80.0
    coords: bool = False

    def __post_init__(self) -> None:
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.range_size = (int(self.range_size[0]), int(self.range_size[1]))
        self.range_patch = (int(self.range_patch[0]), int(self.range_patch[1]))
        H, W = self.image_size
        if self.patch % 8 or self.depth_patch % 4 or H % self.patch or W % self.patch or H % self.depth_patch or W % self.depth_patch:
            raise ConfigError(f"model.image_size {self.image_size} must be divisible by patch {self.patch} "
                              f"(a multiple of 8) and depth_patch {self.depth_patch}")
        rh, rw = self.range_size
        if rh % self.range_patch[0] or rw % self.range_patch[1] or self.range_patch[0] % 2 or self.range_patch[1] % 4:
            raise ConfigError(f"model.range_size {self.range_size} must be divisible by range_patch {self.range_patch}"
                              " (rows even, cols a multiple of 4)")
        if self.dim % self.heads:
            raise ConfigError(f"model.dim {self.dim} must be divisible by model.heads {self.heads}")
        if self.blocks < 1:
            raise ConfigError(f"model.blocks must be >= 1, got {self.blocks}")

    @property
    def patch_grid(self) -> tuple[int, int]:
        """``(h, w)`` RGB patches per frame."""
        return self.image_size[0] // self.patch, self.image_size[1] // self.patch

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (stored in checkpoints)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; raises ConfigError on unknown fields."""
        return _build(cls, d, "model")


@dataclass
class TrainConfig:
    """A training run on the synthetic world (train seeds only).

    Attributes:
        seed: RNG seed of the run (pool order, augmentation, init).
        pool_seeds: number of synthetic train seeds in the pool; pool_frames: frames per seed.
        scenarios: scenarios cycled over the pool's seeds.
        window: frames per training window; batch: windows per step.
        steps: optimiser steps; lr: peak learning rate; warmup: warm-up steps.
        split_prob: probability that a window runs as two halves with the recurrent state.
        corrupt_prob: probability per sample and modality of a corruption.
        loss weights: w_depth, w_sem, w_dyn, w_pose, w_gate, w_point.
        sem_balance: exponent of the class-balanced semantic loss (per-class weight
            ``frequency^-sem_balance`` over the pool's labels; 0 = plain cross-entropy).
        threads: torch CPU threads; log_every / ckpt_every: steps.
        cache_dir: where the rendered pool is cached (None = no cache).
    """

    seed: int = 0
    pool_seeds: int = 16
    pool_frames: int = 48
    scenarios: tuple[str, ...] = ("default", "dense_traffic")
    window: int = 6
    batch: int = 2
    steps: int = 1200
    lr: float = 2e-3
    warmup: int = 100
    split_prob: float = 0.4
    corrupt_prob: float = 0.25
    w_depth: float = 1.0
    w_sem: float = 1.0
    w_dyn: float = 1.0
    w_pose: float = 0.2
    w_gate: float = 0.5
    w_point: float = 1.0
    sem_balance: float = 0.0
    threads: int = 1
    log_every: int = 25
    ckpt_every: int = 200
    cache_dir: str | None = "/tmp/fuse4d_pool"

    def __post_init__(self) -> None:
        self.scenarios = tuple(self.scenarios)
        if self.window < 2 or self.batch < 1 or self.steps < 1 or self.pool_frames < self.window:
            raise ConfigError("train: window >= 2, batch >= 1, steps >= 1 and pool_frames >= window are required")


@dataclass
class TrainSetup:
    """A parsed training YAML: the model and the run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    #: set by training, not read from YAML: per-class semantic loss weights ``[classes]``
    #: derived from the pool (keys "pixels", "points"; empty = plain cross-entropy)
    class_weights: dict = field(default_factory=dict)


def _build(cls, d: dict[str, Any] | None, section: str):
    from fuse4d.sections import section_from_dict
    return section_from_dict(cls, d, section, tuples=True)


def load_train_config(path: str | Path | None = None, **train_overrides: Any) -> TrainSetup:
    """Read a training YAML (sections ``model`` and ``train``); None = built-in defaults.

    Raises:
        ConfigError: unreadable file, unknown section or field, invalid value.
    """
    import yaml
    d: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            d = yaml.safe_load(p.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{p}: cannot read training config ({e})") from None
        unknown = set(d) - {"model", "train"}
        if unknown:
            raise ConfigError(f"{p}: unknown sections {sorted(unknown)}; expected model, train")
    train = {**(d.get("train") or {}), **train_overrides}
    return TrainSetup(model=_build(ModelConfig, d.get("model"), "model"), train=_build(TrainConfig, train, "train"))
