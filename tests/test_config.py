"""Config loading: defaults, presets, YAML overlay, --set overrides, one-line errors with the nearest key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from fuse4d.config import PRESETS, load_config, parse_set, write_config
from fuse4d.errors import ConfigError


def test_defaults_and_overrides(tmp_path):
    cfg = load_config()
    assert cfg.run.window == 16 and cfg.run.use_model is True and cfg.run.on_error == "stop"
    assert cfg.estimation["max_range"] == 100.0 and cfg.estimation["voxel_size"] == 1.0  # derived default
    p = tmp_path / "c.yaml"
    p.write_text("run:\n  window: 8\ndata:\n  step: 2\nestimation:\n  max_range: 50\n")
    cfg = load_config(p, run={"use_model": False})
    assert (cfg.run.window, cfg.run.use_model, cfg.data.step) == (8, False, 2)
    assert cfg.estimation["max_range"] == 50.0 and cfg.estimation["voxel_size"] == 0.5


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_differs_from_default_where_it_says(name):
    cfg = load_config(name)
    from importlib import resources
    text = resources.files("fuse4d.configs").joinpath(f"{name}.yaml").read_text()
    for section, values in (yaml.safe_load(text) or {}).items():
        for key, value in (values or {}).items():
            got = cfg.estimation[key] if section == "estimation" else getattr(getattr(cfg, section), key, None) \
                if not isinstance(getattr(cfg, section), dict) else getattr(cfg, section)[key]
            assert got == value, (name, section, key)


def test_set_overrides_after_the_file():
    cfg = load_config("fast", sets=["run.window=8", "estimation.loop_closure=true", "mapping.voxel_size=0.2",
                                    "run.checkpoint=null"])
    assert cfg.run.window == 8 and cfg.estimation["loop_closure"] is True and cfg.run.checkpoint is None
    assert cfg.run.write_plots is False  # from the preset
    mapping = cfg.mapping if isinstance(cfg.mapping, dict) else vars(cfg.mapping)
    assert mapping["voxel_size"] == 0.2
    assert parse_set(["a.b.c=1", "a.d=x y"]) == {"a": {"b": {"c": 1}, "d": "x y"}}


@pytest.mark.parametrize("sets,match", [
    (["run.windw=8"], r"^--set: unknown key 'run.windw'; did you mean 'run.window'\?$"),
    (["estimaton.max_range=8"], r"unknown config section 'estimaton'; did you mean 'estimation'\?"),
    (["estimation.max_rang=8"], r"unknown key 'estimation.max_rang'; did you mean 'estimation.max_range'\?"),
    (["run.window=abc"], r"'run.window' must be int, got 'abc'"),
    (["run.use_model=3"], r"'run.use_model' must be bool, got 3"),
    (["run.on_error=ignore"], r"run.on_error must be stop or skip, got 'ignore'"),
    (["estimation.mode=fast"], r"EstimationConfig.mode must be 'batch' or 'window'"),
    (["estimation.network_factors=some"], r"EstimationConfig.network_factors must be 'gaps' or 'all'"),
    (["mapping.voxel=0.2"], r"unknown key 'mapping.voxel'; did you mean 'mapping.(voxel_size|point_voxel)'\?"),
    (["window=8"], r"expected section.key=value"),
    (["run.window"], r"expected section.key=value"),
    (["data.stop=-3"], r"data.stop \(--frames\) must be >= 1, got -3"),
])
def test_bad_set_is_one_line_naming_key(sets, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_config(None, sets=sets)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text,match", [
    ("run:\n  windw: 8\n", "unknown key 'run.windw'; did you mean 'run.window'"),
    ("mappin: {}\n", "unknown config section 'mappin'; did you mean 'mapping'"),
    ("run:\n  window: 1\n", "run.window must be >= 2"),
    ("run: [1, 2\n", "invalid YAML"),
    ("run: 3\n", "section 'run' must be a mapping"),
    ("- 1\n", "top level must be a mapping"),
])
def test_bad_config_names_file(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        load_config(p)
    assert "bad.yaml" in str(e.value) and "\n" not in str(e.value)


def test_missing_config_file_and_preset_typo(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="did you mean 'kitti'"):
        load_config("kiti")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("tum", sets=["run.on_error=skip"])
    path = write_config(cfg, tmp_path / "config.yaml", fuse4d="x")
    assert yaml.safe_load(path.read_text())["fuse4d"] == "x"
    back = load_config(path)
    assert back == cfg


def test_config_loading_does_not_import_torch():
    code = "import sys; from fuse4d.config import load_config; load_config('kitti'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
