"""SemanticKITTI labels: the real format sample decodes; synth --format kitti round-trips."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fuse4d.data import classes as C
from fuse4d.data.semantickitti import decode, encode, read_label
from fuse4d.errors import DataError


def test_format_sample_decodes(shared):
    root = shared("semantickitti_format_sample", "sequences", "00")
    pts = np.fromfile(root / "velodyne" / "000000.bin", np.float32).reshape(-1, 4)
    raw = read_label(root / "labels" / "000000.label", len(pts))
    cls, moving, inst = decode(raw)
    assert len(cls) == len(pts) == 50
    sem = raw & 0xFFFF
    assert np.all(cls[sem == 40] == C.ROAD) and np.all(cls[sem == 50] == C.BUILDING)
    assert np.array_equal(moving, (sem >= 252) & (sem <= 259))
    assert np.array_equal(inst, (raw >> 16).astype(np.int32) - 1)


def test_reader_reads_labels(shared, tmp_path):
    """The sample folder + a calib.txt is a KITTI odometry sequence with point labels."""
    from fuse4d.data.registry import load_sequence
    src = shared("semantickitti_format_sample", "sequences", "00")
    seq_dir = tmp_path / "sequences" / "00"
    shutil.copytree(src, seq_dir)
    (seq_dir / "calib.txt").write_text("Tr: 1 0 0 0 0 1 0 0 0 0 1 0\n")
    f = load_sequence(tmp_path)[0]
    raw = read_label(src / "labels" / "000000.label")
    assert np.array_equal(f.point_semantics, decode(raw)[0]) and f.point_dynamic.dtype == bool


def test_bad_label_file_names_it(shared, tmp_path):
    from fuse4d.data.registry import load_sequence
    seq_dir = tmp_path / "sequences" / "00"
    shutil.copytree(shared("semantickitti_format_sample", "sequences", "00"), seq_dir)
    (seq_dir / "calib.txt").write_text("Tr: 1 0 0 0 0 1 0 0 0 0 1 0\n")
    (seq_dir / "labels" / "000000.label").write_bytes(b"\0" * 12)
    with pytest.raises(DataError, match="000000.label.*3 labels but the scan has 50 points"):
        load_sequence(tmp_path)[0]


def test_encode_decode_round_trip():
    cls = np.arange(10, dtype=np.uint8).repeat(3)
    dyn = np.tile([False, True, False], 10)
    inst = np.tile([-1, 5, 70000], 10)
    c2, d2, i2 = decode(encode(cls, dyn, inst))
    assert np.array_equal(c2, cls)
    assert np.array_equal(d2, dyn & np.isin(cls, C.MOVABLE))  # static classes have no moving id
    assert np.array_equal(i2, np.clip(inst, -1, 0xFFFE))


def test_synth_kitti_round_trip(tmp_path):
    from fuse4d.data.export import export_sequence
    from fuse4d.data.registry import load_sequence
    from fuse4d.data.synthetic import SynthConfig, synthesize
    small = SynthConfig(image_width=64, image_height=32, lidar_beams=16, lidar_azimuth_steps=512)
    seq = synthesize(seed=21, frames=3, scenario="dense_traffic", config=small)
    path = export_sequence(seq, tmp_path / "k", format="kitti")
    assert (tmp_path / "k" / "sequences" / "00" / "labels" / "000002.label").is_file()
    back = load_sequence(path)
    for i in range(3):
        a, b = seq[i], back[i]
        assert np.array_equal(a.point_semantics, b.point_semantics)
        assert np.array_equal(a.point_dynamic, b.point_dynamic)
        assert np.array_equal(a.point_instance, b.point_instance)
    assert any(back[i].point_dynamic.any() for i in range(3))
