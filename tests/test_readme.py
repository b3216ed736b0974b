"""README's Python examples and its "Command line" block run as written (in a scratch folder)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        scope: dict = {}
        exec(compile(code, str(README), "exec"), scope)
    result = scope.get("result")
    assert result is not None and (tmp_path / "run" / "trajectory.txt").is_file()
    assert result.metrics["ate_rmse_m"] < 0.5 and result.store_path == Path("run") / "run.zarr"


def _command_line_block() -> list[str]:
    """The commands of README's "Command line" block, one per line (comments stripped by shlex)."""
    section = README.read_text().split("## Command line", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_command_line_block_parses_and_reads_only_what_it_wrote():
    """Cheap check of the block: every line parses with fuse4d's CLI, and every file or folder a line
    reads was written (``--out``) by a line before it, so the block runs as written in an empty folder."""
    import shlex

    import typer

    from fuse4d.cli import app

    group = typer.main.get_command(app)
    written: list[Path] = []
    lines = _command_line_block()
    for line in lines:
        argv = shlex.split(line, comments=True)
        assert argv[0] == "fuse4d", line
        ctx = group.make_context("fuse4d", argv[1:])
        cmd = group.get_command(ctx, argv[1])
        assert cmd is not None, line
        params = cmd.make_context(argv[1], argv[2:], parent=ctx).params  # raises on an unknown option
        reads = [params.get(k) for k in ("input", "path", "run_dir", "est", "ref")] + list(params.get("logs") or [])
        for p in (Path(x) for x in reads if x is not None):
            assert any(p == w or w in p.parents for w in written), f"{line}: reads {p}, which no line before writes"
        out = params.get("out")
        if out is not None:  # a finished run or log is replaced only with --overwrite
            assert Path(out) not in written or params.get("overwrite"), f"{line}: {out} exists by then"
            written.append(Path(out))
    assert {shlex.split(x)[1] for x in lines} >= {"synth", "info", "run", "eval", "export", "view", "batch"}


@pytest.mark.slow  # five runs (two in Dask worker processes that import torch): ~150 CPU-s on 2 shared cores
def test_readme_command_line_block_runs(tmp_path, monkeypatch):
    """Every line of the block, as written, in an empty folder (each builds on the previous ones' files)."""
    import csv
    import json
    import shlex

    from typer.testing import CliRunner

    from fuse4d.cli import app

    lines = _command_line_block()
    assert len(lines) >= 10
    monkeypatch.chdir(tmp_path)
    outputs = {}
    for line in lines:
        argv = shlex.split(line, comments=True)
        assert argv[0] == "fuse4d", line
        r = CliRunner().invoke(app, argv[1:])
        assert r.exit_code == 0, f"{line}\n{r.output}"
        assert "Traceback" not in r.output, line
        outputs[argv[1]] = outputs.get(argv[1], []) + [r.output]
    assert (tmp_path / "frame.png").stat().st_size > 10_000
    metrics = json.loads(outputs["eval"][0])
    assert metrics["ate_rmse_m"] < 0.1  # 12 frames of a synthetic drive, LiDAR + IMU
    row = next(x.split() for x in outputs["eval"][1].splitlines() if x.startswith("ate_rmse_m"))
    assert abs(float(row[1]) - metrics["ate_rmse_m"]) < 1e-5  # the run's two trajectory files compared as files
    occ = np.load(tmp_path / "occ.npz")
    assert occ["ijk"].ndim == 2 and len(occ["ijk"]) > 100 and float(occ["resolution"]) > 0
    assert (tmp_path / "report.html").stat().st_size > 50_000
    assert (tmp_path / "run_fast" / "run.zarr").is_dir() and (tmp_path / "run" / "trajectory.txt").is_file()
    rows = list(csv.DictReader((tmp_path / "runs" / "summary.csv").open()))
    assert [(x["log"], x["status"], x["frames"]) for x in rows] == [("world", "ok", "12"), ("test_world", "ok", "12")]
