"""ONNX export of the fusion model (trunk and heads) for onnxruntime.

One graph per sensor configuration (:data:`GRAPHS`): camera + LiDAR + IMU (:data:`EXPORTED`,
the default of ``fuse4d model export --onnx OUT.onnx [--int8]``) and camera + IMU
(``--sensors camera,imu``: the visual-inertial path, no LiDAR inputs or point outputs). Every
frame of the window has every sensor of its graph (the full-mask path of the trunk), batch 1,
window size ``S`` dynamic. The graph always takes a recurrent state; at the start of a log pass
``state_tokens = initial_state(model)`` and any ``last_cam`` (it only changes pose row 0,
which is undefined without a previous window and which :class:`Predictor` reports as NaN).

Inputs (float32, :func:`graph_io`): ``image [1,S,3,H,W]`` (0..1), with LiDAR ``lidar_view
[1,S,H,W]`` (m, 0 = none) and ``range [1,S,4,rows,cols]``, ``imu [1,S,F]``, ``state_tokens
[1,M,D]``, ``last_cam [1,D]``. Outputs: :data:`OUTPUTS` (camera + LiDAR + IMU) or
:data:`OUTPUTS_CAM_IMU` (shapes as ``FusionModel.forward``).

``--int8`` quantises the exported graph with onnxruntime's static QDQ quantisation
(``onnxruntime.quantization.quantize_static``): every convolution runs in int8 (weights
per output channel, symmetric; activations uint8 per tensor, their ranges calibrated on
windows of synthetic TRAIN seeds, :func:`calibration_feeds`); attention, MLPs and norms stay
float32. (Dynamic quantisation of the MatMul weights, ``int8="dynamic"``, is smaller but
measured slower than the fp32 graph on an AVX2 CPU: ``benchmarks/bench_deploy.py``.)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

#: the sensor configuration of the default graph
EXPORTED = ("camera", "lidar", "imu")
#: every sensor configuration that exports (``--sensors``)
GRAPHS = (EXPORTED, ("camera", "imu"))
INPUTS = ("image", "lidar_view", "range", "imu", "state_tokens", "last_cam")
OUTPUTS = ("depth", "depth_conf", "sem_logits", "dyn_logit", "desc", "pose_t", "pose_r", "pose_logvar",
           "gates", "point_sem_logits", "point_dyn_logit", "state_tokens_out", "last_cam_out")
OUTPUTS_CAM_IMU = tuple(k for k in OUTPUTS if not k.startswith("point_"))


def sensor_set(sensors) -> tuple[str, ...]:
    """``sensors`` (iterable or comma string) as the :data:`GRAPHS` entry it names; ConfigError otherwise."""
    from fuse4d.errors import ConfigError
    if isinstance(sensors, str):
        sensors = [s.strip() for s in sensors.split(",") if s.strip()]
    for g in GRAPHS:
        if set(sensors) == set(g):
            return g
    raise ConfigError(f"ONNX export covers the sensor sets {' and '.join(','.join(g) for g in GRAPHS)}; "
                      f"got {','.join(sorted(sensors))}")


def graph_io(sensors=EXPORTED) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(input names, output names)`` of the graph of a sensor set (see module docstring)."""
    g = sensor_set(sensors)
    if "lidar" in g:
        return INPUTS, OUTPUTS
    return ("image", "imu", "state_tokens", "last_cam"), OUTPUTS_CAM_IMU


TRACE_HOOK = ("this FusionModel cannot be traced for ONNX: fusion/model.py must compute its token spans out "
              "of place (`start = start + tok.shape[2]`, not `start += tok.shape[2]`)")


class ExportableModel(nn.Module):
    """Positional-tensor front of a :class:`FusionModel` for windows of one sensor set (what
    its ONNX graph computes). ``forward(*inputs) → tuple(outputs)``, names from :func:`graph_io`."""

    def __init__(self, model: nn.Module, sensors=EXPORTED):
        super().__init__()
        self.model = model.eval()
        self.inputs, self.outputs = graph_io(sensors)

    def forward(self, *args):
        """Tensors in :func:`graph_io` input order (see the module docstring for shapes)."""
        x = dict(zip(self.inputs, args))
        state = {"tokens": x.pop("state_tokens"), "last_cam": x.pop("last_cam")}
        out = self.model(x, state)
        return (*(out[k] for k in self.outputs[:-2]), out["state"]["tokens"], out["state"]["last_cam"])


