"""Calibration accuracy and time on held-out synthetic seeds (test/val) from a seeded
±2 deg / ±10 cm / 20 ms error, and on real single frames (KITTI raw frame 0 and both
OpenCalib/pjlab sets) from random 2 deg / 10 cm errors of their published extrinsic.

Prints one row per case: errors before/after, CPU seconds of the LiDAR-camera solve
and jit compile seconds (separately; compile happens once per input shape).
Run: python benchmarks/bench_calib.py [--seeds 10,20] [--frames N] [--real-only] [--draws 3]
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
    ap.add_argument("--real-only", action="store_true", help="skip the synthetic logs")
    ap.add_argument("--draws", type=int, default=3, help="random starts per real frame")
    args = ap.parse_args()
    if not args.real_only:
        synthetic(args)
    real(args.draws)


def synthetic(args) -> None:
    """Whole ``calibrate_sequence`` on synthetic logs (odometry deskew, IMU parts included)."""
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


def real(draws: int) -> None:
    """Single real frames: LiDAR-camera refinement from ``draws`` random 2 deg / 10 cm starts."""
    from fuse4d.calib.config import CalibConfig
    from fuse4d.calib.frames import edge_frame
    from fuse4d.calib.io import load_opencalib_pair
    from fuse4d.calib.lidar_camera import refine_extrinsic
    from fuse4d.calib.lie import perturb, rotation_error_deg
    from fuse4d.data.types import Calibration, Frame
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    cases = {}
    kitti = data / "kitti_raw_2011_09_26" / "2011_09_26" / "2011_09_26_drive_unknown_sync"
    if kitti.exists():
        from fuse4d.data.registry import load_sequence
        seq = load_sequence(kitti)
        cases["KITTI raw frame 0"] = (seq[0], seq.calibration)
    for name in ("manual_calib", "auto_calib"):
        d = data / "pjlab_sensorscalib" / "lidar2camera" / name / "data"
        if d.exists():
            p = load_opencalib_pair(d)
            cal = Calibration(K=p["K"], image_size=p["image"].shape[1::-1], T_body_cam=np.linalg.inv(p["T_cam_lidar"]),
                              T_body_lidar=np.eye(4))
            cases[f"pjlab {name}"] = (Frame(0, 0.0, image=p["image"], points=p["points"]), cal)
    print(f"\n{'real frame':22s} {'draw':>4s} {'rot°':>6s} {'→':>6s} {'trans m':>8s} {'→':>7s} {'std°':>6s} "
          f"{'std m':>6s} {'LC s':>6s} {'jit s':>6s}")
    for name, (frame, cal) in cases.items():
        ef = edge_frame(frame, cal)
        T_true = cal.T_cam_lidar
        errs = []
        for k in range(draws):
            T0 = perturb(T_true, 2.0, 0.1, np.random.default_rng([k, 99]))
            est = refine_extrinsic([ef], cal.K, T0, CalibConfig())
            T = est.T_cam_lidar
            e = (rotation_error_deg(T[:3, :3], T_true[:3, :3]), float(np.linalg.norm(T[:3, 3] - T_true[:3, 3])))
            errs.append(e)
            print(f"{name:22s} {k:4d} {rotation_error_deg(T0[:3, :3], T_true[:3, :3]):6.2f} {e[0]:6.3f} "
                  f"{np.linalg.norm(T0[:3, 3] - T_true[:3, 3]):8.3f} {e[1]:7.3f} {est.std_rot_deg:6.3f} "
                  f"{est.std_trans_m:6.3f} {est.seconds:6.1f} {est.compile_seconds:6.1f}", flush=True)
        m = np.median(np.asarray(errs), axis=0)
        print(f"{name:22s} {'med':>4s} {'':6s} {m[0]:6.3f} {'':8s} {m[1]:7.3f}")


if __name__ == "__main__":
    main()
