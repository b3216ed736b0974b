"""Config loading: defaults, YAML overlay, overrides, clear errors."""

from __future__ import annotations

import pytest

from fuse4d.config import load_config
from fuse4d.errors import ConfigError


def test_defaults_and_overrides(tmp_path):
    cfg = load_config()
    assert cfg.run.window == 16 and cfg.run.use_model is True
    p = tmp_path / "c.yaml"
    p.write_text("run:\n  window: 8\ndata:\n  step: 2\n")
    cfg = load_config(p, run={"use_model": False})
    assert (cfg.run.window, cfg.run.use_model, cfg.data.step) == (8, False, 2)


@pytest.mark.parametrize("text,match", [
    ("run:\n  windw: 8\n", "unknown keys in 'run'"),
    ("mapping: {}\n", "unknown config sections"),
    ("run:\n  window: 1\n", "run.window must be >= 2"),
    ("run: [1, 2\n", "invalid YAML"),
])
def test_bad_config_names_file(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        load_config(p)
    assert "bad.yaml" in str(e.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
