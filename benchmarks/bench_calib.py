"""Calibration accuracy and time on held-out synthetic seeds (test/val) from a seeded
±2 deg / ±10 cm / 20 ms error, on real single frames (KITTI raw frame 0 and both
OpenCalib/pjlab sets) from random 2 deg / 10 cm errors of their published extrinsic,
and the pipeline's ATE and depth error with the refined vs the true calibration.

Synthetic rows run the whole ``calibrate_sequence`` (LiDAR odometry deskew, IMU
rotation, time offset, LiDAR-camera over ``--calib-frames`` frames). Each also
re-solves the LiDAR-camera cost from the TRUE extrinsic on the same frames
("min@truth"): where the cost's own minimum sits, i.e. its bias, which no solver can
beat; "cost@truth" / "cost@est" are the cost at the truth and at the estimate.
Real rows print every draw, then the median and the worst.
CPU seconds of the LiDAR-camera solve and jit compile seconds are separate columns.

Run: python benchmarks/bench_calib.py [--seeds 0,10,20] [--frames 150] [--calib-frames 40]
     [--real-only | --synthetic-only] [--draws 3] [--pipeline SEED]
     python benchmarks/bench_calib.py --imu-e2e --seeds 0,10,20,1 --frames 150 [--acc-yaw]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,10,20", help="synthetic seeds (test: seed %% 10 == 0)")
    ap.add_argument("--frames", type=int, default=150, help="synthetic log length (10 Hz)")
    ap.add_argument("--calib-frames", type=int, default=None, help="LiDAR-camera frames (default: CalibConfig)")
    ap.add_argument("--real-only", action="store_true", help="skip the synthetic logs")
    ap.add_argument("--synthetic-only", action="store_true", help="skip the real frames")
    ap.add_argument("--draws", type=int, default=3, help="random starts per real frame")
    ap.add_argument("--pipeline", type=int, default=None, metavar="SEED",
                    help="also run the pipeline on this seed's log with the start, refined and true calibration")
    ap.add_argument("--pipeline-frames", type=int, default=100)
    ap.add_argument("--imu-only", action="store_true", help="only the IMU rows on ground-truth motion")
    ap.add_argument("--imu-e2e", action="store_true",
                    help="only the IMU estimates end to end (LiDAR odometry on the log, as fuse4d calib runs them)")
    ap.add_argument("--acc-yaw", action="store_true",
                    help="with --imu-e2e: also fuse the mount's yaw from horizontal accelerations (off by default)")
    args = ap.parse_args()
    if args.imu_only:
        imu(args.seeds)
        return
    if args.imu_e2e:
        imu_end_to_end(args.seeds, args.frames, args.acc_yaw)
        return
    if not args.real_only and args.seeds:
        imu(args.seeds)
        synthetic(args)
    if not args.synthetic_only:
        real(args.draws)
    if args.pipeline is not None:
        pipeline(args.pipeline, args.pipeline_frames, args.calib_frames)


def _config(calib_frames: int | None):
    from fuse4d.calib.config import CalibConfig
    cfg = CalibConfig()
    return cfg if calib_frames is None else replace(cfg, frames=calib_frames)


def synthetic(args) -> None:
    """Whole ``calibrate_sequence`` on synthetic logs, and the cost's minimum near the truth."""
    from fuse4d.calib.calibrate import calibrate_sequence
    from fuse4d.calib.io import with_calibration_error
    from fuse4d.calib.lidar_camera import refine_extrinsic
    from fuse4d.calib.lie import rotation_error_deg
    from fuse4d.data.synthetic import split_of, synthesize
    cfg = _config(args.calib_frames)
    print(f"synthetic: {args.frames}-frame logs, LiDAR-camera on {cfg.frames} frames, bootstrap {cfg.bootstrap}")
    print(f"{'case':24s} {'rot°':>5s} {'→':>6s} {'trans m':>7s} {'→':>6s} {'std°':>5s} {'std m':>6s} {'t?':>2s} "
          f"{'min@truth ° / m':>15s} {'cost@truth':>10s} {'cost@est':>8s} {'imu°':>5s} {'→':>5s} {'dt ms':>5s} "
          f"{'→':>5s} {'dt std':>6s} {'LC s':>5s} {'jit s':>5s} {'total s':>7s}")
    for seed in (int(s) for s in args.seeds.split(",")):
        seq = synthesize(seed=seed, frames=args.frames)
        bad, truth = with_calibration_error(seq, 2.0, 0.1, 20.0, seed)
        tic = time.perf_counter()
        res = calibrate_sequence(bad, cfg, truth=truth)
        total = time.perf_counter() - tic
        r = res.report
        Tt = truth.T_cam_lidar
        at = refine_extrinsic(res.frames, truth.K, Tt, replace(cfg, search_deg=0.0, bootstrap=0))
        m_rot = rotation_error_deg(at.T_cam_lidar[:3, :3], Tt[:3, :3])
        m_tr = float(np.linalg.norm(at.T_cam_lidar[:3, 3] - Tt[:3, 3]))
        name = f"synthetic {split_of(seed)} seed {seed}"
        print(f"{name:24s} {r['rot_err_deg_before']:5.2f} {r['rot_err_deg']:6.3f} {r['trans_err_m_before']:7.3f} "
              f"{r['trans_err_m']:6.3f} {r['lidar_camera_std_rot_deg']:5.2f} {r['lidar_camera_std_trans_m']:6.3f} "
              f"{'y' if r['lidar_camera_trans_excited'] else 'n':>2s} {m_rot:7.3f} / {m_tr:5.3f} "
              f"{at.cost_init:10.3f} {r['lidar_camera_cost_after']:8.3f} "
              f"{r['imu_rot_err_deg_before']:5.2f} {r['imu_rot_err_deg']:5.2f} {r['time_offset_err_ms_before']:5.1f} "
              f"{r['time_offset_err_ms']:5.2f} {r.get('time_offset_std_ms', float('nan')):6.2f} "
              f"{r.get('lidar_camera_seconds', float('nan')):5.0f} {r.get('lidar_camera_compile_seconds', 0):5.1f} "
              f"{total:7.0f}", flush=True)


