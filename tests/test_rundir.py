"""The run folder never loses a run: kill -9 and resume, failed --overwrite, foreign folders, faults, umask."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fuse4d.cli import app
from fuse4d.config import load_config
from fuse4d.errors import DataError
from fuse4d.rundir import open_run_folder
from fuse4d.store import RunStore

runner = CliRunner()
FRAMES, WINDOW = 12, 3

# A deterministic stand-in for the fusion model: semantics = frame index, no pose factors. It logs the
# windows it is asked for and sleeps, so a run can be killed between two committed windows.
STUB = textwrap.dedent('''
    import time
    import numpy as np
    from fuse4d.data.prediction import WindowPrediction

    class StubPredictor:
        name = "stub"

        def __init__(self, delay=0.0, calls=None):
            self.delay, self.calls = delay, calls

        def predict(self, window, sensors=None, state=None):
            if self.calls is not None:
                with open(self.calls, "a") as f:
                    f.write(f"{int(window.indices[0])}\\n")
            time.sleep(self.delay)
            S = len(window)
            H, W = window[0].image.shape[:2]
            sem = np.stack([np.full((H, W), i, np.uint8) for i in window.indices])
            return WindowPrediction(indices=np.asarray(window.indices), T_prev_cur=np.full((S, 4, 4), np.nan),
                                    pose_cov=np.full((S, 6, 6), np.nan), gates=np.full((S, 3), 0.5, np.float32),
                                    semantics=sem), (state or 0) + 1
''')


@pytest.fixture(autouse=True)
def geometry_passes_only(monkeypatch):
    """These tests are about the folder and the store: pass 3 (dynamics, maps) is left out."""
    from fuse4d.pipeline import Pipeline
    monkeypatch.setattr(Pipeline, "_dynamics_and_maps", lambda self, *a, **k: None)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from fuse4d.data.export import export_sequence
    from fuse4d.data.synthetic import synthesize
    out = tmp_path_factory.mktemp("world")
    export_sequence(synthesize(seed=1, frames=FRAMES), out)
    return out


@pytest.fixture(scope="module")
def stub_module(tmp_path_factory):
    d = tmp_path_factory.mktemp("stub")
    (d / "stub_predictor.py").write_text(STUB)
    sys.path.insert(0, str(d))
    yield d
    sys.path.remove(str(d))


def _cfg(model: bool = True):
    return load_config("fast", run={"window": WINDOW, "write_plots": False, "use_model": model})


def _run(world, out, predictor=None, overwrite=False):
    from fuse4d.data.registry import load_sequence
    from fuse4d.pipeline import Pipeline
    return Pipeline(_cfg(predictor is not None), predictor=predictor).run(load_sequence(world), out, overwrite=overwrite)


def test_sigkill_mid_run_resumes_from_last_window_and_matches_uninterrupted(world, stub_module, tmp_path):
    from stub_predictor import StubPredictor
    ref = _run(world, tmp_path / "ref", StubPredictor())

    out, calls = tmp_path / "run", tmp_path / "calls.txt"
    script = textwrap.dedent(f'''
        import sys; sys.path.insert(0, {str(stub_module)!r})
        from stub_predictor import StubPredictor
        from fuse4d.config import load_config
        from fuse4d.data.registry import load_sequence
        from fuse4d.pipeline import Pipeline
        Pipeline._dynamics_and_maps = lambda self, *a, **k: None
        cfg = load_config("fast", run={{"window": {WINDOW}, "write_plots": False, "use_model": True}})
        Pipeline(cfg, predictor=StubPredictor(delay=1.0)).run(load_sequence({str(world)!r}), {str(out)!r})
    ''')
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    store_path, done, t0 = out / "run.zarr", 0, time.time()
    try:
        while time.time() - t0 < 120 and proc.poll() is None:
            try:
                done = RunStore.open(store_path).frames_done
            except DataError:
                done = 0
            if done >= 2 * WINDOW:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert done >= 2 * WINDOW, proc.stderr.read().decode()[-2000:]
    killed = RunStore.open(store_path)
    assert killed.meta["status"] == "running" and WINDOW * 2 <= killed.frames_done < FRAMES
    assert not (out / "trajectory.txt").exists()

    res = _run(world, out, StubPredictor(calls=calls))  # the same call again: resumes
    predicted = [int(x) for x in calls.read_text().split()]
    assert predicted == list(range(killed.frames_done, FRAMES, WINDOW))  # only the windows not committed
    a, b = RunStore.open(ref.store_path), RunStore.open(res.store_path)
    assert b.finished and b.frames_done == FRAMES
    for name in ("timestamps", "gates", "frames/semantics"):
        np.testing.assert_array_equal(a.read(name), b.read(name), err_msg=name)
    # the pose graph is solved again on resume; threaded registration may move its last bits (~1e-12 m)
    np.testing.assert_allclose(a.read("poses"), b.read("poses"), rtol=0, atol=1e-9, err_msg="poses")
    from fuse4d.data.trajectory import read_tum
    ta, tb = read_tum(tmp_path / "ref" / "trajectory.txt"), read_tum(out / "trajectory.txt")
    np.testing.assert_array_equal(ta.t, tb.t)
    np.testing.assert_allclose(ta.poses, tb.poses, rtol=0, atol=1e-9)
    assert b.read("frames/semantics")[:, 0, 0].tolist() == list(range(FRAMES))


def test_failed_overwrite_leaves_previous_run_whole(world, stub_module, tmp_path):
    from stub_predictor import StubPredictor
    out = tmp_path / "run"
    _run(world, out, StubPredictor())
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    class Failing(StubPredictor):
        def predict(self, window, sensors=None, state=None):
            if window.indices[0] >= 2 * WINDOW:
                raise DataError(Path("frame.png"), "cannot decode image")
            return super().predict(window, sensors, state)

    with pytest.raises(DataError, match="finished run; pass --overwrite"):
        _run(world, out, StubPredictor())
    with pytest.raises(DataError, match="cannot decode image"):
        _run(world, out, Failing(), overwrite=True)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # byte for byte
    assert sorted(os.listdir(tmp_path)) == ["run"]  # the half-built run is gone
    assert RunStore.open(out / "run.zarr").finished


def test_overwrite_swaps_in_new_run_and_interrupted_swap_is_undone(world, tmp_path):
    out = tmp_path / "run"
    _run(world, out)
    res = _run(world, out, overwrite=True)
    assert res.out_dir == out and RunStore.open(out / "run.zarr").finished
    assert sorted(os.listdir(tmp_path)) == ["run"]
    # a kill between the two renames of the swap: the old run is put back on the next open
    os.replace(out, tmp_path / ".run.fuse4d-old-999999")
    (tmp_path / ".run.fuse4d-new-999999").mkdir()
    with pytest.raises(DataError, match="finished run"):
        open_run_folder(out, "x", {}, overwrite=False)
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_refusals_one_line(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my thesis")
    with pytest.raises(DataError, match=r"holds files fuse4d did not write \(notes.txt\)"):
        open_run_folder(tmp_path / "mine", "x", {})
    assert (tmp_path / "mine" / "notes.txt").read_text() == "my thesis"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        open_run_folder(tmp_path / "afile", "x", {})
    with pytest.raises(DataError, match="cannot create the run folder: Not a directory"):
        open_run_folder(tmp_path / "afile" / "run", "x", {})


def test_read_only_output_folder(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.geteuid() == 0:  # root writes anywhere: make the file system say no
            monkeypatch.setattr(os, "access", lambda p, mode: False)
        with pytest.raises(DataError, match="read-only"):
            open_run_folder(ro, "x", {})
        monkeypatch.undo()
        if os.geteuid() == 0:
            def deny(self, *a, **k):
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            monkeypatch.setattr(Path, "mkdir", deny)
        with pytest.raises(DataError, match="permission denied"):
            open_run_folder(ro / "run", "x", {})
    finally:
        ro.chmod(0o755)


def test_disk_full_is_one_line_and_keeps_previous_run(world, tmp_path, monkeypatch):
    out = tmp_path / "run"
    r = runner.invoke(app, ["run", str(world), "--out", str(out), "--no-model", "--config", "fast"])
    assert r.exit_code == 0, r.output
    before = (out / "trajectory.txt").read_bytes()
    import fuse4d.pipeline

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(fuse4d.pipeline, "atomic_write_text", full)
    r = runner.invoke(app, ["run", str(world), "--out", str(out), "--no-model", "--config", "fast", "--overwrite"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "No space left on device" in r.output and "config.yaml" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert (out / "trajectory.txt").read_bytes() == before and RunStore.open(out / "run.zarr").finished


def test_files_follow_the_umask(tmp_path):
    from fuse4d.fileio import atomic_write_text
    old = os.umask(0o027)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "x")
        store = RunStore.create(tmp_path / "r.zarr", {}, "s", n_frames=2)
        store.write_frames("poses", 0, np.tile(np.eye(4), (2, 1, 1)))
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o640
    modes = {stat.S_IMODE(f.stat().st_mode) for f in (tmp_path / "r.zarr").rglob("*") if f.is_file()}
    assert modes == {0o640}, modes
