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
    import os
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
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
