"""TSDF mesh from the real 7-Scenes RGB-D sample, and the PNG report."""

from __future__ import annotations

import numpy as np


def test_sevenscenes_mesh_lies_on_the_depth(shared):
    import open3d as o3d
    from fuse4d.data.registry import load_sequence
    from fuse4d.mapping import MapBuilder, MappingConfig
    seq = load_sequence(shared("sevenscenes_tsdf_fusion_python", "data"))
    b = MapBuilder(MappingConfig(tsdf_voxel=0.02, mesh_max_depth=4.0), seq.calibration, depth_sensor=True)
    for i in (0, 5, 10):
        b.add_frame(seq[i], seq.gt_poses[i])
    mesh = b.finish()["mesh"]
    assert len(mesh["triangles"]) > 10_000 and mesh["colors"].dtype == np.uint8
    assert mesh["colors"].std(0).min() > 5  # textured, not one grey
    tm = o3d.t.geometry.TriangleMesh()
    tm.vertex.positions = o3d.core.Tensor(mesh["vertices"])
    tm.triangle.indices = o3d.core.Tensor(mesh["triangles"])
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(tm)
    f, K = seq[7], seq.calibration.K
    v, u = np.nonzero(f.depth > 0)
    z = f.depth[v, u].astype(np.float64)
    pc = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], -1)[::97]
    T = seq.gt_poses[7] @ seq.calibration.T_body_cam
    d = scene.compute_distance(o3d.core.Tensor((pc @ T[:3, :3].T + T[:3, 3]).astype(np.float32))).numpy()
    assert np.median(d) < 0.01


def test_synthetic_mesh_from_lidar_depth(drive, frames, build):
    b, _ = build(drive, frames[:2], mesh=True, mesh_max_depth=25.0)
    mesh = b.finish()["mesh"]
    assert mesh is not None and len(mesh["triangles"]) > 1000


def test_report_png(gt_built, tmp_path):
    from fuse4d.mapping.report import plot_report
    _, maps, _ = gt_built
    drawn = []
    png = plot_report(maps, tmp_path / "r.png", extra_panels=[lambda ax: drawn.append(ax.set_title("extra"))])
    assert png.read_bytes()[:4] == b"\x89PNG" and len(drawn) == 1
