"""Static int8 of the whole fusion graph with PT2E (torchao's ``prepare_pt2e``/``convert_pt2e`` with
``X86InductorQuantizer``) compiled by inductor (``torch.compile``): what torch's own tooling can
do beyond eager ``quantize_dynamic`` on this CPU. A measurement path (``benchmarks/bench_pt2e.py``),
not the ``--precision int8`` default: see the figures below.

    g = pt2e_int8(model, sensors=EXPORTED)        # exported, calibrated on synthetic TRAIN windows
    fn = torch.compile(g, dynamic=False)           # one compile per window size S

The graph is :class:`~fuse4d.fusion.onnx_export.ExportableModel`'s (one sensor set, every frame
complete, batch 1, ``S >= 3`` dynamic at export). Every convolution and Linear is quantised
(int8 weights per output channel, uint8 activations per tensor, ranges observed on
:func:`~fuse4d.fusion.onnx_export.calibration_feeds`); inductor then fuses the quantise /
dequantise with the neighbouring pointwise ops and compiles the rest (norms, pools, resampling,
attention glue) to C++.

Measured (``python benchmarks/bench_pt2e.py``: tiny.pt, camera+LiDAR+IMU graph on train seed 2,
1 thread, CPU ms per frame, median of 5; load 3.3-4.3; the compiles came from inductor's cache;
cold, each took 381-411 s at load 7-9):

| S | variant | ms/frame | x eager fp32 | x compiled fp32 | conv / Linear / rest ms |
|---|---|---|---|---|---|
| 8 | fp32 eager | 40.7 | 1.00 | 0.70 | 18.6 / 3.3 / 18.8 |
| 8 | fp32 compiled | 28.4 | 1.44 | 1.00 | 14.1 / 1.0 / 13.2 |
| 8 | int8 PT2E compiled | 30.4 | 1.34 | 0.93 | 11.6 / 0.8 / 17.9 |
| 32 | fp32 eager | 51.0 | 1.00 | 0.84 | 24.6 / 4.0 / 22.4 |
| 32 | fp32 compiled | 42.6 | 1.20 | 1.00 | 13.0 / 1.9 / 27.7 |
| 32 | int8 PT2E compiled | 44.3 | 1.15 | 0.96 | 14.8 / 1.5 / 27.9 |

An earlier run of the same steps at load 7-9 gave int8 1.02x / 1.02x eager and 0.88x / 1.01x
compiled fp32 (S = 8 / 32). What int8 gains over eager fp32 is the compiler's: compiled fp32
gains more. For 2x eager fp32, conv + Linear of the int8 graph would have to drop from 12.4 to
2.5 ms per frame at S = 8 (5x faster int8 kernels; AVX2 int8 is at most ~2x fp32 FMA), and at
S = 32 its rest alone (27.9 ms) exceeds half of eager fp32 (25.5 ms).

Inductor's int8 graph is no faster than its fp32 graph: on this AVX2 CPU (no VNNI) oneDNN's
int8 convolutions and Linears are about as fast as its fp32 ones, as the eager roofline in
``fusion/quantize.py`` found for fbgemm, and the compiled "rest" is the same in both. Not put
behind ``--precision int8``: it gains nothing here and costs ~7 min of compile per window size.
``torch.compile(dynamic=True)`` fails in inductor's lowering of the dense head's convolutions
(``ValueRangeError: Invalid ranges [0:-1]``, torch 2.13), so graphs compile per window size.
"""

from __future__ import annotations

import time
import warnings

import torch
from torch import nn

from fuse4d.fusion.onnx_export import EXPORTED, ExportableModel, calibration_feeds, graph_io, sensor_set


class _Positional(nn.Module):
    """:class:`ExportableModel` with named positional inputs (``torch.export`` needs a fixed arity)."""

    def __init__(self, model: nn.Module, sensors):
        super().__init__()
        self.inner = ExportableModel(model, sensors)
        self.names = graph_io(sensors)[0]

    def forward(self, *args):
        """Tensors in :func:`graph_io` input order → tuple of outputs."""
        return self.inner(*args)


def have_pt2e() -> bool:
    """True when torchao's PT2E quantisation (``pip install torchao``) can be imported."""
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: F401
        return True
    except Exception:
        return False


