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

Why int8 stays near 1.1-1.4x here (measured on this project's AVX2 CPU: ``lscpu`` lists avx2/fma,
no avx512 and no avx_vnni, so an int8 kernel runs vpmaddubsw+vpmaddwd, at most ~2x an fp32 FMA):
the fp32 profile spends 44-48 % in convolutions, 3-5 % in Linear, 15-26 % in attention and
25-30 % in memory-bound ops, so even 2x on every conv and Linear caps the model at
1 / (1 - 0.53 / 2) ~ 1.36x. Static int8 of all 21 conv blocks too (torch.ao eager mode, x86
engine, conv+ReLU fused, calibrated on 2 train-seed windows) measured 1.05-1.44x the fp32 CPU
time at S = 8 and 1.05x at S = 32 (NHWC inputs 1.01-1.09x; 1 thread, load 9-10), depth changed
by 4.2 % per pixel, so it is not adopted.
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
