"""Per-point ground segmentation of a LiDAR scan in a gravity-aligned frame.

A lowest-point filter with a slope limit (a one-pass progressive morphological
filter): the scan is binned on an xy grid of ``cell`` m; each cell's ground height
is the lowest of ``min_z(neighbour) + max_slope × distance`` over a
``window × window`` neighbourhood, so a cell covered by a car roof or a wall top
takes the ground seen beside it. A point is ground when it lies less than
``height`` above its cell's ground height. Everything is array arithmetic over the
grid (one shifted minimum per window offset), no loop over points.
"""

from __future__ import annotations

import numpy as np


def segment_ground(points: np.ndarray, cell: float = 1.0, window: int = 5, max_slope: float = 0.3,
                   height: float = 0.25, return_height: bool = False):
    """Ground mask of one scan.

    Args:
        points: ``[N, 3]`` positions in a gravity-aligned frame (z up), m.
        cell: grid cell, m. window: neighbourhood, cells (odd).
        max_slope: rise per metre the ground may have between cells.
        height: m above the local ground estimate a ground point may lie.
    Returns:
        ``[N]`` bool, True = ground; with ``return_height`` also ``[N]`` float64, each
        point's height above its cell's ground estimate (m).
    """
    p = np.asarray(points, np.float64).reshape(-1, 3)
    if len(p) == 0:
        return (np.zeros(0, bool), np.zeros(0)) if return_height else np.zeros(0, bool)
    finite = np.isfinite(p).all(1)
    if not finite.all():
        out, above = np.zeros(len(p), bool), np.full(len(p), np.nan)
        out[finite], above[finite] = segment_ground(p[finite], cell, window, max_slope, height, True)
        return (out, above) if return_height else out
    ij = np.floor(p[:, :2] / cell).astype(np.int64)
    lo = ij.min(0)
    ij -= lo
    shape = tuple(ij.max(0) + 1)
    flat = ij[:, 0] * shape[1] + ij[:, 1]
    zmin = np.full(shape[0] * shape[1], np.inf)
    np.minimum.at(zmin, flat, p[:, 2])
    zmin = zmin.reshape(shape)
    r = window // 2
    pad = np.pad(zmin, r, constant_values=np.inf)
    ground_h = zmin.copy()
    for di in range(-r, r + 1):
        for dj in range(-r, r + 1):
            if di == 0 and dj == 0:
                continue
            rise = max_slope * cell * np.hypot(di, dj)
            nb = pad[r + di:r + di + shape[0], r + dj:r + dj + shape[1]]
            np.minimum(ground_h, nb + rise, out=ground_h)
    above = p[:, 2] - ground_h.reshape(-1)[flat]
    return (above < height, above) if return_height else above < height


def ground_f1(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of a ground mask ``pred [N]`` against ``ref [N]`` (bools)."""
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    tp = float(np.count_nonzero(pred & ref))
    p = tp / max(np.count_nonzero(pred), 1)
    r = tp / max(np.count_nonzero(ref), 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r > 0 else 0.0}
