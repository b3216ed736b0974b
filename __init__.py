"""fuse4d: multimodal sensor-fusion 4D mapping engine.

The public API is re-exported here lazily, so ``import fuse4d`` (and the
``fuse4d --help`` command) stays fast: torch, jax and open3d load only when a
name that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "DataError": "fuse4d.errors",
    "Calibration": "fuse4d.data.types",
    "ImuSamples": "fuse4d.data.types",
    "Frame": "fuse4d.data.types",
    "Sequence": "fuse4d.data.types",
    "load_sequence": "fuse4d.data.registry",
    "metrics": "fuse4d.metrics",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if _LAZY[name].endswith("." + name) else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fuse4d' has no attribute {name!r}")
