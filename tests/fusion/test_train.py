"""Training: the pool holds train seeds only, a few steps lower the loss, a run is
deterministic given its seed, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fuse4d.errors import ConfigError, DataError
from fuse4d.fusion.augment import make_batch
from fuse4d.fusion.config import ModelConfig, TrainConfig, TrainSetup, load_train_config
from fuse4d.fusion.data_pool import build_pool, train_seeds
from fuse4d.fusion.model import FusionModel
from fuse4d.fusion.train import camera_depth_scale, compute_losses, train

SMALL = ModelConfig(image_size=(32, 96), dim=32, heads=2, blocks=1, range_size=(16, 128), registers=1,
                    state_tokens=2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("pool")


def setup_for(cache, steps=2, **kw) -> TrainSetup:
    tc = TrainConfig(seed=3, pool_seeds=1, pool_frames=4, window=3, batch=1, steps=steps, warmup=100,
                     ckpt_every=2, log_every=1, cache_dir=str(cache), **kw)
    return TrainSetup(model=SMALL, train=tc)


@pytest.fixture(scope="module")
def pool(cache):
    s = setup_for(cache)
    return build_pool(s.train, s.model, echo=lambda *_: None)


def test_pool_is_train_seeds_only(pool):
    from fuse4d.data.synthetic import split_of
    seeds = train_seeds(30)
    assert all(split_of(s) == "train" for s in seeds) and 0 not in seeds and 1 not in seeds
    log = pool[0]
    assert log["image"].shape == (4, 3, 32, 96) and log["range"].shape == (4, 4, 16, 128)
    assert (log["depth"] > 0).mean() > 0.3 and (log["range_sem"] > 0).any() and log["has_lidar"].all()


def test_a_few_steps_lower_the_loss(pool, cache):
    s = setup_for(cache, corrupt_prob=0.0)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = FusionModel(SMALL)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    inputs, tgt, _ = make_batch(pool, np.random.default_rng(0), s.train, SMALL, {"camera", "lidar", "imu"})
    losses = []
    for _ in range(12):
        terms = compute_losses(model(inputs), tgt, s, False)
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert set(terms) >= {"depth", "sem", "dyn", "point_sem", "point_dyn", "pose", "gate"}
    assert losses[-1] < 0.8 * losses[0]


def test_corruption_sets_gate_targets(pool, cache):
    s = setup_for(cache, corrupt_prob=1.0)
    seen = set()
    for k in range(6):
        _, tgt, sensors = make_batch(pool, np.random.default_rng(k), s.train, SMALL, {"camera", "lidar", "imu"})
        gt = tgt["gate_target"][0]
        assert ((gt >= 0) & (gt <= 1)).all()
        seen |= {i for i in range(3) if (gt[:, i] < 1).any()}
    assert seen == {0, 1, 2}


def test_deterministic_and_resumable(pool, cache, tmp_path):
    a = train(setup_for(cache, steps=4), tmp_path / "a", echo=lambda *_: None)
    b = train(setup_for(cache, steps=4), tmp_path / "b", echo=lambda *_: None)
    train(setup_for(cache, steps=2), tmp_path / "c", echo=lambda *_: None)
    msgs = []
    c = train(setup_for(cache, steps=4), tmp_path / "c", echo=msgs.append)
    assert any("resuming" in m and "step 2" in m for m in msgs)
    wa, wb, wc = (torch.load(p, weights_only=True)["model"] for p in (a, b, c))
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
        assert torch.allclose(wa[k], wc[k], atol=1e-6), k
    log = [json.loads(line) for line in (tmp_path / "c" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1, 2, 3]
    assert (tmp_path / "a" / "loss_curve.png").stat().st_size > 1000
    assert torch.load(a, weights_only=True)["meta"]["depth_scale_camera"] > 0


def test_camera_depth_scale_measures_the_networks_bias(pool, cache):
    s = setup_for(cache)
    torch.manual_seed(0)
    model = FusionModel(SMALL)

    class TwiceAsFar(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, inputs):
            out = dict(self.m(inputs))
            out["depth"] = out["depth"] * 2
            return out

    s1 = camera_depth_scale(model, pool, s, windows=3)
    s2 = camera_depth_scale(TwiceAsFar(model), pool, s, windows=3)
    assert s1 > 0 and s2 == pytest.approx(s1 / 2, rel=1e-5) and model.training


def test_bad_resume_and_config_errors(cache, tmp_path):
    (tmp_path / "last.pt").write_bytes(b"garbage")
    with pytest.raises(DataError, match="last.pt: cannot resume"):
        train(setup_for(cache), tmp_path, echo=lambda *_: None)
    y = tmp_path / "bad.yaml"
    y.write_text("model:\n  dims: 3\n")
    with pytest.raises(ConfigError, match=r"unknown model setting model.dims; did you mean model.dim\?"):
        load_train_config(y)
    assert load_train_config(None).model == ModelConfig()
