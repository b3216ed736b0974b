"""The fusion model on held-out synthetic seeds (val/test, never trained on): accuracy per
sensor subset, gate response to degraded spans, CPU speed and peak memory vs window size.

Usage (from the repository root)::

    python benchmarks/bench_model.py                          # shipped checkpoint
    python benchmarks/bench_model.py --checkpoint runs/tiny/model.pt --frames 24 --threads 2

Rows of the accuracy table: every sensor subset on the same frames, plus the anchor
``lidar-fill`` (the LiDAR points projected into the camera and densified by normalised
convolution, the model's own depth prior: the model must beat it where it has support and
fill everything else). Depth AbsRel is over all ground-truth pixels ≤ 80 m (coverage in
brackets for the anchor); mIoU over classes 1-9; dynamic IoU at probability 0.5; pose RPE of
consecutive frames (body frame; the first frame of the log has no prediction).
Frames are rendered once and held in memory before any clock starts.
The machine may be shared: CPU time per frame is printed beside wall time.
"""

from __future__ import annotations

import argparse
import resource
import time
from itertools import combinations

import numpy as np
import torch

from fuse4d import metrics
from fuse4d.data.classes import NUM_CLASSES
from fuse4d.data.synthetic import synthesize
from fuse4d.data.types import Sequence
from fuse4d.geometry import rotation_angle
from fuse4d.fusion.predict import Predictor

SENSORS = ("camera", "lidar", "imu")


def cached(seq: Sequence, frames: int) -> Sequence:
    """The first ``frames`` frames of ``seq`` rendered once, as an in-memory Sequence."""
    fr = [seq[i] for i in range(frames)]
    return Sequence(seq.timestamps[:frames], lambda i: fr[i], seq.calibration, seq.sensors, seq.imu,
                    seq.gt_poses[:frames], seq.metadata, seq.name)


_MOTIONS: dict = {}


def odometry_motions(seq: Sequence, sensors) -> list | None:
    """Per-frame LiDAR sweep motion from the geometric odometry on ``sensors`` (as the engine
    gives the model), or None without LiDAR; cached per log and sensor set."""
    if "lidar" not in sensors or "lidar" not in seq.sensors:
        return None
    key = (id(seq), "imu" in sensors)
    if key not in _MOTIONS:
        from fuse4d.data.select import with_sensors
        from fuse4d.fusion.estimation.estimator import estimate_trajectory
        from fuse4d.fusion.inputs import lidar_motions
        res = estimate_trajectory(with_sensors(seq, {"lidar", "imu"} & set(sensors)))
        _MOTIONS[key] = lidar_motions(res.T_world_lidar, np.asarray(seq.timestamps))
        _LEVEL[key] = res.T_world_lidar[:, :3, :3]
    return _MOTIONS[key]


_LEVEL: dict = {}


def ground_masks(seq: Sequence, sensors) -> list | None:
    """Per-frame geometric ground mask of the LiDAR points in the odometry's level frame (as the
    engine gives the model), or None without LiDAR."""
    if odometry_motions(seq, sensors) is None:
        return None
    from fuse4d.mapping.ground import segment_ground
    R = _LEVEL[(id(seq), "imu" in sensors)]
    return [None if seq[i].points is None else segment_ground(seq[i].points[:, :3] @ R[i].T) for i in range(len(seq))]


def run_log(pred: Predictor, seq: Sequence, sensors, window: int = 8):
    """Predictions of every window of ``seq`` with the recurrent state carried; LiDAR points
    enter moved to the camera stamp by the odometry's sweep motion, as in ``fuse4d run``."""
    state, out, pos = None, [], 0
    motions = odometry_motions(seq, sensors)
    ground = ground_masks(seq, sensors)
    for w in seq.windows(window):
        sl = slice(pos, pos + len(w))
        wp, state = pred.predict(w, set(sensors), state, None if motions is None else motions[sl],
                                 ground=None if ground is None else ground[sl])
        out.append(wp)
        pos += len(w)
    return out


def score(seq: Sequence, wps) -> dict:
    """Accuracy of the concatenated predictions of one log (arrays for pooled metrics)."""
    frames = [seq[i] for i in range(len(seq))]
    r: dict = {"depth_p": [], "depth_g": [], "sem_p": [], "sem_g": [], "dyn_p": [], "dyn_g": [],
               "psem_p": [], "psem_g": [], "pdyn_p": [], "pdyn_g": [], "rpe_t": [], "rpe_r": [], "gates": []}
    gt = seq.gt_poses
    k = 0
    for wp in wps:
        for j in range(len(wp)):
            f = frames[k]
            if wp.depth is not None:
                r["depth_p"].append(wp.depth[j]), r["depth_g"].append(f.depth)
                r["sem_p"].append(wp.semantics[j]), r["sem_g"].append(f.semantics)
                r["dyn_p"].append(wp.dynamic[j] > 0.5), r["dyn_g"].append(f.dynamic_mask)
            if wp.point_semantics is not None and f.points is not None:
                r["psem_p"].append(wp.point_semantics[j]), r["psem_g"].append(f.point_semantics)
                r["pdyn_p"].append(wp.point_dynamic[j] > 0.5), r["pdyn_g"].append(f.point_dynamic)
            if k > 0 and np.isfinite(wp.T_prev_cur[j]).all():
                T = np.linalg.inv(gt[k - 1]) @ gt[k]
                E = np.linalg.inv(T) @ wp.T_prev_cur[j]
                r["rpe_t"].append(np.linalg.norm(E[:3, 3])), r["rpe_r"].append(np.degrees(rotation_angle(E[:3, :3])))
            r["gates"].append(wp.gates[j])
            k += 1
    return r


