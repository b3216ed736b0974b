"""Pipeline configuration: one small dataclass per subsystem, nested in one root.

``load_config(path_or_preset, sets=[...])`` starts from the shipped
``configs/default.yaml``, overlays a preset (``kitti``, ``tum``, ``euroc``,
``fast``, ``accurate``) or a user YAML file, then ``--set section.key=value``
overrides, and validates in one place. The resolved config is written beside
every run's results.

Sections and the dataclass that types each (the subsystem owns it, in a light
module with no torch/open3d/jax import):

============  ===================================================  =================
section       class                                                  until it exists
============  ===================================================  =================
data, run     :class:`DataConfig`, :class:`RunConfig` (here)
estimation    ``fuse4d.fusion.estimation.config.EstimationConfig``
model         ``fuse4d.fusion.config.ModelConfig``                   free-form dict
mapping       ``fuse4d.mapping.config.MappingConfig``                free-form dict
dynamics      ``fuse4d.dynamics.config.DynamicsConfig``              free-form dict
calib         ``fuse4d.calib.config.CalibConfig``                    free-form dict
============  ===================================================  =================

A typo is one line naming the file, the key and the nearest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import sys
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fuse4d.errors import ConfigError

#: presets shipped in ``configs/`` (``load_config("kitti")``)
PRESETS = ("default", "kitti", "tum", "euroc", "fast", "accurate")
ON_ERROR = ("stop", "skip")


@dataclass
class DataConfig:
    """Which frames of the input to use: ``seq[start:stop:step]``."""

    start: int = 0
    stop: int | None = None
    step: int = 1


@dataclass
class RunConfig:
    """Orchestration: windows, model use, outputs, what a bad frame does.

    ``on_error``: ``stop`` ends the run cleanly at the first unreadable frame
    (the store stays readable); ``skip`` records the frame and goes on.
    """

    window: int = 16
    use_model: bool = True
    checkpoint: str | None = None
    sensors: str | None = None  # e.g. "camera,imu": use only these sensors of the log (None = all)
    write_plots: bool = True
    on_error: str = "stop"
    precision: str = "fp32"  # fusion network on CPU: fp32, bf16 (autocast) or int8 (dynamic quantisation)


#: section → (module, class) of the subsystem's typed config
SECTION_CLASSES: dict[str, tuple[str, str]] = {
    "estimation": ("fuse4d.fusion.estimation.config", "EstimationConfig"),
    "model": ("fuse4d.fusion.config", "ModelConfig"),
    "mapping": ("fuse4d.mapping.config", "MappingConfig"),
    "dynamics": ("fuse4d.dynamics.config", "DynamicsConfig"),
    "calib": ("fuse4d.calib.config", "CalibConfig"),
}
SECTIONS = ("data", "run", *SECTION_CLASSES)


def _light_class(module: str, name: str) -> type | None:
    """``module.name`` loaded from its file alone (its package ``__init__`` may import torch).

    Returns None while the subsystem has not written its config module.
    """
    mod = sys.modules.get(module)
    if mod is None:
        rel = module.removeprefix("fuse4d.").replace(".", "/") + ".py"
        path = Path(__file__).resolve().parent / rel
        if not path.is_file():
            return None
        spec = importlib.util.spec_from_file_location(module, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[module] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[module]
            raise
    return getattr(mod, name, None)


def section_class(section: str) -> type | None:
    """The dataclass typing ``section``, or None when it is (still) a free-form dict."""
    if section == "data":
        return DataConfig
    if section == "run":
        return RunConfig
    return _light_class(*SECTION_CLASSES[section])


@dataclass
class PipelineConfig:
    """Root config of a fuse4d run: one section per subsystem.

    ``estimation`` is kept as a plain dict of every
    :class:`~fuse4d.fusion.estimation.config.EstimationConfig` field (resolved,
    validated) so the pipeline builds it where torch is already loaded;
    ``model``, ``mapping``, ``dynamics``, ``calib`` hold their subsystem's
    dataclass once it exists, a dict until then.
    """

    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)
    estimation: dict[str, Any] = field(default_factory=dict)
    model: Any = field(default_factory=dict)
    mapping: Any = field(default_factory=dict)
    dynamics: Any = field(default_factory=dict)
    calib: Any = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (YAML/JSON-safe)."""
        return dataclasses.asdict(self)


# -- merging and overrides ---------------------------------------------------
def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["mapping.voxel=0.2", "run.window=8"]`` → nested dict; values parsed as YAML scalars.

    Raises:
        ConfigError: an item without ``=`` or without a ``section.key`` name.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        parts = key.strip().split(".")
        if not eq or len(parts) < 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. run.window=8")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p!r} is set to a value and used as a section")
        node[parts[-1]] = value
    return out


