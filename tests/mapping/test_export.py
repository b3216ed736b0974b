"""Run-store maps → export files: fields, dtypes, shapes, round trips, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from fuse4d.errors import ConfigError, DataError
from fuse4d.mapping.export import TRACK_COLUMNS, export
from fuse4d.store import RunStore


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, drive, frames, build):
    """A run folder whose store holds the maps of 4 frames and a two-row tracks table."""
    b, _ = build(drive, frames[:4])
    d = tmp_path_factory.mktemp("run")
    store = RunStore.create(d / "run.zarr", config={}, source="test", n_frames=4)
    b.write(store)
    table = {c: np.array([1.0, 2.0]) for c in TRACK_COLUMNS}
    table["track_id"] = np.array([3, 4])
    table["yaw"] = np.array([0.5, -0.25])
    store.write_map("dynamics/tracks", table)
    return d, b


def test_occupancy_npz(run_dir, tmp_path):
    d, b = run_dir
    out = export(d, "occupancy", tmp_path / "occ.npz")
    z = np.load(out)
    assert set(z.files) == {"origin", "resolution", "ijk", "labels", "log_odds"}
    assert z["origin"].shape == (3,) and float(z["resolution"]) == b.config.voxel_size
    n = len(z["ijk"])
    assert n > 1000 and z["ijk"].dtype == np.int32 and z["ijk"].shape == (n, 3)
    assert z["labels"].dtype == np.uint8 and z["log_odds"].dtype == np.float32 and len(z["labels"]) == n
    assert (z["log_odds"] > 0).all()
    # voxel centres from the file are occupied in the live map
    centres = z["origin"] + (z["ijk"] + 0.5) * z["resolution"]
    assert (b.occupancy.occupancy_at(centres) > 0.5).all()


def test_elevation_npz_and_png(run_dir, tmp_path):
    d, b = run_dir
    z = np.load(export(d, "elevation", tmp_path / "el.npz"))
    assert set(z.files) == {"origin", "resolution", "height", "variance", "traversable", "semantics"}
    h = z["height"]
    assert z["origin"].shape == (2,) and h.dtype == np.float32 and z["variance"].shape == h.shape
    assert z["traversable"].dtype == np.uint8 and set(np.unique(z["traversable"])) <= {0, 1, 255}
    assert np.array_equal(np.isnan(h), z["traversable"] == 255)
    assert np.isfinite(h).sum() > 500
    png = export(d, "elevation", tmp_path / "el.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_points_and_voxels_ply_pcd_read_back(run_dir, tmp_path):
    import open3d as o3d
    d, _ = run_dir
    pts = o3d.io.read_point_cloud(str(export(d, "points", tmp_path / "p.ply")))
    pcd = o3d.io.read_point_cloud(str(export(d, "points", tmp_path / "p.pcd")))
    vox = o3d.io.read_point_cloud(str(export(d, "occupancy", tmp_path / "v.ply")))
    assert len(pts.points) > 1000 and len(pcd.points) == len(pts.points) and pts.has_colors()
    assert np.allclose(np.asarray(pcd.points), np.asarray(pts.points), atol=1e-5)
    assert len(vox.points) == len(np.load(export(d, "occupancy", tmp_path / "o.npz"))["ijk"])


def test_tracks_csv(run_dir, tmp_path):
    d, _ = run_dir
    lines = export(d, "tracks", tmp_path / "t.csv").read_text().splitlines()
    assert lines[0] == ",".join(TRACK_COLUMNS)
    rows = np.loadtxt(tmp_path / "t.csv", delimiter=",", skiprows=1)
    assert rows.shape == (2, 12) and rows[:, 0].tolist() == [3, 4] and rows[:, -1].tolist() == [0.5, -0.25]


def test_mesh_absent_is_one_line_error(run_dir, tmp_path):
    d, _ = run_dir
    with pytest.raises(DataError, match="no 'maps/mesh'"):
        export(d, "mesh", tmp_path / "m.ply")
    assert not (tmp_path / "m.ply").exists()


def test_cli_errors(run_dir, tmp_path):
    from fuse4d.cli import app
    d, _ = run_dir
    r = CliRunner().invoke(app, ["export", str(d), "--what", "voxels", "--out", str(tmp_path / "a.npz")])
    assert r.exit_code == 2 and "unknown --what 'voxels'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["export", str(d), "--what", "occupancy", "--out", str(tmp_path / "a.png")])
    assert r.exit_code == 2 and "occupancy exports to .npz or .ply" in r.output
    r = CliRunner().invoke(app, ["export", str(tmp_path / "nope"), "--what", "mesh", "--out", str(tmp_path / "a.ply")])
    assert r.exit_code == 2 and "run folder not found" in r.output
    r = CliRunner().invoke(app, ["export", str(d), "--what", "points", "--out", str(tmp_path / "ok.ply")])
    assert r.exit_code == 0 and (tmp_path / "ok.ply").stat().st_size > 1000
    with pytest.raises(ConfigError):
        export(d, "tracks", tmp_path / "t.json")


def test_builder_rejects_mismatched_point_arrays(drive, frames):
    from fuse4d.mapping import MapBuilder
    f = frames[0]
    with pytest.raises(DataError, match=rf"frame {f.index}: point_dynamic has shape \[3\], expected \[{len(f.points)}\]"):
        MapBuilder.for_sequence(drive).add_frame(f, f.T_world_body, None, np.zeros(3, np.float32))
