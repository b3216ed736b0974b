"""``fuse4d view RUN``: one self-contained HTML report of a run folder.

Every figure is a PNG embedded as base64 (no external assets, no scripts, no
network). Panels, each only when the run has the data:

- trajectory: top view of the estimate (SE(3)-aligned) against ground truth, and
  its position error over time; LiDAR gaps and verified loop closures marked;
- maps: bird's-eye occupancy by class with a legend, elevation and
  traversability (:func:`fuse4d.mapping.report.plot_report`), object tracks;
- frames: a strip of camera images from the source log with the run's depth,
  semantics and dynamic masks (``frames/*``) (:func:`fuse4d.plots.plot_prediction`);
  skipped with a note when the source log is gone;
- gates: modality weights over time with degraded spans (:func:`fuse4d.plots.plot_gates`);
- notes: source, sensors, model, estimator status, loops, gaps, skipped frames,
  and the metrics of :func:`fuse4d.evaluation.evaluate_run` when ground truth exists.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fuse4d.errors import DataError, Fuse4dError

log = logging.getLogger(__name__)

#: frames shown in the strip
STRIP_FRAMES = 4


def open_run_store(run: str | Path):
    """The :class:`~fuse4d.store.RunStore` and the run folder of ``run`` (a run folder or its ``run.zarr``).

    Raises:
        DataError: no such path, or not a fuse4d run.
    """
    from fuse4d.rundir import STORE_NAME
    from fuse4d.store import RunStore
    run = Path(run).expanduser().absolute()
    if not run.exists():
        raise DataError(run, "run folder not found")
    if (run / STORE_NAME).is_dir():
        return RunStore.open(run / STORE_NAME), run
    if run.is_dir() and (run / "zarr.json").is_file():
        return RunStore.open(run), run.parent
    raise DataError(run, f"not a fuse4d run folder (no {STORE_NAME}); give the folder `fuse4d run --out` wrote")


def _png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def _via_file(draw) -> bytes:
    """PNG bytes of a plotting function that writes a file: ``draw(path)``."""
    with tempfile.TemporaryDirectory(prefix="fuse4d-view-") as d:
        path = Path(d) / "panel.png"
        draw(path)
        return path.read_bytes()


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# -- panels: each returns (title, png bytes, caption) or None -----------------------------------
def _trajectory_panel(store, run_dir: Path) -> tuple[str, bytes, str] | None:
    """Top view of estimate vs ground truth, and the position error over time."""
    from fuse4d import metrics
    from fuse4d.data.trajectory import Trajectory, read_tum
    est_path, gt_path = run_dir / "trajectory.txt", run_dir / "groundtruth.txt"
    if est_path.is_file():
        est = read_tum(est_path)
    elif "poses" in store and "timestamps" in store:
        est = Trajectory(store.read("timestamps"), store.read("poses"))
    else:
        return None
    ok = np.isfinite(est.poses[:, 0, 0]) & np.isfinite(est.t)
    if not ok.any():
        return None
    est = Trajectory(est.t[ok], est.poses[ok], est.frame)
    ref = read_tum(gt_path) if gt_path.is_file() else None
    P, err, t_err, caption = est.poses, None, None, "estimate only (the input has no ground truth)"
    if ref is not None:
        i_est, i_ref = metrics.associate(est.t, ref.t, 0.01)
        if len(i_est) >= 3:
            P, _, _ = metrics.align(est.poses[i_est], ref.poses[i_ref], "se3")
            err = np.linalg.norm(P[:, :3, 3] - ref.poses[i_ref, :3, 3], axis=1)
            t_err = est.t[i_est] - est.t[0]
            caption = (f"estimate SE(3)-aligned to ground truth over {len(err)} poses: ATE rmse "
                       f"{math.sqrt(float(np.mean(err ** 2))):.3f} m, max {float(err.max()):.3f} m")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 if err is not None else 1, figsize=(13 if err is not None else 6.5, 5.5),
                             squeeze=False)
    ax = axes[0, 0]
    if ref is not None:
        ax.plot(ref.poses[:, 0, 3], ref.poses[:, 1, 3], "k--", lw=1.2, label="ground truth")
    ax.plot(P[:, 0, 3], P[:, 1, 3], "C0-", lw=1.5, label="estimate")
    ax.plot(P[:1, 0, 3], P[:1, 1, 3], "go", label="start")
    meta = store.meta
    n = len(P)
    for g in (meta.get("estimation") or {}).get("gaps") or []:
        a, b = int(g.get("start", 0)), min(int(g.get("stop", 0)), n)
        if b > a:
            ax.plot(P[a:b, 0, 3], P[a:b, 1, 3], "r-", lw=2.5)
    for k, lc in enumerate(meta.get("loops") or []):
        i, j = int(lc.get("i", -1)), int(lc.get("j", -1))
        if 0 <= i < n and 0 <= j < n:
            ax.plot(P[[i, j], 0, 3], P[[i, j], 1, 3], "m-", lw=2, label="loop closure" if k == 0 else None)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title("trajectory, top view")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if err is not None:
        ax = axes[0, 1]
        ax.plot(t_err, err, "C3-", lw=1.2)
        ax.set_xlabel("t since start (s)")
        ax.set_ylabel("position error (m)")
        ax.set_title("error over time (after alignment)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return "Trajectory", _png(fig), caption


def _map_dict(store, name: str, keys: tuple[str, ...]) -> dict | None:
    if name not in store:
        return None
    arrays = store.read(name)
    if not isinstance(arrays, dict) or not set(keys) <= set(arrays):
        return None
    return {**arrays, **store.attrs(name)}


def _maps_panel(store, trajectory: np.ndarray | None) -> tuple[str, bytes, str] | None:
    """Occupancy by class, elevation, traversability (mapping/report.py), plus object tracks."""
    occ = _map_dict(store, "maps/occupancy", ("ijk", "labels", "log_odds"))
    el = _map_dict(store, "maps/elevation", ("height", "traversable"))
    if occ is None and el is None:
        return None
    from fuse4d.mapping.report import plot_report
    panels, caption = [], "occupancy: class of the highest occupied voxel per column"
    tracks = store.read("dynamics/tracks") if "dynamics/tracks" in store else None
    if isinstance(tracks, dict) and len(tracks.get("track_id", ())):
        ids = np.asarray(tracks["track_id"])
        caption += f"; {len(np.unique(ids))} object track(s)"

        def draw_tracks(ax):
            for k, tid in enumerate(np.unique(ids)):
                sel = ids == tid
                ax.plot(tracks["x"][sel], tracks["y"][sel], "-o", ms=2, lw=1, color=f"C{k % 10}")
            if trajectory is not None:
                ax.plot(trajectory[:, 0], trajectory[:, 1], "k-", lw=0.8, label="ego")
                ax.legend(fontsize=7)
            ax.set_aspect("equal")
            ax.set_title("object tracks (world frame)")
            ax.set_xlabel("x (m)")
            ax.set_ylabel("y (m)")
        panels.append(draw_tracks)
    maps = {k: v for k, v in (("occupancy", occ), ("elevation", el)) if v is not None}
    png = _via_file(lambda p: plot_report(maps, p, extra_panels=panels, trajectory=trajectory, title="maps"))
    return "Maps", png, caption


def _resize_nearest(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    r = np.arange(hw[0]) * a.shape[0] // hw[0]
    c = np.arange(hw[1]) * a.shape[1] // hw[1]
    return a[r][:, c]


def _frames_panel(store, notes: list[str]) -> tuple[str, bytes, str] | None:
    """Camera images of the source log with the run's depth / semantics / dynamic masks."""
    from fuse4d.fusion.evaluation import open_source, source_indices
    from fuse4d.plots import plot_prediction
    try:
        seq = open_source(store.meta, store.n_frames)
    except Fuse4dError as e:
        notes.append(f"frame strip skipped: the source log cannot be read ({e})")
        return None
    if seq is None:
        notes.append(f"frame strip skipped: the source log {store.meta.get('source')!r} is gone")
        return None
    if "camera" not in seq.sensors:
        return None
    idx = source_indices(store, seq)
    rows = np.flatnonzero(idx >= 0)
    if not len(rows):
        notes.append("frame strip skipped: no run frame matches a frame of the source log")
        return None
    pick = rows[np.unique(np.linspace(0, len(rows) - 1, min(STRIP_FRAMES, len(rows))).round().astype(int))]
    images = [seq[int(idx[k])].image for k in pick]
    keep = [k for k, im in zip(pick, images) if im is not None]
    images = [im for im in images if im is not None]
    if not images:
        return None
    hw = images[0].shape[:2]
    layers = {}
    for name in ("frames/depth", "frames/semantics", "frames/dynamic"):
        if name in store:
            arr = np.asarray(store.root[name].get_orthogonal_selection((np.asarray(keep),)))
            if name != "frames/dynamic" or np.isfinite(arr).any():
                layers[name] = np.stack([_resize_nearest(np.nan_to_num(a, nan=0.0), hw) for a in arr]) \
                    if name == "frames/dynamic" else arr
    shown = ", ".join(n.split("/")[1] for n in layers) or "no model outputs in this run"
    png = _via_file(lambda p: plot_prediction(p, images, layers.get("frames/depth"), layers.get("frames/semantics"),
                                              layers.get("frames/dynamic"), titles=[f"frame {int(k)}" for k in keep]))
    return "Frames", png, f"images from the source log; rows: {shown}"


