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


def test_info_reads_real_kitti_raw_and_plots(shared, tmp_path):
    drive = shared("kitti_raw_2011_09_26", "2011_09_26", "2011_09_26_drive_unknown_sync")
    png = tmp_path / "f.png"
    r = runner.invoke(app, ["info", str(drive), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert "113459 / 113883 / 114278 points per scan" in r.output
    assert "1242 x 375 px" in r.output and "read       6 of 6 frames" in r.output
    assert png.stat().st_size > 50_000


def test_info_exits_nonzero_on_truncated_scan(shared, tmp_path):
    import shutil
    src = shared("kitti_raw_2011_09_26", "2011_09_26")
    day = tmp_path / "2011_09_26"
    shutil.copytree(src / "2011_09_26_drive_unknown_sync", day / "2011_09_26_drive_unknown_sync")
    for f in src.glob("calib_*.txt"):
        shutil.copy(f, day / f.name)
    scan = day / "2011_09_26_drive_unknown_sync" / "velodyne_points" / "data" / "0000000003.bin"
    scan.write_bytes(scan.read_bytes()[:1000 * 16 + 7])
    r = runner.invoke(app, ["info", str(day / "2011_09_26_drive_unknown_sync")])
    assert r.exit_code == 2, r.output
    assert "0000000003.bin" in r.output and "Traceback" not in r.output
