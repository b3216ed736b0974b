"""Mapping: occupancy integration speed against Open3D, ground segmentation against Patchwork++.

    OMP_NUM_THREADS=1 python benchmarks/bench_mapping.py [--frames 20] [--seed 0] [--voxel 0.5]
    python benchmarks/bench_mapping.py --quality 1,10,20,0 [--quality-frames 60]

1. Occupancy: the static points of ``--frames`` synthetic frames (test seed, GT poses)
   are integrated into fuse4d's log-odds map *with free-space carving along every ray*,
   and binned by Open3D's ``VoxelGrid.create_from_point_cloud`` (endpoints only, no
   carving) in the same run, with the map builder's occupancy settings (``MappingConfig``:
   core carving, range-weighted class votes); prints median points/s of each over
   ``--reps`` fresh maps and the ratio. The goal is >= 1 M points/s on one core for fuse4d.
2. Ground segmentation on the same scans, side by side with Patchwork++ (pip
   ``pypatchworkpp``): F1 against the synthetic point labels (ground = road,
   sidewalk, terrain), and on the real KITTI raw scans (../shared/data) F1 of
   fuse4d against Patchwork++ (no labels there), with median ms per scan of each.
3. ``--quality SEEDS``: map quality on held-out seeds only (val/test): every 2nd of
   ``--quality-frames`` frames with GT poses, GT point labels and GT moving masks fed to
   ``MapBuilder.for_sequence``; prints ``occ_iou``, ``occ_miou``, ``ghost_ratio``,
   ``elev_rmse_m``, ``trav_agreement`` per seed (``fuse4d.mapping.evaluation``), then the
   per-class IoU and how many observed ground-truth occupied voxels the map calls free.
Medians over frames of CPU time (process_time); the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

KITTI_RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_raw_2011_09_26"


def _timed(fn, *args):
    """``(fn(*args), CPU seconds)``: process CPU time, so a shared, oversubscribed machine
    does not count the time this process waited for a core (run with OMP_NUM_THREADS=1)."""
    t0 = time.process_time()
    out = fn(*args)
    return out, time.process_time() - t0


def _scans(seed: int, frames: int):
    from fuse4d.data.synthetic import synthesize
    seq = synthesize(seed=seed, frames=frames * 2)
    cal = seq.calibration
    out = []
    for i in range(0, 2 * frames, 2):
        f = seq[i]
        T = f.T_world_body @ cal.T_body_lidar
        keep = ~f.point_dynamic
        p = f.points[keep, :3].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        out.append((T[:3, 3], p, f.point_semantics[keep], f.points[keep], T))
    return out


def bench_occupancy(scans, voxel: float, reps: int = 3) -> None:
    import open3d as o3d
    from fuse4d.data.classes import GROUND
    from fuse4d.mapping.config import MappingConfig
    from fuse4d.mapping.occupancy import OccupancyMap
    cfg = MappingConfig(voxel_size=voxel)
    ours, o3d_rate = [], []
    for _ in range(reps):  # a fresh map per repetition; the figure is the median over reps of the median over frames
        # the settings the map builder runs with (core carving, range-weighted votes)
        m = OccupancyMap(voxel, cfg.l_hit, cfg.l_miss, cfg.l_min, cfg.l_max, cfg.occupied_threshold,
                         carve_core=cfg.carve_core, label_range=cfg.label_range)
        a, b = [], []
        for origin, p, sem, _, _ in scans:
            g = np.isin(sem, GROUND)
            _, dt = _timed(m.integrate, origin, p, sem, g, cfg.max_range, cfg.min_range)
            a.append(len(p) / dt)
            pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
            _, dt = _timed(o3d.geometry.VoxelGrid.create_from_point_cloud, pc, voxel)
            b.append(len(p) / dt)
        ours.append(np.median(a))
        o3d_rate.append(np.median(b))
    a, b = np.median(ours), np.median(o3d_rate)
    print(f"occupancy  fuse4d (ray carving) {a / 1e6:6.2f} M pts/s | Open3D VoxelGrid (endpoints only) "
          f"{b / 1e6:6.2f} M pts/s | ratio fuse4d/Open3D {a / b:.2f} | median of {reps} reps "
          f"(fuse4d {' '.join(f'{x / 1e6:.2f}' for x in ours)}), {len(scans)} frames, "
          f"{np.median([len(s[1]) for s in scans]):.0f} pts/frame, voxel {voxel} m, carve_core {cfg.carve_core}, "
          f"{m.n_blocks} blocks")


def _patchwork():
    try:
        import pypatchworkpp
    except ImportError:
        return None
    params = pypatchworkpp.Parameters()
    params.verbose = False
    return pypatchworkpp, params


def _pwpp_ground(pw, points: np.ndarray, sensor_height: float) -> tuple[np.ndarray, float]:
    mod, params = pw
    params.sensor_height = sensor_height
    est = mod.patchworkpp(params)
    t0 = time.process_time()
    est.estimateGround(np.ascontiguousarray(points[:, :4], np.float64))
    dt = time.process_time() - t0
    mask = np.zeros(len(points), bool)
    mask[np.asarray(est.getGroundIndices(), np.int64)] = True
    return mask, dt


def bench_ground(scans) -> None:
    from fuse4d.data.classes import GROUND
    from fuse4d.mapping.ground import ground_f1, segment_ground
    pw = _patchwork()
    if pw is None:
        print("ground     pypatchworkpp is not installed (pip install pypatchworkpp): fuse4d only")
    f_ours, f_pw, t_ours, t_pw = [], [], [], []
    for _, p, sem, local, T in scans:
        ref = np.isin(sem, GROUND)
        g, dt = _timed(segment_ground, p)
        f_ours.append(ground_f1(g, ref)["f1"])
        t_ours.append(dt)
        if pw is not None:
            # Patchwork++ works in a level sensor frame: rotate by the pose's tilt, keep the origin
            lev = local.copy()
            lev[:, :3] = local[:, :3] @ T[:3, :3].T
            gp, dt = _pwpp_ground(pw, lev, sensor_height=float(T[2, 3] - np.percentile(p[ref, 2], 50)))
            f_pw.append(ground_f1(gp, ref)["f1"])
            t_pw.append(dt)
    line = f"ground     synthetic vs labels: fuse4d F1 {np.mean(f_ours):.3f} ({1e3 * np.median(t_ours):.1f} ms/scan)"
    if f_pw:
        line += f" | Patchwork++ F1 {np.mean(f_pw):.3f} ({1e3 * np.median(t_pw):.1f} ms/scan)"
    print(line)
    if pw is None or not KITTI_RAW.exists():
        return
    bins = sorted(KITTI_RAW.glob("2011_09_26/*_sync/velodyne_points/data/*.bin"))
    agree, t_o, t_p, frac = [], [], [], []
    for b in bins:
        pts = np.fromfile(b, np.float32).reshape(-1, 4).astype(np.float64)
        g, dt = _timed(segment_ground, pts[:, :3])
        t_o.append(dt)
        gp, dt = _pwpp_ground(pw, pts, sensor_height=1.73)
        t_p.append(dt)
        agree.append(ground_f1(g, gp)["f1"])
        frac.append((g.mean(), gp.mean()))
    fr = np.mean(frac, axis=0)
    print(f"ground     KITTI raw ({len(bins)} real HDL-64 scans): F1 of fuse4d against Patchwork++ {np.mean(agree):.3f} "
          f"(min {np.min(agree):.3f}); ground fraction fuse4d {fr[0]:.3f} / Patchwork++ {fr[1]:.3f}; "
          f"{1e3 * np.median(t_o):.1f} vs {1e3 * np.median(t_p):.1f} ms/scan")


def _per_class(occ: dict, gt: dict) -> str:
    """Per-class IoU over observed voxels, and how the ground truth's occupied voxels the map calls
    free were observed: carved only (never hit) is the rest of what occ_miou loses."""
    from fuse4d.data.classes import CLASS_NAMES, NUM_CLASSES
    from fuse4d.metrics import iou
    res = float(occ["resolution"])
    idx = np.asarray(occ["ijk"], np.int64) + np.round((np.asarray(occ["origin"]) - gt["origin"]) / res).astype(np.int64)
    ok = np.all((idx >= 0) & (idx < gt["labels"].shape), 1)
    g = gt["labels"][tuple(idx[ok].T)]
    lo = np.asarray(occ["log_odds"])[ok]
    obs = lo != 0
    pred = np.where(lo > float(occ.get("threshold", 0.0)), np.asarray(occ["labels"])[ok], 0)
    per, _ = iou(pred[obs], g[obs], NUM_CLASSES)
    present = np.bincount(g[obs].astype(np.int64), minlength=NUM_CLASSES) > 0
    missed = obs & (g > 0) & (pred == 0)
    return " ".join(f"{CLASS_NAMES[c][:8]} {per[c]:.3f}" for c in range(1, NUM_CLASSES) if present[c]) + \
        f" | GT-occupied observed voxels the map calls free: {missed.sum()} of {np.count_nonzero(obs & (g > 0))}"


def map_quality(seeds: list[int], frames: int) -> None:
    from fuse4d.data.synthetic import split_of, synthesize
    from fuse4d.mapping import MapBuilder, MappingConfig
    from fuse4d.mapping.evaluation import evaluate_maps
    keys = ("occ_iou", "occ_miou", "ghost_ratio", "elev_rmse_m", "trav_agreement")
    print(f"{'seed':>5} {'split':>5} " + " ".join(f"{k:>14}" for k in keys))
    for seed in seeds:
        if split_of(seed) == "train":
            raise SystemExit(f"seed {seed} is a training seed; use test (%10==0) or val (%10==1) seeds")
        drive = synthesize(seed=seed, frames=frames)
        b = MapBuilder.for_sequence(drive, MappingConfig(mesh=False))
        for i in range(0, frames, 2):
            f = drive[i]
            b.add_frame(f, f.T_world_body, f.point_semantics, f.point_dynamic.astype(np.float32))
        maps = b.finish()
        m = evaluate_maps(maps, drive.gt_maps)
        print(f"{seed:>5} {split_of(seed):>5} " + " ".join(f"{m[k]:>14.4f}" for k in keys))
        print(f"{'':>11} per class: {_per_class(maps['occupancy'], drive.gt_maps['occupancy'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--voxel", type=float, default=0.5)
    ap.add_argument("--reps", type=int, default=3, help="occupancy: repetitions (fresh map each)")
    ap.add_argument("--quality", default="", help="comma-separated held-out seeds: map quality only")
    ap.add_argument("--quality-frames", type=int, default=60)
    args = ap.parse_args()
    if args.quality:
        map_quality([int(s) for s in args.quality.split(",")], args.quality_frames)
        return
    scans = _scans(args.seed, args.frames)
    bench_occupancy(scans, args.voxel, args.reps)
    bench_ground(scans)


if __name__ == "__main__":
    main()
