"""PNG map report: bird's-eye occupancy coloured by class (with a legend), elevation,
traversability; extensible with more panels (a frame with its dynamic mask, tracks).

``plot_report(maps, path, extra_panels=[fn, ...])``: each extra panel is a function
``fn(ax)`` that draws into one matplotlib axis (the dynamics stage adds its own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fuse4d.data.classes import CLASS_COLORS, CLASS_NAMES
from fuse4d.plots import _pyplot, _save  # one figure writer for every PNG

Panel = Callable[[object], None]


def occupancy_bev(occ: dict) -> tuple[np.ndarray, tuple[float, float, float, float], set[int]]:
    """Top view of the occupied voxels: the class of the highest occupied voxel per column.

    Args:
        occ: ``ijk [N, 3]``, ``labels [N]``, ``log_odds [N]``, ``origin [3]``, ``resolution``.
    Returns:
        RGB image ``[H, W, 3]`` uint8 (white = nothing; rows = y, columns = x), its
        ``extent`` (x0, x1, y0, y1) m for ``imshow(origin="lower")``, the classes shown.
    """
    thr = float(occ.get("threshold", 0.0))
    keep = np.asarray(occ["log_odds"]) > thr
    ijk, lab = np.asarray(occ["ijk"])[keep], np.asarray(occ["labels"])[keep]
    res, o = float(occ["resolution"]), np.asarray(occ["origin"], np.float64)
    if len(ijk) == 0:
        return np.full((1, 1, 3), 255, np.uint8), (o[0], o[0] + res, o[1], o[1] + res), set()
    lo = ijk.min(0)
    shape = ijk.max(0) - lo + 1
    order = np.lexsort((ijk[:, 2], ijk[:, 1], ijk[:, 0]))  # highest voxel of a column last
    img = np.full((shape[1], shape[0], 3), 255, np.uint8)
    ii, jj = ijk[order, 0] - lo[0], ijk[order, 1] - lo[1]
    img[jj, ii] = CLASS_COLORS[np.clip(lab[order], 0, len(CLASS_COLORS) - 1)]
    x0, y0 = o[0] + lo[0] * res, o[1] + lo[1] * res
    return img, (x0, x0 + shape[0] * res, y0, y0 + shape[1] * res), set(int(c) for c in np.unique(lab))


def _extent(el: dict) -> tuple[float, float, float, float]:
    o, r, (H, W) = np.asarray(el["origin"], float), float(el["resolution"]), np.asarray(el["height"]).shape
    return (o[0], o[0] + H * r, o[1], o[1] + W * r)


def _elevation_axes(axes, el: dict) -> None:
    """Draw height and traversability of ``el`` into two axes."""
    ext = _extent(el)
    h = np.asarray(el["height"], np.float32)
    ax = axes[0]
    if np.isfinite(h).any():
        lo, hi = np.nanpercentile(h, [2, 98])
        im = ax.imshow(h.T, origin="lower", extent=ext, cmap="terrain", vmin=lo, vmax=max(hi, lo + 0.1))
        ax.figure.colorbar(im, ax=ax, shrink=0.7, label="height (m)")
    ax.set_title("elevation")
    t = np.asarray(el["traversable"])
    rgb = np.full((*t.shape, 3), 235, np.uint8)
    rgb[t == 1] = (60, 170, 60)
    rgb[t == 0] = (200, 50, 50)
    axes[1].imshow(rgb.transpose(1, 0, 2), origin="lower", extent=ext)
    axes[1].set_title("traversable (green) / not (red) / unknown (grey)")
    for a in axes:
        a.set_xlabel("x (m)")
        a.set_ylabel("y (m)")
        a.set_aspect("equal")


def plot_elevation(el: dict, path: str | Path) -> Path:
    """PNG of an elevation map (height and traversability side by side).

    Args:
        el: ``height``, ``traversable`` ``[H, W]``, ``origin [2]``, ``resolution``.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    _elevation_axes(axes, el)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_report(maps: dict, path: str | Path, extra_panels: Sequence[Panel] = (),
                trajectory: np.ndarray | None = None, title: str = "fuse4d maps") -> Path:
    """The map report PNG.

    Args:
        maps: ``{"occupancy": ..., "elevation": ...}`` (either may be missing).
        extra_panels: functions ``fn(ax)`` drawing one more panel each (e.g. a frame
            with its dynamic mask, tracks), appended after the map panels.
        trajectory: ``[S, 3]`` positions to overlay on the maps (m), or None.
    """
    plt = _pyplot()
    from matplotlib.patches import Patch
    n = 3 + len(extra_panels)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 5.8 * rows), squeeze=False)
    flat = axes.reshape(-1)
    ax = flat[0]
    occ = maps.get("occupancy")
    if occ is not None:
        img, ext, shown = occupancy_bev(occ)
        ax.imshow(img, origin="lower", extent=ext, interpolation="nearest")
        handles = [Patch(color=CLASS_COLORS[c] / 255.0, label=CLASS_NAMES[c]) for c in sorted(shown)]
        ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.8)
    ax.set_title("occupancy, bird's-eye (class of the top voxel)")
    ax.set_aspect("equal")
    el = maps.get("elevation")
    if el is not None:
        _elevation_axes(flat[1:3], el)
    if trajectory is not None and len(trajectory):
        for a in flat[:3]:
            a.plot(trajectory[:, 0], trajectory[:, 1], "k-", lw=0.8)
    for a, panel in zip(flat[3:], extra_panels):
        panel(a)
    for a in flat[n:]:
        a.axis("off")
    fig.suptitle(title)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
