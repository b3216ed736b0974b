"""The fuse4d command: fast help, clear one-line errors, non-zero exit codes."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from fuse4d.cli import app

runner = CliRunner()


def test_help_is_fast_and_does_not_import_torch():
    code = ("import sys, time; t=time.time(); from fuse4d.cli import app; from typer.testing import CliRunner; "
            "r=CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "assert 'torch' not in sys.modules and 'open3d' not in sys.modules; print(time.time()-t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout.strip()) < 3.0


@pytest.mark.parametrize("cmd", ["synth", "info", "eval", "run", "demo"])
def test_every_command_has_help(cmd):
    r = runner.invoke(app, [cmd, "--help"])
    assert r.exit_code == 0 and "Usage" in r.output


def test_info_on_missing_path_is_one_line_error(tmp_path):
    r = runner.invoke(app, ["info", str(tmp_path / "nope")])
    assert r.exit_code == 2
    assert "no such file or directory" in r.output and "Traceback" not in r.output


def test_info_on_unknown_layout(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    r = runner.invoke(app, ["info", str(tmp_path)])
    assert r.exit_code == 2 and "unknown log layout" in r.output


def test_eval_needs_both_files(tmp_path):
    r = runner.invoke(app, ["eval", "--est", str(tmp_path / "a.txt")])
    assert r.exit_code == 2 and "give both --est and --ref" in r.output