def _nearest(word: str, options: typing.Iterable[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f"; did you mean '{prefix}{close[0]}'?" if close else ""


# -- validation ----------------------------------------------------------------
def _type_ok(value: Any, hint: Any) -> tuple[bool, Any]:
    """Check ``value`` against a simple annotation; returns (ok, value coerced int→float)."""
    if hint is Any:
        return True, value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for h in typing.get_args(hint):
            ok, v = _type_ok(value, h)
            if ok:
                return True, v
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if hint is str:
        return isinstance(value, str), value
    if origin in (list, tuple) or hint in (list, tuple):
        if isinstance(value, (list, tuple)):
            return True, (tuple(value) if (origin or hint) is tuple else list(value))
        return False, value
    if origin is dict or hint is dict:
        return isinstance(value, dict), value
    return True, value


def _build_section(name: str, cls: type, sec: dict[str, Any], source: str) -> Any:
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: check names only
        hints = {}
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in sec.items():
        if key not in names:
            raise ConfigError(f"{source}: unknown key '{name}.{key}'{_nearest(key, names, name + '.')}")
        ok, value = _type_ok(value, hints.get(key, Any))
        if not ok:
            want = str(hints[key]).replace("typing.", "").replace("<class '", "").replace("'>", "")
            raise ConfigError(f"{source}: '{name}.{key}' must be {want}, got {value!r}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{source}: {name}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: invalid '{name}' section: {e}") from None


def config_from_dict(d: dict[str, Any], source: str = "<dict>") -> PipelineConfig:
    """Build and validate a :class:`PipelineConfig`.

    Raises:
        ConfigError: one line naming ``source``, the bad key and the nearest valid one.
    """
    for name in d:
        if name not in SECTIONS and name != "fuse4d":  # a resolved config's version line
            raise ConfigError(f"{source}: unknown config section {name!r}{_nearest(name, SECTIONS)} "
                              f"(sections: {', '.join(SECTIONS)})")
    kwargs: dict[str, Any] = {}
    for name in SECTIONS:
        sec = d.get(name) or {}
        if not isinstance(sec, dict):
            raise ConfigError(f"{source}: section {name!r} must be a mapping of keys to values, got {sec!r}")
        cls = section_class(name)
        if cls is None:
            kwargs[name] = dict(sec)
        elif name == "estimation":
            kwargs[name] = dataclasses.asdict(_build_section(name, cls, sec, source))
        else:
            kwargs[name] = _build_section(name, cls, sec, source)
    cfg = PipelineConfig(**kwargs)
    if cfg.run.window < 2:
        raise ConfigError(f"{source}: run.window must be >= 2, got {cfg.run.window}")
    if cfg.data.step < 1:
        raise ConfigError(f"{source}: data.step must be >= 1, got {cfg.data.step}")
    if cfg.data.start < 0:
        raise ConfigError(f"{source}: data.start must be >= 0, got {cfg.data.start}")
    if cfg.data.stop is not None and cfg.data.stop < 1:
        raise ConfigError(f"{source}: data.stop (--frames) must be >= 1, got {cfg.data.stop}")
    if cfg.run.on_error not in ON_ERROR:
        raise ConfigError(f"{source}: run.on_error must be stop or skip, got {cfg.run.on_error!r}")
    if cfg.run.precision not in ("fp32", "bf16", "int8"):
        raise ConfigError(f"{source}: run.precision must be fp32, bf16 or int8, got {cfg.run.precision!r}")
    return cfg


# -- files ----------------------------------------------------------------------
def _preset_text(name: str) -> str:
    return resources.files("fuse4d.configs").joinpath(f"{name}.yaml").read_text()


def default_config_dict() -> dict[str, Any]:
    """The shipped ``configs/default.yaml`` as a dict."""
    return yaml.safe_load(_preset_text("default")) or {}


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        d = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: top level must be a mapping of sections")
    return d


def load_config(path: str | Path | None = None, sets: list[str] | tuple[str, ...] = (),
                **overrides: Any) -> PipelineConfig:
    """Default config, overlaid with a preset or YAML file, ``--set`` items and ``overrides``.

    Args:
        path: a YAML file, or a preset name (:data:`PRESETS`), or None.
        sets: ``section.key=value`` strings (``--set``), applied after the file.
        overrides: nested dicts by section, e.g. ``run={"use_model": False}``, applied last.
    Raises:
        ConfigError: missing/invalid file, unknown preset, unknown key or bad value.
    """
    d = default_config_dict()
    source = "configs/default.yaml"
    if path is not None:
        p = Path(path).expanduser()
        if str(path) in PRESETS and not p.is_file():
            source = f"preset {path!r}"
            d = _merge(d, _read_yaml(_preset_text(str(path)), source))
        elif not p.is_file():
            hint = _nearest(str(path), PRESETS) if not p.suffix else ""
            raise ConfigError(f"{p}: config file not found (presets: {', '.join(PRESETS)}){hint}")
        else:
            try:
                text = p.read_text()
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"{p}: cannot read config: {e}") from None
            d = _merge(d, _read_yaml(text, str(p)))
            source = str(p)
    cfg = config_from_dict(d, source)  # a bad key is blamed on the layer that brought it
    if sets:
        d = _merge(d, parse_set(list(sets)))
        cfg = config_from_dict(d, "--set")
    if overrides:
        cfg = config_from_dict(_merge(d, overrides), source)
    return cfg


def write_config(cfg: PipelineConfig, path: str | Path, **header: Any) -> Path:
    """Write the resolved config as YAML (``header`` keys first, e.g. ``fuse4d=version``); atomic."""
    from fuse4d.fileio import atomic_write_text
    return atomic_write_text(path, yaml.safe_dump({**header, **cfg.to_dict()}, sort_keys=False))
