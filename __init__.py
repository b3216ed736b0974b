"""fuse4d: multimodal sensor-fusion 4D mapping engine.

The public API is re-exported here lazily, so ``import fuse4d`` (and the
``fuse4d --help`` command) stays fast: torch, jax and open3d load only when a
name that needs them is first used. ``dir(fuse4d)`` lists the names whose
capability is installed.

Example:
    >>> import fuse4d
    >>> seq = fuse4d.synthesize(seed=0, frames=20)                     # doctest: +SKIP
    >>> result = fuse4d.Pipeline(fuse4d.load_config("fast")).run(seq, out="run/")   # doctest: +SKIP
    >>> result.T_world_body.shape, result.metrics["ate_rmse_m"]       # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__version__ = "0.1.0"

#: public name → module that defines it (a package name: its lazy ``__getattr__``)
_LAZY = {
    # engine
    "Pipeline": "fuse4d.pipeline",
    "Result": "fuse4d.pipeline",
    "PipelineConfig": "fuse4d.config",
    "load_config": "fuse4d.config",
    "RunStore": "fuse4d.store",
    "DataError": "fuse4d.errors",
    "ConfigError": "fuse4d.errors",
    "Fuse4dError": "fuse4d.errors",
    # data
    "Calibration": "fuse4d.data.types",
    "ImuSamples": "fuse4d.data.types",
    "Frame": "fuse4d.data.types",
    "Sequence": "fuse4d.data.types",
    "WindowPrediction": "fuse4d.data.prediction",
    "load_sequence": "fuse4d.data.registry",
    "synthesize": "fuse4d.data.synthetic",
    "read_trajectory": "fuse4d.data.trajectory",
    # stages
    "Estimator": "fuse4d.fusion.estimation.estimator",
    "EstimationConfig": "fuse4d.fusion.estimation.config",
    "estimate_trajectory": "fuse4d.fusion.estimation.estimator",
    "LidarOdometry": "fuse4d.fusion.estimation.lidar_odometry",
    "FusionModel": "fuse4d.fusion.model",
    "ModelConfig": "fuse4d.fusion.config",
    "Predictor": "fuse4d.fusion.predict",
    "MapBuilder": "fuse4d.mapping.builder",
    "MappingConfig": "fuse4d.mapping.config",
    "OccupancyMap": "fuse4d.mapping.occupancy",
    "ElevationMap": "fuse4d.mapping.elevation",
    "TsdfMesher": "fuse4d.mapping.mesh",
    "DynamicsStage": "fuse4d.dynamics",
    "DynamicsConfig": "fuse4d.dynamics.config",
    "LidarMOS": "fuse4d.dynamics.lidar_mos",
    "Tracker": "fuse4d.dynamics.tracking",
    "CalibConfig": "fuse4d.calib.config",
    # evaluation
    "metrics": "fuse4d.metrics",
    "evaluate_run": "fuse4d.evaluation",
    "evaluate_files": "fuse4d.evaluation",
}

_ROOT = Path(__file__).resolve().parent


def _defined(name: str, module: str) -> bool:
    """True when ``module``'s file exists and names ``name`` (no import: ``dir()`` stays fast)."""
    rel = module.removeprefix("fuse4d").lstrip(".").replace(".", "/")
    for path in (_ROOT / f"{rel}.py", _ROOT / rel / "__init__.py"):
        if path.is_file():
            return module.endswith("." + name) or name in path.read_text(errors="ignore")
    return False


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None or not _defined(name, module):
        raise AttributeError(f"module 'fuse4d' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module.endswith("." + name) else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({"__version__", *(n for n, m in _LAZY.items() if _defined(n, m))})


__all__ = ["__version__", *_LAZY]
