"""Reduced-precision inference of the fusion model on CPU: ``fp32`` | ``bf16`` | ``int8``.

- ``int8``: dynamic quantisation of every ``nn.Linear`` (attention qkv/proj, MLPs, token
  projections, pose head) with torch's own tooling
  (``torch.ao.quantization.quantize_dynamic``): weights stored as int8 per tensor,
  activations quantised on the fly per batch; convolutions, norms and the softmax stay
  float32. Nothing is calibrated, so no training data is needed.
- ``bf16``: the model runs under ``torch.autocast("cpu", torch.bfloat16)`` and every output
  is cast back to float32.

Only the network changes: outputs come back as float32 tensors and everything after the
model (pose composition, covariances, the estimator) stays float64 as before.

    model = apply_precision(build_model(ck), "int8")      # a new module; the input is untouched

Why int8 cannot reach 2x fp32 on this CPU (``lscpu``: avx2/fma, no avx512, no avx_vnni, no
bf16), measured per op by ``python benchmarks/bench_deploy.py --roofline`` (the fp32 forward of
tiny.pt on a train-seed window, 1 thread, CPU time; every conv and Linear re-timed at the exact
shape it sees, with torch's own int8 kernels; load 9.5):

| S | fp32 ms/frame | conv | int8 conv x (with q/dq) | Linear | int8 Linear x | rest | cap, these kernels | cap, free conv+Linear |
|---|---|---|---|---|---|---|---|---|
| 8 | 44.6 | 46 % | 0.92 (0.83) | 6 % | 1.21 | 49 % | 0.97 | 2.05 |
| 32 | 66.7 | 42 % | 1.30 (1.08) | 3 % | 1.32 | 55 % | 1.12 | 1.83 |

"Rest" is attention (28 % at S = 32, quadratic in S x tokens), pools, resampling, copies and
norms, which int8 does not touch. Even conv and Linear taking no time at all would give 2.05x
at S = 8 (conv+Linear would have to run 41x faster in int8; an AVX2 int8 kernel, vpmaddubsw +
vpmaddwd, is at most ~2x an fp32 FMA) and 1.83x at S = 32: the 2x goal is bound by this
hardware and the model's op mix, not by the tooling. The fbgemm int8 convolutions are no faster
than oneDNN's fp32 ones at these small channel counts (0.92x / 1.30x). The static int8-conv
attempt of the previous session (torch.ao eager, x86, conv+ReLU fused, calibrated on 2
train-seed windows) measured 1.05-1.44x at S = 8 and 1.05x at S = 32 and moved depth by 4.2 %
per pixel: not adopted. onnxruntime's int8 graph (``fuse4d model export --int8``) is 1.15x its
own fp32 graph; its lead over torch fp32 is onnxruntime's, not int8's.

Compiled int8 does not change this: PT2E static int8 of the whole graph (torchao's
X86InductorQuantizer, every conv and Linear) compiled by inductor runs at 1.34x / 1.15x eager
fp32 but 0.93x / 0.96x inductor's own fp32 graph at S = 8 / 32 (1.02x / 1.02x eager under load),
after ~400 s of cold compile per window size (``fusion/pt2e_int8.py``, ``benchmarks/bench_pt2e.py``).
``--precision int8`` stays eager.

``bf16`` on this CPU: 23-33x slower than fp32 (same table: bf16 model 0.030x at S = 8,
0.044x at S = 32; a bf16 conv 0.01-0.02x, Linear 0.10-0.13x). Without avx512_bf16 / AMX /
avx_vnni_2, ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is False, so a bf16 convolution
falls to ``aten::_slow_conv2d_forward`` (im2col and a generic bf16 GEMM, profiled). The flag
works (outputs within the stated tolerances) but pays off only on CPUs with native bf16.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

#: the precisions ``fuse4d run --precision`` accepts
PRECISIONS = ("fp32", "bf16", "int8")


def check_precision(precision: str) -> str:
    """Validate a precision name; raises ConfigError naming the choices."""
    from fuse4d.errors import ConfigError
    if precision not in PRECISIONS:
        raise ConfigError(f"run.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def _float32(x):
    """Cast every floating tensor in a nested dict/list/tuple of outputs to float32."""
    if torch.is_tensor(x):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: _float32(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_float32(v) for v in x)
    return x


class AutocastModel(nn.Module):
    """Runs a wrapped model under CPU autocast (``dtype``) and returns float32 outputs.

    Exposes the wrapped model's ``cfg`` so it stands in for a :class:`FusionModel`.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.inner, self.dtype = model, dtype
        self.cfg = model.cfg

    def forward(self, inputs: dict, state: dict | None = None, attn: bool = False) -> dict:
        """Same signature and outputs as ``FusionModel.forward`` (floats as float32)."""
        with torch.autocast("cpu", dtype=self.dtype):
            out = self.inner(inputs, state, attn=attn)
        return _float32(out)


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` dynamically quantised to int8 (weights
    per tensor, activations per batch). The input model is not changed."""
    engines = torch.backends.quantized.supported_engines
    if torch.backends.quantized.engine not in ("x86", "fbgemm", "qnnpack", "onednn"):
        torch.backends.quantized.engine = "x86" if "x86" in engines else engines[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch.ao.quantization deprecation notices (it still ships in torch)
        from torch.ao.quantization import quantize_dynamic
        q = quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)
    return q.eval()


def apply_precision(model: nn.Module, precision: str) -> nn.Module:
    """The model to run for ``precision`` (``fp32`` returns ``model`` itself).

    Raises:
        ConfigError: an unknown precision.
    """
    check_precision(precision)
    if precision == "int8":
        return quantize_int8(model)
    if precision == "bf16":
        return AutocastModel(model.eval()).eval()
    return model


def state_dict_bytes(model: nn.Module) -> int:
    """Size in bytes of ``model``'s state dict as ``torch.save`` writes it (checkpoint size)."""
    import io
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(model.state_dict(), buf)
    return buf.tell()