def export_graph(model: nn.Module, example: tuple, sensors=EXPORTED, min_S: int = 3):
    """``torch.export`` of ``model``'s graph for ``sensors`` with the window size dynamic
    (``example``: inputs in :func:`graph_io` order). Returns the ExportedProgram."""
    from torch.export import Dim, export
    names = graph_io(sensors)[0]
    S = Dim("S", min=min_S, max=512)      # S = 2 specialises (a guard S - 1 != 1 in the trunk)
    dyn = {"args": tuple(None if n in ("state_tokens", "last_cam") else {1: S} for n in names)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export(_Positional(model.eval(), sensor_set(sensors)), example, dynamic_shapes=dyn)


def pt2e_int8(model: nn.Module, sensors=EXPORTED, feeds: list[dict] | None = None, example: tuple | None = None,
              log=print) -> nn.Module:
    """The int8 PT2E graph of ``model`` for one sensor set (an fx GraphModule taking the graph's inputs).

    Args:
        model: the float FusionModel (unchanged); sensors: a sensor set of ``GRAPHS``;
        feeds: calibration inputs (default :func:`calibration_feeds`: 2 synthetic TRAIN seeds,
            16 frames in 8-frame windows); example: export inputs (default the first feed).
    Raises:
        ImportError: torchao is not installed.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    names = graph_io(sensors)[0]
    feeds = calibration_feeds(model, sensors=sensors) if feeds is None else feeds
    as_args = [tuple(torch.as_tensor(f[n]) for n in names) for f in feeds]
    t0 = time.perf_counter()
    ep = export_graph(model, example or as_args[0], sensors)
    q = xiq.X86InductorQuantizer()
    qc = xiq.get_default_x86_inductor_quantization_config()
    # conv and Linear only: the global config also observes cat/where of the boolean token masks
    q.set_module_type_qconfig(nn.Conv2d, qc)
    q.set_module_type_qconfig(nn.Linear, qc)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = prepare_pt2e(ep.module(), q)
        for a in as_args:
            gm(*a)
        gm = convert_pt2e(gm)
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    allow_exported_model_train_eval(gm)      # Predictor calls .eval()
    log(f"# pt2e int8: exported and calibrated on {len(as_args)} windows in {time.perf_counter() - t0:.0f} s")
    return gm


class GraphModel(nn.Module):
    """A graph of :func:`pt2e_int8` (or any callable in :func:`graph_io` order) behind the
    ``FusionModel.forward`` contract, for windows of its sensor set with every frame complete and
    ``S >= 3`` (anything else raises ValueError). ``compile``: wrap the graph in
    ``torch.compile(dynamic=False)`` (one inductor compile per window size, timed in
    :attr:`compile_s`). ``attn_tokens`` are not in the graph (zeros)."""

    def __init__(self, graph, model: nn.Module, sensors=EXPORTED, compile: bool = True):
        super().__init__()
        from fuse4d.fusion.onnx_export import initial_state
        self.sensors = sensor_set(sensors)
        self.names, self.outs = graph_io(self.sensors)
        self.fn = torch.compile(graph, dynamic=False) if compile else graph
        self.cfg, self.s0 = model.cfg, initial_state(model)
        self.compile_s: dict[int, float] = {}

    def forward(self, inputs: dict, state: dict | None = None, attn: bool = False) -> dict:
        """See ``FusionModel.forward`` (outputs of the graph's sensor set, batch 1)."""
        if any(inputs.get(n) is None for n in self.names[:-2]) or any(
                not bool(v.all()) for k, v in inputs.items() if k.endswith("_valid")):
            raise ValueError(f"this graph runs windows of {', '.join(self.sensors)} with every frame complete")
        S = int(inputs[self.names[0]].shape[1])
        if S < 3:
            raise ValueError(f"this graph runs windows of 3 frames or more, got {S}")
        st = self.s0 if state is None else (state["tokens"], state["last_cam"])
        t0 = time.perf_counter()
        o = dict(zip(self.outs, self.fn(*(inputs[n] for n in self.names[:-2]), *st)))
        if S not in self.compile_s:
            self.compile_s[S] = time.perf_counter() - t0
        out = {k: o[k] for k in self.outs[:-2]}
        out["state"] = {"tokens": o["state_tokens_out"], "last_cam": o["last_cam_out"]}
        P = self.cfg.patch_grid[0] * self.cfg.patch_grid[1]
        out["attn_tokens"] = [torch.zeros(1, S, P, self.cfg.dim)]
        return out
