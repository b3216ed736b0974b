"""ONNX export (camera + LiDAR + IMU graph, dynamic window size): onnxruntime's outputs match
torch fp32 within 1e-4 for two window sizes; the int8 graph is smaller and close to fp32.
Skipped when onnx/onnxruntime (the ``onnx`` extra) are absent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from fuse4d.errors import ConfigError, DataError  # noqa: E402
from fuse4d.fusion.onnx_export import (INPUTS, OUTPUTS, OUTPUTS_CAM_IMU, ExportableModel,  # noqa: E402
                                       example_inputs, export_onnx, initial_state, onnx_session, run_onnx)
from fuse4d.fusion.predict import Predictor  # noqa: E402

ATOL, RTOL = 1e-4, 1e-5      # |onnx - torch| <= ATOL + RTOL * |torch| (depth reaches 80 m)


def _model():
    try:
        return Predictor.from_checkpoint().model
    except DataError:   # the checkpoint and model code are being replaced together
        return Predictor.untrained(seed=0).model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    model = _model()
    d = tmp_path_factory.mktemp("onnx")
    f32 = export_onnx(model, d / "fusion.onnx")
    return model, f32, d


def _assert_match(out: dict, ref, names) -> None:
    """ONNX outputs ``out`` (by name) equal torch's ``ref`` (in ``names`` order): same shapes, NaN
    where torch has NaN, and within ATOL + RTOL·|ref| elsewhere."""
    for k, r in zip(names, ref):
        r = r.numpy()
        assert out[k].shape == r.shape, k
        assert np.array_equal(np.isnan(out[k]), np.isnan(r)), k
        err = np.nan_to_num(np.abs(out[k] - r) - RTOL * np.abs(r))
        assert err.max() <= ATOL, (k, float(err.max()))


@pytest.mark.parametrize("S", [2, 5])
def test_onnx_matches_torch(exported, S):
    model, f32, _ = exported
    sess = onnx_session(f32)
    x, st = example_inputs(model.cfg, S, seed=S), initial_state(model)
    with torch.no_grad():
        ref = ExportableModel(model)(*x, *st)
    out = run_onnx(sess, *x, *st)
    _assert_match(out, ref, OUTPUTS)
    # a continuation window: the state handed on by the graph drives the next window as in torch
    x2 = example_inputs(model.cfg, S, seed=S + 100)
    with torch.no_grad():
        ref2 = ExportableModel(model)(*x2, ref[-2], ref[-1])
    out2 = run_onnx(sess, *x2, out["state_tokens_out"], out["last_cam_out"])
    np.testing.assert_allclose(out2["pose_t"], ref2[OUTPUTS.index("pose_t")].numpy(), atol=ATOL, rtol=RTOL)


def test_camera_imu_graph_matches_torch(exported):
    """The visual-inertial graph: no LiDAR inputs or point outputs, same 1e-4 agreement, the
    LiDAR gate absent (NaN) as in torch, and the state handed on drives the next window."""
    model, _, d = exported
    path = export_onnx(model, d / "fusion_cam_imu.onnx", sensors="camera,imu")
    sess = onnx_session(path)
    assert [i.name for i in sess.get_inputs()] == ["image", "imu", "state_tokens", "last_cam"]
    assert [o.name for o in sess.get_outputs()] == list(OUTPUTS_CAM_IMU)
    st = initial_state(model)
    for S in (2, 6):                       # dynamic window size
        x = example_inputs(model.cfg, S, seed=S, sensors=("camera", "imu"))
        assert [t.shape[1] for t in x] == [S, S] and x[0].dim() == 5
        with torch.no_grad():
            ref = ExportableModel(model, ("imu", "camera"))(*x, *st)
            full = model({"image": x[0], "imu": x[1]}, {"tokens": st[0], "last_cam": st[1]})
        out = run_onnx(sess, *x, *st)
        _assert_match(out, ref, OUTPUTS_CAM_IMU)
        torch.testing.assert_close(ref[0], full["depth"], rtol=0, atol=0)    # the wrapper is the model itself
        g = out["gates"][0]
        assert np.isnan(g[:, 1]).all() and np.isfinite(g[:, [0, 2]]).all()  # rgb, lidar, imu, depth
    x2 = example_inputs(model.cfg, 3, seed=50, sensors=("camera", "imu"))
    with torch.no_grad():
        ref2 = ExportableModel(model, ("camera", "imu"))(*x2, ref[-2], ref[-1])
    out2 = run_onnx(sess, *x2, out["state_tokens_out"], out["last_cam_out"])
    np.testing.assert_allclose(out2["pose_t"], ref2[OUTPUTS_CAM_IMU.index("pose_t")].numpy(), atol=ATOL, rtol=RTOL)
    with pytest.raises(ValueError, match="takes 4 inputs"):
        run_onnx(sess, *example_inputs(model.cfg, 2), *st)
    with pytest.raises(ConfigError, match="camera,imu"):
        export_onnx(model, d / "lidar_only.onnx", sensors="lidar")


@pytest.fixture(scope="module")
def real_window(exported):
    """Calibration feeds from a TRAIN seed and a held-out (test-split) window to compare on."""
    from fuse4d.data.synthetic import split_of, synthesize
    from fuse4d.fusion.inputs import window_inputs
    from fuse4d.fusion.onnx_export import calibration_feeds
    model = exported[0]
    feeds = calibration_feeds(model, seeds=1, frames=4, window=4)
    seq = synthesize(0, frames=4)
    assert split_of(0) == "test"
    x = window_inputs([seq[i] for i in range(4)], seq.calibration, model.cfg, set(seq.sensors))[0]
    return feeds, (x["image"], x["lidar_view"], x["range"], x["imu"])


def test_static_int8_graph_is_quantised(exported):
    """Mechanics on random windows (fast); closeness on real frames is the slow test below."""
    import onnx
    model, f32, d = exported
    st = initial_state(model)
    feeds = [dict(zip(INPUTS, (np.asarray(v, np.float32) for v in (*example_inputs(model.cfg, 2, seed=k), *st))))
             for k in range(2)]
    q = export_onnx(model, d / "fusion_int8_rand.onnx", int8=True, calibration=feeds)
    ops = [n.op_type for n in onnx.load(str(q)).graph.node]
    n_conv = ops.count("Conv")
    assert n_conv > 10 and ops.count("DequantizeLinear") > 2 * n_conv      # weights and activations of every conv
    assert q.stat().st_size < f32.stat().st_size
    out = run_onnx(onnx_session(q), *example_inputs(model.cfg, 2, seed=9), *st)
    assert np.isfinite(out["depth"]).all() and out["depth"].shape[:2] == (1, 2)


@pytest.mark.slow
def test_static_int8_graph_is_close_on_real_frames(exported, real_window):
    model, f32, d = exported
    feeds, x = real_window
    q = export_onnx(model, d / "fusion_int8.onnx", int8=True, calibration=feeds)
    st = initial_state(model)
    a, b = run_onnx(onnx_session(f32), *x, *st), run_onnx(onnx_session(q), *x, *st)
    rel = np.abs(a["depth"] - b["depth"]) / a["depth"]
    assert np.median(rel) < 0.05 and 0 < rel.max()
    assert np.mean(a["sem_logits"].argmax(2) == b["sem_logits"].argmax(2)) > 0.9


def test_dynamic_int8_graph_is_smaller_and_close(exported):
    model, f32, d = exported
    q = export_onnx(model, d / "fusion_int8_dyn.onnx", int8="dynamic")
    assert q.stat().st_size < 0.6 * f32.stat().st_size
    x, st = example_inputs(model.cfg, 3, seed=7), initial_state(model)
    a, b = run_onnx(onnx_session(f32), *x, *st), run_onnx(onnx_session(q), *x, *st)
    rel = np.abs(a["depth"] - b["depth"]) / a["depth"]
    assert np.median(rel) < 0.02 and 0 < rel.max()
    assert np.mean(a["sem_logits"].argmax(2) == b["sem_logits"].argmax(2)) > 0.9
    with pytest.raises(ConfigError, match="static or dynamic"):
        export_onnx(model, d / "x.onnx", int8="int4")