def imu(seeds: str, frames: int = 200) -> None:
    """Time offset (IMU clock 20 ms ahead) and IMU-LiDAR rotation (1.3 deg off) on the true
    LiDAR motion of ``frames``-frame logs: the estimators alone, without odometry error."""
    from fuse4d.calib.hand_eye import estimate_rotation, gyro_rotations, rotation_vectors
    from fuse4d.calib.lie import np_so3_exp, rotation_error_deg
    from fuse4d.calib.time_offset import estimate_time_offset
    from fuse4d.data.synthetic import split_of, synthesize
    from fuse4d.data.types import ImuSamples
    from fuse4d.geometry import invert
    print(f"IMU estimators on true LiDAR motion, {frames}-frame logs")
    print(f"{'case':24s} {'dt err ms':>9s} {'std ms':>7s} {'exc':>3s} {'imu rot err°':>12s} {'std°':>6s} {'exc':>3s}")
    for seed in (int(s) for s in seeds.split(",")):
        seq = synthesize(seed=seed, frames=frames)
        T = seq.gt_poses @ seq.calibration.T_body_lidar
        rel = np.stack([invert(T[i - 1]) @ T[i] for i in range(1, len(T))])
        t0, t1 = seq.timestamps[:-1], seq.timestamps[1:]
        b = rotation_vectors(rel)
        te = estimate_time_offset(t0, t1, np.linalg.norm(b, axis=1),
                                  ImuSamples(seq.imu.t + 0.020, seq.imu.acc, seq.imu.gyro))
        R_err = np_so3_exp(np.radians([1.0, -0.7, 0.5]))
        re = estimate_rotation(gyro_rotations(seq.imu, t0, t1), b @ R_err.T, t1 - t0)
        err = rotation_error_deg(re.R_body_lidar, seq.calibration.T_body_lidar[:3, :3] @ R_err.T)
        print(f"{'synthetic ' + split_of(seed) + ' seed ' + str(seed):24s} {abs(te.offset_s - 0.02) * 1e3:9.3f} "
              f"{te.std_s * 1e3:7.3f} {'y' if te.excited else 'n':>3s} {err:12.3f} "
              f"{np.linalg.norm(re.std_deg):6.3f} {'y' if re.excited else 'n':>3s}", flush=True)
    print()