def summarize(parts: list[dict]) -> dict:
    """Pool per-log scores into the table's metrics."""
    cat = {k: [x for p in parts for x in p[k]] for k in parts[0]}
    out = {}
    if cat["depth_p"]:
        out["depth_absrel"] = metrics.depth_errors(np.stack(cat["depth_p"]), np.stack(cat["depth_g"]), 80.0)["absrel"]
        out["sem_miou"] = metrics.iou(np.stack(cat["sem_p"]), np.stack(cat["sem_g"]), NUM_CLASSES, 0)[1]
        out["dyn_iou"] = metrics.binary_iou(np.stack(cat["dyn_p"]), np.stack(cat["dyn_g"]))
    if cat["psem_p"]:
        out["sem_miou_points"] = metrics.iou(np.concatenate(cat["psem_p"]), np.concatenate(cat["psem_g"]), NUM_CLASSES, 0)[1]
        out["dyn_iou_points"] = metrics.binary_iou(np.concatenate(cat["pdyn_p"]), np.concatenate(cat["pdyn_g"]))
    if cat["rpe_t"]:
        out["rpe_t_m"], out["rpe_r_deg"] = float(np.mean(cat["rpe_t"])), float(np.mean(cat["rpe_r"]))
    return out


def lidar_fill_anchor(seq: Sequence) -> dict:
    """AbsRel (and coverage) of the densified LiDAR projection upsampled to the image."""
    from fuse4d.fusion.inputs import window_inputs
    import torch.nn.functional as F
    from fuse4d.encoders.lidar import depth_channels
    ps, gs, pos = [], [], 0
    motions = odometry_motions(seq, SENSORS)
    for w in seq.windows(8):
        inp, aux = window_inputs(list(w), w.calibration, Predictor.untrained().cfg, {"camera", "lidar"},
                                 motions=motions[pos:pos + len(w)])
        pos += len(w)
        ch = depth_channels(inp["lidar_view"][0], 80.0)
        d = torch.where(ch[:, 3] > 0, torch.exp(ch[:, 2] * np.log(80.0)), torch.zeros(()))
        up = aux["warp"].unwarp(d[:, None], 0.0, mode="nearest")[:, 0].numpy()
        ps.append(up), gs.append(np.stack([f.depth for f in w]))
    e = metrics.depth_errors(np.concatenate(ps), np.concatenate(gs), 80.0)
    return {"depth_absrel": e["absrel"], "coverage": e["coverage"]}


def gate_spans(pred: Predictor, seed: int, frames: int) -> list[str]:
    """Gate means inside vs outside degraded spans, and pose error there vs the clean log."""
    lines = []
    clean = cached(synthesize(seed, frames=frames, scenario="default"), frames)
    base = score(clean, run_log(pred, clean, SENSORS))
    for scen, span_name, col in (("camera_dark", "camera_dark", 0), ("lidar_dropout", "lidar_sector", 1)):
        seq = cached(synthesize(seed, frames=frames, scenario=scen), frames)
        r = score(seq, run_log(pred, seq, SENSORS))
        g = np.array(r["gates"])
        for s in seq.degradations:
            inside = np.zeros(frames, bool)
            inside[s["start"]:s["stop"]] = True
            gi, go = np.nanmean(g[inside, col]) if inside.any() else np.nan, np.nanmean(g[~inside, col])
            rpe_in = np.mean(np.array(r["rpe_t"])[inside[1:]]) if inside[1:].any() else np.nan
            rpe_clean = np.mean(np.array(base["rpe_t"])[inside[1:]]) if inside[1:].any() else np.nan
            lines.append(f"{scen:14s} {s['name']:14s} frames {s['start']:3d}-{s['stop']:3d}  "
                         f"{['rgb', 'lidar'][col]} gate in {gi:.3f} / out {go:.3f} (fall {100 * (1 - gi / go):.0f} %)  "
                         f"RPE in span {rpe_in:.3f} m vs clean {rpe_clean:.3f} m")
    # LiDAR thinned to 5 % of its points over a span (a failing sensor that still reports)
    fr = [clean[i] for i in range(frames)]
    a, b = frames // 3, frames // 2
    rng = np.random.default_rng(0)
    for i in range(a, b):
        keep = rng.random(len(fr[i].points)) < 0.05
        fr[i].points, fr[i].point_semantics, fr[i].point_dynamic = (fr[i].points[keep], fr[i].point_semantics[keep],
                                                                    fr[i].point_dynamic[keep])
        fr[i].point_time = fr[i].point_time[keep]
    thin = Sequence(clean.timestamps, lambda i: fr[i], clean.calibration, clean.sensors, clean.imu, clean.gt_poses,
                    clean.metadata, clean.name)
    g = np.array(score(thin, run_log(pred, thin, SENSORS))["gates"])
    inside = np.zeros(frames, bool)
    inside[a:b] = True
    gi, go = np.nanmean(g[inside, 1]), np.nanmean(g[~inside, 1])
    lines.append(f"{'thinned 5 %':14s} {'lidar':14s} frames {a:3d}-{b:3d}  lidar gate in {gi:.3f} / out {go:.3f} "
                 f"(fall {100 * (1 - gi / go):.0f} %)")
    return lines


