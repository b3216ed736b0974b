"""The pipeline's model path, wired with an oracle predictor (ground truth in WindowPrediction form).

The oracle isolates the wiring from the model's quality: every array must land
in the store under DESIGN.md's names with the right shapes and dtypes, the
relative poses must reach the pose graph, and --sensors must hide sensors.
"""

from __future__ import annotations

import numpy as np
import pytest

from fuse4d.config import load_config
from fuse4d.data.prediction import WindowPrediction
from fuse4d.data.select import parse_sensors, with_sensors
from fuse4d.data.synthetic import synthesize
from fuse4d.errors import ConfigError
from fuse4d.geometry import invert
from fuse4d.pipeline import Pipeline
from fuse4d.store import RunStore


class OraclePredictor:
    """Predicts the ground truth; relative poses carry ``noise`` (m, rad) of Gaussian error."""

    name = "oracle"

    def __init__(self, noise: float = 0.0, seed: int = 0):
        self.noise, self.rng, self.calls = noise, np.random.default_rng(seed), []

    def predict(self, window, sensors=None, state=None, motions=None, ground=None):
        frames = [window[k] for k in range(len(window))]
        self.calls.append((list(window.indices), state))
        S, gt = len(frames), window.gt_poses
        T = np.full((S, 4, 4), np.nan)
        for k in range(S):
            prev = state if k == 0 else gt[k - 1]
            if prev is not None:
                T[k] = invert(prev) @ gt[k]
                T[k, :3, 3] += self.noise * self.rng.standard_normal(3)
        cov = np.tile(np.diag([self.noise ** 2 + 1e-6] * 3 + [1e-6] * 3), (S, 1, 1))
        cov[np.isnan(T[:, 0, 0])] = np.nan
        cam = frames[0].image is not None
        lidar = frames[0].points is not None
        gates = np.tile(np.array([1.0 if cam else np.nan, 1.0 if lidar else np.nan,
                                  1.0 if frames[0].imu is not None and len(frames[0].imu) else np.nan], np.float32), (S, 1))
        wp = WindowPrediction(
            indices=np.asarray(window.indices), T_prev_cur=T, pose_cov=cov, gates=gates,
            depth=np.stack([f.depth for f in frames]).astype(np.float32) if cam else None,
            depth_conf=np.ones((S, *frames[0].image.shape[:2]), np.float32) if cam else None,
            semantics=np.stack([f.semantics for f in frames]).astype(np.uint8) if cam else None,
            dynamic=np.stack([f.dynamic_mask for f in frames]).astype(np.float32) if cam else None,
            point_semantics=[f.point_semantics.astype(np.uint8) for f in frames] if lidar else None,
            point_dynamic=[f.point_dynamic.astype(np.float32) for f in frames] if lidar else None)
        return wp, gt[-1]


@pytest.fixture(scope="module")
def seq():
    return synthesize(seed=3, frames=20, scenario="default")


def test_model_outputs_land_in_the_store_with_design_names(seq, tmp_path):
    oracle = OraclePredictor()
    cfg = load_config(run={"window": 8, "write_plots": False})
    res = Pipeline(cfg, predictor=oracle).run(seq, tmp_path / "run")
    assert res.model == "oracle"
    # windows of 8 with the recurrent state handed on: 0-7, 8-15, 16-19
    assert [c[0][0] for c in oracle.calls] == [0, 8, 16] and oracle.calls[0][1] is None
    assert oracle.calls[1][1] is not None
    store = RunStore.open(res.store_path)
    f0 = seq[0]
    H, W = f0.image.shape[:2]
    for name, dtype in (("frames/depth", np.float32), ("frames/depth_conf", np.float32),
                        ("frames/semantics", np.uint8), ("frames/dynamic", np.float32)):
        a = store.read(name)
        assert a.shape == (20, H, W) and a.dtype == dtype, name
    np.testing.assert_array_equal(store.read("frames/semantics")[5], seq[5].semantics)
    offsets = store.root["lidar/offsets"][...]
    assert offsets.dtype == np.int64 and offsets.shape == (21,)
    counts = [len(seq[i].points) for i in range(20)]
    np.testing.assert_array_equal(np.diff(offsets), counts)
    sem = store.read_points("semantics")
    # near points keep the model's class; far static points take their map voxel's (mapping/relabel.py),
    # which for this oracle model changes a few boundary points only; the shape rules (mapping/shapes.py)
    # act at any range: ground-band points at a pole's foot take the pole's class (0.5 % here)
    near = np.linalg.norm(seq[7].points[:, :3], axis=1) <= 10.0
    assert np.mean(sem[7][near] == seq[7].point_semantics[near]) > 0.99
    assert np.mean(sem[7] == seq[7].point_semantics) > 0.95
    assert store.root["lidar/semantics"].dtype == np.uint8 and store.root["lidar/dynamic"].dtype == np.float32
    gates = store.read("gates")
    assert gates.shape == (20, 3) and gates.dtype == np.float32 and np.all(gates == 1.0)
    np.testing.assert_allclose(res.gates, gates)
    assert np.isnan(store.read("net/T_prev_cur")[0]).all()  # no state before the first window
    np.testing.assert_allclose(store.read("net/T_prev_cur")[9], invert(seq.gt_poses[8]) @ seq.gt_poses[9], atol=1e-9)


def test_sensor_selection_hides_sensors():
    seq = synthesize(seed=3, frames=4, scenario="default")
    v = with_sensors(seq, parse_sensors("camera,imu"))
    assert v.sensors == {"camera", "imu"} and v.metadata["sensors_all"] == ["camera", "imu", "lidar"]
    f = v[1]
    assert f.points is None and f.point_time is None and f.image is not None and len(f.imu) > 0
    assert f.point_semantics is not None  # ground truth stays
    v = with_sensors(seq, {"lidar"})
    assert v.imu is None and v[1].imu is None and v[1].image is None and v[1].points is not None
    assert with_sensors(seq, None) is seq
    with pytest.raises(ConfigError, match="unknown sensor.*radar"):
        parse_sensors("camera,radar")


def test_camera_imu_run_gets_metric_poses_from_network_factors(seq, tmp_path):
    """--sensors camera,imu on a log that also has a LiDAR: poses come from IMU + model factors."""
    cfg = load_config(run={"window": 8, "write_plots": False, "sensors": "camera,imu"})
    res = Pipeline(cfg, predictor=OraclePredictor(noise=0.01)).run(seq, tmp_path / "ci")
    store = RunStore.open(res.store_path)
    assert "lidar" not in store  # no LiDAR outputs when the LiDAR is hidden
    assert np.isfinite(res.T_world_body).all()
    err = np.linalg.norm(res.T_world_body[:, :3, 3] - seq.gt_poses[:, :3, 3], axis=1)
    path = np.linalg.norm(np.diff(seq.gt_poses[:, :3, 3], axis=0), axis=1).sum()
    assert err.max() < 0.02 * path
