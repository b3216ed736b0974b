"""Pipeline configuration: one small dataclass per subsystem, nested in one root.

``load_config(path)`` starts from the shipped ``configs/default.yaml``, overlays
a user YAML file and keyword overrides, and validates in one place. The
resolved config is written beside every run's results.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fuse4d.errors import ConfigError


@dataclass
class DataConfig:
    """Which frames of the input to use."""

    start: int = 0
    stop: int | None = None
    step: int = 1


@dataclass
class RunConfig:
    """Orchestration: windows, model use, outputs."""

    window: int = 16
    use_model: bool = True
    checkpoint: str | None = None
    write_plots: bool = True


@dataclass
class PipelineConfig:
    """Root config of a fuse4d run.

    ``estimation`` holds the keyword arguments of
    ``fuse4d.fusion.estimation.EstimationConfig`` (kept as a dict here so
    ``fuse4d --help`` does not import torch).
    """

    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)
    estimation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (YAML/JSON-safe)."""
        return dataclasses.asdict(self)


_SECTIONS = {"data": DataConfig, "run": RunConfig}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def default_config_dict() -> dict[str, Any]:
    """The shipped ``configs/default.yaml`` as a dict."""
    text = resources.files("fuse4d.configs").joinpath("default.yaml").read_text()
    return yaml.safe_load(text) or {}


def config_from_dict(d: dict[str, Any], source: str = "<dict>") -> PipelineConfig:
    """Build and validate a :class:`PipelineConfig`; raises ConfigError naming ``source``."""
    unknown = set(d) - {"data", "run", "estimation"}
    if unknown:
        raise ConfigError(f"{source}: unknown config sections {sorted(unknown)}; expected data, run, estimation")
    kwargs: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        sec = d.get(name) or {}
        if not isinstance(sec, dict):
            raise ConfigError(f"{source}: section {name!r} must be a mapping")
        fields = {f.name for f in dataclasses.fields(cls)}
        bad = set(sec) - fields
        if bad:
            raise ConfigError(f"{source}: unknown keys in {name!r}: {sorted(bad)}; known: {sorted(fields)}")
        kwargs[name] = cls(**sec)
    est = d.get("estimation") or {}
    if not isinstance(est, dict):
        raise ConfigError(f"{source}: section 'estimation' must be a mapping")
    cfg = PipelineConfig(**kwargs, estimation=dict(est))
    if cfg.run.window < 2:
        raise ConfigError(f"{source}: run.window must be >= 2, got {cfg.run.window}")
    if cfg.data.step < 1:
        raise ConfigError(f"{source}: data.step must be >= 1, got {cfg.data.step}")
    return cfg


def load_config(path: str | Path | None = None, **overrides: Any) -> PipelineConfig:
    """Default config, overlaid with the YAML file at ``path`` and ``overrides``.

    ``overrides`` are nested dicts by section, e.g. ``run={"use_model": False}``.
    Raises ConfigError for a missing/invalid file or unknown keys.
    """
    d = default_config_dict()
    source = "configs/default.yaml"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            user = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: invalid YAML: {e}") from None
        if not isinstance(user, dict):
            raise ConfigError(f"{p}: top level must be a mapping")
        d = _merge(d, user)
        source = str(p)
    d = _merge(d, overrides)
    return config_from_dict(d, source)
