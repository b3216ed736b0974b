"""DynamicsStage end to end on a short synthetic window: per-frame outputs, the store, the run evaluator."""

from __future__ import annotations

import numpy as np
import pytest

from fuse4d.dynamics import DynamicsConfig, DynamicsStage
from fuse4d.dynamics.oracle import oracle_prediction
from fuse4d.dynamics.tracking import TRACK_COLUMNS


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """8 frames of dense_traffic seed 10 through the stage (ground-truth poses, oracle model window),
    written to a run store the way the pipeline writes it."""
    from fuse4d.data.synthetic import synthesize
    from fuse4d.store import RunStore

    seq = synthesize(seed=10, frames=8, scenario="dense_traffic")
    wp = oracle_prediction(seq)
    stage = DynamicsStage(DynamicsConfig(track_min_hits=2), seq.calibration)
    folder = tmp_path_factory.mktemp("run")
    store = RunStore.create(folder / "run.zarr", config={}, source="synthetic:dense_traffic:10", n_frames=len(seq))
    store.write_frames("timestamps", 0, seq.timestamps)
    store.write_frames("poses", 0, seq.gt_poses)
    frames, outs = [], []
    for i in range(len(seq)):
        f = seq[i]
        out = stage.add_frame(f, seq.gt_poses[i], {"window": wp, "position": i})
        store.write_points("dynamic", i, [out["point_dynamic"]])
        for t, p in out.get("revised", []):  # the backward pass revises earlier scans, as the pipeline writes them
            store.write_points("dynamic", int(np.argmin(np.abs(seq.timestamps - t))), [p])
        frames.append(f)
        outs.append(out)
    table = stage.finish()
    stage.write(store)
    store.mark_done(len(seq))
    return folder, frames, outs, table


def test_per_frame_outputs(run):
    _, frames, outs, _ = run
    for f, out in zip(frames, outs):
        assert out["point_dynamic"].shape == (len(f.points),) and out["point_dynamic"].dtype == np.float32
        assert out["pixel_dynamic"].shape == f.image.shape[:2]
        assert set(out["pixel_cues"]) == {"attention", "consistency", "head"}
    # with exact depth and poses, the consistency cue never fires on the static world
    cons = np.stack([o["pixel_cues"]["consistency"] for o in outs]) > 0.5
    static = ~np.stack([f.dynamic_mask for f in frames])
    assert (cons & static).sum() / static.sum() < 0.005


def test_store_and_evaluator(run):
    from fuse4d.dynamics.evaluation import dynamics_evaluator
    from fuse4d.store import RunStore

    folder, _, _, table = run
    store = RunStore.open(folder / "run.zarr")
    back = store.read("dynamics/tracks")
    assert set(back) == set(TRACK_COLUMNS) and len(back["t"]) == len(table["t"]) > 0
    assert np.array_equal(back["track_id"], table["track_id"])
    m = dynamics_evaluator(folder)
    assert m["dyn_iou_points"] > 0.5  # 8 frames: the first ones have no history yet
    assert m["dyn_iou_pixels_head"] > 0.95  # the oracle head is a noisy copy of the truth
    assert 0.5 < m["dyn_iou_pixels_attention"] <= 1.0
    assert np.isfinite(m["track_vel_err_mps"]) and m["track_rows_matched"] > 0.5


def test_config_from_dict_and_errors():
    from fuse4d.data.types import Calibration
    from fuse4d.errors import ConfigError

    stage = DynamicsStage({"history": 4}, Calibration())
    assert stage.config.history == 4
    with pytest.raises(ConfigError, match=r"unknown dynamics setting dynamics.histroy; did you mean dynamics.history\?"):
        DynamicsConfig.from_dict({"histroy": 3})
    with pytest.raises(ConfigError):
        DynamicsConfig(cue_weights=(1.0, 2.0))
