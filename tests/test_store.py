"""The run store: per-window writes, resume after a crash, atomic maps, refusals."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

from fuse4d.errors import DataError
from fuse4d.store import RunStore

S, WIN, H, W = 10, 4, 5, 6


def _window_data(start: int, stop: int, rng: np.random.Generator):
    k = stop - start
    poses = np.tile(np.eye(4), (k, 1, 1))
    poses[:, 0, 3] = np.arange(start, stop)
    depth = rng.uniform(0, 20, (k, H, W)).astype(np.float32)
    labels = [rng.integers(0, 10, int(rng.integers(0, 30)), dtype=np.uint8) for _ in range(k)]
    return poses, depth, labels


def _write_window(store: RunStore, start: int, stop: int, rng: np.random.Generator, done: bool = True):
    poses, depth, labels = _window_data(start, stop, rng)
    store.write_frames("poses", start, poses)
    store.write_frames("timestamps", start, 0.1 * np.arange(start, stop))
    store.write_frames("gates", start, np.full((stop - start, 3), 0.5, np.float32))
    store.write_frames("frames/depth", start, depth)
    store.write_ragged("lidar/labels", start, labels)
    if done:
        store.mark_done(stop)
    return poses, depth, labels


def test_resume_after_crash(tmp_path):
    path = tmp_path / "run.zarr"
    rng = np.random.default_rng(0)
    store = RunStore.create(path, {"window": WIN, "voxel": 0.2}, source="synthetic:seed0", n_frames=S, window=WIN)
    assert store.frames_done == 0 and np.isnan(store.read("poses")).all()
    expected = [_write_window(store, 0, 4, rng), _write_window(store, 4, 8, rng)]
    _write_window(store, 8, 10, np.random.default_rng(99), done=False)  # crash before mark_done
    del store

    store = RunStore.open(path)  # a new process
    assert store.frames_done == 8 and store.meta["status"] == "running"
    assert store.meta["config"] == {"window": WIN, "voxel": 0.2} and store.meta["source"] == "synthetic:seed0"
    assert store.root["frames/depth"].chunks == (WIN, H, W) and store.root["poses"].chunks == (WIN, 4, 4)
    expected.append(_write_window(store, store.frames_done, S, rng))  # resume rewrites the window
    assert store.frames_done == S and store.meta["status"] == "running"  # windows done, run not yet finished
    store.finish()
    assert store.finished and store.meta["status"] == "done"

    back = RunStore.open(path)
    np.testing.assert_array_equal(back.read("poses"), np.concatenate([e[0] for e in expected]))
    np.testing.assert_array_equal(back.read("frames/depth"), np.concatenate([e[1] for e in expected]))
    labels = back.read("lidar/labels")
    want = [a for e in expected for a in e[2]]
    assert len(labels) == S and all(np.array_equal(a, b) and a.dtype == np.uint8 for a, b in zip(labels, want))
    assert back.read("gates").dtype == np.float32 and np.allclose(back.read("timestamps"), 0.1 * np.arange(S))


def test_ragged_rewrite_discards_stale_tail(tmp_path):
    store = RunStore.create(tmp_path / "r.zarr", {}, "x", n_frames=4)
    store.write_ragged("lidar/dynamic", 0, [np.ones(3, bool), np.zeros(2, bool)])
    store.write_ragged("lidar/dynamic", 2, [np.ones(5, bool), np.ones(7, bool)])
    store.write_ragged("lidar/dynamic", 2, [np.zeros(1, bool)])  # resume at frame 2 with new content
    got = store.read("lidar/dynamic")
    assert [len(a) for a in got] == [3, 2, 1] and store.root["lidar/dynamic/values"].shape == (6,)
    with pytest.raises(DataError, match="frame 1 not written yet"):
        store.write_ragged("lidar/labels", 2, [np.ones(1, np.uint8)])
    with pytest.raises(DataError, match=r"frame 0 has shape \[2, 2\], expected \[N\]"):
        store.write_ragged("lidar/dynamic", 0, [np.ones((2, 2), bool)])


def test_read_points_is_lazy_per_frame_and_matches_what_was_written(tmp_path, monkeypatch):
    """Per-point arrays read back a frame at a time (bounded memory on long runs), in any order,
    across chunk boundaries; a frame never written reads as the fill value."""
    import fuse4d.store as store_mod
    monkeypatch.setattr(store_mod, "_RAGGED_CHUNK_ROWS", 16)  # frames straddle chunks
    rng = np.random.default_rng(3)
    store = RunStore.create(tmp_path / "r.zarr", {}, "x", n_frames=7)
    want = [rng.random(int(rng.integers(0, 40))).astype(np.float32) for _ in range(6)]
    store.write_points("dynamic", 0, want[:4])
    store.write_points("ground", 0, [np.ones(len(a), np.uint8) for a in want[:4]])
    store.write_points("ground", 4, [np.ones(len(a), np.uint8) for a in want[4:]])  # counts of frames 4, 5 only
    view = store.read_points("dynamic")
    assert len(view) == 6 and store.root["lidar/dynamic"].chunks == (16,)
    for i in (5, 0, 3, 1, 4, 2, -1):
        got = view[i]
        assert got.dtype == np.float32 and len(got) == len(want[i])
        if i in (4, 5, -1):  # counted but never written: NaN
            assert np.isnan(got).all()
        else:
            np.testing.assert_array_equal(got, want[i])
    assert [len(a) for a in view[1:3]] == [len(want[1]), len(want[2])]
    np.testing.assert_array_equal(np.concatenate(list(view)[:4]), np.concatenate(want[:4]))
    with pytest.raises(IndexError):
        view[6]
    with pytest.raises(DataError, match="no 'lidar/semantics'"):
        store.read_points("semantics")


def test_overwrite_refused_and_bad_writes(tmp_path):
    path = tmp_path / "run.zarr"
    store = RunStore.create(path, {"a": 1}, "src", n_frames=3)
    store.mark_done(3)
    with pytest.raises(DataError, match="already exists"):
        RunStore.create(path, {"a": 2}, "src", n_frames=3)
    assert RunStore.open(path).meta["config"] == {"a": 1}
    with pytest.raises(DataError, match=r"frames \[2, 4\) outside the run's 3 frames"):
        store.write_frames("poses", 2, np.tile(np.eye(4), (2, 1, 1)))
    with pytest.raises(DataError, match="cannot write float64 \\[1, 3\\] into float64 \\[3, 4, 4\\]"):
        store.write_frames("poses", 0, np.zeros((1, 3)))
    with pytest.raises(DataError, match=r"mark_done\(5\) outside"):
        store.mark_done(5)
    fresh = RunStore.create(path, {"a": 2}, "src", n_frames=5, overwrite=True)
    assert fresh.frames_done == 0 and fresh.n_frames == 5 and sorted(os.listdir(tmp_path)) == ["run.zarr"]


def test_open_rejects_what_is_not_a_run(tmp_path):
    with pytest.raises(DataError, match="no readable zarr.json"):
        RunStore.open(tmp_path)
    zarr.open_group(zarr.storage.LocalStore(tmp_path / "g.zarr"), mode="w")
    with pytest.raises(DataError, match="not a fuse4d run store"):
        RunStore.open(tmp_path / "g.zarr")


def test_map_is_never_half_overwritten(tmp_path, monkeypatch):
    store = RunStore.create(tmp_path / "run.zarr", {}, "src", n_frames=2)
    old = {"height": np.ones((4, 3), np.float32), "variance": np.zeros((4, 3), np.float32),
           "semantics": np.full((4, 3), 1, np.uint8)}
    store.write_map("maps/elevation", old, {"origin": np.array([1.0, 2.0]), "resolution": 0.5})
    store.write_map("maps/occupancy", np.arange(24, dtype=np.uint8).reshape(2, 3, 4), {"resolution": 0.2})

    calls = {"n": 0}
    real = zarr.Group.create_array

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(zarr.Group, "create_array", failing)
    new = {k: v + 1 for k, v in old.items()}
    with pytest.raises(OSError, match="disk full"):
        store.write_map("maps/elevation", new)  # fails after writing 'height'
    monkeypatch.undo()
    back = RunStore.open(tmp_path / "run.zarr")
    got = back.read("maps/elevation")
    assert set(got) == set(old) and all(np.array_equal(got[k], old[k]) for k in old)
    assert back.attrs("maps/elevation") == {"origin": [1.0, 2.0], "resolution": 0.5}
    assert sorted(os.listdir(tmp_path / "run.zarr" / "maps")) == ["elevation", "occupancy", "zarr.json"]

    back.write_map("maps/elevation", new, {"resolution": 0.25})
    assert np.array_equal(back.read("maps/elevation")["height"], new["height"])
    assert back.attrs("maps/elevation") == {"resolution": 0.25}
    np.testing.assert_array_equal(back.read("maps/occupancy"), np.arange(24).reshape(2, 3, 4))

    # a crash between the two renames of a swap: open() puts the old map back
    maps = tmp_path / "run.zarr" / "maps"
    os.replace(maps / "occupancy", maps / "occupancy.old-12345")
    (maps / "elevation.tmp-12345").mkdir()
    again = RunStore.open(tmp_path / "run.zarr")
    assert again.read("maps/occupancy").shape == (2, 3, 4)
    assert sorted(os.listdir(maps)) == ["elevation", "occupancy", "zarr.json"]
    with pytest.raises(DataError, match="no 'dynamics/tracks' in this run"):
        again.read("dynamics/tracks")
