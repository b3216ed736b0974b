"""fuse4d vs KISS-ICP on the same scans, in one process: ATE (SE3-aligned), RPE, frames/s and ratios.

Usage (from the repository root)::

    python benchmarks/bench_odometry.py                  # 200-frame default + dense_traffic, KITTI sample
    python benchmarks/bench_odometry.py --frames 120 --scenarios default --profile
    python benchmarks/bench_odometry.py --scenarios --hd64-frames 100 --profile   # full-size scans only

Rows:

* ``<scenario> LiDAR+IMU``: fuse4d on the synthetic log (LiDAR with per-point
  times, IMU, loop closure) against KISS-ICP on the same scans, given the same
  per-point times so it deskews too.
* ``<scenario> LiDAR-only (KITTI export)``: the log is exported with
  ``fuse4d.data.export.export_sequence(..., format="kitti")`` (what ``fuse4d synth
  --format kitti`` writes) and read back with ``fuse4d.load_sequence``; both
  systems get exactly those scans (no per-point times, no IMU).
* ``64x2048 LiDAR-only`` / ``LiDAR+IMU``: the default world seen by a 64-beam × 2048
  LiDAR (~130 k points a sweep, a KITTI HDL-64 scan's size): throughput on full-size
  scans; both systems get the per-point times (KISS-ICP's column is the same run in both rows).
* ``kitti_raw sample``: the six real HDL-64 scans of ``../shared/data`` (no ground
  truth: the end-point difference between the two is printed instead).

Accuracy is measured in the LiDAR frame against the synthetic ground truth.
Frames are loaded before the clock starts, and torch/pypose's one-time start-up
(~3 s, once per process) is paid by a warm-up solve; frames/s covers the whole
estimator (fuse4d: odometry, IMU, loop closure and pose graph; KISS-ICP:
``register_frame``).
The machine is shared: compare ratios, not absolute rates.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from fuse4d import load_sequence, metrics
from fuse4d.data.types import Sequence
from fuse4d.fusion.estimation import EstimationConfig, estimate_trajectory
from fuse4d.geometry import invert

KITTI_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_raw_2011_09_26" / \
    "2011_09_26" / "2011_09_26_drive_unknown_sync"


def preload(seq: Sequence) -> Sequence:
    """A copy of ``seq`` whose frames are all in memory (loading is kept out of the timings)."""
    frames = [seq[i] for i in range(len(seq))]
    return Sequence(seq.timestamps, lambda i: frames[i], seq.calibration, seq.sensors, seq.imu, seq.gt_poses,
                    seq.metadata, seq.name, seq.path)


def run_fuse4d(seq: Sequence, config: EstimationConfig | None = None) -> tuple[np.ndarray, float, dict]:
    """``T_world_lidar [S, 4, 4]``, frames/s and the stage timings of fuse4d on ``seq``."""
    tic = time.perf_counter()
    res = estimate_trajectory(seq, config)
    dt = time.perf_counter() - tic
    return res.T_world_lidar, len(seq) / dt, {**res.timings, "loops": len(res.loops), **res.info}


def run_kiss(seq: Sequence, use_times: bool) -> tuple[np.ndarray, float]:
    """``T_world_lidar [S, 4, 4]`` and frames/s of KISS-ICP (default config) on the scans of ``seq``."""
    from kiss_icp.config.parser import load_config
    from kiss_icp.kiss_icp import KissICP
    kiss = KissICP(load_config(None))
    poses = []
    tic = time.perf_counter()
    for i in range(len(seq)):
        f = seq[i]
        pts = np.zeros((0, 3)) if f.points is None else f.points[:, :3].astype(np.float64)
        times = f.point_time.astype(np.float64) if use_times and f.point_time is not None else np.array([])
        if len(pts):
            kiss.register_frame(pts, times)
        poses.append(kiss.last_pose.copy())
    return np.stack(poses), len(seq) / (time.perf_counter() - tic)


def errors(est: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """ATE RMSE (m, SE3-aligned) and RPE RMSE (m per frame)."""
    return (metrics.ate(est, gt, align="se3")["rmse"],
            metrics.rpe(est, gt, delta=1, delta_unit="frames")["rmse"])


def row(name: str, dist: float, f: tuple, k: tuple) -> dict:
    """One table row from fuse4d ``(ate, rpe, fps)`` and KISS-ICP ``(ate, rpe, fps)``."""
    return {"sequence": name, "dist": dist, "ate_f": f[0], "ate_k": k[0], "rpe_f": f[1], "rpe_k": k[1],
            "fps_f": f[2], "fps_k": k[2]}


def print_table(rows: list[dict]) -> None:
    """Markdown table of the rows with ratios fuse4d / KISS-ICP."""
    head = ("| sequence | path m | ATE fuse4d m | ATE KISS m | ATE ratio | ATE % path (fuse4d) | RPE fuse4d m | "
            "RPE KISS m | fps fuse4d | fps KISS | fps ratio |")
    print(head)
    print("|" + "|".join("---" for _ in range(11)) + "|")
    for r in rows:
        ate = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
        ratio = "n/a" if r["ate_f"] is None else f"{r['ate_f'] / r['ate_k']:.2f}"
        pct = "n/a" if r["ate_f"] is None else f"{100 * r['ate_f'] / r['dist']:.3f}"
        rpe = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
        print(f"| {r['sequence']} | {r['dist']:.1f} | {ate(r['ate_f'])} | {ate(r['ate_k'])} | {ratio} | {pct} | "
              f"{rpe(r['rpe_f'])} | {rpe(r['rpe_k'])} | {r['fps_f']:.1f} | {r['fps_k']:.1f} | "
              f"{r['fps_f'] / r['fps_k']:.2f} |")


def warm_up() -> None:
    """Pay torch/pypose's one-time start-up (about 3 s on the first LM solve) before any clock starts."""
    from fuse4d.fusion.estimation.pose_graph import PoseGraph
    g = PoseGraph(np.stack([np.eye(4)] * 3), np.zeros((3, 3)))
    g.add_prior(0, np.eye(4), np.eye(6))
    g.add_relative(0, 1, np.eye(4), np.eye(6))
    g.add_velocity_prior(2, np.zeros(3), 1.0)
    g.optimize(max_iterations=1)


