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

        def predict(self, window, sensors=None, state=None, motions=None, ground=None):
            if self.calls is not None:
                with open(self.calls, "a") as f:
                    f.write(f"{int(window.indices[0])}\\n")
            time.sleep(self.delay)
            S = len(window)
            frames = [window[k] for k in range(S)]
            H, W = frames[0].image.shape[:2]
            sem = np.stack([np.full((H, W), i, np.uint8) for i in window.indices])
            # per-point and dense outputs from the synthetic truth, so pass 3 (dynamics, maps) reads the model's
            soft = lambda m: (0.1 + 0.8 * np.asarray(m, np.float32)).astype(np.float32)
            return WindowPrediction(indices=np.asarray(window.indices), T_prev_cur=np.full((S, 4, 4), np.nan),
                                    pose_cov=np.full((S, 6, 6), np.nan), gates=np.full((S, 3), 0.5, np.float32),
                                    semantics=sem, depth=np.stack([f.depth for f in frames]).astype(np.float32),
                                    dynamic=np.stack([soft(f.dynamic_mask) for f in frames]),
                                    point_semantics=[f.point_semantics.astype(np.uint8) for f in frames],
                                    point_dynamic=[soft(f.point_dynamic) for f in frames]), (state or 0) + 1
''')


#: tests that compare whole results (trajectory, maps, tracks, per-point outputs) run all three passes
WHOLE_RUN = {"test_sigkill_mid_run_resumes_from_last_window_and_matches_uninterrupted",
             "test_killed_in_or_after_pass_3_resumes_to_identical_results"}


@pytest.fixture(autouse=True)
def geometry_passes_only(request, monkeypatch):
    """Tests about the folder and the store leave pass 3 (dynamics, maps) out; see WHOLE_RUN."""
    if request.node.originalname in WHOLE_RUN:
        return
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


@pytest.fixture(scope="module")
def reference(world, stub_module, tmp_path_factory):
    """An uninterrupted run of all three passes with the stub model."""
    from stub_predictor import StubPredictor
    return _run(world, tmp_path_factory.mktemp("ref") / "run", StubPredictor())


def assert_same_results(ref_dir: Path, run_dir: Path) -> None:
    """Two finished runs hold the same results: trajectory, model outputs, per-point and pixel dynamics,
    ground, maps and tracks (floats to 1e-9: the pose graph is solved again on resume)."""
    from fuse4d.data.trajectory import read_tum
    a, b = RunStore.open(ref_dir / "run.zarr"), RunStore.open(run_dir / "run.zarr")
    assert a.finished and b.finished and b.frames_done == a.frames_done
    ta, tb = read_tum(ref_dir / "trajectory.txt"), read_tum(run_dir / "trajectory.txt")
    np.testing.assert_array_equal(ta.t, tb.t)
    np.testing.assert_allclose(ta.poses, tb.poses, rtol=0, atol=1e-9)
    names = ["poses", "timestamps", "gates", "frames/semantics", "frames/dynamic", "lidar/semantics",
             "lidar/dynamic", "lidar/ground", "maps/occupancy", "maps/elevation", "maps/points", "dynamics/tracks"]
    for name in names:
        assert name in a, name
        x, y = a.read(name), b.read(name)
        if isinstance(x, np.ndarray):
            x, y = {"": x}, {"": y}
        if isinstance(x, list):
            x, y = dict(enumerate(x)), dict(enumerate(y))
        assert x.keys() == y.keys(), name
        for k in x:
            if np.issubdtype(x[k].dtype, np.floating):
                np.testing.assert_allclose(x[k], y[k], rtol=0, atol=1e-9, err_msg=f"{name} {k}")
            else:
                np.testing.assert_array_equal(x[k], y[k], err_msg=f"{name} {k}")
    for name in ("occupancy", "elevation"):
        assert a.attrs(f"maps/{name}") == b.attrs(f"maps/{name}")
    assert len(a.read("dynamics/tracks")["t"]) > 0 and np.isfinite(a.read("lidar/dynamic")).all()
    staged = [p.name for p in (run_dir / "run.zarr").rglob("*.pass3")]
    assert not staged, staged


def test_sigkill_mid_run_resumes_from_last_window_and_matches_uninterrupted(world, stub_module, reference, tmp_path):
    from stub_predictor import StubPredictor

    out, calls = tmp_path / "run", tmp_path / "calls.txt"
    script = textwrap.dedent(f'''
        import sys; sys.path.insert(0, {str(stub_module)!r})
        from stub_predictor import StubPredictor
        from fuse4d.config import load_config
        from fuse4d.data.registry import load_sequence
        from fuse4d.pipeline import Pipeline
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
    assert_same_results(reference.out_dir, res.out_dir)
    assert res.store().read("frames/semantics")[:, 0, 0].tolist() == list(range(FRAMES))


class _Killed(BaseException):
    """Stands in for SIGKILL inside the process: nothing after it runs, no handler catches it."""


@pytest.mark.slow  # four runs of all three passes: ~60 CPU-s
def test_killed_in_or_after_pass_3_resumes_to_identical_results(world, stub_module, reference, tmp_path, monkeypatch):
    """Pass 3 (dynamics, maps) is re-run after a kill inside it, from the model's untouched outputs
    (its own dynamic values are staged and swapped in at its end); after a kill once it is complete,
    it is not re-run. Either way the results equal an uninterrupted run's."""
    from stub_predictor import StubPredictor
    from fuse4d.mapping import MapBuilder
    from fuse4d.pipeline import Pipeline
    add_frame, finish = MapBuilder.add_frame, Pipeline._finish

    def kill_at_frame_7(self, frame, *a, **k):
        if self.frames == 7:
            raise _Killed
        return add_frame(self, frame, *a, **k)

    def kill_before_finish(self, *a, **k):
        raise _Killed

    for name, where, patch in (("in_pass3", MapBuilder, ("add_frame", kill_at_frame_7)),
                               ("after_pass3", Pipeline, ("_finish", kill_before_finish))):
        out, calls = tmp_path / name, tmp_path / f"{name}.txt"
        with monkeypatch.context() as m:
            m.setattr(where, *patch)
            with pytest.raises(_Killed):
                _run(world, out, StubPredictor())
        killed = RunStore.open(out / "run.zarr")
        assert killed.meta["status"] == "running" and killed.frames_done == FRAMES
        assert bool(killed.meta.get("pass3_done")) == (name == "after_pass3")
        if name == "in_pass3":  # the model's per-point values are still there, pass 3's are staged
            assert (out / "run.zarr" / "lidar" / "dynamic.pass3").is_dir()
        redone = []
        with monkeypatch.context() as m:
            m.setattr(MapBuilder, "add_frame", lambda self, *a, **k: redone.append(1) or add_frame(self, *a, **k))
            res = _run(world, out, StubPredictor(calls=calls))
        assert not calls.exists()  # every window was committed: the model is not run again
        assert len(redone) == (FRAMES if name == "in_pass3" else 0)
        assert_same_results(reference.out_dir, res.out_dir)
    assert finish is Pipeline._finish


def test_failed_overwrite_leaves_previous_run_whole(world, stub_module, tmp_path):
    from stub_predictor import StubPredictor
    out = tmp_path / "run"
    _run(world, out, StubPredictor())
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    class Failing(StubPredictor):
        def predict(self, window, sensors=None, state=None, motions=None, ground=None):
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