def speed_memory(pred: Predictor, seq: Sequence, checkpoint: str | None = None) -> list[str]:
    """Frames/s for windows of 8 (model only and whole predict), peak RSS growth per S."""
    lines = []
    w = seq[0:8]
    pred.predict(w)
    walls, cpus, models = [], [], []
    for _ in range(5):
        t, c = time.perf_counter(), time.process_time()
        wp, _ = pred.predict(w)
        walls.append(time.perf_counter() - t), cpus.append(time.process_time() - c)
        models.append(wp.extras["time_model_s"])
    lines.append(f"windows of 8, {torch.get_num_threads()} threads: model+heads {8 / np.median(models):.1f} frames/s, "
                 f"whole predict (inputs, model, outputs at input resolution) {8 / np.median(walls):.1f} frames/s wall, "
                 f"{np.median(cpus) / 8 * 1000:.0f} ms CPU per frame")
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:      # a fresh process per S: peaks do not carry over
        for S in (8, 16, 32, 64):
            base, peak = pool.apply(_peak_rss, (checkpoint, S))
            lines.append(f"S = {S:3d}: peak RSS of the forward pass {(peak - base) / 1024:.0f} MiB "
                         f"({(peak - base) / 1024 / S:.1f} MiB per frame; process baseline {base / 1024:.0f} MiB)")
    return lines


def _peak_rss(checkpoint, S: int) -> tuple[int, int]:
    """In a fresh process: (RSS peak KiB after loading the model, peak after one forward of S frames)."""
    torch.set_num_threads(1)
    pred = Predictor.from_checkpoint(checkpoint)
    cfg = pred.cfg
    H, W = cfg.image_size
    inp = {"image": torch.rand(1, S, 3, H, W), "lidar_view": torch.rand(1, S, H, W) * 30,
           "range": torch.rand(1, S, 4, *cfg.range_size), "imu": torch.randn(1, S, 10 + 6 * cfg.imu_bins)}
    with torch.no_grad():
        pred.model({k: v[:, :1] for k, v in inp.items()})      # warm the allocator and kernels
    base = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:                # reset the high-water mark (Linux)
        f.write("5")
    with torch.no_grad():
        pred.model(inp, attn=True)
    return base, _rss_kib("VmHWM")


def _rss_kib(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process from /proc (KiB)."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--seeds", default="0,10,20,1", help="held-out seeds (val/test)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gate-frames", type=int, default=40, help="frames of the degraded-span logs")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: table,gates,speed")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    pred = Predictor.from_checkpoint(a.checkpoint)
    from fuse4d.fusion.data_pool import train_seeds
    seeds = [int(s) for s in a.seeds.split(",")]
    assert not set(seeds) & set(train_seeds(200)), "benchmark seeds must be held out"
    skip = set(a.skip.split(","))
    logs = [cached(synthesize(s, frames=a.frames, scenario="dense_traffic" if k % 2 else "default"), a.frames)
            for k, s in enumerate(seeds)]
    print(f"checkpoint {pred.name}; held-out seeds {seeds} (default / dense_traffic alternating), {a.frames} frames each")
    if "table" not in skip:
        keys = ("depth_absrel", "sem_miou", "sem_miou_points", "dyn_iou", "dyn_iou_points", "rpe_t_m", "rpe_r_deg")
        print(f"{'sensors':20s}" + "".join(f"{k:>16s}" for k in keys))
        for n in (3, 2, 1):
            for sub in combinations(SENSORS, n):
                m = summarize([score(s, run_log(pred, s, sub)) for s in logs])
                print(f"{'+'.join(sub):20s}" + "".join(f"{m.get(k, float('nan')):16.3f}" for k in keys))
        anc = [lidar_fill_anchor(s) for s in logs]
        print(f"{'anchor lidar-fill':20s}{np.mean([x['depth_absrel'] for x in anc]):16.3f}"
              f"  (coverage {np.mean([x['coverage'] for x in anc]):.2f} of GT pixels)")
    if "gates" not in skip:
        print("\ngates on degraded spans (test seed 0):")
        for line in gate_spans(pred, 0, a.gate_frames):
            print("  " + line)
    if "speed" not in skip:
        print("\nspeed and memory:")
        for line in speed_memory(pred, logs[0], a.checkpoint):
            print("  " + line)


if __name__ == "__main__":
    main()
