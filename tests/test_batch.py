"""fuse4d batch: several logs on a 2-worker Dask LocalCluster, one corrupt; each run laid out as `fuse4d run`."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("dask.distributed")

from fuse4d.batch import format_summary, log_name, run_one  # noqa: E402
from fuse4d.cli import app  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    from fuse4d.data.export import export_sequence
    from fuse4d.data.synthetic import synthesize
    root = tmp_path_factory.mktemp("logs")
    export_sequence(synthesize(seed=1, frames=6), root / "a")
    shutil.copytree(root / "a", root / "b")
    shutil.copytree(root / "a", root / "bad")
    (root / "bad" / "log.zarr" / "zarr.json").write_text("{not json")  # corrupt
    return root


@pytest.mark.slow  # two worker processes each import torch + open3d and run whole logs: minutes on 2 shared cores
def test_batch_on_local_cluster_one_log_corrupt(logs, tmp_path):
    out = tmp_path / "runs"
    args = ["batch", str(logs / "a"), str(logs / "bad"), str(logs / "b"), "--out", str(out),
            "--workers", "2", "--no-model", "--config", "fast", "--set", "run.write_plots=false"]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output  # one log failed
    assert "Traceback" not in r.output and "2 of 3 logs ok" in r.output
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [x["log"] for x in rows] == ["a", "bad", "b"]
    assert [x["status"] for x in rows] == ["ok", "failed", "ok"]
    assert str(logs / "bad") in rows[1]["error"] and rows[1]["frames"] == "0"
    for name in ("a", "b"):
        row = next(x for x in rows if x["log"] == name)
        assert row["frames"] == "6" and float(row["time_s"]) > 0 and float(row["ate_rmse_m"]) < 0.5
        # laid out exactly as `fuse4d run` lays it out
        assert {"trajectory.txt", "groundtruth.txt", "config.yaml", "run.zarr"} <= {p.name for p in (out / name).iterdir()}
    ta = np.loadtxt(out / "a" / "trajectory.txt")
    np.testing.assert_allclose(ta, np.loadtxt(out / "b" / "trajectory.txt"), atol=1e-9)  # same log, same result
    assert not (out / "bad").exists() or not (out / "bad" / "trajectory.txt").exists()


def test_run_one_never_raises_and_names(tmp_path):
    row = run_one(str(tmp_path / "nope"), str(tmp_path / "out"), {})
    assert row["status"] == "failed" and "no such file or directory" in row["error"]
    assert log_name("/data/x/log.zarr") == "log" and log_name("/data/val/abc/") == "abc"
    text = format_summary([row])
    assert "nope" in text and "0 of 1 logs ok" in text


def test_batch_refuses_duplicate_names(tmp_path):
    (tmp_path / "x" / "a").mkdir(parents=True)
    (tmp_path / "y" / "a").mkdir(parents=True)
    r = runner.invoke(app, ["batch", str(tmp_path / "x" / "a"), str(tmp_path / "y" / "a"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "several logs are named 'a'" in r.output


def test_model_loads_once_per_worker_process(monkeypatch):
    """Many logs on one Dask worker share one predictor (per checkpoint and precision)."""
    from fuse4d import batch
    from fuse4d.config import load_config
    from fuse4d.fusion import predict

    loads = []
    real = predict.Predictor.from_checkpoint.__func__

    def counting(cls, *a, **k):
        loads.append(a)
        return real(cls, *a, **k)
    monkeypatch.setattr(predict.Predictor, "from_checkpoint", classmethod(counting))
    monkeypatch.setattr(batch, "_PREDICTORS", {})
    cfg = load_config()
    p1, p2 = batch._worker_predictor(cfg), batch._worker_predictor(cfg)
    assert p1 is not None and p1 is p2 and len(loads) == 1
    assert batch._worker_predictor(load_config(run={"use_model": False})) is None and len(loads) == 1