def synthetic_rows(scenario: str, frames: int, seed: int, work: Path, profiles: dict) -> list[dict]:
    """The LiDAR+IMU row and the LiDAR-only (KITTI export) row of one synthetic scenario."""
    from fuse4d.data.export import export_sequence
    from fuse4d.data.synthetic import synthesize
    seq = preload(synthesize(seed, frames, scenario))
    X = seq.calibration.T_body_lidar
    gt = seq.gt_poses @ X
    gt = invert(gt[0]) @ gt
    dist = float(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1).sum())
    rows = []
    est, fps, prof = run_fuse4d(seq)
    profiles[f"{scenario} LiDAR+IMU"] = prof
    kiss, kfps = run_kiss(seq, use_times=True)
    rows.append(row(f"{scenario} LiDAR+IMU", dist, (*errors(est, gt), fps), (*errors(kiss, gt), kfps)))
    out = export_sequence(seq, work / scenario, format="kitti", overwrite=True)
    kseq = preload(load_sequence(out))
    est, fps, prof = run_fuse4d(kseq)
    profiles[f"{scenario} LiDAR-only"] = prof
    kiss, kfps = run_kiss(kseq, use_times=False)
    rows.append(row(f"{scenario} LiDAR-only (KITTI export)", dist, (*errors(est, gt), fps),
                    (*errors(kiss, gt), kfps)))
    return rows


