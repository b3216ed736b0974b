"""Every bad input of issue 10: one line naming the file (and frame), exit code 2, no traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fuse4d.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    from fuse4d.data.export import export_sequence
    from fuse4d.data.synthetic import synthesize
    out = tmp_path_factory.mktemp("k")
    export_sequence(synthesize(seed=2, frames=5), out, format="kitti")
    return out


def _one_line_error(r, *needles):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
    for n in needles:
        assert n in r.output, (n, r.output)


def _nan(p):
    a = np.fromfile(p, np.float32).reshape(-1, 4)
    a[5, 0] = np.nan
    a.tofile(p)


def _shorten_times(p):
    p.write_text("\n".join(p.read_text().split()[:3]) + "\n")


def _swap_times(p):
    t = p.read_text().split()
    t[2], t[3] = t[3], t[2]
    p.write_text("\n".join(t) + "\n")


def _dup_times(p):
    t = p.read_text().split()
    t[2] = t[1]
    p.write_text("\n".join(t) + "\n")


def _scale_rotation(p):
    lines = p.read_text().splitlines()
    i = next(k for k, x in enumerate(lines) if x.startswith("Tr"))
    v = lines[i].split()
    v[1], v[2] = str(float(v[1]) + 0.05), str(float(v[2]) * 1.1)
    lines[i] = " ".join(v)
    p.write_text("\n".join(lines) + "\n")


CASES = {
    "truncated scan": ("velodyne/000002.bin", lambda p: p.write_bytes(p.read_bytes()[:1000 * 16 + 7]), "not a multiple of 16"),
    "corrupt scan": ("velodyne/000002.bin", lambda p: p.write_bytes(np.random.default_rng(0).integers(
        0, 256, 4000, dtype=np.uint8).tobytes()), "000002.bin"),
    "NaN points": ("velodyne/000002.bin", _nan, "NaN/inf"),
    "missing scan": ("velodyne/000002.bin", lambda p: p.unlink(), "missing"),
    "image wrong size": ("image_2/000002.png", lambda p: Image.new("RGB", (100, 50)).save(p), "100x50 px"),
    "times shorter than scans": ("times.txt", _shorten_times, "has 3 timestamps but velodyne/ holds 5"),
    "reversed timestamps": ("times.txt", _swap_times, "non-monotonic"),
    "duplicated timestamps": ("times.txt", _dup_times, "duplicate"),
    "calibration not a rotation": ("calib.txt", _scale_rotation, "not a rotation matrix"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_log_is_one_line_naming_the_file(kitti, tmp_path, case):
    rel, damage, needle = CASES[case]
    log = tmp_path / "log"
    shutil.copytree(kitti, log)
    target = log / "sequences" / "00" / rel
    damage(target)
    r = runner.invoke(app, ["info", str(log)])
    _one_line_error(r, target.name, needle)


def _traj(path, t, q=None):
    pos = np.c_[np.cos(t), np.sin(t), 0 * t]
    q = np.tile([0, 0, 0, 1.0], (len(t), 1)) if q is None else q
    np.savetxt(path, np.c_[t, pos, q])


def test_eval_refuses_shuffled_binary_and_zero_quaternion_files(tmp_path):
    t = np.arange(40) * 0.1
    _traj(tmp_path / "ref.txt", t)
    _traj(tmp_path / "shuffled.txt", np.random.default_rng(0).permutation(t))
    q = np.tile([0, 0, 0, 1.0], (40, 1))
    q[7] = 0
    _traj(tmp_path / "zeroq.txt", t, q)
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    ref = str(tmp_path / "ref.txt")
    for name, needle in (("shuffled.txt", "go backwards"), ("zeroq.txt", "pose 7: zero quaternion"),
                         ("binary.txt", "not a text trajectory file")):
        r = runner.invoke(app, ["eval", "--est", str(tmp_path / name), "--ref", ref])
        _one_line_error(r, name, needle)
    r = runner.invoke(app, ["eval", "--est", ref, "--ref", ref, "--json"])
    import json
    assert r.exit_code == 0 and json.loads(r.output)["ate_rmse_m"] < 1e-9 and json.loads(r.output)["n_poses"] == 40


@pytest.mark.parametrize("args,needle", [
    (["synth", "--seed", "-1", "--out", "{tmp}/w"], "--seed must be >= 0, got -1"),
    (["run", "{tmp}", "--out", "{tmp}/r", "--frames", "-3"], "--frames) must be >= 1, got -3"),
    (["run", "{tmp}", "--out", "{tmp}/r", "--set", "run.windw=4"], "did you mean 'run.window'"),
    (["run", "{tmp}", "--out", "{tmp}/r", "--on-error", "ignore"], "run.on_error must be stop or skip"),
    (["info", "{tmp}", "--plot", "{tmp}/frame"], "--plot"),
    (["info", "{tmp}", "--plot", "{tmp}/frame.xyz"], "extension '.xyz'"),
])
def test_bad_options_are_one_line(tmp_path, args, needle):
    r = runner.invoke(app, [a.format(tmp=tmp_path) for a in args])
    _one_line_error(r, needle)


def test_folder_of_logs_is_listed(kitti, tmp_path):
    shutil.copytree(kitti, tmp_path / "val" / "log_a")
    shutil.copytree(kitti, tmp_path / "val" / "log_b")
    r = runner.invoke(app, ["info", str(tmp_path / "val")])
    _one_line_error(r, "holds 2 logs (log_a, log_b); pick one with --log NAME")
    r = runner.invoke(app, ["info", str(tmp_path / "val"), "--log", "log_b", "--quick"])
    assert r.exit_code == 0, r.output


def test_version_and_fast_help():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("fuse4d ")
    code = "import sys; from fuse4d.cli import main; sys.argv=['fuse4d','--help']\ntry: main()\nexcept SystemExit: pass\n" \
           "assert 'torch' not in sys.modules and 'dask' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_run_on_error_skip_records_the_frame_and_stop_keeps_store_readable(kitti, tmp_path):
    from fuse4d.store import RunStore
    log = tmp_path / "log"
    shutil.copytree(kitti, log)
    _nan(log / "sequences" / "00" / "velodyne" / "000003.bin")
    base = ["run", str(log), "--no-model", "--config", "fast"]
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "stop")])
    _one_line_error(r, "000003.bin", "frame 3")
    assert RunStore.open(tmp_path / "stop" / "run.zarr").meta["status"] == "running"  # readable, resumable
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "skip"), "--on-error", "skip"])
    assert r.exit_code == 0, r.output
    assert "1 unreadable frame(s) skipped" in r.output and "frame 3" in r.output
    store = RunStore.open(tmp_path / "skip" / "run.zarr")
    assert store.finished and [s["frame"] for s in store.meta["skipped_frames"]] == [3]
    assert np.isfinite(store.read("poses")[[0, 1, 2, 4], 0, 3]).all()
