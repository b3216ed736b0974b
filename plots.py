"""Figures a person would rather look at than read: one frame, a trajectory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fuse4d.data.classes import CLASS_NAMES, CLASS_COLORS, colorize
from fuse4d.data.types import Calibration, Frame


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str | Path) -> Path:
    """Save ``fig`` to ``path`` atomically (temporary name, then rename), in the format of its suffix."""
    import os
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=path.suffix.lstrip(".").lower() or "png")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def project_points(points: np.ndarray, T_cam_lidar: np.ndarray, K: np.ndarray,
                   hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project LiDAR ``points [N, 3]`` into an ``(H, W)`` image: pixel ``u [M]``, ``v [M]``, depth ``z [M]`` (m).

    Only points in front of the camera and inside the image are returned.
    """
    pc = points.astype(np.float64) @ T_cam_lidar[:3, :3].T + T_cam_lidar[:3, 3]
    front = pc[:, 2] > 0.1
    pc = pc[front]
    uvw = pc @ K.T
    u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    inside = (u >= 0) & (u < hw[1]) & (v >= 0) & (v < hw[0])
    return u[inside], v[inside], pc[inside, 2]


def plot_frame(frame: Frame, calibration: Calibration, path: str | Path, bev_range_m: float = 50.0) -> Path:
    """Write a PNG of one frame: image, depth, semantics and a LiDAR bird's-eye view.

    The BEV is in the LiDAR frame (x forward, y left), ``±bev_range_m`` metres,
    coloured by per-point class when ground truth exists, else by height.
    Missing layers are drawn as labelled empty panels. Returns the path.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 7))
    ax = axes.ravel()

    def empty(a, title):
        a.set_title(title)
        a.text(0.5, 0.5, "not available", ha="center", va="center", transform=a.transAxes, color="gray")
        a.set_xticks([]), a.set_yticks([])

    if frame.image is not None:
        ax[0].imshow(frame.image)
        ax[0].set_title(f"camera (frame {frame.index}, t = {frame.timestamp:.2f} s)")
        ax[0].axis("off")
    else:
        empty(ax[0], "camera")
    if frame.depth is not None:
        d = np.where(frame.depth > 0, frame.depth, np.nan)
        im = ax[1].imshow(d, cmap="turbo")
        fig.colorbar(im, ax=ax[1], fraction=0.025, label="depth [m]")
        ax[1].set_title("depth")
        ax[1].axis("off")
    elif frame.points is not None and calibration.K is not None and frame.image is not None:
        u, v, z = project_points(frame.points[:, :3], calibration.T_cam_lidar, calibration.K, frame.image.shape[:2])
        ax[1].imshow(frame.image, alpha=0.35)
        sc = ax[1].scatter(u, v, c=z, s=0.5, cmap="turbo", linewidths=0)
        fig.colorbar(sc, ax=ax[1], fraction=0.025, label="depth [m]")
        ax[1].set_title("LiDAR projected into the camera")
        ax[1].axis("off")
    else:
        empty(ax[1], "depth")
    if frame.semantics is not None:
        rgb = colorize(frame.semantics)
        if frame.dynamic_mask is not None:
            rgb = rgb.copy()
            edge = frame.dynamic_mask & ~np.roll(frame.dynamic_mask, 1, axis=0)
            rgb[edge] = (255, 255, 255)
        ax[2].imshow(rgb)
        ax[2].set_title("semantics (white edge: moving)")
        ax[2].axis("off")
    else:
        empty(ax[2], "semantics")
    if frame.points is not None and len(frame.points):
        p = frame.points
        keep = (np.abs(p[:, 0]) < bev_range_m) & (np.abs(p[:, 1]) < bev_range_m)
        p = p[keep]
        if frame.point_semantics is not None:
            c = CLASS_COLORS[np.clip(frame.point_semantics[keep], 0, len(CLASS_NAMES) - 1)] / 255.0
            ax[3].scatter(p[:, 0], p[:, 1], s=0.3, c=c, linewidths=0)
            if frame.point_dynamic is not None and frame.point_dynamic[keep].any():
                dyn = frame.point_dynamic[keep]
                ax[3].scatter(p[dyn, 0], p[dyn, 1], s=1.5, c="k", linewidths=0, label="moving")
                ax[3].legend(loc="upper right", markerscale=5)
            ax[3].set_title(f"LiDAR BEV by class ({len(frame.points)} points)")
        else:
            lo, hi = np.percentile(p[:, 2], [2, 98]) if len(p) else (0.0, 1.0)
            sc = ax[3].scatter(p[:, 0], p[:, 1], s=0.3, c=p[:, 2], cmap="viridis", linewidths=0, vmin=lo, vmax=hi)
            fig.colorbar(sc, ax=ax[3], fraction=0.025, label="z [m]")
            ax[3].set_title(f"LiDAR BEV by height ({len(frame.points)} points)")
        ax[3].set_aspect("equal")
        ax[3].set_xlabel("x [m]")
        ax[3].set_ylabel("y [m]")
    else:
        empty(ax[3], "LiDAR")
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_trajectories(path: str | Path, est: np.ndarray | None, ref: np.ndarray | None = None,
                      title: str = "trajectory", gaps: list[tuple[int, int]] | None = None,
                      loops: list[tuple[int, int]] | None = None) -> Path:
    """Write a top-view PNG of positions ``est [S, 3]`` and ``ref [S, 3]`` (metres).

    ``gaps`` are frame spans ``(start, stop)`` drawn in red on the estimate
    (e.g. where LiDAR was lost); ``loops`` are frame pairs ``(i, j)`` joined by
    a line (verified loop closures). Returns the path.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 7))
    if ref is not None:
        ax.plot(ref[:, 0], ref[:, 1], "k--", lw=1.2, label="ground truth")
    if est is not None:
        ax.plot(est[:, 0], est[:, 1], "C0-", lw=1.5, label="estimate")
        for a, b in gaps or []:
            ax.plot(est[a:b, 0], est[a:b, 1], "r-", lw=2.5)
        for n, (i, j) in enumerate(loops or []):
            ax.plot(est[[i, j], 0], est[[i, j], 1], "m-", lw=2, label="loop closure" if n == 0 else None)
        if gaps:
            ax.plot([], [], "r-", lw=2.5, label="LiDAR gap")
        ax.plot(est[:1, 0], est[:1, 1], "go", label="start")
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_prediction(path: str | Path, images: list[np.ndarray], depth: np.ndarray | None,
                    semantics: np.ndarray | None, dynamic: np.ndarray | None,
                    titles: list[str] | None = None) -> Path:
    """A strip of frames with the fusion model's outputs: image, depth, semantics, dynamic mask.

    Args:
        images: ``n`` images ``[H, W, 3]`` uint8; depth ``[n, H, W]`` m (0 = none),
            semantics ``[n, H, W]`` class ids, dynamic ``[n, H, W]`` probability —
            each None when the run has no such output.
        titles: one caption per frame (e.g. ``"frame 12"``).
    Returns the PNG path.
    """
    plt = _pyplot()
    n = len(images)
    rows = [("image", images), ("depth [m]", depth), ("semantics", semantics), ("dynamic probability", dynamic)]
    rows = [r for r in rows if r[1] is not None]
    h, w = images[0].shape[:2]
    fig, axes = plt.subplots(len(rows), n, figsize=(3.2 * n, 3.2 * len(rows) * h / w + 0.6), squeeze=False)
    vmax = float(np.percentile(depth[depth > 0], 98)) if depth is not None and (depth > 0).any() else 1.0
    for r, (label, arr) in enumerate(rows):
        for c in range(n):
            a = axes[r, c]
            if label == "image":
                a.imshow(arr[c])
                a.set_title(titles[c] if titles else f"frame {c}", fontsize=9)
            elif label.startswith("depth"):
                a.imshow(np.where(arr[c] > 0, arr[c], np.nan), cmap="turbo", vmin=0, vmax=vmax)
            elif label == "semantics":
                a.imshow(colorize(arr[c]))
            else:
                a.imshow(images[c], alpha=0.5)
                a.imshow(np.ma.masked_less(arr[c], 0.5), cmap="autumn", vmin=0, vmax=1, alpha=0.8)
            a.set_xticks([]), a.set_yticks([])
            if c == 0:
                a.set_ylabel(label, fontsize=9)
    if semantics is not None:
        from matplotlib.patches import Patch
        handles = [Patch(color=CLASS_COLORS[k] / 255.0, label=CLASS_NAMES[k]) for k in range(1, len(CLASS_NAMES))]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.05 if semantics is not None else 0, 1, 1))
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_gates(path: str | Path, t: np.ndarray, gates: np.ndarray, spans: list[dict] | None = None) -> Path:
    """Modality gate weights over time (rgb, lidar, imu), degraded spans shaded.

    Args:
        t: ``[S]`` seconds; gates: ``[S, 3]`` weights in [0, 1], NaN where a modality is absent;
        spans: ``{"name", "t_start", "t_stop"}`` degradations to shade.
    Returns the PNG path.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.2))
    colours = {"camera_dark": "0.75", "lidar_dropout": "#f4c2c2", "lidar_sector": "#fde2b8", "imu_burst": "#c6e2ff"}
    for s in spans or []:
        ax.axvspan(s["t_start"], s["t_stop"], color=colours.get(s["name"], "0.9"), alpha=0.6, lw=0)
        ax.text(0.5 * (s["t_start"] + s["t_stop"]), 1.04, s["name"], ha="center", fontsize=8)
    for k, (name, c) in enumerate(zip(("rgb", "lidar", "imu"), ("tab:orange", "tab:blue", "tab:green"))):
        if np.isfinite(gates[:, k]).any():
            ax.plot(t, gates[:, k], color=c, lw=1.5, label=name)
    ax.set_ylim(-0.02, 1.12)
    ax.set_xlabel("t [s]")
    ax.set_ylabel("gate weight")
    ax.set_title("fusion model: modality weights over time")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out
