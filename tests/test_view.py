"""``fuse4d view``: a self-contained HTML report that renders in headless Chromium.

The fast tests build a run folder by hand (a small hand-made zarr log as the
source, a run store with poses, gates, model frames, maps and tracks), so every
panel is exercised in seconds; the slow ones render real ``fuse4d run`` folders.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fuse4d.cli import app
from fuse4d.data.trajectory import write_tum
from fuse4d.data.types import Calibration, Frame, Sequence
from fuse4d.data.zarr_log import write_sequence
from fuse4d.store import RunStore
from fuse4d.view import write_report

S, H, W = 8, 48, 64
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _pose(x: float, y: float, yaw: float) -> np.ndarray:
    T = np.eye(4)
    T[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    T[:2, 3] = x, y
    return T


def _log(path: Path) -> Path:
    """A hand-made 8-frame camera + LiDAR log (zarr) with colourful images."""
    rng = np.random.default_rng(3)
    t = 10.0 + 0.1 * np.arange(S)
    gt = np.stack([_pose(2.0 * i, 0.3 * i * i / S, 0.05 * i) for i in range(S)])
    frames = []
    for i in range(S):
        img = np.zeros((H, W, 3), np.uint8)
        img[: H // 2] = (70, 130, 220)  # sky
        img[H // 2:] = (90, 90, 90)     # road
        img[H // 2:, 8 * i:8 * i + 12] = (220, 40, 40)  # a red car moving across
        f = Frame(index=i, timestamp=float(t[i]), image=img, T_world_body=gt[i])
        f.points = rng.normal(0, 5, (50, 4)).astype(np.float32)
        frames.append(f)
    calib = Calibration(K=np.array([[40.0, 0, W / 2], [0, 40, H / 2], [0, 0, 1]]), image_size=(W, H))
    seq = Sequence(t, lambda i: frames[i], calib, {"camera", "lidar"}, None, gt, {"source": "hand-made"},
                   name="handmade")
    return write_sequence(seq, path)


def _run(tmp_path: Path, model: bool = True, maps: bool = True, source: Path | None = None) -> Path:
    """A run folder as ``fuse4d run`` lays it out, written by hand (poses 5 cm off the truth)."""
    log_path = source or _log(tmp_path / "log.zarr")
    run = tmp_path / "run"
    run.mkdir()
    t = 10.0 + 0.1 * np.arange(S)
    gt = np.stack([_pose(2.0 * i, 0.3 * i * i / S, 0.05 * i) for i in range(S)])
    est = gt.copy()
    est[:, 1, 3] += 0.05 * np.sin(np.arange(S))
    store = RunStore.create(run / "run.zarr", config={"data": {"start": 0, "stop": None, "step": 1}},
                            source=str(log_path), n_frames=S, window=4)
    store.write_frames("poses", 0, est)
    store.write_frames("timestamps", 0, t)
    store.update_meta(sensors=["camera", "lidar"], model="tiny" if model else None,
                      estimation={"frame": "body", "status": {"ok": S}, "gaps": [{"start": 2, "stop": 4,
                                                                                  "carried_by": "imu"}]},
                      loops=[{"i": 0, "j": 6}])
    if model:
        g = np.stack([np.linspace(0.2, 0.8, S), np.linspace(0.7, 0.1, S), np.full(S, 0.1)], 1).astype(np.float32)
        store.write_frames("gates", 0, g)
        rng = np.random.default_rng(0)
        store.write_frames("frames/depth", 0, rng.uniform(2, 30, (S, H // 2, W // 2)).astype(np.float32))
        store.write_frames("frames/semantics", 0, rng.integers(0, 10, (S, H // 2, W // 2), dtype=np.uint8))
        dyn = np.zeros((S, H // 2, W // 2), np.float32)
        dyn[:, 12:, 4:10] = 0.9
        store.write_frames("frames/dynamic", 0, dyn)
        (run / "degradations.json").write_text(json.dumps([{"name": "camera_dark", "start": 3, "stop": 5,
                                                            "t_start": 10.3, "t_stop": 10.4}]))
    if maps:
        ijk = np.stack(np.meshgrid(np.arange(20), np.arange(10), np.arange(2), indexing="ij"), -1).reshape(-1, 3)
        store.write_map("maps/occupancy", {"ijk": ijk.astype(np.int32), "labels": (ijk[:, 0] // 5).astype(np.uint8),
                                           "log_odds": np.where(ijk[:, 2] == 0, 1.0, -1.0).astype(np.float32)},
                        {"origin": [-2.0, -2.0, -1.0], "resolution": 1.0, "threshold": 0.0})
        h = np.add.outer(np.linspace(0, 2, 30), np.linspace(0, 1, 20)).astype(np.float32)
        store.write_map("maps/elevation", {"height": h, "variance": np.full_like(h, 0.01),
                                           "traversable": (h < 1.5).astype(np.uint8),
                                           "semantics": np.ones(h.shape, np.uint8)},
                        {"origin": [-5.0, -5.0], "resolution": 0.5})
        store.write_map("dynamics/tracks", {"track_id": np.repeat([1, 2], 4), "t": np.tile(t[:4], 2),
                                            "x": np.r_[np.arange(4.0), 5 + np.arange(4.0)], "y": np.r_[np.ones(4), -np.ones(4)]})
    store.finish()
    write_tum(run / "trajectory.txt", t, est)
    write_tum(run / "groundtruth.txt", t, gt, comment="(ground truth)")
    return run


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def _section_titles(page: str) -> list[str]:
    return re.findall(r"<h2>([^<]+)</h2>", page)


def _self_contained(page: str) -> None:
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert not re.search(r"(src|href)\s*=\s*['\"](?!data:)", page), "only data: URIs may be referenced"
    assert "http://" not in page and "https://" not in page


def _rgb(png: bytes) -> np.ndarray:
    import matplotlib.image as mpimg
    a = mpimg.imread(io.BytesIO(png), format="png")
    return (a[..., :3] * 255).round().astype(np.uint8) if a.dtype != np.uint8 else a[..., :3]


def _not_blank(rgb: np.ndarray) -> None:
    """A rendered page with its figures: many colours, and colourful pixels (the plots), not just text."""
    flat = rgb.reshape(-1, 3).astype(np.int32)
    distinct = len(np.unique(flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]))
    saturation = flat.max(1) - flat.min(1)
    assert distinct > 200, f"only {distinct} distinct colours"
    assert (saturation > 60).mean() > 0.01, f"only {(saturation > 60).mean():.2%} colourful pixels"
    assert flat.std() > 10


def test_report_has_every_panel_and_is_self_contained(tmp_path):
    run = _run(tmp_path)
    out = write_report(run, tmp_path / "r" / "report.html")
    page = out.read_text()
    _self_contained(page)
    assert _section_titles(page) == ["Trajectory", "Maps", "Frames", "Gate weights", "Notes",
                                     "Metrics against ground truth"]
    pngs = _images(page)
    assert len(pngs) == 4
    for png in pngs:
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        rgb = _rgb(png).reshape(-1, 3).astype(np.int32)
        assert len(np.unique(rgb, axis=0)) > 50 and rgb.std() > 10
    # the trajectory's numbers: 5 cm sinusoidal offset → ATE from evaluate_run in the metrics table
    ate = float(re.search(r"<td>ate_rmse_m</td><td class='num'>([0-9.e-]+)</td>", page).group(1))
    assert 0.01 < ate < 0.05
    assert "frames 2–3 carried by imu" in page and "0↔6" in page and "camera_dark" in page
    assert "rows: depth, semantics, dynamic" in page and "2 object track(s)" in page
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # nothing half-written left beside it


def test_run_without_model_maps_or_source_still_renders(tmp_path):
    run = _run(tmp_path, model=False, maps=False, source=tmp_path / "gone.zarr")
    (run / "groundtruth.txt").unlink()
    page = write_report(run).read_text()  # default: RUN/report.html
    assert (run / "report.html").is_file()
    assert _section_titles(page) == ["Trajectory", "Notes"]
    assert "is gone" in page and "none (geometric path)" in page
    assert len(_images(page)) == 1
    _self_contained(page)


def test_cli_view_and_bad_run(tmp_path):
    run = _run(tmp_path, maps=False)
    r = CliRunner().invoke(app, ["view", str(run), "--out", str(tmp_path / "v.html"), "--no-metrics"])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "v.html").read_text()
    assert "Metrics against ground truth" not in page and "Gate weights" in page
    for bad, msg in ((tmp_path / "missing", "run folder not found"), (tmp_path / "log.zarr", "not a fuse4d run"),
                     (run / "trajectory.txt", "not a fuse4d run folder")):
        r = CliRunner().invoke(app, ["view", str(bad)])
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1


def _screenshot(html: Path, tmp_path: Path, size=(1100, 2600)) -> np.ndarray:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package `chromium`)")
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={shot}",
           f"--window-size={size[0]},{size[1]}", html.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    return _rgb(shot.read_bytes())


def test_report_renders_in_headless_chromium(tmp_path):
    page = write_report(_run(tmp_path), tmp_path / "report.html", with_metrics=False)
    rgb = _screenshot(page, tmp_path)
    assert rgb.shape[:2] == (2600, 1100)
    _not_blank(rgb)
    # a blank page (the same HTML without its figures) fails the same check
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<img [^>]+>", "", page.read_text()))
    with pytest.raises(AssertionError):
        _not_blank(_screenshot(bare, tmp_path / "b"))


def _fuse4d(*args: str) -> None:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output


@pytest.mark.slow
@pytest.mark.parametrize("model", [False, True])
def test_real_run_renders_in_chromium(tmp_path, model):
    """``fuse4d synth`` → ``fuse4d run`` (geometric path, and the shipped model) → ``fuse4d view`` → Chromium."""
    _fuse4d("synth", "--seed", "0", "--frames", "12", "--out", str(tmp_path / "log"))
    _fuse4d("run", str(tmp_path / "log"), "--out", str(tmp_path / "run"), "--config", "fast",
            *(() if model else ("--no-model",)))
    _fuse4d("view", str(tmp_path / "run"))
    page = (tmp_path / "run" / "report.html").read_text()
    _self_contained(page)
    titles = _section_titles(page)
    assert titles[:3] == ["Trajectory", "Maps", "Frames"] and "Metrics against ground truth" in titles
    store = RunStore.open(tmp_path / "run" / "run.zarr")
    assert ("Gate weights" in titles) == (store.meta.get("model") is not None)
    _not_blank(_screenshot(tmp_path / "run" / "report.html", tmp_path))
