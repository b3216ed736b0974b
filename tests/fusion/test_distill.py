"""Distillation: resampling keeps the nearest point/return, the student starts from the
teacher's weights, a few distillation steps lower the distillation loss, and the training
entry point (Python and CLI) writes a student checkpoint that records its teacher."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fuse4d.errors import ConfigError
from fuse4d.fusion.augment import make_batch
from fuse4d.fusion.config import ModelConfig, TrainConfig, TrainSetup
from fuse4d.fusion.data_pool import build_pool
from fuse4d.fusion.distill import (Distiller, check_pair, init_from_teacher, kept_blocks, range_block_index,
                                   sparse_resize, student_inputs)
from fuse4d.fusion.model import FusionModel
from fuse4d.fusion.train import save_weights, train

TEACHER = ModelConfig(image_size=(32, 96), dim=32, heads=2, blocks=2, range_size=(16, 128), registers=1,
                      state_tokens=2)
STUDENT = ModelConfig(image_size=(24, 72), patch=8, depth_patch=8, dim=32, heads=2, blocks=1, range_size=(8, 64),
                      range_patch=(8, 32), registers=1, state_tokens=2)


def setup_for(cache, steps=2, model=STUDENT, **kw) -> TrainSetup:
    tc = TrainConfig(seed=3, pool_seeds=1, pool_frames=4, window=3, batch=1, steps=steps, warmup=100,
                     ckpt_every=2, log_every=1, cache_dir=str(cache), **kw)
    return TrainSetup(model=model, train=tc)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("pool")


@pytest.fixture(scope="module")
def pool(cache):
    return build_pool(setup_for(cache).train, TEACHER, echo=lambda *_: None)


@pytest.fixture(scope="module")
def seq0():
    from fuse4d.data.synthetic import split_of, synthesize
    assert split_of(0) == "test"
    return synthesize(0, frames=3)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    torch.manual_seed(5)
    t = FusionModel(TEACHER).eval()
    p = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_weights(t, p, {})
    return p


def test_sparse_resize_keeps_the_nearest_point():
    d = torch.zeros(1, 4, 6)
    d[0, 0, 0], d[0, 1, 1], d[0, 0, 1] = 5.0, 3.0, 7.0      # three points in the first 2x2 block
    d[0, 3, 5] = 2.5                                        # one in the last block
    out = sparse_resize(d, (2, 3))
    assert out.shape == (1, 2, 3)
    assert out[0, 0, 0] == 3.0 and out[0, 1, 2] == 2.5
    assert int((out > 0).sum()) == 2                        # empty blocks stay empty


def test_sparse_resize_matches_projecting_at_the_lower_resolution(seq0):
    from fuse4d.encoders.lidar import sparse_depth
    from fuse4d.fusion.inputs import ImageWarp
    f, cal = seq0[0], seq0.calibration
    T = cal.T_cam_lidar
    p = f.points[:, :3].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    hw_in = (cal.image_size[1], cal.image_size[0])
    hi, lo = (64, 192), (48, 144)
    d_hi = sparse_depth(p, ImageWarp.fit(hw_in, hi).K(cal.K), hi)
    d_lo = sparse_depth(p, ImageWarp.fit(hw_in, lo).K(cal.K), lo)
    r = sparse_resize(torch.from_numpy(d_hi)[None], lo)[0].numpy()
    both = (r > 0) & (d_lo > 0)
    assert abs(int((r > 0).sum()) - int((d_lo > 0).sum())) < 0.1 * (d_lo > 0).sum()   # as many points
    assert both.sum() > 0.7 * (d_lo > 0).sum()               # mostly in the same pixels (sub-pixel rounding differs)
    assert np.median(np.abs(r[both] / d_lo[both] - 1)) < 0.01


def test_range_block_index_picks_the_nearest_return():
    img = torch.zeros(1, 4, 4, 8)
    img[0, 1, 0, 0] = img[0, 1, 1, 1] = 1.0
    img[0, 0, 0, 0], img[0, 0, 1, 1] = 0.6, 0.4            # block (0, 0): the return at (1, 1) is nearer
    img[0, 2, 1, 1] = 0.9
    assert range_block_index(img, (2, 4))[0, 0, 0] == 1 * 8 + 1
    small = ModelConfig(**{**STUDENT.__dict__, "range_size": (2, 4), "range_patch": (2, 4)})
    s, ridx = student_inputs({"range": img[None]}, TEACHER, small)
    assert s["range"].shape == (1, 1, 4, 2, 4)
    assert s["range"][0, 0, :3, 0, 0].tolist() == pytest.approx([0.4, 1.0, 0.9])   # all channels of that return
    assert s["range"][0, 0, 1].sum() == 1.0                                          # empty blocks stay empty


def test_student_starts_from_the_teacher():
    torch.manual_seed(1)
    teacher = FusionModel(TEACHER).eval()
    assert kept_blocks(2, 1) == [1] and kept_blocks(4, 2) == [1, 3] and kept_blocks(2, 2) == [0, 1]
    same = FusionModel(TEACHER).eval()
    assert init_from_teacher(same, teacher)["kept_random"] == 0
    x = {"image": torch.rand(1, 2, 3, 32, 96), "imu": torch.randn(1, 2, 58)}
    with torch.no_grad():
        assert torch.equal(same(x)["depth"], teacher(x)["depth"])
    student = FusionModel(STUDENT)
    n = init_from_teacher(student, teacher)
    assert n["resampled"] >= 3
    assert torch.equal(student.frame_blocks[0].qkv.weight, teacher.frame_blocks[1].qkv.weight)
    assert torch.equal(student.dense_head.out.weight, teacher.dense_head.out.weight)
    # a constant positional embedding stays constant when resampled to the new grid
    teacher.rgb.pos.data[:] = 0.5
    init_from_teacher(student, teacher)
    assert student.rgb.pos.shape == (1, 3 * 9, 32) and torch.allclose(student.rgb.pos, torch.full_like(student.rgb.pos, 0.5))
    with pytest.raises(ConfigError, match="classes"):
        check_pair(TEACHER, ModelConfig(**{**STUDENT.__dict__, "classes": 5}))
    with pytest.raises(ConfigError, match="range_size"):
        check_pair(TEACHER, ModelConfig(**{**STUDENT.__dict__, "range_size": (16, 96), "range_patch": (8, 32)}))


def test_a_few_distillation_steps_lower_the_distillation_loss(pool, cache, teacher_ckpt):
    torch.set_num_threads(1)
    s = setup_for(cache, corrupt_prob=0.0)
    dist = Distiller.load(teacher_ckpt)
    torch.manual_seed(0)
    student = FusionModel(STUDENT)        # from scratch: the teacher's weights would make it too easy
    opt = torch.optim.AdamW(student.parameters(), lr=3e-3)
    inputs, tgt, _ = make_batch(pool, np.random.default_rng(0), s.train, TEACHER, {"camera", "lidar", "imu"})
    kd = []
    for _ in range(12):
        terms = dist.losses(student, inputs, tgt, s, split=False)
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        kd.append(float(sum(v.detach() for k, v in terms.items() if k.startswith("kd_"))))
    assert {"kd_depth", "kd_sem", "kd_dyn", "kd_desc", "kd_point_sem", "kd_point_dyn", "kd_pose", "kd_gate",
            "depth", "sem", "pose"} <= set(terms)
    assert kd[-1] < 0.7 * kd[0]
    # the student's inputs are the teacher's window at the student's resolution
    si, ridx = student_inputs(inputs, TEACHER, STUDENT)
    assert si["image"].shape[-2:] == (24, 72) and si["lidar_view"].shape[-2:] == (24, 72)
    assert si["range"].shape[-2:] == (8, 64) and ridx.shape == (3, 8, 64)
    assert (si["lidar_view"] > 0).sum() > 0.3 * (inputs["lidar_view"] > 0).sum()


def test_train_distill_from_writes_a_student(pool, cache, teacher_ckpt, seq0, tmp_path):
    msgs = []
    path = train(setup_for(cache, steps=2, split_prob=1.0), tmp_path / "s", echo=msgs.append, distill_from=teacher_ckpt)
    ck = torch.load(path, weights_only=True)
    assert ck["model_config"]["image_size"] == [24, 72] and ck["model_config"]["blocks"] == 1
    assert ck["meta"]["distill_from"] == str(teacher_ckpt)
    assert any("student of" in m for m in msgs)
    from fuse4d.fusion.predict import Predictor
    wp, _ = Predictor.from_checkpoint(path).predict(seq0[0:3])
    assert wp.depth.shape == (3, 128, 384) and np.isfinite(wp.depth).all()


def test_cli_distill_from_missing_teacher_is_one_line(tmp_path):
    from fuse4d.cli import app
    r = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "s"), "--distill-from", str(tmp_path / "none.pt")])
    assert r.exit_code != 0
    assert "none.pt" in r.output and "not found" in r.output and "Traceback" not in r.output


def test_shipped_student_is_smaller_than_its_teacher_and_loads():
    from fuse4d.fusion.predict import SHIPPED_CHECKPOINT, Predictor, load_checkpoint
    path = SHIPPED_CHECKPOINT.with_name("student.pt")
    if not path.is_file():
        pytest.skip("no distilled student shipped")
    ck = load_checkpoint(path)
    s, t = (ModelConfig.from_dict(c["model_config"]) for c in (ck, load_checkpoint(SHIPPED_CHECKPOINT)))
    assert s.blocks < t.blocks and s.image_size[0] * s.image_size[1] < t.image_size[0] * t.image_size[1]
    assert s.coords == t.coords          # a student of the shipped teacher, decoders alike
    assert ck["meta"]["distill_from"].endswith("tiny.pt") and path.stat().st_size < 20 * 2 ** 20
    assert Predictor.from_checkpoint(path).cfg == s
