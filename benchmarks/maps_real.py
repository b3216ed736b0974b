"""Maps on the real samples in ../shared/data: what the issue asks to look at and measure.

    python benchmarks/maps_real.py [--out /tmp/fuse4d_maps_real]

* KITTI raw (6 HDL-64 scans, no poses): poses from fuse4d's LiDAR odometry
  (``estimate_trajectory``), maps built with geometric labels, the PNG report
  written for a look (``kitti_raw_report.png``).
* Argoverse 2 (2 sweeps): maps with the dataset's poses; elevation RMSE against
  its ground-height raster on cells the map labels ground (``seq.gt_maps``), and what the
  cells more than 0.5 m off are: surfaces above the raster that the geometric ground
  segmentation calls ground (no lower ground beside them within its slope allowance), some
  holding sweep 0's annotated objects (a parked vehicle's body over its hidden ground).
* 7-Scenes (30 RGB-D frames): TSDF mesh from the depth camera and the dataset's
  poses (``sevenscenes_mesh.ply``); prints its size and the median distance of the
  back-projected depth points of every 5th frame to the mesh.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def kitti_raw(out: Path) -> None:
    from fuse4d.data.registry import load_sequence
    from fuse4d.fusion.estimation import estimate_trajectory
    from fuse4d.mapping import MapBuilder, MappingConfig
    from fuse4d.mapping.report import plot_report
    seq = load_sequence(DATA / "kitti_raw_2011_09_26" / "2011_09_26" / "2011_09_26_drive_unknown_sync")
    est = estimate_trajectory(seq)
    b = MapBuilder(MappingConfig(voxel_size=0.3, elevation_resolution=0.3), seq.calibration)
    for i in range(len(seq)):
        b.add_frame(seq[i], est.T_world_body[i])
    maps = b.finish()
    png = plot_report(maps, out / "kitti_raw_report.png", trajectory=est.T_world_body[:, :3, 3],
                      title="KITTI raw 2011_09_26 (6 scans, fuse4d odometry, geometric labels)")
    el = maps["elevation"]
    print(f"kitti_raw  {len(seq)} scans, path {np.linalg.norm(np.diff(est.T_world_body[:, :3, 3], axis=0), axis=1).sum():.1f} m, "
          f"{(maps['occupancy']['log_odds'] > 0).sum()} occupied voxels, {np.isfinite(el['height']).sum()} elevation cells, "
          f"traversable {np.mean(el['traversable'][el['traversable'] != 255] == 1):.2f}; mesh "
          f"{0 if maps['mesh'] is None else len(maps['mesh']['triangles'])} triangles; report {png}")


def av2(out: Path) -> None:
    from fuse4d.data.classes import GROUND
    from fuse4d.data.registry import load_sequence
    from fuse4d.mapping import MapBuilder, MappingConfig
    from fuse4d.mapping.evaluation import elevation_metrics
    from fuse4d.mapping.report import plot_report
    log = next((DATA / "av2_sensor_val_2sweeps").glob("tests/unit/test_data/sensor/val/*"))
    seq = load_sequence(log)
    b = MapBuilder.for_sequence(seq, MappingConfig(elevation_resolution=0.3, elevation_max_range=40.0))
    for i in range(len(seq)):
        f = seq[i]
        b.add_frame(f, seq.gt_poses[i])
    maps = b.finish()
    m = elevation_metrics(maps["elevation"], seq.gt_maps["elevation"])
    el, gt = maps["elevation"], seq.gt_maps["elevation"]
    ii, jj = np.nonzero(np.isfinite(el["height"]) & np.isin(el["semantics"], GROUND))
    idx = np.floor((el["origin"] + (np.stack([ii, jj], -1) + 0.5) * el["resolution"] - gt["origin"])
                   / gt["resolution"]).astype(int)
    ok = np.all((idx >= 0) & (idx < gt["height"].shape), axis=1)
    ii, jj, idx = ii[ok], jj[ok], idx[ok]
    err = np.abs(el["height"][ii, jj] - gt["height"][tuple(idx.T)])
    fin = np.isfinite(err)
    err, ii, jj = err[fin], ii[fin], jj[fin]
    # the cells far off: do they hold annotated objects (sweep 0's labels: vehicles whose underside is hidden)?
    f0, T0 = seq[0], seq.gt_poses[0] @ seq.calibration.T_body_lidar
    p0 = f0.points[:, :3].astype(np.float64) @ T0[:3, :3].T + T0[:3, 3]
    c0 = np.floor((p0[:, :2] - el["origin"]) / el["resolution"]).astype(np.int64)
    W = el["height"].shape[1]
    labelled = np.zeros(el["height"].size, bool)
    inside = np.all((c0 >= 0) & (c0 < el["height"].shape), 1) & (f0.point_semantics > 0)
    labelled[c0[inside, 0] * W + c0[inside, 1]] = True
    far = err > 0.5
    on_obj = labelled[ii[far] * W + jj[far]]
    plot_report(maps, out / "av2_report.png", title="Argoverse 2 (2 sweeps, dataset poses)")
    print(f"av2        elevation vs ground-height raster on map-ground cells: RMSE {m['elev_rmse_m']:.3f} m, "
          f"median |error| {np.median(err):.3f} m, 90% {np.percentile(err, 90):.3f} m ({len(err)} cells); "
          f"{far.sum()} cells > 0.5 m off (median {np.median(err[far]):.2f} m, all above the raster: "
          f"{np.all(el['height'][ii[far], jj[far]] > gt['height'][tuple(idx[fin][far].T)])}), {on_obj.sum()} of them "
          f"on annotated objects of sweep 0; RMSE of the cells within 0.5 m {np.sqrt(np.mean(err[~far] ** 2)):.3f} m")


def sevenscenes(out: Path) -> None:
    import open3d as o3d
    from fuse4d.data.registry import load_sequence
    from fuse4d.mapping import MapBuilder, MappingConfig
    from fuse4d.mapping.export import write_ply
    seq = load_sequence(DATA / "sevenscenes_tsdf_fusion_python" / "data")
    b = MapBuilder(MappingConfig(tsdf_voxel=0.02, mesh_max_depth=4.0), seq.calibration, depth_sensor=True)
    for i in range(len(seq)):
        b.add_frame(seq[i], seq.gt_poses[i])
    mesh = b.finish()["mesh"]
    write_ply(out / "sevenscenes_mesh.ply", mesh["vertices"], mesh["colors"], mesh["triangles"])
    tm = o3d.t.geometry.TriangleMesh()
    tm.vertex.positions = o3d.core.Tensor(mesh["vertices"])
    tm.triangle.indices = o3d.core.Tensor(mesh["triangles"])
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(tm)
    K = seq.calibration.K
    dists = []
    for i in range(0, len(seq), 5):
        f = seq[i]
        v, u = np.nonzero(f.depth > 0)
        z = f.depth[v, u].astype(np.float64)
        pc = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], -1)[::50]
        T = seq.gt_poses[i] @ seq.calibration.T_body_cam
        pw = pc @ T[:3, :3].T + T[:3, 3]
        dists.append(scene.compute_distance(o3d.core.Tensor(pw.astype(np.float32))).numpy())
    d = np.concatenate(dists)
    print(f"7-scenes   mesh {len(mesh['vertices'])} vertices, {len(mesh['triangles'])} triangles, coloured "
          f"{(mesh['colors'].std(0) > 5).all()}; depth points to mesh: median {1e3 * np.median(d):.1f} mm, "
          f"90% {1e3 * np.percentile(d, 90):.1f} mm; {out / 'sevenscenes_mesh.ply'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/fuse4d_maps_real"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for fn in (av2, sevenscenes, kitti_raw):
        fn(args.out)


if __name__ == "__main__":
    main()
