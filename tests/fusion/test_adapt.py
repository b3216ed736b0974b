"""Self-supervised adaptation: its losses are minimal at the true depth and pose of a
synthetic window, its IMU prior is the true rotation, and a run writes a loadable
checkpoint and a before/after report. The KITTI raw demonstration is a slow test."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fuse4d.data.synthetic import synthesize
from fuse4d.errors import ConfigError, DataError
from fuse4d.fusion.adapt import AdaptConfig, adapt, parse_frames, prepare, self_supervised_losses, split_points
from fuse4d.fusion.config import ModelConfig
from fuse4d.fusion.inputs import T_body_ref
from fuse4d.fusion.model import FusionModel
from fuse4d.geometry import invert, rotation_angle
from scipy.spatial.transform import Rotation

SMALL = ModelConfig(image_size=(32, 96), dim=32, heads=2, blocks=1, range_size=(16, 128), registers=1,
                    state_tokens=2)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    from fuse4d.data.export import export_sequence
    from fuse4d.data.registry import load_sequence
    path = export_sequence(synthesize(seed=22, frames=6), tmp_path_factory.mktemp("log") / "log.zarr", format="zarr")
    return path, load_sequence(path)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    from fuse4d.fusion.adapt import _save
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ck") / "small.pt"
    _save(FusionModel(SMALL), path, {"note": "untrained test model"})
    return path


def _truth_outputs(frames, seq, cfg, aux):
    """Model-shaped outputs holding the ground truth of the window (depth, motion, static mask)."""
    S = len(frames)
    warp = aux["warp"]
    depth = torch.stack([warp.depth(f.depth) for f in frames])[None].clamp_min(0.1)
    dyn = torch.stack([warp.depth(f.dynamic_mask.astype(np.float32)) for f in frames])[None]
    Tbr = T_body_ref(seq.calibration, aux["ref"])
    gt = seq.gt_poses
    rel = np.stack([np.eye(4)] + [invert(Tbr) @ invert(gt[k - 1]) @ gt[k] @ Tbr for k in range(1, S)])
    h, w = cfg.image_size[0] // 4, cfg.image_size[1] // 4
    return {"depth": depth, "depth_conf": torch.ones_like(depth), "dyn_logit": (dyn - 0.5) * 20,
            "pose_t": torch.from_numpy(rel[:, :3, 3]).float()[None],
            "pose_r": torch.from_numpy(Rotation.from_matrix(rel[:, :3, :3]).as_rotvec()).float()[None],
            "desc": torch.nn.functional.normalize(torch.randn(1, S, 8, h, w), dim=2)}, rel


def test_losses_minimal_at_truth_and_imu_prior_is_true_rotation(log):
    _, seq = log
    frames = [seq[i] for i in range(3)]
    cfg = ModelConfig()
    inputs, aux, targets = prepare(frames, seq, cfg, set(seq.sensors), 0.5, np.random.default_rng(0))
    out, rel = _truth_outputs(frames, seq, cfg, aux)
    # the gyro preintegration gives the true relative rotation (in the camera frame)
    R_imu = targets["imu_T"][0, 1:, :3, :3].double().numpy()
    assert targets["imu_valid"][0, 1:].all()
    assert np.degrees(rotation_angle(np.swapaxes(R_imu, 1, 2) @ rel[1:, :3, :3])).max() < 0.2
    ac = AdaptConfig(w_epi=0.0)
    truth = {k: float(v) for k, v in self_supervised_losses(out, inputs, aux, targets, ac).items()}
    assert truth["imu"] < 0.05 and truth["photo"] < 0.2
    photo, imu = [truth["photo"]], [truth["imu"]]
    for deg in (1.0, 3.0, 8.0):
        bad = dict(out, pose_r=out["pose_r"] + torch.tensor([0.0, math.radians(deg), 0.0]))
        terms = self_supervised_losses(bad, inputs, aux, targets, ac)
        photo.append(float(terms["photo"]))
        imu.append(float(terms["imu"]))
    assert all(b > a for a, b in zip(photo, photo[1:])) and all(b > a for a, b in zip(imu, imu[1:]))
    # held-out LiDAR depth: exact at the true depth (up to resampling), worse when scaled
    lid = [float(self_supervised_losses(dict(out, depth=out["depth"] * s), inputs, aux, targets, ac)["lidar"])
           for s in (1.0, 1.2, 1.5)]
    assert all(b > a for a, b in zip(lid, lid[1:]))
    # held out: about half of each scan supervises; LiDAR not an input: all of it does
    n_all = sum(len(f.points) for f in frames)
    assert 0.4 < sum(len(p) for p in targets["lidar_points"]) / n_all < 0.6
    cam_inputs, _, cam_targets = prepare(frames, seq, cfg, {"camera"}, 0.5, np.random.default_rng(0))
    assert sum(len(p) for p in cam_targets["lidar_points"]) == n_all and "range" not in cam_inputs


def test_lidar_split_is_disjoint_and_covers_the_scan():
    pts = np.random.default_rng(0).normal(size=(1000, 4)).astype(np.float32)
    a, b = split_points(pts, 0.5, np.random.default_rng(1))
    assert len(a) + len(b) == 1000 and 400 < len(a) < 600
    assert not (set(map(tuple, a)) & set(map(tuple, b)))
    assert split_points(None, 0.5, np.random.default_rng(1)) == (None, None)


def test_adapt_writes_checkpoint_and_report(log, small_checkpoint, tmp_path):
    from fuse4d.fusion.predict import Predictor, load_checkpoint
    from typer.testing import CliRunner
    from fuse4d.cli import app
    path, seq = log
    res = CliRunner().invoke(app, ["train", "--data", str(path), "--from", str(small_checkpoint), "--out", str(tmp_path),
                                   "--frames", "0:6", "--steps", "2"])
    assert res.exit_code == 0, res.output
    assert "held-out before" in res.output and "adapted.pt" in res.output
    rep = json.loads((tmp_path / "adapt.json").read_text())
    assert rep["train_frames"] == [0, 4] and rep["heldout_frames"] == [4, 6]
    for when in ("before", "after"):
        assert {"photo", "epi", "imu", "lidar_absrel"} <= set(rep[when])
        assert all(math.isfinite(v) for v in rep[when].values())
    assert len(rep["history"]) == 2 and {"photo", "lidar", "imu"} <= set(rep["history"][0])
    new, old = load_checkpoint(tmp_path / "adapted.pt"), load_checkpoint(small_checkpoint)
    assert any(not torch.equal(new["model"][k], old["model"][k]) for k in old["model"])
    assert new["meta"]["adapted"]["before"] == rep["before"]
    wp, _ = Predictor.from_checkpoint(tmp_path / "adapted.pt").predict(seq[0:2])
    assert wp.depth.shape == seq[0].depth.shape[:0] + (2, *seq[0].depth.shape)


def test_bad_requests(log, small_checkpoint, tmp_path):
    path, _ = log
    with pytest.raises(ConfigError, match="a:b"):
        parse_frames("3-5", 10)
    with pytest.raises(ConfigError, match="at least 2"):
        parse_frames("4:5", 10)
    assert parse_frames("2:", 10) == slice(2, 10)
    with pytest.raises(ConfigError, match="hold-out"):
        adapt(path, small_checkpoint, tmp_path, frames="0:3", config=AdaptConfig(steps=1))
    with pytest.raises(DataError, match="camera"):
        adapt(path, small_checkpoint, tmp_path, sensors={"lidar", "imu"}, config=AdaptConfig(steps=1))


@pytest.mark.slow
def test_kitti_raw_heldout_improves(shared, tmp_path):
    """The README's demonstration: 4 real KITTI frames train, 2 held back improve."""
    drive = shared("kitti_raw_2011_09_26", "2011_09_26", "2011_09_26_drive_unknown_sync")
    rep = adapt(drive, None, tmp_path, config=AdaptConfig(steps=40), echo=lambda s: None)
    b, a = rep["before"], rep["after"]
    assert a["photo"] < b["photo"] and a["lidar_absrel"] < b["lidar_absrel"]
