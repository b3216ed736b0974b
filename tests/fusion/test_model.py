"""The fusion model: tokens per sensor subset (a missing modality has none), gates, the
distinct first frame, attention sizes linear in S, the recurrent state, batching."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fuse4d.fusion.config import MODALITIES, ModelConfig
from fuse4d.fusion.model import FusionModel

SMALL = ModelConfig(image_size=(32, 96), dim=32, heads=2, blocks=1, range_size=(16, 128), registers=1,
                    state_tokens=2)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FusionModel(SMALL).eval()


def make_inputs(sensors, B=1, S=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    H, W = SMALL.image_size
    d = {}
    if "camera" in sensors:
        d["image"] = torch.rand(B, S, 3, H, W, generator=g)
    if "lidar" in sensors:
        d["range"] = torch.rand(B, S, 4, *SMALL.range_size, generator=g)
        if "camera" in sensors:
            d["lidar_view"] = torch.rand(B, S, H, W, generator=g) * 30 * (torch.rand(B, S, H, W, generator=g) > 0.8)
    if "imu" in sensors:
        d["imu"] = torch.randn(B, S, 10 + 6 * SMALL.imu_bins, generator=g)
    return d


PATCHES = {"rgb": 2 * 6, "lidar_view": 2 * 6, "lidar_range": 2 * 4, "imu": SMALL.imu_tokens}


@pytest.mark.parametrize("sensors,kinds", [
    ({"camera"}, {"rgb"}), ({"lidar"}, {"lidar_range"}), ({"imu"}, {"imu"}),
    ({"camera", "lidar"}, {"rgb", "lidar_view", "lidar_range"}),
    ({"camera", "lidar", "imu"}, {"rgb", "lidar_view", "lidar_range", "imu"}),
])
def test_token_counts_per_sensor_subset(model, sensors, kinds):
    with torch.no_grad():
        out = model(make_inputs(sensors))
    spans = out["token_spans"]
    assert set(spans) - {"camera"} == kinds                    # a missing modality has no tokens
    assert spans["camera"] == (0, 1 + SMALL.registers)
    for k in kinds:
        assert spans[k][1] - spans[k][0] == PATCHES[k]
    gates = out["gates"][0]
    present = {"rgb": "camera" in sensors, "lidar": "lidar" in sensors, "imu": "imu" in sensors, "depth": False}
    for i, m in enumerate(MODALITIES):
        col = gates[:, i]
        if present[m]:
            assert bool(((col >= 0) & (col <= 1)).all())
        else:
            assert bool(torch.isnan(col).all())
    assert ("depth" in out) == ("camera" in sensors)
    assert ("point_sem_logits" in out) == ("lidar" in sensors)


def test_output_shapes(model):
    with torch.no_grad():
        out = model(make_inputs({"camera", "lidar", "imu"}, B=2, S=3), attn=True)
    H, W = SMALL.image_size
    assert out["depth"].shape == (2, 3, H, W)                  # full model resolution
    assert out["sem_logits"].shape == (2, 3, SMALL.classes, H, W)
    assert out["point_sem_logits"].shape == (2, 3, SMALL.classes, *SMALL.range_size)
    assert out["pose_t"].shape == (2, 3, 3) and out["pose_logvar"].shape == (2, 3, 6)
    assert len(out["attn_tokens"]) == SMALL.blocks and out["attn_tokens"][0].shape == (2, 3, 12, SMALL.dim)
    assert bool((out["depth"] > 0).all()) and bool((out["depth_conf"] > 1).all())
    assert torch.allclose(out["desc"].norm(dim=2), torch.ones(1), atol=1e-4)


def test_missing_frames_are_masked_and_report_nan(model):
    inp = make_inputs({"camera", "lidar"}, S=3)
    inp["range_valid"] = torch.tensor([[True, False, True]])
    with torch.no_grad():
        out = model(inp)
        inp2 = dict(inp)
        inp2["range"] = inp["range"].clone()
        inp2["range"][:, 1] = 99.0                           # garbage in a masked frame changes nothing
        inp2["lidar_view"] = inp["lidar_view"].clone()
        inp2["lidar_view"][:, 1] = 5.0
        out2 = model(inp2)
    assert math.isnan(float(out["gates"][0, 1, 1])) and not math.isnan(float(out["gates"][0, 0, 1]))
    assert torch.allclose(out["depth"][:, 0], out2["depth"][:, 0], atol=1e-5)
    assert torch.allclose(out["pose_t"], out2["pose_t"], atol=1e-5)


def test_first_frame_tokens_are_distinct(model):
    inp = make_inputs({"camera", "lidar"}, S=1)
    inp = {k: v.repeat(1, 3, *[1] * (v.dim() - 2)) for k, v in inp.items()}   # three identical frames
    with torch.no_grad():
        out = model(inp)
    assert not torch.allclose(out["depth"][:, 0], out["depth"][:, 1], atol=1e-6)
    assert torch.allclose(out["depth"][:, 1], out["depth"][:, 2], atol=1e-5)


def test_attention_sizes_linear_in_S(model, monkeypatch):
    """Frame attention sees one frame's tokens whatever S; global attention S * T + state."""
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append(tuple(q.shape))
        return real(q, k, v, **kw)
    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    sizes = {}
    for S in (2, 4, 8):
        seen.clear()
        with torch.no_grad():
            out = model(make_inputs({"camera", "imu"}, S=S))
        T = max(b for a, b in out["token_spans"].values())
        frame, glob = seen[0], seen[1]
        assert frame[0] == S and frame[2] == T                  # [B*S, heads, T, d]
        assert glob[0] == 1 and glob[2] == S * T + SMALL.state_tokens
        sizes[S] = glob[2]
    assert sizes[8] - sizes[4] == 2 * (sizes[4] - sizes[2])          # grows linearly with S


def test_recurrent_state_changes_outputs_and_links_row0(model):
    inp = make_inputs({"camera", "lidar", "imu"}, S=3)
    with torch.no_grad():
        first = model(make_inputs({"camera", "lidar", "imu"}, S=3, seed=5))
        a = model(inp)
        b = model(inp, state=first["state"])
    assert first["state"]["tokens"].shape == (1, SMALL.state_tokens, SMALL.dim)
    assert not torch.allclose(a["state"]["tokens"], first["state"]["tokens"])
    assert not torch.allclose(a["depth"], b["depth"], atol=1e-6)
    assert not torch.allclose(a["pose_t"][:, 0], b["pose_t"][:, 0], atol=1e-6)


def test_batched_equals_unbatched(model):
    inp = make_inputs({"camera", "lidar", "imu"}, B=2, S=2)
    with torch.no_grad():
        both = model(inp)
        one = model({k: v[1:] for k, v in inp.items()})
    for k in ("depth", "pose_t", "point_dyn_logit", "gates"):
        assert torch.allclose(both[k][1:], one[k], atol=1e-4, equal_nan=True), k


def test_config_rejects_bad_sizes():
    from fuse4d.errors import ConfigError
    with pytest.raises(ConfigError, match="divisible"):
        ModelConfig(image_size=(30, 96))
    with pytest.raises(ConfigError, match="heads"):
        ModelConfig(dim=30, heads=4)
    assert ModelConfig.from_dict(SMALL.to_dict()) == SMALL
