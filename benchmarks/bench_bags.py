"""ROS bag reading: speed against the pipeline on the same bag, and memory against bag length.

    python benchmarks/bench_bags.py [--frames 200] [--long 2000] [--format rosbag]

1. The synthetic world (``--frames`` frames) is written as a bag; reading every
   frame (scan + image + IMU) is timed against ``fuse4d run --no-model`` on the
   same bag (the issue's goal: reading >= 5x faster than the pipeline).
2. Peak RSS of a process that reads every frame of a ``--frames`` bag and of a
   ``--long`` bag (the long one repeats the world's frames with later stamps, so
   its messages are real-sized without synthesising thousands of frames); the
   goal is a ratio <= 1.2 (streaming: no bag is loaded whole).
Medians of repeated timings; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_READ = """
import resource, sys
from fuse4d.data.registry import load_sequence
seq = load_sequence(sys.argv[1])
n = 0
for i in range(len(seq)):
    f = seq[i]
    n += len(f.points)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, len(seq), n)
"""


def _repeat(seq, n: int):
    """A view of ``seq`` with ``n`` frames: frame i is frame ``i % len(seq)`` at time ``i / 10`` s."""
    from dataclasses import replace

    from fuse4d.data.types import ImuSamples, Sequence
    k, dt = len(seq), 0.1
    t = np.arange(n) * dt
    reps = int(np.ceil(n / k))
    imu = seq.imu
    period = k * dt
    it = np.concatenate([imu.t + r * period for r in range(reps)])
    keep = np.concatenate([[True], np.diff(it) > 0])
    imu_long = ImuSamples(it[keep], np.tile(imu.acc, (reps, 1))[keep], np.tile(imu.gyro, (reps, 1))[keep])

    def load(i: int):
        f = seq[i % k]
        return replace(f, index=i, timestamp=float(t[i]), imu=None)
    return Sequence(t, load, seq.calibration, seq.sensors, imu_long, None, dict(seq.metadata), "long")


def main() -> None:
    """Print the speed and memory tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--long", type=int, default=2000)
    ap.add_argument("--format", default="rosbag", choices=["rosbag", "ros2", "mcap"])
    ap.add_argument("--seed", type=int, default=10)
    args = ap.parse_args()

    from fuse4d.config import load_config
    from fuse4d.data.registry import load_sequence
    from fuse4d.data.rosbag_writer import write_bag
    from fuse4d.data.synthetic import synthesize
    from fuse4d.pipeline import Pipeline

    tmp = Path(tempfile.mkdtemp(prefix="fuse4d_bench_bags_"))
    world = synthesize(seed=args.seed, frames=args.frames)
    short = write_bag(world, tmp / "short", args.format)
    seq = load_sequence(short)
    reads = []
    for _ in range(3):
        tic = time.perf_counter()
        for i in range(len(seq)):
            seq[i]
        reads.append(time.perf_counter() - tic)
    read_fps = len(seq) / float(np.median(reads))
    tic = time.perf_counter()
    Pipeline(load_config(run={"use_model": False, "write_plots": False})).run(seq, tmp / "run")
    run_fps = len(seq) / (time.perf_counter() - tic)
    print(f"\n{args.format}, {args.frames} frames (32 x 1024 LiDAR + 384 x 128 camera + 200 Hz IMU)")
    print(f"| reading | fuse4d run --no-model | ratio |\n|---|---|---|\n"
          f"| {read_fps:.1f} frames/s | {run_fps:.1f} frames/s | {read_fps / run_fps:.1f}x |")

    long_bag = write_bag(_repeat(world, args.long), tmp / "long", args.format)
    rss = {}
    for name, bag in (("short", short), ("long", long_bag)):
        out = subprocess.run([sys.executable, "-c", _READ, str(bag)], capture_output=True, text=True, check=True)
        mb, n, pts = out.stdout.split()
        rss[name] = (float(mb), int(n), bag.stat().st_size if bag.is_file() else sum(
            p.stat().st_size for p in bag.iterdir()))
    print("\n| bag | frames | size | peak RSS reading every frame |\n|---|---|---|---|")
    for name, (mb, n, size) in rss.items():
        print(f"| {name} | {n} | {size / 2**20:.0f} MiB | {mb:.0f} MiB |")
    print(f"RSS ratio long/short: {rss['long'][0] / rss['short'][0]:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