def imu_end_to_end(seeds: str, frames: int, acc_yaw: bool = False) -> None:
    """Time offset and IMU-LiDAR rotation from a seeded 20 ms / 1 deg error, with the motion
    from ``calibrate_sequence``'s own LiDAR odometry (the LiDAR-camera part is skipped).
    "acc yaw" is the mount's yaw from horizontal accelerations (and its std), "yaw std" the
    std about the vertical after fusing it with the hand-eye."""
    nan = float("nan")
    from fuse4d.calib.calibrate import calibrate_sequence
    from fuse4d.calib.config import CalibConfig
    from fuse4d.calib.io import with_calibration_error
    from fuse4d.data.synthetic import split_of, synthesize
    print(f"IMU estimates end to end (LiDAR odometry), {frames}-frame logs, from 2 deg / 10 cm / 20 ms")
    print(f"{'case':24s} {'dt ms':>5s} {'→':>6s} {'std':>5s} {'per pass ms':>20s} {'imu°':>5s} {'→':>6s} "
          f"{'determ.':>7s} {'std° x/y/z':>17s} {'weak axis':>18s} {'acc yaw°':>8s} {'std':>5s} {'yaw std':>7s} "
          f"{'odo s':>6s} {'total s':>7s}")
    for seed in (int(s) for s in seeds.split(",")):
        bad, truth = with_calibration_error(synthesize(seed=seed, frames=frames), 2.0, 0.1, 20.0, seed)
        tic = time.perf_counter()
        r = calibrate_sequence(bad, CalibConfig(lidar_camera=False, yaw_from_acceleration=acc_yaw), truth=truth).report
        total = time.perf_counter() - tic
        passes = "/".join(f"{x:.2f}" for x in r["time_offset_passes_ms"])
        weak = " ".join(f"({','.join(f'{c:+.1f}' for c in w)})" for w in r["imu_rot_weak_axes"]) or "-"
        print(f"{'synthetic ' + split_of(seed) + ' seed ' + str(seed):24s} {r['time_offset_err_ms_before']:5.1f} "
              f"{r['time_offset_err_ms']:6.3f} {r['time_offset_std_ms']:5.2f} {passes:>20s} "
              f"{r['imu_rot_err_deg_before']:5.2f} {r['imu_rot_err_deg']:6.3f} {r['imu_rot_err_determined_deg']:7.3f} "
              f"{'/'.join(f'{x:.2f}' for x in r['imu_rot_std_deg']):>17s} {weak:>18s} "
              f"{r.get('imu_yaw_acc_deg', nan):+8.3f} {r.get('imu_yaw_acc_std_deg', nan):5.2f} "
              f"{r.get('imu_yaw_std_deg', nan):7.2f} {r['odometry_s']:6.0f} "
              f"{total:7.0f}", flush=True)


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
          f"{'std m':>6s} {'exc':>3s} {'LC s':>6s} {'jit s':>6s}")
    for name, (frame, cal) in cases.items():
        ef = edge_frame(frame, cal)
        T_true = cal.T_cam_lidar
        errs = []
        for k in range(draws):
            T0 = perturb(T_true, 2.0, 0.1, np.random.default_rng([k, 99]))
            est = refine_extrinsic([ef], cal.K, T0, CalibConfig())
            # as calibrate_sequence applies it: an unexcited rotation keeps the start (flag "n")
            T = est.T_cam_lidar if est.rot_excited else T0
            e = (rotation_error_deg(T[:3, :3], T_true[:3, :3]), float(np.linalg.norm(T[:3, 3] - T_true[:3, 3])))
            errs.append(e)
            print(f"{name:22s} {k:4d} {rotation_error_deg(T0[:3, :3], T_true[:3, :3]):6.2f} {e[0]:6.3f} "
                  f"{np.linalg.norm(T0[:3, 3] - T_true[:3, 3]):8.3f} {e[1]:7.3f} {est.std_rot_deg:6.3f} "
                  f"{est.std_trans_m:6.3f} {'y' if est.rot_excited else 'n':>3s} {est.seconds:6.1f} "
                  f"{est.compile_seconds:6.1f}", flush=True)
        a = np.asarray(errs)
        m, w = np.median(a, axis=0), a.max(axis=0)
        print(f"{name:22s} {'med':>4s} {'':6s} {m[0]:6.3f} {'':8s} {m[1]:7.3f}")
        print(f"{name:22s} {'max':>4s} {'':6s} {w[0]:6.3f} {'':8s} {w[1]:7.3f}", flush=True)


