"""A long synthetic log (default 3,000 frames, several laps): time per frame, memory and ATE of fuse4d.

Usage (from the repository root; slow: ~10-20 min on a quiet 2-core machine)::

    nice -n 10 python benchmarks/bench_long.py                    # 3,000 frames, seed 0 (a test seed)
    nice -n 10 python benchmarks/bench_long.py --frames 1025      # 5 laps of 185 frames + 100
    nice -n 10 python benchmarks/bench_long.py --frames 600 --lidar-only

Frames are rendered one at a time outside the clock; the estimator's ``step`` is
timed per frame. Printed: median time per frame of the first and last 100 frames
and their ratio (goal ≤ 1.2: every keyframe is kept in a sparse pose graph and
loop detection preselects candidates by ring key, so no per-frame cost grows
with the log), resident memory after the first 100 frames and at the end,
the final pose-graph solve, loop closures, and the ATE against ground truth
(SE(3)-aligned, LiDAR frame) as a fraction of the distance (goal ≤ 0.1 %).
The synthetic drive repeats one lap (185 frames), and the time a frame takes
depends on the road it sees; so the last complete lap's frames on the same
road as the first 100 are also compared with them ("same road"). The loop
store keeps one sweep per place: a revisit's sweep is dropped, so its memory
follows the area driven, not the log's length.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import psutil

from fuse4d import metrics
from fuse4d.fusion.estimation import EstimationConfig, Estimator
from fuse4d.geometry import invert


def main() -> None:
    """Run the long log and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--lidar-only", action="store_true", help="drop the IMU")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    from fuse4d.data.synthetic import synthesize
    seq = synthesize(args.seed, args.frames, args.scenario)
    sensors = set(seq.sensors) - ({"imu"} if args.lidar_only else set())
    est = Estimator(EstimationConfig(use_imu=not args.lidar_only), seq.calibration, sensors,
                    None if args.lidar_only else seq.imu, seq.path)
    proc = psutil.Process()
    step_s, cpu_s, rss = [], [], {}
    for i in range(len(seq)):
        frame = seq[i]
        tic, cpu = time.perf_counter(), time.process_time()
        est.step(frame)
        step_s.append(time.perf_counter() - tic)
        cpu_s.append(time.process_time() - cpu)
        if i + 1 in (100, len(seq)):
            rss[i + 1] = proc.memory_info().rss / 2 ** 20
        if (i + 1) % 500 == 0:
            logging.warning("%d frames, %.1f ms/frame over the last 100", i + 1, 1e3 * np.median(step_s[-100:]))
    tic = time.perf_counter()
    res = est.finish()
    solve = time.perf_counter() - tic
    gt = seq.gt_poses @ seq.calibration.T_body_lidar
    gt = invert(gt[0]) @ gt
    dist = float(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1).sum())
    ate = metrics.ate(res.T_world_lidar, gt)["rmse"]
    first, last = 1e3 * np.median(step_s[:100]), 1e3 * np.median(step_s[-100:])
    # the drive repeats lap after lap: the last lap's frames on the same road as the first 100
    lap = int(round(seq.metadata.get("config", {}).get("lap_time", 0.0) * seq.metadata.get("config", {}).get(
        "frame_rate", 10.0)))
    same = None
    if lap >= 100 and len(seq) >= lap + 100:
        k = (len(seq) - 100) // lap * lap
        same = 1e3 * np.median(step_s[k:k + 100])
    db = est.frontend.loops_db
    kept = [p for p in db.points if p is not None]
    print(f"| frames | path m | ATE m | ATE % path | ms/frame first 100 | ms/frame last 100 | ratio | "
          f"same road, last lap | ratio | RSS MiB @100 | RSS MiB end | loop store: sweeps kept / keyframes, MiB | "
          f"final solve s | loops |")
    print("|" + "---|" * 14)
    print(f"| {len(seq)} | {dist:.0f} | {ate:.3f} | {100 * ate / dist:.4f} | {first:.1f} | {last:.1f} | "
          f"{last / first:.2f} | {'n/a' if same is None else f'{same:.1f}'} | "
          f"{'n/a' if same is None else f'{same / first:.2f}'} | {rss[100]:.0f} | {rss[len(seq)]:.0f} | "
          f"{len(kept)} / {len(db.points)}, {sum(p.nbytes for p in kept) / 2 ** 20:.0f} | {solve:.1f} | "
          f"{len(res.loops)} |")
    for name, s in (("wall", step_s), ("CPU", cpu_s)):
        for stat in (np.median, np.mean):
            print(f"{name} time per frame, {stat.__name__} of every 100 frames (ms): "
                  + " ".join(f"{1e3 * stat(s[a:a + 100]):.0f}" for a in range(0, len(seq), 100)))
    print(f"CPU ms/frame median: first 100 {1e3 * np.median(cpu_s[:100]):.1f}, last 100 "
          f"{1e3 * np.median(cpu_s[-100:]):.1f}, ratio {np.median(cpu_s[-100:]) / np.median(cpu_s[:100]):.2f}")


if __name__ == "__main__":
    main()
