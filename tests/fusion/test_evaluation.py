"""The fusion evaluator on hand-made run stores over a short synthetic log: perfect
predictions score perfectly, corrupted ones by the expected amounts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fuse4d import metrics
from fuse4d.data.classes import BUILDING, ROAD, SIDEWALK
from fuse4d.data.synthetic import synthesize
from fuse4d.fusion.evaluation import evaluate_store, fusion_evaluator, gate_means, net_pose_errors
from fuse4d.geometry import invert, make_T
from fuse4d.store import RunStore
from scipy.spatial.transform import Rotation

N = 8
SEED, SCENARIO = 12, "camera_dark"        # camera dark over frames [2, 4)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """The synthetic log written as a zarr log (the run's readable source) and its frames."""
    from fuse4d.data.export import export_sequence
    from fuse4d.data.registry import load_sequence
    seq = synthesize(seed=SEED, frames=N, scenario=SCENARIO)
    path = export_sequence(seq, tmp_path_factory.mktemp("log") / "log.zarr", format="zarr")
    seq = load_sequence(path)
    return path, seq, [seq[i] for i in range(N)]


def _gates(n: int) -> np.ndarray:
    g = np.full((n, 3), np.nan, np.float32)
    g[:, 0], g[:, 1] = 0.9, 0.7
    g[2:4, 0] = 0.2                              # rgb down while the camera is dark
    return g


def make_run(tmp, source: str, seq, frames, sel=slice(None), *, depth_scale=1.0, sem_map=None,
             dyn_none=False, net_offset=None, arrays=("depth", "semantics", "dynamic", "points", "net")):
    """A run store holding the ground truth of ``frames[sel]`` as its 'predictions', optionally corrupted."""
    fr = frames[sel]
    idx = np.arange(len(frames))[sel]
    data = {"start": sel.start or 0, "stop": sel.stop, "step": sel.step or 1}
    tmp.mkdir(parents=True, exist_ok=True)
    store = RunStore.create(tmp / "run.zarr", {"data": data}, source=source, n_frames=len(fr), overwrite=True)
    store.write_frames("timestamps", 0, seq.timestamps[idx])
    remap = np.arange(256, dtype=np.uint8)
    for a, b in (sem_map or {}).items():
        remap[a] = b
    if "depth" in arrays:
        store.write_frames("frames/depth", 0, np.stack([f.depth * depth_scale for f in fr]).astype(np.float32))
        store.write_frames("frames/depth_conf", 0, np.ones((len(fr), *fr[0].depth.shape), np.float32))
    if "semantics" in arrays:
        store.write_frames("frames/semantics", 0, np.stack([remap[f.semantics] for f in fr]))
    if "dynamic" in arrays:
        dyn = np.stack([f.dynamic_mask for f in fr]).astype(np.float32) * (0.0 if dyn_none else 0.9)
        store.write_frames("frames/dynamic", 0, dyn)
    if "points" in arrays:
        store.write_points("semantics", 0, [remap[f.point_semantics] for f in fr])
        store.write_points("dynamic", 0, [f.point_dynamic.astype(np.float32) * (0.0 if dyn_none else 1.0) for f in fr])
    if "net" in arrays:
        gt = seq.gt_poses[idx]
        rel = np.concatenate([np.full((1, 4, 4), np.nan), invert(gt[:-1]) @ gt[1:]])
        if net_offset is not None:
            rel = rel @ net_offset
        store.write_frames("net/T_prev_cur", 0, rel)
        store.write_frames("net/pose_cov", 0, np.tile(np.eye(6) * 1e-4, (len(fr), 1, 1)))
    store.write_frames("gates", 0, _gates(len(fr)))
    store.mark_done(len(fr))
    return store


def test_perfect_predictions(tmp_path, log):
    path, seq, frames = log
    make_run(tmp_path, str(path), seq, frames)
    (tmp_path / "degradations.json").write_text(json.dumps([{"name": "camera_dark", "start": 2, "stop": 4}]))
    m = fusion_evaluator(tmp_path)
    assert m["depth_absrel"] == 0.0
    assert m["sem_miou"] == 1.0 and m["sem_miou_points"] == 1.0
    assert m["dyn_iou_pixels"] == 1.0 and m["dyn_iou_points"] == 1.0
    assert m["net_rpe_trans_m"] < 1e-9 and m["net_rpe_rot_deg"] < 1e-5 and m["net_n_pairs"] == N - 1
    assert m["gate_rgb_clean"] == pytest.approx(0.9) and m["gate_rgb_camera_dark"] == pytest.approx(0.2)
    assert m["gate_lidar_clean"] == pytest.approx(0.7) and m["gate_lidar_camera_dark"] == pytest.approx(0.7)
    assert not any(k.startswith("gate_imu") for k in m)     # NaN = modality absent
    assert "depth_absrel_lidar" not in m                      # the synthetic depth is ground truth


def test_corrupted_predictions(tmp_path, log):
    path, seq, frames = log
    offset = make_T(Rotation.from_rotvec([0, 0, math.radians(1.0)]).as_matrix(), [0.1, 0.0, 0.0])
    store = make_run(tmp_path, str(path), seq, frames, depth_scale=1.1, sem_map={ROAD: SIDEWALK, BUILDING: 0},
                     dyn_none=True, net_offset=offset)
    m = evaluate_store(store, seq, tmp_path)
    assert m["depth_absrel"] == pytest.approx(0.1, rel=1e-5)
    # pooled mIoU equals metrics.iou over all labelled pixels of the run
    gt = np.stack([f.semantics for f in frames])
    remap = np.arange(256, dtype=np.uint8)
    remap[ROAD], remap[BUILDING] = SIDEWALK, 0
    _, expected = metrics.iou(remap[gt], gt, 10, ignore_index=0)
    assert m["sem_miou"] == pytest.approx(expected, rel=1e-12) and m["sem_miou"] < 0.8
    gtp = np.concatenate([f.point_semantics for f in frames])
    assert m["sem_miou_points"] == pytest.approx(metrics.iou(remap[gtp], gtp, 10, ignore_index=0)[1], rel=1e-12)
    assert m["dyn_iou_pixels"] == 0.0 and m["dyn_iou_points"] == 0.0
    assert m["net_rpe_trans_m"] == pytest.approx(0.1, rel=1e-6)
    assert m["net_rpe_rot_deg"] == pytest.approx(1.0, rel=1e-5)
    # without degradations.json the source's span is used
    assert m["gate_rgb_camera_dark"] == pytest.approx(0.2)


def test_subset_run_and_absent_arrays(tmp_path, log):
    path, seq, frames = log
    sel = slice(1, 7, 2)                                      # run frames = source frames 1, 3, 5
    store = make_run(tmp_path, str(path), seq, frames, sel, depth_scale=1.2, arrays=("depth", "net"))
    m = evaluate_store(store, seq, tmp_path)
    assert m["depth_absrel"] == pytest.approx(0.2, rel=1e-5)
    assert m["net_rpe_trans_m"] < 1e-9 and m["net_n_pairs"] == 2  # pairs (1,3), (3,5)
    assert not {"sem_miou", "sem_miou_points", "dyn_iou_pixels", "dyn_iou_points"} & set(m)
    # source frame 3 (run frame 1, rgb 0.9) is the only one in the source's camera_dark span [2, 4);
    # run frames 0 and 2 (rgb 0.9 and 0.2, as _gates writes per run frame) are clean
    assert m["gate_rgb_camera_dark"] == pytest.approx(0.9) and m["gate_rgb_clean"] == pytest.approx(0.55)


def test_synthetic_source_resynthesised_and_geometric_run(tmp_path, log):
    _, seq, frames = log
    make_run(tmp_path / "a", f"synthetic:{SCENARIO}:{SEED}", seq, frames[:4], slice(None),
             arrays=("depth",))
    m = fusion_evaluator(tmp_path / "a")
    assert m["depth_absrel"] == 0.0 and "net_rpe_trans_m" not in m
    store = RunStore.create(tmp_path / "b" / "run.zarr", {}, source="synthetic:default:1", n_frames=3)
    store.mark_done(3)
    assert fusion_evaluator(tmp_path / "b") == {}              # geometric run: gates all NaN
    assert fusion_evaluator(tmp_path / "none") == {}


def test_gate_means_and_net_errors_units():
    g = np.array([[1.0, 0.5, np.nan], [0.0, 0.5, np.nan], [0.5, np.nan, 0.25]], np.float32)
    m = gate_means(g, [("lidar_dropout", 2, 3)])
    assert m == {"gate_rgb_clean": 0.5, "gate_lidar_clean": 0.5, "gate_rgb_lidar_dropout": 0.5,
                 "gate_imu_lidar_dropout": 0.25}
    poses = np.tile(np.eye(4), (3, 1, 1))
    poses[:, 0, 3] = [0.0, 1.0, 2.0]
    pred = np.tile(np.eye(4), (3, 1, 1))
    pred[1:, 0, 3] = [1.3, 0.6]                               # errors 0.3 and 0.4 m
    assert net_pose_errors(pred, poses)["net_rpe_trans_m"] == pytest.approx(math.sqrt((0.09 + 0.16) / 2))
