"""7-Scenes reader on the real 30-frame sample in ../shared/data/sevenscenes_tsdf_fusion_python."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fuse4d import load_sequence
from fuse4d.data.readers import _common
from fuse4d.data.registry import detect_format
from fuse4d.errors import DataError


@pytest.fixture
def data(shared) -> Path:
    return shared("sevenscenes_tsdf_fusion_python", "data")


def test_real_sample(data, monkeypatch):
    reads: list = []
    real = _common.read_depth_png
    monkeypatch.setattr(_common, "read_depth_png",
                        lambda p, *a, **k: reads.append(Path(p).name) or real(p, *a, **k))
    assert detect_format(data) == "sevenscenes"
    seq = load_sequence(data)
    assert reads == [] and len(seq) == 30 and seq.sensors == {"camera"}
    np.testing.assert_allclose(seq.timestamps[:3], [0, 1 / 30, 2 / 30])
    assert any("no timestamps" in p for p in seq.metadata["problems"])
    np.testing.assert_allclose(seq.calibration.K, [[585, 0, 320], [0, 585, 240], [0, 0, 1]])
    assert seq.calibration.image_size == (640, 480)
    f = seq[0]
    assert reads == ["frame-000000.depth.png"]
    assert f.image.shape == (480, 640, 3) and f.image.dtype == np.uint8
    assert f.depth.shape == (480, 640) and f.depth.dtype == np.float32
    raw = np.asarray(Image.open(data / "frame-000000.depth.png"))
    assert f.depth.max() == pytest.approx(3.493)
    np.testing.assert_array_equal(f.depth == 0, (raw == 0) | (raw == 65535))
    np.testing.assert_allclose(f.depth[raw == 1000], 1.0)
    np.testing.assert_array_equal(f.T_world_body, np.loadtxt(data / "frame-000000.pose.txt"))
    np.testing.assert_array_equal(seq.gt_poses[29], np.loadtxt(data / "frame-000029.pose.txt"))
    assert f.flags == {"no_timestamp"}
    assert [len(w) for w in seq[10:].windows(8)] == [8, 8, 4]


def _copy_frames(src: Path, dst: Path, n: int) -> None:
    dst.mkdir()
    for i in range(n):
        for ext in ("color.jpg", "depth.png", "pose.txt"):
            (dst / f"frame-{i:06d}.{ext}").symlink_to(src / f"frame-{i:06d}.{ext}")


def test_invalid_depth_and_default_intrinsics(tmp_path, data):
    folder = tmp_path / "seq-01"
    _copy_frames(data, folder, 2)
    (folder / "frame-000001.depth.png").unlink()
    raw = np.full((480, 640), 1500, np.uint16)
    raw[:10] = 65535
    Image.fromarray(raw).save(folder / "frame-000001.depth.png")
    seq = load_sequence(folder)
    assert any("camera-intrinsics.txt" in p for p in seq.metadata["problems"])
    d = seq[1].depth
    assert (d[:10] == 0).all() and d[10:].min() == pytest.approx(1.5)


def test_size_mismatch_and_bad_pose(tmp_path, data):
    folder = tmp_path / "seq-02"
    _copy_frames(data, folder, 2)
    (folder / "frame-000001.depth.png").unlink()
    Image.fromarray(np.zeros((240, 320), np.uint16)).save(folder / "frame-000001.depth.png")
    seq = load_sequence(folder)
    with pytest.raises(DataError, match="frame-000001.depth.png: depth size 320x240 differs"):
        seq[1]
    (folder / "frame-000000.pose.txt").unlink()
    (folder / "frame-000000.pose.txt").write_text("1 0 0\n0 1 0\n")
    with pytest.raises(DataError, match=r"frame-000000.pose.txt: expected a 4x4 matrix"):
        load_sequence(folder)
