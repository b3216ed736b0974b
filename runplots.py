"""The figures of a run folder, drawn from its store: what the model said and the maps.

``prediction.png`` (a strip of frames: image, depth, semantics, dynamic mask),
``gates.png`` (modality weights over time) and ``maps.png`` (occupancy by class,
elevation, traversability, a frame with its moving objects, the tracks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fuse4d.data.types import Sequence


def plot_maps(seq: Sequence, store, out: Path, T_world_body: np.ndarray) -> None:
    """``maps.png``: occupancy by class, elevation, traversability, the frame with the most moving
    pixels (or points) with its dynamic mask, and the object tracks."""
    from fuse4d.data.classes import colorize
    from fuse4d.mapping.report import plot_report
    panels = []
    # the frame shown: the one with the most moving LiDAR points, else the middle one
    has_pts = "lidar" in store and "dynamic" in store.root["lidar"]
    dyn_pts = store.read_points("dynamic") if has_pts else []
    counts = [int(np.nansum(d > 0.5)) for d in dyn_pts]
    i = int(np.argmax(counts)) if counts and max(counts) > 0 else len(seq) // 2
    frame = seq[i]
    if "frames/dynamic" in store and frame.image is not None:
        mask = np.asarray(store.root["frames/dynamic"][i]) > 0.5

        def frame_panel(ax, img=frame.image, mask=mask, i=i):
            shown = img.copy()
            shown[mask] = (0.4 * shown[mask] + 0.6 * np.array([255, 40, 40])).astype(np.uint8)
            ax.imshow(shown)
            ax.set_title(f"frame {i}: moving pixels (red)")
            ax.axis("off")
        panels.append(frame_panel)
    if has_pts and i < len(dyn_pts) and frame.points is not None:
        pts, d = frame.points, dyn_pts[i]
        sem = store.read_points("semantics")[i] if "semantics" in store.root["lidar"] else None

        def scan_panel(ax, pts=pts, d=d, sem=sem, i=i):
            c = colorize(sem) / 255.0 if sem is not None else "0.6"
            ax.scatter(pts[:, 0], pts[:, 1], s=0.3, c=c, linewidths=0)
            m = d > 0.5
            ax.scatter(pts[m, 0], pts[m, 1], s=1.5, c="red", linewidths=0)
            ax.set_title(f"frame {i}: LiDAR ({'model classes, ' if sem is not None else ''}moving points red)")
            ax.set_aspect("equal")
            ax.set_xlim(-40, 40), ax.set_ylim(-40, 40)
        panels.append(scan_panel)
    if "dynamics/tracks" in store:
        tracks = store.read("dynamics/tracks")
        if len(tracks.get("track_id", [])):
            def track_panel(ax, tr=tracks):
                ax.plot(T_world_body[:, 0, 3], T_world_body[:, 1, 3], "k-", lw=1, label="ego")
                for tid in np.unique(tr["track_id"]):
                    m = tr["track_id"] == tid
                    ax.plot(tr["x"][m], tr["y"][m], "-", lw=1.2)
                    ax.plot(tr["x"][m][-1:], tr["y"][m][-1:], "o", ms=3)
                ax.set_title(f"{len(np.unique(tr['track_id']))} object tracks (world frame)")
                ax.set_aspect("equal")
                ax.legend(loc="upper right", fontsize=7)
            panels.append(track_panel)
    plot_report(_map_layers(store), out / "maps.png", extra_panels=panels,
                trajectory=T_world_body[np.isfinite(T_world_body[:, 0, 3]), :3, 3], title=f"{seq.name}: maps")

def plot_model_outputs(seq: Sequence, store, out: Path, spans: list[dict]) -> None:
    """``gates.png`` (weights over time) and ``prediction.png`` (a strip of frames with the model's outputs)."""
    from fuse4d.plots import plot_gates, plot_prediction
    plot_gates(out / "gates.png", seq.timestamps, store.read("gates"), spans)
    if "frames/depth" not in store:
        return
    pick = np.unique(np.linspace(0, len(seq) - 1, min(4, len(seq))).round().astype(int))
    images = [seq[int(i)].image for i in pick]
    if any(im is None for im in images):
        return
    rows = {k: (store.root[k].get_orthogonal_selection((pick,)) if k in store else None)
            for k in ("frames/depth", "frames/semantics", "frames/dynamic")}
    plot_prediction(out / "prediction.png", images, rows["frames/depth"], rows["frames/semantics"],
                    rows["frames/dynamic"], titles=[f"frame {int(i)}" for i in pick])


def _map_layers(store) -> dict:
    """``maps/occupancy`` and ``maps/elevation`` of a run as dicts with their origin and resolution."""
    out = {}
    for name in ("occupancy", "elevation"):
        if f"maps/{name}" in store:
            layer = {**store.read(f"maps/{name}"), **store.attrs(f"maps/{name}")}
            data = np.asarray(layer.get("height" if name == "elevation" else "ijk", []))
            if data.size and (name != "elevation" or np.isfinite(data).any()):  # an RGB-D log has no elevation
                out[name] = layer
    return out
