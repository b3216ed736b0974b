"""End to end on a tiny synthetic log: synth → zarr → run → trajectory.txt, store, eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fuse4d.cli import app
from fuse4d.config import load_config
from fuse4d.data.trajectory import read_tum
from fuse4d.pipeline import Pipeline

runner = CliRunner()


@pytest.fixture(scope="module")
def synth_log(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    r = runner.invoke(app, ["synth", "--frames", "30", "--seed", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_cli_run_then_eval(synth_log, tmp_path):
    run_dir = tmp_path / "run"
    r = runner.invoke(app, ["run", str(synth_log), "--out", str(run_dir), "--no-model"])
    assert r.exit_code == 0, r.output
    traj = read_tum(run_dir / "trajectory.txt")
    assert len(traj) == 30
    assert (run_dir / "trajectory.txt").read_text().startswith("# fuse4d trajectory frame: body")
    gt = read_tum(run_dir / "groundtruth.txt")
    # metric: the estimated path length matches the true one within 2 %
    assert traj.path_length == pytest.approx(gt.path_length, rel=0.02)
    r = runner.invoke(app, ["eval", str(run_dir), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert m["n_poses"] == 30
    assert m["ate_rmse_m"] < 0.005 * gt.path_length  # < 0.5 % of the distance travelled
    for key in ("ate_mean_m", "rpe_trans_rmse_m", "rpe_rot_rmse_deg", "kitti_trans_pct", "kitti_rot_deg_per_100m"):
        assert np.isfinite(m[key])
    assert (run_dir / "trajectory.png").stat().st_size > 10_000


def test_run_store_holds_poses_and_resume_refuses_other_config(synth_log, tmp_path):
    from fuse4d.data.registry import load_sequence
    from fuse4d.store import RunStore
    seq = load_sequence(synth_log)[:12]
    cfg = load_config(run={"use_model": False})
    res = Pipeline(cfg).run(seq, tmp_path / "r")
    store = RunStore.open(tmp_path / "r" / "run.zarr")
    assert store.frames_done == 12
    np.testing.assert_allclose(store.read("poses"), res.T_world_body)
    # a finished run is never replaced without overwrite, whatever the config (the engine's store rules)
    from fuse4d.errors import DataError
    with pytest.raises(DataError, match="holds a finished run; pass --overwrite"):
        Pipeline(cfg).run(seq, tmp_path / "r")
    with pytest.raises(DataError, match="holds a finished run"):
        Pipeline(load_config(run={"use_model": False, "window": 8})).run(seq, tmp_path / "r")
