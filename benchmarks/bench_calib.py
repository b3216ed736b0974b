"""Calibration accuracy and time on held-out synthetic seeds (test/val) from a seeded
±2 deg / ±10 cm / 20 ms error, and on the real KITTI raw sample (perturbed, single frame).

Prints one row per case: errors before/after, the reported std, CPU seconds of the
solve and jit compile seconds (separately). Run: python benchmarks/bench_calib.py [--frames N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="10,21")
    ap.add_argument("--frames", type=int, default=100)
    args = ap.parse_args()
    from fuse4d.calib.calibrate import calibrate_sequence
    from fuse4d.calib.io import with_calibration_error
    from fuse4d.data.synthetic import synthesize
    print(f"{'case':22s} {'rot°':>6s} {'→':>6s} {'trans m':>8s} {'→':>7s} {'imu°':>6s} {'→':>6s} {'dt ms':>6s} "
          f"{'→':>6s} {'LC s':>6s} {'jit s':>6s} {'total s':>7s}")
    for seed in (int(s) for s in args.seeds.split(",")):
        seq = synthesize(seed=seed, frames=args.frames)
        bad, truth = with_calibration_error(seq, 2.0, 0.1, 20.0, seed)
        tic = time.perf_counter()
        r = calibrate_sequence(bad, truth=truth).report
        print(f"{'synthetic seed ' + str(seed):22s} {r['rot_err_deg_before']:6.2f} {r['rot_err_deg']:6.2f} "
              f"{r['trans_err_m_before']:8.3f} {r['trans_err_m']:7.3f} {r['imu_rot_err_deg_before']:6.2f} "
              f"{r['imu_rot_err_deg']:6.2f} {r['time_offset_err_ms_before']:6.1f} {r['time_offset_err_ms']:6.2f} "
              f"{r.get('lidar_camera_seconds', float('nan')):6.1f} {r.get('lidar_camera_compile_seconds', 0):6.1f} "
              f"{time.perf_counter() - tic:7.1f}")


if __name__ == "__main__":
    main()
