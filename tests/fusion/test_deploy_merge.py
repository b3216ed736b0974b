"""Token merging: merge/unmerge bookkeeping is exact, the attention blocks really see fewer
tokens, ratio 0 is the original model, merged outputs stay close to the full model's, and
frames without a sensor (masked tokens) still work."""

from __future__ import annotations

import pytest
import torch

from fuse4d.errors import ConfigError
from fuse4d.fusion.config import ModelConfig
from fuse4d.fusion.model import FusionModel
from fuse4d.fusion.token_merge import _Merge, merge_tokens

CFG = ModelConfig(image_size=(32, 96), dim=32, heads=2, blocks=2, range_size=(16, 128), registers=1, state_tokens=2)


def _inputs(S, seed=0):
    g = torch.Generator().manual_seed(seed)
    H, W = CFG.image_size
    return {"image": torch.rand(1, S, 3, H, W, generator=g),
            "lidar_view": torch.rand(1, S, H, W, generator=g) * 30 * (torch.rand(1, S, H, W, generator=g) > 0.9),
            "range": torch.rand(1, S, 4, *CFG.range_size, generator=g) * 20,
            "imu": torch.randn(1, S, 10 + 6 * CFG.imu_bins, generator=g)}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FusionModel(CFG).eval()


def test_merge_unmerge_bookkeeping():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 21, 8, generator=g)
    x[:, 6] = x[:, 5] * 2.0           # a source (even offset 2) parallel to a destination
    mg = _Merge(x, keep=3, r=5, key_mask=None)
    xm = mg.merge(x)
    assert xm.shape == (4, 16, 8)
    assert torch.equal(xm[:, :3], x[:, :3])                         # protected tokens untouched
    size = mg.merge(torch.ones(4, 21, 1), "sum")[..., 0]
    assert torch.all(size.sum(1) == 21)                              # every token counted once
    back = mg.unmerge(xm)
    kept = (back == x).all(-1)                                       # unmerged tokens come back exactly
    assert torch.all(kept.sum(1) >= 21 - 2 * 5)
    y = torch.arange(16.0)[None, :, None].expand(4, 16, 1)
    assert set(mg.unmerge(y)[0, :, 0].tolist()) == set(range(16))    # each merged slot is used


def test_blocks_see_fewer_tokens_and_outputs_stay_close(model):
    x = _inputs(6)
    seen = []
    with torch.no_grad():
        ref = model(x, attn=True)
        m = merge_tokens(model, 0.5)
        hooks = [b.block.register_forward_pre_hook(lambda mod, a: seen.append(a[0].shape[1]))
                 for b in (*m.frame_blocks, *m.global_blocks)]
        out = m(x, attn=True)
        for h in hooks:
            h.remove()
    T = ref["token_spans"]["imu"][1]
    keep = 1 + CFG.registers
    assert seen[0] == T - int(0.5 * (T - keep))                      # frame attention
    assert seen[1] == 6 * seen[0] + CFG.state_tokens                  # global attention
    assert out["depth"].shape == ref["depth"].shape
    assert out["attn_tokens"][0].shape == ref["attn_tokens"][0].shape  # unmerged before the heads
    rel = ((out["depth"] - ref["depth"]).abs() / ref["depth"]).median()
    assert 0 < rel < 0.02
    assert (out["sem_logits"].argmax(2) == ref["sem_logits"].argmax(2)).float().mean() > 0.95
    assert (out["pose_t"] - ref["pose_t"]).abs().max() < 0.05
    assert torch.equal(merge_tokens(model, 0.0)(x)["depth"], ref["depth"])


def test_masked_frames_and_state(model):
    x = _inputs(4, seed=3)
    x["image_valid"] = torch.tensor([[True, False, True, True]])
    with torch.no_grad():
        m = merge_tokens(model, 0.3)
        a = m(x)
        b = m(_inputs(4, seed=4), state=a["state"])
        ref = model(x)
    assert torch.isfinite(a["depth"]).all() and torch.isfinite(b["pose_t"]).all()
    assert (a["sem_logits"].argmax(2)[:, [0, 2, 3]] == ref["sem_logits"].argmax(2)[:, [0, 2, 3]]).float().mean() > 0.9
    with pytest.raises(ConfigError, match="ratio"):
        merge_tokens(model, 0.8)
