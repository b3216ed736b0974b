"""Synthetic-world rendering speed: frames/s for 32 × 1024 LiDAR + 128 × 384 camera, all layers.

Usage: ``python benchmarks/bench_synthetic.py [--frames 40] [--runs 3] [--threads 1] [--seeds 0,2,3]
[--against DIR]``.
Prints the world build time and frames/s (median of the runs, wall clock and
CPU time) for each seed (worlds differ per seed: loop size, traffic, buildings).
``--threads 1`` keeps Embree on one thread; run under ``taskset -c 0`` to pin the
whole process to one core. ``--against DIR`` also runs the same benchmark on
another copy of fuse4d (``DIR/fuse4d``, e.g. ``git archive <commit>`` unpacked
there), alternating with this one round by round so both see the same load, and
prints the ratio of the median CPU frame rates.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def reference_cast_ms() -> float:
    """Machine reference: best of 10 casts of 49,152 random downward rays on a 0.25 m grid mesh (ms).

    About 10 ms on an idle core of the 2-core dev machine; a larger figure means the
    core is shared and the frame rates below are depressed by the same factor.
    """
    import open3d as o3d

    rng = np.random.default_rng(0)
    d = rng.normal(size=(49152, 3))
    d[:, 2] = -np.abs(d[:, 2]) - 0.2
    rays = np.concatenate([np.tile([0.0, 0.0, 1.5], (len(d), 1)), d], 1).astype(np.float32)
    x, y = np.meshgrid(np.arange(-80, 80, 0.25), np.arange(-80, 80, 0.25), indexing="ij")
    v = np.stack([x, y, 0.05 * np.sin(x)], -1).reshape(-1, 3).astype(np.float32)
    i = np.arange(x.size).reshape(x.shape)
    tri = np.concatenate([np.stack([i[:-1, :-1], i[1:, :-1], i[1:, 1:]], -1).reshape(-1, 3),
                          np.stack([i[:-1, :-1], i[1:, 1:], i[:-1, 1:]], -1).reshape(-1, 3)]).astype(np.uint32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(tri))
    r = o3d.core.Tensor(rays)
    best = np.inf
    for _ in range(10):
        t0 = time.perf_counter()
        scene.cast_rays(r, nthreads=1)
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def measure(seed: int, frames: int, runs: int, threads: int, scenario: str) -> dict:
    """Build the world of ``seed`` and time ``runs`` × ``frames`` random frames → build s, fps lists, points."""
    from fuse4d.data.synthetic import SynthConfig, synthesize

    cfg = SynthConfig(lidar_beams=32, lidar_azimuth_steps=1024, image_width=384, image_height=128,
                      raycast_threads=threads)
    try:  # time a real build, not the per-process cache of static worlds
        from fuse4d.data.synthetic.world import _static_world
        _static_world.cache_clear()
    except (ImportError, AttributeError):
        pass
    t0 = time.perf_counter()
    seq = synthesize(seed=seed, frames=200, scenario=scenario, config=cfg)
    build = time.perf_counter() - t0
    seq[0]  # warm-up
    wall, cpu = [], []
    rng = np.random.default_rng(0)
    for _ in range(runs):
        idx = rng.choice(len(seq), frames, replace=False)
        w0, c0 = time.perf_counter(), time.process_time()
        for i in idx:
            seq[int(i)]
        wall.append(frames / (time.perf_counter() - w0))
        cpu.append(frames / (time.process_time() - c0))
    return {"build": build, "wall": wall, "cpu": cpu, "points": len(seq[10].points)}


def _other(against: str, args: argparse.Namespace, seed: int) -> dict:
    """The same measurement in a subprocess importing fuse4d from ``against``."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=against)
    code = ("import json, sys; sys.path.insert(0, %r); import bench_synthetic as b; "
            "print(json.dumps(b.measure(%d, %d, 1, %d, %r)))"
            % (os.path.dirname(os.path.abspath(__file__)), seed, args.frames, args.threads, args.scenario))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--seeds", default="0", help="comma-separated world seeds")
    ap.add_argument("--against", default=None, help="folder holding another fuse4d copy to compare with")
    args = ap.parse_args()

    seeds = [int(x) for x in args.seeds.split(",")]
    ref_before = reference_cast_ms()  # the load can change during the runs: measured before and after
    rows, ours, theirs = [], [], []
    for seed in seeds:
        if args.against:  # alternate round by round: both copies see the same load
            for _ in range(args.runs):
                theirs.append(_other(args.against, args, seed)["cpu"][0])
                m = measure(seed, args.frames, 1, args.threads, args.scenario)
                ours.append(m["cpu"][0])
        else:
            m = measure(seed, args.frames, args.runs, args.threads, args.scenario)
            ours += m["cpu"]
        rows.append((seed, m))
    ref = 0.5 * (ref_before + reference_cast_ms())
    print(f"machine reference (Embree, 49k rays, 1 thread): {ref:.1f} ms, mean of before/after the runs "
          f"(before {ref_before:.1f}; idle core: ~10 ms)")
    for seed, m in rows:
        print(f"seed {seed}: world build {m['build']:.2f} s; {m['points']} LiDAR points; frames/s wall "
              f"{statistics.median(m['wall']):.1f}, cpu {statistics.median(m['cpu']):.1f}")
    print(f"synthetic frames/s, cpu, median over seeds {seeds} x {args.runs} runs x {args.frames} frames: "
          f"{statistics.median(ours):.1f}  [all: {', '.join(f'{x:.1f}' for x in ours)}]")
    if args.against:
        print(f"{args.against}: cpu {statistics.median(theirs):.1f} frames/s  [all: "
              f"{', '.join(f'{x:.1f}' for x in theirs)}]; ratio this / that = "
              f"{statistics.median(ours) / statistics.median(theirs):.2f}")


if __name__ == "__main__":
    main()