def _gates_panel(store, run_dir: Path) -> tuple[str, bytes, str] | None:
    """Modality gate weights over time, degraded spans shaded."""
    if "gates" not in store or "timestamps" not in store:
        return None
    gates, t = np.asarray(store.read("gates"), np.float64), np.asarray(store.read("timestamps"), np.float64)
    if not np.isfinite(gates).any() or not np.isfinite(t).any():
        return None
    spans = []
    deg = run_dir / "degradations.json"
    if deg.is_file():
        try:
            spans = [s for s in json.loads(deg.read_text()) if "t_start" in s and "t_stop" in s]
        except (ValueError, TypeError):
            spans = []
    from fuse4d.plots import plot_gates
    png = _via_file(lambda p: plot_gates(p, t, gates, spans))
    names = ", ".join(sorted({str(s.get("name")) for s in spans})) or "none"
    return "Gate weights", png, f"fusion model's modality weights; degraded spans: {names}"


# -- notes --------------------------------------------------------------------------------------
def _notes(store, run_dir: Path, with_metrics: bool, notes: list[str]) -> tuple[list[tuple[str, str]], dict]:
    """``(key, value)`` rows describing the run, and its metrics (empty without ground truth)."""
    m = store.meta
    est = m.get("estimation") or {}
    rows = [("run", str(run_dir)), ("source", str(m.get("source"))), ("fuse4d", str(m.get("fuse4d_version"))),
            ("status", f"{m.get('status')} ({m.get('frames_done')} of {m.get('n_frames')} frames)"),
            ("sensors", ", ".join(m.get("sensors") or []) or "?"),
            ("model", str(m.get("model") or "none (geometric path)"))]
    if est.get("frame"):
        rows.append(("trajectory frame", str(est["frame"])))
    if est.get("status"):
        rows.append(("pose status", ", ".join(f"{k} {v}" for k, v in est["status"].items() if v)))
    loops = m.get("loops") or []
    rows.append(("loop closures", ", ".join(f"{lc.get('i')}↔{lc.get('j')}" for lc in loops[:20]) or "none"))
    gaps = est.get("gaps") or []
    rows.append(("LiDAR gaps", "; ".join(
        f"frames {g.get('start')}–{int(g.get('stop', 0)) - 1} carried by {g.get('carried_by', '?')}" for g in gaps)
        or "none"))
    for s in m.get("skipped_frames") or []:
        rows.append(("skipped frame", f"{s.get('frame')}: {s.get('error')}"))
    deg = run_dir / "degradations.json"
    if deg.is_file():
        try:
            spans = json.loads(deg.read_text())
            rows.append(("degraded spans", "; ".join(f"{s['name']} frames {s['start']}–{int(s['stop']) - 1}"
                                                     for s in spans) or "none"))
        except (ValueError, TypeError, KeyError):
            notes.append(f"{deg}: unreadable")
    for n in notes:
        rows.append(("note", n))
    metrics: dict = {}
    if with_metrics and (run_dir / "groundtruth.txt").is_file():
        from fuse4d.evaluation import evaluate_run, trajectory_evaluator
        try:
            metrics = evaluate_run(run_dir)
        except Fuse4dError as e:  # e.g. the source log changed: keep the trajectory's own metrics
            rows.append(("note", f"evaluation failed: {e}"))
            try:
                metrics = trajectory_evaluator(run_dir)
            except Fuse4dError:
                metrics = {}
    return rows, metrics


