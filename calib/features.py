"""What the LiDAR–camera cost compares: image edges (as a distance transform) and
LiDAR edge points (depth discontinuities and intensity edges), in numpy/scipy.

Image side: grey image → Gaussian blur → Sobel gradient → non-maximum suppression
→ the strongest edges → Euclidean distance transform (pixels) to the nearest edge.
LiDAR side: the sweep is arranged in scan rows (by elevation); along each row a
point is an edge when its range jumps to a farther neighbour (the near side of a
depth discontinuity) or its intensity jumps while the range stays continuous.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def grey(image: np.ndarray) -> np.ndarray:
    """``[H, W]`` float32 luminance in [0, 1] of a ``[H, W, 3]`` uint8 RGB (or ``[H, W]``) image."""
    im = np.asarray(image, dtype=np.float32)
    if im.ndim == 3:
        im = im[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return im / 255.0


def image_edges(image: np.ndarray, sigma: float = 1.0, keep: float = 0.08,
                mask: np.ndarray | None = None, min_slope: float = 0.0) -> np.ndarray:
    """Thin edge map ``[H, W]`` bool: Sobel magnitude after a Gaussian blur of ``sigma`` px,
    non-maximum suppressed, keeping the strongest ``keep`` fraction of pixels.

    ``mask [H, W]`` bool marks pixels to ignore (moving objects, the ego vehicle).
    ``min_slope`` keeps only edges whose gradient has ``|gx| >= min_slope·|g|`` (0.5 =
    edges within 60° of vertical: the ones a spinning LiDAR's rows cross).
    """
    g = ndimage.gaussian_filter(grey(image), sigma)
    gx, gy = ndimage.sobel(g, axis=1), ndimage.sobel(g, axis=0)
    mag = np.hypot(gx, gy)
    ang = (np.round(np.arctan2(gy, gx) / (np.pi / 4)) % 4).astype(np.int8)  # 0: x, 1: diag, 2: y, 3: anti-diag
    pad = np.pad(mag, 1)
    H, W = mag.shape
    nb = {0: ((0, 1), (0, -1)), 1: ((1, 1), (-1, -1)), 2: ((1, 0), (-1, 0)), 3: ((1, -1), (-1, 1))}
    nms = np.zeros_like(mag, dtype=bool)
    for k, ((dy0, dx0), (dy1, dx1)) in nb.items():
        a = pad[1 + dy0:1 + dy0 + H, 1 + dx0:1 + dx0 + W]
        b = pad[1 + dy1:1 + dy1 + H, 1 + dx1:1 + dx1 + W]
        nms |= (ang == k) & (mag >= a) & (mag >= b)
    mag = np.where(nms, mag, 0.0)
    mag[:2], mag[-2:], mag[:, :2], mag[:, -2:] = 0, 0, 0, 0
    if mask is not None:
        mag[np.asarray(mask, bool)] = 0.0
    if min_slope > 0:
        mag[np.abs(gx) < min_slope * np.hypot(gx, gy)] = 0.0
    nz = mag[mag > 0]
    if len(nz) == 0:
        return np.zeros_like(mag, dtype=bool)
    thr = np.quantile(nz, max(0.0, 1.0 - keep * mag.size / len(nz)))
    return mag >= max(thr, 1e-3)


def distance_map(edges: np.ndarray, truncate: float) -> np.ndarray:
    """``[H, W]`` float32 distance (pixels) to the nearest edge pixel, capped at ``truncate``."""
    if not edges.any():
        return np.full(edges.shape, truncate, np.float32)
    d = ndimage.distance_transform_edt(~edges)
    return np.minimum(d, truncate).astype(np.float32)


def scan_rows(points: np.ndarray, beams: int | None = None,
              fov_deg: tuple[float, float] | None = None) -> np.ndarray:
    """Scan-row index ``[N]`` int of each LiDAR point from its elevation angle.

    With ``beams`` and ``fov_deg`` known the rows are the beams; otherwise the
    elevation range is cut into 0.2° rows (a beam may straddle two rows; that
    only hides neighbours, it never invents them).
    """
    xyz = np.asarray(points[:, :3], np.float64)
    elev = np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))
    if beams and fov_deg and beams > 1:
        step = (fov_deg[1] - fov_deg[0]) / (beams - 1)
        return np.clip(np.rint((elev - fov_deg[0]) / step), 0, beams - 1).astype(np.int64)
    return np.floor((elev - elev.min()) / 0.2).astype(np.int64)


def lidar_edges(points: np.ndarray, rows: np.ndarray, min_jump: float = 0.5, rel_jump: float = 0.08,
                max_gap_deg: float = 1.0, intensity_jump: float | None = 0.25
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edge points of one sweep.

    Args:
        points: ``[N, 3+]`` LiDAR frame (metres), column 3 = intensity when present.
        rows: ``[N]`` scan row of each point (see :func:`scan_rows`).
        min_jump / rel_jump: a neighbour farther by ``max(min_jump, rel_jump·r)`` m makes
            the point a depth edge (the near side).
        max_gap_deg: neighbours farther apart in azimuth are not neighbours.
        intensity_jump: intensity step (fraction of the sweep's intensity range) that
            makes an intensity edge where the range is continuous; None = none.

    Returns:
        ``index [K]`` into points, ``weight [K]`` (1 depth edge, 0.5 intensity edge) and
        ``xyz [K, 3]`` edge positions (depth edges moved half an azimuth step towards the
        far neighbour, where the silhouette is expected).
    """
    xyz = np.asarray(points[:, :3], np.float64)
    r = np.linalg.norm(xyz, axis=1)
    az = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0]))
    order = np.lexsort((az, rows))
    rs, azs, rw = r[order], az[order], rows[order]
    same = (rw[1:] == rw[:-1]) & (np.abs(azs[1:] - azs[:-1]) < max_gap_deg)
    thr = np.maximum(min_jump, rel_jump * np.minimum(rs[1:], rs[:-1]))
    jump = same & (np.abs(rs[1:] - rs[:-1]) > thr)
    edge = np.zeros(len(order), bool)
    left, right = jump & (rs[:-1] < rs[1:]), jump & (rs[1:] < rs[:-1])  # which side is the near one
    edge[:-1] |= left
    edge[1:] |= right
    # the silhouette lies somewhere between the near point and its far neighbour: move the
    # edge point half-way there in azimuth (at the near range), which removes the bias of
    # always taking the near sample
    pos = xyz[order].copy()
    unit = pos / np.maximum(rs, 1e-6)[:, None]
    mid = np.zeros_like(pos)
    kl, kr = np.flatnonzero(left), np.flatnonzero(right)
    mid[kl] = unit[kl] + unit[kl + 1]
    mid[kr + 1] = unit[kr + 1] + unit[kr]
    both = np.zeros(len(order), bool)
    both[kl] = np.isin(kl, kr + 1)  # near on both sides (one-sample object): keep it in place
    shift = edge & ~both
    pos[shift] = mid[shift] / np.linalg.norm(mid[shift], axis=1, keepdims=True) * rs[shift, None]
    weight = edge.astype(np.float32)
    if intensity_jump is not None and points.shape[1] > 3:
        it = np.asarray(points[:, 3], np.float64)[order]
        span = np.ptp(it) if len(it) else 0.0
        if span > 0:
            cont = same & (np.abs(rs[1:] - rs[:-1]) < 0.5 * thr)
            ij = cont & (np.abs(it[1:] - it[:-1]) > intensity_jump * span)
            ie = np.zeros(len(order), bool)
            ie[:-1] |= ij
            ie[1:] |= ij
            weight = np.where(~edge & ie, 0.5, weight).astype(np.float32)
    keep = weight > 0
    return order[keep], weight[keep], pos[keep]
