"""The fuse4d zarr log: bit-exact round trips, missing sensors, atomic writes, bad input."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from fuse4d.data.registry import detect_format, load_sequence
from fuse4d.data.types import Calibration, Frame, ImuSamples, Sequence
from fuse4d.data.zarr_log import jsonable, load, write_sequence
from fuse4d.errors import DataError

S, H, W = 7, 6, 8


def _same(a, b) -> bool:
    """Bit-exact equality (dtype, shape and bytes, so NaN == NaN)."""
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _frames(rng: np.random.Generator, t: np.ndarray) -> list[Frame]:
    frames = []
    for i in range(S):
        n = int(rng.integers(3, 40)) if i != 5 else 0  # frame 5: LiDAR present, zero returns
        f = Frame(index=i, timestamp=float(t[i]))
        if i != 2:  # camera dropout in frame 2
            f.image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            f.depth = rng.uniform(0, 30, (H, W)).astype(np.float32)
            f.semantics = rng.integers(0, 10, (H, W), dtype=np.uint8)
            f.dynamic_mask = rng.random((H, W)) < 0.2
        if i != 3:  # LiDAR dropout in frame 3
            f.points = rng.normal(0, 10, (n, 4)).astype(np.float32)
            f.point_time = None if i == 1 else rng.uniform(0, 0.1, n).astype(np.float32)
            f.point_semantics = rng.integers(0, 10, n, dtype=np.uint8)
            f.point_dynamic = rng.random(n) < 0.3
            f.point_instance = rng.integers(-1, 4, n).astype(np.int32)
        if i != 4:
            T = np.eye(4)
            T[:3, 3] = rng.normal(size=3)
            f.T_world_body = T
        else:
            f.flags = {"no_pose", "no_timestamp"}
        if i in (0, 6):
            k = 2 if i == 0 else 0
            f.boxes = {"id": np.arange(k, dtype=np.int32), "center": rng.normal(size=(k, 3)),
                       "size": np.ones((k, 3)), "yaw": rng.normal(size=k), "cls": np.full(k, 6, np.uint8)}
        frames.append(f)
    return frames


@pytest.fixture
def seq() -> Sequence:
    """A small hand-made sequence with every layer and some missing sensors."""
    rng = np.random.default_rng(7)
    t = 100.0 + 0.1 * np.arange(S)
    frames = _frames(rng, t)
    ti = np.linspace(99.95, t[-1], 80)
    imu = ImuSamples(ti, rng.normal(size=(80, 3)), rng.normal(size=(80, 3)))
    gt = np.stack([f.T_world_body if f.T_world_body is not None else np.full((4, 4), np.nan) for f in frames])
    calib = Calibration(K=np.array([[50.0, 0, 4], [0, 50, 3], [0, 0, 1]]), image_size=(W, H),
                        T_body_lidar=np.diag([1.0, -1, -1, 1]), time_offsets={"camera": 0.01},
                        lidar_beams=32, lidar_azimuth_steps=1024, lidar_fov_deg=(-25.0, 3.0),
                        imu_noise={"acc_noise": 0.01})
    maps = {"occupancy": {"labels": rng.integers(0, 10, (5, 4, 3), dtype=np.uint8),
                          "origin": np.array([-1.0, -2.0, -0.5]), "resolution": 0.2},
            "elevation": {"height": np.where(rng.random((5, 4)) < 0.3, np.nan, 1.5).astype(np.float32),
                          "semantics": np.ones((5, 4), np.uint8), "origin": np.zeros(2), "resolution": 0.5}}
    meta = {"source": "hand-made", "degradations": [{"name": "dark", "start": 2, "stop": 4}],
            "seed": np.int64(7), "layers": ("depth", "semantics")}
    return Sequence(t, lambda i: frames[i], calib, {"camera", "lidar", "imu"}, imu, gt, meta,
                    name="handmade", gt_maps=maps)


def _assert_same_sequence(a: Sequence, b: Sequence) -> None:
    assert len(a) == len(b) and _same(a.timestamps, b.timestamps)
    assert b.calibration.to_dict() == a.calibration.to_dict()
    assert b.sensors == a.sensors and b.name == a.name
    assert b.metadata == jsonable(a.metadata)
    assert _same(a.gt_poses, b.gt_poses)
    assert (a.imu is None) == (b.imu is None)
    if a.imu is not None:
        assert all(_same(getattr(a.imu, k), getattr(b.imu, k)) for k in ("t", "acc", "gyro"))
    for fa, fb in zip(a, b):
        assert fb.index == fa.index and fb.timestamp == fa.timestamp and fb.flags == fa.flags
        for name in ("image", "depth", "points", "point_time", "T_world_body", "semantics", "dynamic_mask",
                     "point_semantics", "point_dynamic", "point_instance"):
            assert _same(getattr(fa, name), getattr(fb, name)), (fa.index, name)
        assert (fa.boxes is None) == (fb.boxes is None)
        if fa.boxes is not None:
            assert set(fa.boxes) == set(fb.boxes)
            assert all(_same(fa.boxes[k], fb.boxes[k]) for k in fa.boxes)
        if fa.imu is not None:
            assert _same(fa.imu.t, fb.imu.t) and _same(fa.imu.acc, fb.imu.acc)


def test_round_trip_is_bit_exact(seq, tmp_path):
    out = write_sequence(seq, tmp_path / "log.zarr", chunk_frames=3)
    back = load(out)
    _assert_same_sequence(seq, back)
    assert back[3].points is None and back[3].point_time is None  # dropout stays None
    assert back[5].points.shape == (0, 4) and back[5].points.dtype == np.float32  # empty stays empty
    assert back[1].points is not None and back[1].point_time is None
    assert back[2].image is None and back[6].boxes["center"].shape == (0, 3)
    for i in (6, 0, 4, 1, 5, 2):  # random access across window caches
        assert _same(back[i].points, seq[i].points) and _same(back[i].depth, seq[i].depth)
    back[0].points[:] = 0  # frames are copies: the reader's window cache is not modified
    assert _same(back[0].points, seq[0].points)
    om, bm = seq.gt_maps, back.gt_maps
    assert _same(om["occupancy"]["labels"], bm["occupancy"]["labels"])
    assert _same(om["elevation"]["height"], bm["elevation"]["height"])
    assert bm["occupancy"]["resolution"] == 0.2 and _same(bm["occupancy"]["origin"], om["occupancy"]["origin"])
    assert not list(tmp_path.glob("*.tmp-*"))


def test_registry_detects_group_and_parent_folder(seq, tmp_path):
    write_sequence(seq, tmp_path / "log.zarr")
    assert detect_format(tmp_path) == "zarr" and detect_format(tmp_path / "log.zarr") == "zarr"
    back = load_sequence(tmp_path)
    assert len(back) == S and _same(back[6].points, seq[6].points)


def test_slice_view_is_written_as_its_own_log(seq, tmp_path):
    back = load(write_sequence(seq[2:5], tmp_path / "v.zarr"))
    assert len(back) == 3 and _same(back.timestamps, seq.timestamps[2:5])
    assert back[1].points is None and _same(back[2].image, seq[4].image) and back[2].index == 2


def test_overwrite_refused_then_atomic(seq, tmp_path):
    path = write_sequence(seq, tmp_path / "log.zarr")
    with pytest.raises(DataError, match="already exists"):
        write_sequence(seq, path)

    def broken(i: int) -> Frame:
        if i == 5:
            raise RuntimeError("disk on fire")
        return seq[i]

    bad = Sequence(seq.timestamps, broken, seq.calibration, seq.sensors, seq.imu, name="broken")
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_sequence(bad, path, overwrite=True, chunk_frames=2)
    assert load(path).name == "handmade" and len(load(path)) == S  # the old log is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.zarr"]  # no temp left behind
    write_sequence(seq[:3], path, overwrite=True)
    assert len(load(path)) == 3


def test_inconsistent_image_sizes_refused(tmp_path):
    frames = [Frame(0, 0.0, image=np.zeros((4, 4, 3), np.uint8)), Frame(1, 1.0, image=np.zeros((5, 4, 3), np.uint8))]
    seq = Sequence(np.array([0.0, 1.0]), lambda i: frames[i], sensors={"camera"})
    with pytest.raises(DataError, match=r"frame 1: image.data is uint8 \[5, 4, 3\]"):
        write_sequence(seq, tmp_path / "log.zarr")
    assert not (tmp_path / "log.zarr").exists()


def test_bad_input_names_the_path(seq, tmp_path):
    plain = tmp_path / "plain.zarr"
    zarr.open_group(zarr.storage.LocalStore(plain), mode="w")
    with pytest.raises(DataError, match="not a fuse4d log") as e:
        load(plain)
    assert e.value.path == plain
    with pytest.raises(DataError, match="no zarr.json"):
        load(tmp_path)

    path = write_sequence(seq, tmp_path / "log.zarr")
    meta_file = path / "zarr.json"
    good = meta_file.read_text()
    meta = json.loads(good)
    meta["attributes"]["fuse4d_log"]["format_version"] = 99
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="format version 99 is not supported"):
        load(path)
    meta_file.write_text(good)
    shutil.rmtree(path / "timestamps")
    with pytest.raises(DataError, match="missing array 'timestamps'") as e:
        load(path)
    assert str(path) in str(e.value)


def test_frames_are_read_lazily(seq, tmp_path):
    path = write_sequence(seq, tmp_path / "log.zarr", chunk_frames=1)
    shutil.rmtree(path / "frames" / "points" / "offsets")
    with pytest.raises(DataError, match="frames/points: incomplete layer"):
        load(path)
    path = write_sequence(seq, tmp_path / "log.zarr", chunk_frames=1, overwrite=True)
    back = load(path)
    (path / "frames" / "image" / "data" / "c" / "4" / "0" / "0" / "0").write_bytes(b"garbage")
    assert _same(back[3].image, seq[3].image)  # other frames still read
    with pytest.raises(DataError, match="frames 4-4: cannot read frames/image"):
        back[4]


def test_synthetic_round_trip(tmp_path):
    synthetic = pytest.importorskip("fuse4d.data.synthetic")
    synthesize = getattr(synthetic, "synthesize", None)
    if synthesize is None:
        pytest.skip("fuse4d.data.synthetic.synthesize not written yet")
    params = inspect.signature(synthesize).parameters
    kw = {k: 6 for k in ("n_frames", "num_frames", "frames") if k in params}
    if "scenario" in params:
        kw["scenario"] = "degraded"  # LiDAR dropout in frame 4, dark camera, IMU burst
    seq = synthesize(**kw)[:6]
    back = load(write_sequence(seq, tmp_path / "log.zarr", chunk_frames=4))
    _assert_same_sequence(seq, back)
    if any(d["name"] == "lidar_dropout" and d["start"] < 6 for d in seq.degradations):
        assert any(back[i].points is None for i in range(6))
    for name, layer in (seq.gt_maps or {}).items():
        for key, value in layer.items():
            assert _same(value, back.gt_maps[name][key]) if isinstance(value, np.ndarray) \
                else value == back.gt_maps[name][key]