def _fmt(v: Any) -> str:
    from fuse4d.evaluation import _fmt as fmt
    return fmt(v)


def render_html(title: str, panels: list[tuple[str, bytes, str]], rows: list[tuple[str, str]], metrics: dict) -> str:
    """The report page: panels (PNG bytes inlined as base64), a notes table and a metrics table."""
    e = html.escape
    parts = [f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;margin:24px;background:#fafafa;color:#222}"
             "section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px 16px;margin:16px 0}"
             "img{max-width:100%;height:auto}table{border-collapse:collapse;font-size:14px}"
             "td,th{border-bottom:1px solid #eee;padding:3px 10px;text-align:left;vertical-align:top}"
             "td.num{text-align:right;font-family:monospace}.cap{color:#555;font-size:13px}</style></head><body>",
             f"<h1>{e(title)}</h1>",
             f"<p class='cap'>written {e(_dt.datetime.now().isoformat(timespec='seconds'))}</p>"]
    for name, png, caption in panels:
        b64 = base64.b64encode(png).decode("ascii")
        parts.append(f"<section><h2>{e(name)}</h2><img alt='{e(name)}' src='data:image/png;base64,{b64}'>"
                     f"<p class='cap'>{e(caption)}</p></section>")
    parts.append("<section><h2>Notes</h2><table>")
    parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows]
    parts.append("</table></section>")
    if metrics:
        parts.append("<section><h2>Metrics against ground truth</h2><table><tr><th>metric</th><th>value</th></tr>")
        parts += [f"<tr><td>{e(str(k))}</td><td class='num'>{e(_fmt(v))}</td></tr>" for k, v in metrics.items()]
        parts.append("</table></section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(run: str | Path, out: str | Path | None = None, with_metrics: bool = True) -> Path:
    """Write the HTML report of a run folder (default ``RUN/report.html``), atomically. Returns its path.

    Args:
        run: a run folder written by ``fuse4d run`` (or its ``run.zarr``).
        out: the HTML file; its folder is created.
        with_metrics: evaluate against ground truth (re-reads the source log) when the run has it.
    Raises:
        DataError: ``run`` is not a run folder, or a file inside it is unreadable.
        OSError: ``out`` cannot be written (nothing is left half-written).
    """
    from fuse4d.fileio import atomic_write_text
    store, run_dir = open_run_store(run)
    out = Path(out).expanduser() if out is not None else run_dir / "report.html"
    notes: list[str] = []
    panels = []
    traj = _trajectory_panel(store, run_dir)
    if traj:
        panels.append(traj)
    positions = None
    if "poses" in store:
        p = np.asarray(store.read("poses"))[:, :3, 3]
        positions = p[np.isfinite(p).all(1)]
    for make in (lambda: _maps_panel(store, positions), lambda: _frames_panel(store, notes),
                 lambda: _gates_panel(store, run_dir)):
        panel = make()
        if panel:
            panels.append(panel)
    rows, metrics = _notes(store, run_dir, with_metrics, notes)
    page = render_html(f"fuse4d run: {run_dir.name}", panels, rows, metrics)
    return atomic_write_text(out, page)
