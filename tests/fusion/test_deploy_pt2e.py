"""PT2E static int8 of the fusion graph (``fusion/pt2e_int8.py``, torchao + X86InductorQuantizer):
on a held-out window its predictions stay within the int8 tolerances of fp32, it runs behind the
``FusionModel.forward`` contract, and it refuses windows it was not exported for. Slow (export
and calibration take about a minute); skipped without torchao. Its speed is
``benchmarks/bench_pt2e.py``'s (inductor compiles for minutes: not in a test)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("torchao")

from fuse4d.data.synthetic import split_of, synthesize  # noqa: E402
from fuse4d.fusion.predict import Predictor  # noqa: E402
from fuse4d.fusion.pt2e_int8 import GraphModel, pt2e_int8  # noqa: E402

SEED = 10                    # a test-split world
DEPTH_REL_MEDIAN = 0.02      # median |d - d32| / d32 over the window's pixels
SEM_AGREE = 0.95             # pixels and LiDAR points with the same class as fp32


@pytest.mark.slow
def test_pt2e_int8_graph_agrees_with_fp32():
    torch.set_num_threads(1)
    assert split_of(SEED) == "test"
    seq = synthesize(SEED, frames=8)
    model = Predictor.from_checkpoint().model
    q = GraphModel(pt2e_int8(model, log=lambda s: None), model, compile=False)
    ref, low = Predictor(model), Predictor(q)
    a, _ = ref.predict(seq[0:8])
    b, _ = low.predict(seq[0:8])
    rel = np.abs(a.depth - b.depth) / np.maximum(a.depth, 1e-3)
    assert np.median(rel) < DEPTH_REL_MEDIAN, np.median(rel)
    assert np.mean(a.semantics == b.semantics) > SEM_AGREE
    pa, pb = np.concatenate(a.point_semantics), np.concatenate(b.point_semantics)
    assert np.mean(pa == pb) > SEM_AGREE
    assert np.median(rel) > 0          # int8 does change the numbers
    with pytest.raises(ValueError, match="3 frames or more"):
        low.predict(seq[0:2])
    with pytest.raises(ValueError, match="every frame complete"):
        low.predict(seq[0:4], sensors={"camera", "imu"})
