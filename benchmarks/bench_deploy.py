"""Deployment variants of the fusion model, measured in one run against fp32 (the anchor).

    python benchmarks/bench_deploy.py --quick          # measured: 16 min wall at load 7-11 (bf16 dominates)
    python benchmarks/bench_deploy.py --roofline       # per-op int8/bf16 roofline (27 min wall at load 9: bf16 ops)
    python benchmarks/bench_deploy.py [--checkpoint PT] [--student PT] [--threads 2] [--seeds 2] [--frames 64]
                                      [--variants fp32,int8,onnx,onnx-int8,student]

Variants: fp32, bf16 (CPU autocast), int8 (torch dynamic quantisation), ONNX fp32, int8
(onnxruntime static QDQ: int8 convolutions calibrated on synthetic TRAIN seeds) and
int8-dyn (onnxruntime dynamic: int8 MatMul weights) (the camera+LiDAR+IMU graph, and the
camera+IMU graph for the ATE column; skipped when onnx/onnxruntime are absent or the model
cannot be traced; ckpt MB is the camera+LiDAR+IMU graph's), token merging at ratios 0.25
and 0.5, and the distilled student (``--student``, default ``fusion/weights/student.pt``
when it exists; run at its own, smaller resolution).

Per variant: model frames/s for windows of 8 and 32 frames (median over repetitions; the
variants are timed round-robin so the machine's load hits them alike; ratio to fp32 of the
same repetition), the same for the whole ``Predictor.predict`` (input preparation, model and
outputs at the input resolution: what a user waits for), peak extra resident memory of one
32-frame forward, checkpoint size (state dict or .onnx file), and on held-out synthetic seeds (test/val split,
``fuse4d.data.synthetic.split_of``) run in 8-frame windows with the recurrent state:
depth AbsRel, semantic mIoU, pixel dynamic IoU and the network's relative-pose RMSE; and the
camera+IMU ATE (m, SE(3)-aligned, median over the seeds): the engine's poses
(``Pipeline.estimate`` with the log cut to camera and IMU, the variant's pose factors), as
``benchmarks/bench_model_poses.py`` runs it.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import psutil
import torch


def in_memory(seq):
    """``seq`` with every frame rendered once (the synthetic world renders on each access)."""
    from fuse4d.data.types import Sequence
    frames = [seq[i] for i in range(len(seq))]
    return Sequence(seq.timestamps, lambda i: frames[i], seq.calibration, seq.sensors, seq.imu,
                    seq.gt_poses, seq.metadata, seq.name)


class OnnxModel(torch.nn.Module):
    """onnxruntime sessions behind the ``FusionModel.forward`` contract: the camera+LiDAR+IMU
    graph for windows with LiDAR, the camera+IMU graph for windows without (every frame of a
    window having every sensor); ``attn_tokens`` are not in the graphs (zeros)."""

    def __init__(self, paths: dict, model, threads):
        super().__init__()
        from fuse4d.fusion.onnx_export import initial_state, onnx_session
        self.sess = {frozenset(k): onnx_session(p, threads) for k, p in paths.items()}
        self.cfg, self.s0 = model.cfg, initial_state(model)

    def forward(self, inputs, state=None, attn=False):
        from fuse4d.fusion.onnx_export import graph_io, run_onnx
        sensors = frozenset({"image": "camera", "range": "lidar", "imu": "imu"}[k] for k in ("image", "range", "imu")
                            if inputs.get(k) is not None)
        if sensors not in self.sess or any(not bool(v.all()) for k, v in inputs.items() if k.endswith("_valid")):
            raise ValueError(f"no ONNX graph for a window of {sorted(sensors)} with every frame complete")
        names, outs = graph_io(sensors)
        st = self.s0 if state is None else (state["tokens"], state["last_cam"])
        o = {k: torch.from_numpy(v) for k, v in run_onnx(self.sess[sensors], *(inputs[n] for n in names[:-2]), *st).items()}
        out = {k: o[k] for k in outs[:-2]}
        out["state"] = {"tokens": o["state_tokens_out"], "last_cam": o["last_cam_out"]}
        B, S = o["depth"].shape[:2]
        P = self.cfg.patch_grid[0] * self.cfg.patch_grid[1]
        out["attn_tokens"] = [torch.zeros(B, S, P, self.cfg.dim)]
        return out


#: every variant, in table order
VARIANTS = ("fp32", "bf16", "int8", "onnx", "onnx-int8", "onnx-int8-dyn", "tome0.25", "tome0.5", "student")


def build_variants(model, threads, tmp: Path, names=VARIANTS, student=None) -> tuple[dict, dict]:
    """``{name: model-like}`` and ``{name: checkpoint bytes}`` for the variants in ``names``
    (``student``: the distilled model, or None)."""
    from fuse4d.fusion.quantize import apply_precision, state_dict_bytes
    from fuse4d.fusion.token_merge import merge_tokens
    fp32_bytes = state_dict_bytes(model)
    make = {"fp32": lambda: model, "bf16": lambda: apply_precision(model, "bf16"),
            "int8": lambda: apply_precision(model, "int8"), "tome0.25": lambda: merge_tokens(model, 0.25),
            "tome0.5": lambda: merge_tokens(model, 0.5), "student": lambda: student}
    v, size = {}, {}
    for name in names:
        if name in make and (name != "student" or student is not None):
            v[name] = make[name]()
            size[name] = state_dict_bytes(v[name]) if name in ("int8", "student") else fp32_bytes
    try:
        from fuse4d.fusion.onnx_export import export_onnx
        from fuse4d.fusion.onnx_export import GRAPHS
        for name, q in (("onnx", False), ("onnx-int8", "static"), ("onnx-int8-dyn", "dynamic")):
            if name in names:
                paths = {g: export_onnx(model, tmp / f"{name}-{'-'.join(g)}.onnx", int8=q, sensors=g) for g in GRAPHS}
                v[name], size[name] = OnnxModel(paths, model, threads), paths[GRAPHS[0]].stat().st_size
    except Exception as e:  # onnx absent, or a model version the tracer cannot follow
        print(f"# ONNX variants skipped: {str(e).splitlines()[0][:160]}", file=sys.stderr)
    return {k: v[k] for k in VARIANTS if k in v}, size


def peak_rss(fn) -> float:
    """Peak extra resident memory (MB) while ``fn()`` runs (sampled every 2 ms)."""
    proc = psutil.Process()
    base, peak, done = proc.memory_info().rss, [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)
    t = threading.Thread(target=watch)
    t.start()
    try:
        fn()
    finally:
        done.set()
        t.join()
    return max(0, peak[0] - base) / 2 ** 20


def heldout_metrics(model, seqs, window: int = 8, class_prior=None) -> dict:
    """Pooled depth AbsRel, semantic mIoU, pixel dynamic IoU, network RPE over ``seqs``
    (``class_prior``: the checkpoint's ``meta["class_prior_pixels"]``, the predictor's logit
    adjustment as ``Predictor.from_checkpoint`` applies it; None = none)."""
    from fuse4d import metrics
    from fuse4d.fusion.evaluation import _confusion, miou_from_confusion, net_pose_errors
    from fuse4d.fusion.predict import Predictor
    pred = Predictor(model, name="bench", class_prior=class_prior)
    ab, n, conf, inter, union, rpe_t, rpe_r = 0.0, 0, 0, 0, 0, [], []
    for seq in seqs:
        state = None
        for a in range(0, len(seq) - window + 1, window):
            w = seq[a:a + window]
            wp, state = pred.predict(w, state=state)
            frames = list(w)
            for i, f in enumerate(frames):
                e = metrics.depth_errors(wp.depth[i], f.depth)
                if e["n"]:
                    ab, n = ab + e["absrel"] * e["n"], n + e["n"]
                conf = conf + _confusion(wp.semantics[i], f.semantics)
                p, g = wp.dynamic[i] > 0.5, np.asarray(f.dynamic_mask, bool)
                inter, union = inter + np.count_nonzero(p & g), union + np.count_nonzero(p | g)
            if a > 0:
                r = net_pose_errors(wp.T_prev_cur, w.gt_poses)
                if r:
                    rpe_t.append(r["net_rpe_trans_m"] ** 2), rpe_r.append(r["net_rpe_rot_deg"] ** 2)
    return {"depth_absrel": ab / max(n, 1), "sem_miou": miou_from_confusion(conf),
            "dyn_iou": inter / union if union else float("nan"),
            "net_rpe_m": float(np.sqrt(np.mean(rpe_t))) if rpe_t else float("nan")}


def heldout_ate(model, seqs, sensors: str = "camera,imu", class_prior=None) -> float:
    """Median over ``seqs`` of the ATE RMSE (m, SE(3)-aligned) of the engine's poses
    (``Pipeline.estimate``, passes 1-2) with ``model``'s pose factors on the ``sensors``
    subset of each log; NaN where the variant cannot run on that subset."""
    from fuse4d import metrics
    from fuse4d.config import load_config
    from fuse4d.fusion.predict import Predictor
    from fuse4d.pipeline import Pipeline
    pred = Predictor(model, name="bench", class_prior=class_prior)
    cfg = load_config(run={"use_model": True, "sensors": sensors})
    ates = []
    for seq in seqs:
        T = np.asarray(Pipeline(cfg, predictor=pred).estimate(seq).T_world_body)
        ok = np.isfinite(T).all((1, 2))
        ates.append(metrics.ate(T[ok], seq.gt_poses[ok], align="se3")["rmse"] if ok.sum() >= 3 else float("nan"))
    return float(np.median(ates))


def _cpu_median(fn, n: int = 5) -> float:
    """Median CPU seconds (``time.process_time``) of ``fn()`` over ``n`` calls after one warm-up."""
    fn()
    r = []
    for _ in range(n):
        t0 = time.process_time()
        fn()
        r.append(time.process_time() - t0)
    return statistics.median(r)


def roofline(model, inputs: dict) -> dict:
    """Where int8 and bf16 could speed up ``model`` on this CPU (seconds of CPU per window, 1 thread).

    Times the fp32 forward, then every convolution and Linear call at the exact input shape
    it sees in that forward: fp32; torch's own int8 kernels (``torch.ao.nn.quantized.Conv2d``,
    x86 engine, per-channel int8 weights, quint8 activations, timed without and with the
    quantise/dequantise around it; ``torch.ao.nn.quantized.dynamic.Linear``); and bf16 (the op
    on bf16 weights and input, what CPU autocast runs). Everything else (attention, norms,
    pools, resampling, copies) int8 leaves as it is. Returns the sums and the Amdahl caps.
    """
    import torch.ao.nn.quantized as nnq
    import torch.ao.nn.quantized.dynamic as nnqd
    torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
    calls = []
    hooks = [mod.register_forward_hook(lambda mod, i, o: calls.append((mod, tuple(i[0].shape))))
             for mod in model.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(inputs)
        for h in hooks:
            h.remove()
        r = {"total": _cpu_median(lambda: model(inputs)), "calls": len(calls)}
        for k in ("conv", "conv_int8", "conv_int8_qdq", "conv_bf16", "linear", "linear_int8", "linear_bf16"):
            r[k] = 0.0
        for mod, shape in calls:
            x = torch.randn(shape)
            kind = "conv" if isinstance(mod, torch.nn.Conv2d) else "linear"
            r[kind] += _cpu_median(lambda: mod(x))
            lo = copy.deepcopy(mod).to(torch.bfloat16)
            xb = x.to(torch.bfloat16)
            r[kind + "_bf16"] += _cpu_median(lambda: lo(xb), 3)
            if kind == "conv":
                q = nnq.Conv2d(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding,
                               mod.dilation, mod.groups, mod.bias is not None)
                w = mod.weight.detach()
                sc = (w.abs().amax((1, 2, 3)).clamp_min(1e-8) / 127).double()
                q.set_weight_bias(torch.quantize_per_channel(w, sc, torch.zeros(len(sc), dtype=torch.long), 0, torch.qint8),
                                  mod.bias)
                s_in = float(x.abs().max()) / 127
                xq = torch.quantize_per_tensor(x, s_in, 128, torch.quint8)
                r["conv_int8"] += _cpu_median(lambda: q(xq))
                r["conv_int8_qdq"] += _cpu_median(lambda: q(torch.quantize_per_tensor(x, s_in, 128, torch.quint8)).dequantize())
            else:
                qd = nnqd.Linear(mod.in_features, mod.out_features)
                qd.set_weight_bias(torch.quantize_per_tensor(mod.weight.detach(), float(mod.weight.abs().max()) / 127, 0,
                                                             torch.qint8), mod.bias)
                r["linear_int8"] += _cpu_median(lambda: qd(x))
    from fuse4d.fusion.quantize import apply_precision
    with torch.no_grad():
        r["total_bf16"] = _cpu_median(lambda: apply_precision(model, "bf16")(inputs), 1)
    rest = r["total"] - r["conv"] - r["linear"]
    r["rest"] = rest
    r["cap_int8_kernels"] = r["total"] / (rest + r["conv_int8"] + r["linear_int8"])
    r["cap_free"] = r["total"] / max(rest, 1e-12)
    need = r["total"] / 2 - rest        # the time conv+Linear may take for 2x overall
    r["needed_speedup"] = (r["conv"] + r["linear"]) / need if need > 0 else float("inf")
    return r


def print_roofline(model, frames, calib, sensors, sizes=(8, 32)) -> None:
    """Print :func:`roofline` for windows of ``sizes`` frames (markdown; ms of CPU per frame, 1 thread)."""
    from fuse4d.fusion.inputs import window_inputs
    torch.set_num_threads(1)
    print("| S | fp32 ms/f | conv ms/f (share) | int8 conv ×fp32 (with q/dq) | Linear ms/f (share) | int8 Linear ×fp32 | "
          "rest ms/f (share) | int8 cap, measured kernels | int8 cap, free conv+Linear | conv+Linear ×needed for 2× | "
          "bf16 conv / Linear ×fp32 | bf16 model ×fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for S in sizes:
        r = roofline(model, window_inputs(frames[:S], calib, model.cfg, set(sensors))[0])
        ms = {k: 1e3 * v / S for k, v in r.items() if isinstance(v, float)}
        sh = {k: 100 * r[k] / r["total"] for k in ("conv", "linear", "rest")}
        need = "unreachable" if r["needed_speedup"] == float("inf") else f"{r['needed_speedup']:.1f}"
        print(f"| {S} | {ms['total']:.1f} | {ms['conv']:.1f} ({sh['conv']:.0f} %) | {r['conv'] / r['conv_int8']:.2f} "
              f"({r['conv'] / r['conv_int8_qdq']:.2f}) | {ms['linear']:.1f} ({sh['linear']:.0f} %) | "
              f"{r['linear'] / r['linear_int8']:.2f} | {ms['rest']:.1f} ({sh['rest']:.0f} %) | {r['cap_int8_kernels']:.2f} | "
              f"{r['cap_free']:.2f} | {need} | {r['conv'] / r['conv_bf16']:.2f} / {r['linear'] / r['linear_bf16']:.2f} | "
              f"{r['total'] / r['total_bf16']:.3f} |", flush=True)


def main(argv=None) -> None:
    """Print the variant table (markdown) to stdout."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 held-out seed, 16 frames, 2 repetitions")
    ap.add_argument("--roofline", action="store_true",
                    help="instead of the table: per-op int8/bf16 roofline of the fp32 model (1 thread, a train-seed window)")
    ap.add_argument("--checkpoint", default=None, help="fusion checkpoint (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=2, help="held-out seeds (test and val alternately)")
    ap.add_argument("--frames", type=int, default=64, help="frames per held-out seed")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--student", default=None, help="distilled student checkpoint (default: fusion/weights/student.pt if shipped)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)} (fp32 always)")
    args = ap.parse_args(argv)
    names = ["fp32"] + [n for n in args.variants.split(",") if n and n != "fp32"]
    bad = set(names) - set(VARIANTS)
    if bad:
        ap.error(f"unknown variants {sorted(bad)}; choose from {', '.join(VARIANTS)}")
    if args.quick:
        args.seeds, args.frames, args.reps = 1, 16, 2
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from fuse4d.data.synthetic import seeds_of, split_of, synthesize
    from fuse4d.errors import DataError
    from fuse4d.fusion.inputs import window_inputs
    from fuse4d.fusion.predict import SHIPPED_CHECKPOINT, Predictor, load_checkpoint

    def prior(path):     # the logit adjustment Predictor.from_checkpoint applies (None: none)
        return (load_checkpoint(path).get("meta") or {}).get("class_prior_pixels")
    priors = {}
    try:
        model, which = Predictor.from_checkpoint(args.checkpoint).model, args.checkpoint or "shipped tiny.pt"
        priors = {"": prior(args.checkpoint or SHIPPED_CHECKPOINT)}
    except DataError as e:
        if args.checkpoint:
            raise
        print(f"# {e}: using an UNTRAINED model (accuracy columns then only compare variants)", file=sys.stderr)
        model, which = Predictor.untrained(seed=0).model, "untrained"
    if args.roofline:    # timing only: a TRAIN-seed window (the model's inputs, no metric)
        s2 = synthesize(seeds_of("train", 1)[0], frames=32)
        print(f"model: {which}; roofline on train seed {s2.metadata.get('seed', '')}, 1 thread; load avg {os.getloadavg()[0]:.1f}")
        print_roofline(model, [s2[i] for i in range(32)], s2.calibration, s2.sensors)
        return
    t = seeds_of("test", (args.seeds + 1) // 2) + seeds_of("val", args.seeds // 2)
    assert all(split_of(s) in ("test", "val") for s in t)
    student = None
    spath = Path(args.student) if args.student else SHIPPED_CHECKPOINT.with_name("student.pt")
    if "student" in names and spath.is_file():
        student = Predictor.from_checkpoint(spath).model
        priors["student"] = prior(spath)
        which += f"; student {spath}"
    seqs = [in_memory(synthesize(s, frames=max(args.frames, 32))) for s in t]
    with tempfile.TemporaryDirectory() as tmp:
        variants, size = build_variants(model, args.threads, Path(tmp), names, student)
        s0 = seqs[0]
        frames = [s0[i] for i in range(32)]
        inp = {}     # per resolution: the student runs at its own

        def inputs(v, S):
            key = (tuple(v.cfg.image_size), tuple(v.cfg.range_size), S)
            if key not in inp:
                inp[key] = window_inputs(frames[:S], s0.calibration, v.cfg, set(s0.sensors))[0]
            return inp[key]
        pk = {k: priors.get("student" if k == "student" else "") for k in variants}
        preds = {k: Predictor(v, name=k, class_prior=pk[k]) for k, v in variants.items()}
        fps = {k: {8: [], 32: []} for k in variants}
        e2e = {k: {8: [], 32: []} for k in variants}      # the whole Predictor.predict: input prep + model + outputs
        with torch.no_grad():
            for k, v in variants.items():                      # warm-up
                v(inputs(v, 8))
                preds[k].predict(s0[0:8])
            for _ in range(args.reps):
                for S in (8, 32):
                    for k, v in variants.items():
                        x = inputs(v, S)
                        t0 = time.perf_counter()
                        v(x)
                        fps[k][S].append(S / (time.perf_counter() - t0))
                        t0 = time.perf_counter()
                        preds[k].predict(s0[0:S])
                        e2e[k][S].append(S / (time.perf_counter() - t0))
            mem = {k: peak_rss(lambda v=v: v(inputs(v, 32))) for k, v in variants.items()}
        acc = {k: heldout_metrics(v, seqs, class_prior=pk[k]) for k, v in variants.items()}
        for k, v in variants.items():    # the ONNX variants run their camera+IMU graph here
            acc[k]["ate_cam_imu"] = heldout_ate(v, seqs, class_prior=pk[k])
    rs = {k: {S: [a / b for a, b in zip(fps[k][S], fps["fp32"][S])] for S in (8, 32)} for k in variants}
    ratio = {k: {S: statistics.median(rs[k][S]) for S in (8, 32)} for k in variants}
    re2e = {k: {S: statistics.median([a / b for a, b in zip(e2e[k][S], e2e["fp32"][S])]) for S in (8, 32)} for k in variants}

    def spread(r):      # inter-quartile range of the per-repetition ratios (the noise of the load)
        q = np.percentile(r, [25, 75])
        return f"{q[0]:.2f}-{q[1]:.2f}"

    print(f"model: {which}; held-out seeds {t} ({args.frames} frames each, 8-frame windows); "
          f"{args.threads} threads; {args.reps} reps; load avg {os.getloadavg()[0]:.1f}; pixel-class logit "
          f"adjustment {'on' if any(v is not None for v in priors.values()) else 'off'} (with LiDAR)")
    print("| variant | fps S=8 | ×fp32 (IQR) | fps S=32 | ×fp32 (IQR) | peak MB (S=32) | ckpt MB | depth AbsRel | "
          "sem mIoU | dyn IoU | net RPE m | cam+IMU ATE m | predict fps S=8 (×fp32) | predict fps S=32 (×fp32) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k in variants:
        a = acc[k]
        ate = "n/a" if np.isnan(a["ate_cam_imu"]) else f"{a['ate_cam_imu']:.3f}"
        print(f"| {k} | {statistics.median(fps[k][8]):.1f} | {ratio[k][8]:.2f} ({spread(rs[k][8])}) | "
              f"{statistics.median(fps[k][32]):.1f} | {ratio[k][32]:.2f} ({spread(rs[k][32])}) | {mem[k]:.0f} | "
              f"{size[k] / 2 ** 20:.2f} | {a['depth_absrel']:.4f} | {a['sem_miou']:.4f} | {a['dyn_iou']:.4f} | "
              f"{a['net_rpe_m']:.4f} | {ate} | {statistics.median(e2e[k][8]):.1f} ({re2e[k][8]:.2f}) | "
              f"{statistics.median(e2e[k][32]):.1f} ({re2e[k][32]:.2f}) |")


if __name__ == "__main__":
    main()