def hd64_rows(frames: int, seed: int, profiles: dict) -> list[dict]:
    """Full-size scans: the synthetic world seen by a 64-beam × 2048 LiDAR (~130 k points a sweep, like
    a KITTI HDL-64 scan), LiDAR only (both systems get the per-point times), and LiDAR+IMU for fuse4d."""
    from fuse4d.data.synthetic import SynthConfig, synthesize
    seq = preload(synthesize(seed, frames, config=SynthConfig(lidar_beams=64, lidar_azimuth_steps=2048)))
    n = np.median([len(seq[i].points) for i in range(len(seq))])
    print(f"64-beam x 2048 synthetic LiDAR: median {n:.0f} points a sweep, {len(seq)} frames")
    gt = seq.gt_poses @ seq.calibration.T_body_lidar
    gt = invert(gt[0]) @ gt
    dist = float(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1).sum())
    lidar = Sequence(seq.timestamps, lambda i: seq[i], seq.calibration, {"lidar"}, None, seq.gt_poses, seq.metadata,
                     seq.name, seq.path)
    kiss, kfps = run_kiss(seq, use_times=True)
    rows = []
    for name, s in (("64x2048 LiDAR-only", lidar), ("64x2048 LiDAR+IMU", seq)):
        est, fps, prof = run_fuse4d(s)
        profiles[name] = prof
        rows.append(row(name, dist, (*errors(est, gt), fps), (*errors(kiss, gt), kfps)))
    return rows


def kitti_row(path: Path, profiles: dict) -> dict | None:
    """The real KITTI sample: no ground truth, so only frames/s and the end-point gap between the two."""
    if not path.exists():
        logging.warning("KITTI sample not found at %s: row skipped", path)
        return None
    seq = preload(load_sequence(path))
    est, fps, prof = run_fuse4d(seq)
    profiles["kitti_raw"] = prof
    kiss, kfps = run_kiss(seq, use_times=False)
    dist = float(np.linalg.norm(np.diff(kiss[:, :3, 3], axis=0), axis=1).sum())
    print(f"kitti_raw sample: end-point fuse4d {np.round(est[-1, :3, 3], 3)} vs KISS-ICP "
          f"{np.round(kiss[-1, :3, 3], 3)} (difference {np.linalg.norm(est[-1, :3, 3] - kiss[-1, :3, 3]):.3f} m)")
    return row(f"kitti_raw sample ({len(seq)} frames, no GT)", dist, (None, None, fps), (None, None, kfps))


def main() -> None:
    """Parse arguments, run every row, print the table (and the fuse4d profile with ``--profile``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=200, help="synthetic frames (200 = one lap and a bit)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenarios", nargs="*", default=["default", "dense_traffic"])
    ap.add_argument("--kitti", type=Path, default=KITTI_SAMPLE, help="a KITTI raw drive folder")
    ap.add_argument("--hd64-frames", type=int, default=100,
                    help="frames of the 64-beam x 2048 synthetic LiDAR rows (0 = skip them)")
    ap.add_argument("--profile", action="store_true", help="print where fuse4d's time goes")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    rows, profiles = [], {}
    warm_up()
    with tempfile.TemporaryDirectory(prefix="bench_odometry_") as tmp:
        for scenario in args.scenarios:
            rows += synthetic_rows(scenario, args.frames, args.seed, Path(tmp), profiles)
    if args.hd64_frames:
        rows += hd64_rows(args.hd64_frames, args.seed, profiles)
    k = kitti_row(args.kitti, profiles)
    if k is not None:
        rows.append(k)
    print()
    print_table(rows)
    if args.profile:
        print("\nfuse4d time per stage (s, whole sequence) and graph size:")
        for name, prof in profiles.items():
            print(f"  {name}: " + ", ".join(f"{key} {val:.2f}" if isinstance(val, float) else f"{key} {val}"
                                            for key, val in prof.items()
                                            if key in ("preprocess", "registration", "map_update", "tracking",
                                                       "loop_closure", "pose_graph", "total", "loops", "nodes")))


if __name__ == "__main__":
    main()
