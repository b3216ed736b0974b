"""Fixtures for the mapping tests: a short held-out synthetic drive mapped once per session."""

from __future__ import annotations

import numpy as np
import pytest

from fuse4d.data.synthetic import synthesize

SEED = 11          # a validation seed (split_of(11) == "val"): never a training seed
FRAMES = 30
STEP = 2


@pytest.fixture(scope="session")
def drive():
    """Seed 11, 30 frames of the default scenario (renders lazily)."""
    return synthesize(seed=SEED, frames=FRAMES)


@pytest.fixture(scope="session")
def frames(drive):
    """Every second frame of the drive, rendered once."""
    return [drive[i] for i in range(0, FRAMES, STEP)]


def _build(drive, frames, semantics: bool = True, dynamic: bool = True, **cfg):
    """A MapBuilder fed ``frames`` with ground-truth poses, optionally GT point labels / GT dynamic masks."""
    from fuse4d.mapping import MapBuilder, MappingConfig
    b = MapBuilder.for_sequence(drive, MappingConfig(**{"mesh": False, **cfg}))
    grounds = []
    for f in frames:
        out = b.add_frame(f, f.T_world_body, f.point_semantics if semantics else None,
                          f.point_dynamic.astype(np.float32) if dynamic else None)
        grounds.append(out["ground"])
    return b, grounds


@pytest.fixture(scope="session")
def gt_built(drive, frames):
    """Builder fed GT labels and GT dynamic masks, and its finished maps."""
    b, grounds = _build(drive, frames)
    return b, b.finish(), grounds


@pytest.fixture(scope="session")
def build():
    """``build(drive, frames, semantics=True, dynamic=True, **config) -> (MapBuilder, grounds)``."""
    return _build