def pipeline(seed: int, frames: int, calib_frames: int | None) -> None:
    """``fuse4d synth --calib-error rot_deg=2,trans_m=0.1,time_ms=20``, ``fuse4d calib``, then
    ``fuse4d run`` (shipped model) with the start, the refined and the true calibration:
    ATE and depth AbsRel of each, and the refined/true ratios."""
    from fuse4d.calib.calibrate import calibrate_sequence
    from fuse4d.calib.io import TRUE_NAME, read_calibration, with_calibration_error, write_calibration
    from fuse4d.config import load_config
    from fuse4d.data.export import export_sequence
    from fuse4d.data.registry import load_sequence
    from fuse4d.data.synthetic import split_of, synthesize
    from fuse4d.evaluation import evaluate_run
    from fuse4d.pipeline import Pipeline
    tmp = Path(tempfile.mkdtemp(prefix="bench_calib_"))
    bad, truth = with_calibration_error(synthesize(seed=seed, frames=frames), 2.0, 0.1, 20.0, seed)
    log = export_sequence(bad, tmp / "log", format="zarr")
    write_calibration(Path(log) / TRUE_NAME, truth)
    res = calibrate_sequence(load_sequence(log), _config(calib_frames), truth=read_calibration(Path(log) / TRUE_NAME))
    write_calibration(tmp / "refined.yaml", res.calibration, res.report)
    r = res.report
    print(f"\npipeline, {split_of(seed)} seed {seed}, {frames} frames: refined calib rot {r['rot_err_deg']:.3f} deg, "
          f"trans {r['trans_err_m']:.3f} m, imu {r['imu_rot_err_deg']:.3f} deg, dt {r['time_offset_err_ms']:.2f} ms")
    print(f"{'calibration':12s} {'ATE m':>8s} {'depth AbsRel':>12s} {'s':>6s}")
    out = {}
    for name, calib in (("true", Path(log) / TRUE_NAME), ("refined", tmp / "refined.yaml"), ("start", None)):
        tic = time.perf_counter()
        Pipeline(load_config(None)).run(load_sequence(log, calib=calib), tmp / f"run_{name}", overwrite=True)
        m = evaluate_run(tmp / f"run_{name}")
        out[name] = (m.get("ate_rmse_m", float("nan")), m.get("depth_absrel", float("nan")))
        print(f"{name:12s} {out[name][0]:8.4f} {out[name][1]:12.4f} {time.perf_counter() - tic:6.0f}", flush=True)
    for i, k in enumerate(("ATE", "depth AbsRel")):
        print(f"refined / true {k}: {out['refined'][i] / out['true'][i]:.3f}")
    print(f"(run folders in {tmp})")


if __name__ == "__main__":
    main()
