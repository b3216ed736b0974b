"""Synthetic-world rendering speed: frames/s for 32 × 1024 LiDAR + 128 × 384 camera, all layers.

Usage: ``python benchmarks/bench_synthetic.py [--frames 40] [--runs 3] [--threads 1]``.
Prints the world build time and frames/s (median of the runs, wall clock and
CPU time). ``--threads 1`` keeps Embree on one thread; run under
``taskset -c 0`` to pin the whole process to one core.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scenario", default="default")
    args = ap.parse_args()

    from fuse4d.data.synthetic import SynthConfig, synthesize

    cfg = SynthConfig(lidar_beams=32, lidar_azimuth_steps=1024, image_width=384, image_height=128,
                      raycast_threads=args.threads)
    t0 = time.perf_counter()
    seq = synthesize(seed=0, frames=200, scenario=args.scenario, config=cfg)
    build = time.perf_counter() - t0
    seq[0]  # warm-up
    ref_before = reference_cast_ms()  # the load can change during the runs: measured before and after
    wall, cpu = [], []
    rng = np.random.default_rng(0)
    for _ in range(args.runs):
        idx = rng.choice(len(seq), args.frames, replace=False)
        w0, c0 = time.perf_counter(), time.process_time()
        for i in idx:
            seq[int(i)]
        wall.append(args.frames / (time.perf_counter() - w0))
        cpu.append(args.frames / (time.process_time() - c0))
    ref = 0.5 * (ref_before + reference_cast_ms())
    f = seq[10]
    print(f"machine reference (Embree, 49k rays, 1 thread): {ref:.1f} ms, mean of before/after the runs "
          f"(before {ref_before:.1f}; idle core: ~10 ms)")
    print(f"world build: {build:.2f} s; frame: {len(f.points)} points, image {f.image.shape}")
    print(f"synthetic frames/s (median of {args.runs} x {args.frames}): wall {statistics.median(wall):.1f}, "
          f"cpu {statistics.median(cpu):.1f}  [all runs wall: {', '.join(f'{x:.1f}' for x in wall)}]")


if __name__ == "__main__":
    main()
