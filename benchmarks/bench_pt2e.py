"""Int8 through torch's compiler stack against fp32, eager and compiled, in one run: is the int8 2x
goal (#12) bound by this CPU or by eager PyTorch?

    python benchmarks/bench_pt2e.py [--checkpoint PT] [--sizes 8,32]     # needs torchao

Variants of the camera+LiDAR+IMU graph (``fusion/onnx_export.py``'s ``ExportableModel``) on a
synthetic TRAIN-seed window (timing only, no metric), 1 thread, CPU ms per frame (median of 5
after the first call): eager fp32 (the default path), fp32 compiled by inductor
(``torch.compile``), and PT2E static int8 (``fuse4d.fusion.pt2e_int8``: every conv and Linear int8,
calibrated on TRAIN windows) compiled by inductor; the first call's seconds (the inductor compile,
one per window size: ``dynamic=True`` fails in torch 2.13's lowering of the dense head's convs);
the torch.profiler split of each into conv / Linear / rest; the depth output's largest relative
difference to eager fp32.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deploy import _cpu_median  # noqa: E402


def _op_split(fn, ms: float) -> dict:
    """``ms`` (the CPU ms of one ``fn()`` call) split into conv / Linear / rest by the shares of
    their ops' self time in one profiled call (torch.profiler: eager aten/mkldnn ops, inductor's
    onednn int8 ops and externs) within the whole call's time; rest = ms - conv - Linear."""
    from torch.profiler import ProfilerActivity, profile, record_function
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function("fuse4d_window"):
            fn()
    r, whole = {"conv": 0.0, "linear": 0.0}, 0.0
    for e in prof.key_averages():
        k = e.key.lower()
        if k == "fuse4d_window":
            whole = e.cpu_time_total
            continue
        kind = "conv" if "conv" in k else "linear" if ("linear" in k or k in ("aten::addmm", "aten::mm", "aten::bmm")) else None
        if kind:
            r[kind] += e.self_cpu_time_total
    r = {k: ms * v / max(whole, 1e-9) for k, v in r.items()}
    r["rest"] = ms - r["conv"] - r["linear"]
    return r


def print_pt2e(model, frames, calib, sizes=(8, 32)) -> None:
    """Eager fp32, compiled fp32 (``torch.compile``, inductor) and PT2E static int8 compiled
    (:mod:`fuse4d.fusion.pt2e_int8`) of the camera+LiDAR+IMU graph: CPU ms per frame (1 thread,
    median of 5 after the compile), compile seconds, the op split of each, the int8 output error."""
    from fuse4d.fusion.onnx_export import EXPORTED, graph_io, initial_state
    from fuse4d.fusion.inputs import window_inputs
    from fuse4d.fusion.pt2e_int8 import _Positional, pt2e_int8
    torch.set_num_threads(1)
    names = graph_io(EXPORTED)[0]
    w = _Positional(model.eval(), EXPORTED).eval()
    gm = pt2e_int8(model)
    comp = {"fp32 compiled": torch.compile(w, dynamic=False), "int8 PT2E compiled": torch.compile(gm, dynamic=False)}
    print("| S | variant | ms/frame CPU | ×eager fp32 | ×compiled fp32 | compile s | conv ms/f | Linear ms/f | rest ms/f | "
          "depth max rel. diff to fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for S in sizes:
        x = window_inputs(frames[:S], calib, model.cfg, set(EXPORTED))[0]
        args = (*(x[n] for n in names[:-2]), *initial_state(model))
        with torch.no_grad():
            ref = w(*args)
            rows = {}
            for name, fn in (("fp32 eager", w), *comp.items()):
                t0 = time.perf_counter()
                o = fn(*args)
                cs = time.perf_counter() - t0 if name != "fp32 eager" else 0.0
                d = float(((o[0] - ref[0]).abs() / ref[0].abs().clamp_min(1e-3)).max())
                ms = 1e3 * _cpu_median(lambda: fn(*args)) / S
                rows[name] = (ms, cs, _op_split(lambda: fn(*args), ms * S), d)
        for name, (ms, cs, sp, d) in rows.items():
            print(f"| {S} | {name} | {ms:.1f} | {rows['fp32 eager'][0] / ms:.2f} | {rows['fp32 compiled'][0] / ms:.2f} | "
                  f"{cs:.0f} | {sp['conv'] / S:.1f} | {sp['linear'] / S:.1f} | {sp['rest'] / S:.1f} | {d:.3f} |", flush=True)


def main(argv=None) -> None:
    """Print the table (markdown) to stdout."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="fusion checkpoint (default: the shipped one)")
    ap.add_argument("--sizes", default="8,32", help="window sizes S, comma list")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from fuse4d.data.synthetic import seeds_of, synthesize
    from fuse4d.fusion.predict import Predictor
    from fuse4d.fusion.pt2e_int8 import have_pt2e
    if not have_pt2e():
        sys.exit("bench_pt2e needs torchao (pip install torchao)")
    model = Predictor.from_checkpoint(args.checkpoint).model
    sizes = tuple(int(s) for s in args.sizes.split(","))
    seq = synthesize(seeds_of("train", 1)[0], frames=max(sizes))
    print(f"model: {args.checkpoint or 'shipped tiny.pt'}; train seed {seq.metadata.get('seed', '')}, 1 thread; "
          f"load avg {os.getloadavg()[0]:.1f}")
    print_pt2e(model, [seq[i] for i in range(max(sizes))], seq.calibration, sizes)
    print(f"# load avg at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
