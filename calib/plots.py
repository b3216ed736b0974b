"""Before/after picture of a LiDAR–camera calibration: LiDAR points over the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _overlay(ax, image: np.ndarray, points: np.ndarray, T: np.ndarray, K: np.ndarray, edges: np.ndarray | None,
             title: str) -> None:
    X = points[:, :3] @ T[:3, :3].T + T[:3, 3]
    z = X[:, 2]
    m = z > 0.5
    u, v = K[0, 0] * X[m, 0] / z[m] + K[0, 2], K[1, 1] * X[m, 1] / z[m] + K[1, 2]
    H, W = image.shape[:2]
    ok = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    ax.imshow(image)
    ax.scatter(u[ok], v[ok], c=np.minimum(z[m][ok], 40.0), s=0.6, cmap="jet_r", linewidths=0)
    if edges is not None:
        X = edges[:, :3] @ T[:3, :3].T + T[:3, 3]
        ze = X[:, 2]
        k = ze > 0.5
        ax.scatter(K[0, 0] * X[k, 0] / ze[k] + K[0, 2], K[1, 1] * X[k, 1] / ze[k] + K[1, 2], s=1.5, c="white",
                   linewidths=0)
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def plot_before_after(image: np.ndarray, points: np.ndarray, K: np.ndarray, T_before: np.ndarray,
                      T_after: np.ndarray, path: str | Path, edge_points: np.ndarray | None = None,
                      titles: tuple[str, str] = ("before", "after")) -> Path:
    """Write a PNG with LiDAR points (coloured by depth) over ``image`` under two extrinsics.

    Args:
        image: ``[H, W, 3]`` uint8; points: ``[N, 3+]`` LiDAR frame (m); K: ``[3, 3]``.
        T_before / T_after: ``[4, 4]`` ``T_cam_lidar`` of the two panels.
        path: PNG path (written atomically); edge_points: ``[M, 3]`` drawn in white.

    Returns:
        the path written.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = Path(path)
    H, W = image.shape[:2]
    fig, axes = plt.subplots(2, 1, figsize=(min(16, W / 60 + 2), 2 * (min(16, W / 60 + 2) * H / W) + 0.8), dpi=110)
    _overlay(axes[0], image, points, T_before, K, edge_points, titles[0])
    _overlay(axes[1], image, points, T_after, K, edge_points, titles[1])
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