def initial_state(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(state_tokens [1,M,D], last_cam [1,D])`` to feed the graph at the start of a log."""
    return model.state0[None].detach().clone(), torch.zeros(1, model.cfg.dim)


def example_inputs(cfg, S: int, seed: int = 0, sensors=EXPORTED) -> tuple[torch.Tensor, ...]:
    """Random but plausible inputs for a window of ``S`` frames (the graph's input order, no state)."""
    g = torch.Generator().manual_seed(seed)
    H, W = cfg.image_size
    lv = torch.rand(1, S, H, W, generator=g) * 40 * (torch.rand(1, S, H, W, generator=g) > 0.9)
    x = {"image": torch.rand(1, S, 3, H, W, generator=g), "lidar_view": lv,
         "range": torch.rand(1, S, 4, *cfg.range_size, generator=g) * 20,
         "imu": torch.randn(1, S, 10 + 6 * cfg.imu_bins, generator=g)}
    return tuple(x[n] for n in graph_io(sensors)[0][:-2])


def calibration_feeds(model: nn.Module, seeds: int = 2, frames: int = 16, window: int = 8,
                      sensors=EXPORTED) -> list[dict]:
    """Graph inputs (input name → float32 array) of ``frames // window`` consecutive windows of
    each of the first ``seeds`` synthetic TRAIN seeds, the recurrent state carried by the torch
    model (what static int8 calibration sees)."""
    import numpy as np

    from fuse4d.data.synthetic import synthesize
    from fuse4d.fusion.data_pool import train_seeds
    from fuse4d.fusion.inputs import window_inputs
    names = graph_io(sensors)[0]
    wrapped = ExportableModel(model, sensors)
    feeds = []
    for seed in train_seeds(seeds):
        seq = synthesize(seed, frames=frames)
        fr = [seq[i] for i in range(frames)]
        st = initial_state(model)
        for a in range(0, frames - window + 1, window):
            x = window_inputs(fr[a:a + window], seq.calibration, model.cfg, set(sensor_set(sensors)))[0]
            args = (*(x[n] for n in names[:-2]), *st)
            feeds.append({n: np.asarray(v, np.float32) for n, v in zip(names, args)})
            with torch.no_grad():
                o = wrapped(*args)
            st = (o[-2], o[-1])
    return feeds


def _quantize_static(src: Path, dst: Path, feeds: list[dict]) -> None:
    """QDQ int8 of every Conv of graph ``src`` into ``dst``, calibrated (min/max) on ``feeds``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    pre = dst.with_name("pre_" + dst.name)
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    extra_options={"WeightSymmetric": True})


def export_onnx(model: nn.Module, out: str | Path, int8: bool | str = False, opset: int = 17,
                calibration: list[dict] | None = None, sensors=EXPORTED) -> Path:
    """Write the graph of ``model`` (a FusionModel, fp32) for one sensor set to ``out``.

    Args:
        model: the float model; out: the ``.onnx`` file (written atomically);
        int8: ``True``/``"static"``: int8 convolutions calibrated on ``calibration`` (graph
            feeds; default :func:`calibration_feeds` of synthetic TRAIN seeds);
            ``"dynamic"``: int8 MatMul weights, no calibration;
        sensors: a :data:`GRAPHS` entry (iterable or comma string; default camera + LiDAR + IMU).
    Returns:
        ``out``.
    Raises:
        ConfigError: onnx / onnxruntime (for ``int8``) are not installed; a sensor set with no graph.
    """
    import os
    import tempfile

    from fuse4d.errors import ConfigError
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ConfigError('ONNX export needs the onnx extra: pip install "fuse4d[onnx]"') from None
    sensors = sensor_set(sensors)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapped = ExportableModel(model, sensors).eval()
    names, outs = graph_io(sensors)
    args = (*example_inputs(model.cfg, 3, sensors=sensors), *initial_state(model))
    dyn = {n: {1: "S"} for n in names[:-2]}
    dyn.update({n: {1: "S"} for n in outs[:-2]})
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        f32 = Path(tmp) / "fp32.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(wrapped, args, str(f32), input_names=list(names), output_names=list(outs),
                                  dynamic_axes=dyn, opset_version=opset, dynamo=False, do_constant_folding=True)
            except RuntimeError as e:
                if "Non-empty" not in str(e) and "shape" not in str(e):
                    raise
                # the tracer hands sizes out as 0-d tensors: an in-place ``start += n`` in the
                # trunk's token-span bookkeeping then moves the spans already recorded
                raise ConfigError(TRACE_HOOK) from None
        src = f32
        if int8:
            try:
                from onnxruntime.quantization import QuantType, quantize_dynamic
            except ImportError:
                raise ConfigError('--int8 needs onnxruntime: pip install "fuse4d[onnx]"') from None
            src = Path(tmp) / "int8.onnx"
            if int8 == "dynamic":
                quantize_dynamic(str(f32), str(src), weight_type=QuantType.QInt8)
            elif int8 is True or int8 == "static":
                feeds = calibration if calibration is not None else calibration_feeds(model, sensors=sensors)
                _quantize_static(f32, src, feeds)
            else:
                raise ConfigError(f"int8 must be static or dynamic, got {int8!r}")
        os.replace(src, out)
    return out


def onnx_session(path: str | Path, threads: int = 1):
    """An onnxruntime CPU session for an exported graph (``threads`` intra-op threads)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_onnx(session, *args) -> dict:
    """Run a session on torch or numpy inputs, positional in the graph's input order
    (:func:`graph_io`; e.g. ``image, lidar_view, range, imu, state_tokens, last_cam``) → dict of
    numpy outputs by name."""
    import numpy as np
    names = [i.name for i in session.get_inputs()]
    if len(args) != len(names):
        raise ValueError(f"this graph takes {len(names)} inputs ({', '.join(names)}), got {len(args)}")
    feed = {n: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for n, v in zip(names, args)}
    outs = [o.name for o in session.get_outputs()]
    return dict(zip(outs, session.run(outs, feed)))
