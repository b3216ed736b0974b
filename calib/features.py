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


def oriented_edges(image: np.ndarray, sigma: float = 1.0, keep: float = 0.08,
                   mask: np.ndarray | None = None, slope: float = 0.5) -> np.ndarray:
    """``[3, H, W]`` bool image edges for the three LiDAR edge kinds: near-vertical lines
    (``|gx| >= slope·|g|``, what scan-row jumps meet), near-horizontal lines
    (``|gy| >= slope·|g|``, what jumps across beams meet) and all edges (intensity edges).
    Arguments as :func:`image_edges`."""
    e = image_edges(image, sigma, keep, mask)
    g = ndimage.gaussian_filter(grey(image), sigma)
    gx, gy = np.abs(ndimage.sobel(g, axis=1)), np.abs(ndimage.sobel(g, axis=0))
    mag = np.hypot(gx, gy)
    return np.stack([e & (gx >= slope * mag), e & (gy >= slope * mag), e])


def distance_map(edges: np.ndarray, truncate: float) -> np.ndarray:
    """``[H, W]`` float32 distance (pixels) to the nearest edge pixel, capped at ``truncate``."""
    if not edges.any():
        return np.full(edges.shape, truncate, np.float32)
    d = ndimage.distance_transform_edt(~edges)
    return np.minimum(d, truncate).astype(np.float32)


def smooth_distance_map(edges: np.ndarray, truncate: float) -> np.ndarray:
    """:func:`distance_map` blurred by a Gaussian of ``truncate / 4`` px: a smooth bowl
    around each edge (the local solver needs gradients), flat ``truncate`` far from edges."""
    d = ndimage.distance_transform_edt(~edges) if edges.any() else np.full(edges.shape, truncate)
    d = np.minimum(d, truncate)
    return ndimage.gaussian_filter(d, max(truncate / 4.0, 0.5), mode="nearest").astype(np.float32)


def edge_density(edges: np.ndarray, window: float) -> np.ndarray:
    """``[H, W]`` float32 fraction of edge pixels in a ``window``-pixel box around each pixel."""
    return ndimage.uniform_filter(edges.astype(np.float32), size=max(3, int(round(window))), mode="constant")


def scan_rows(points: np.ndarray, beams: int | None = None,
              fov_deg: tuple[float, float] | None = None) -> np.ndarray:
    """Scan-row index ``[N]`` int of each LiDAR point.

    Points stored ring after ring (the azimuth wraps 16-256 times along the array, as
    in KITTI) take their ring from that order (row order then follows storage, which
    only has to keep adjacent rings adjacent).
    With ``beams`` and ``fov_deg`` known the rows are the beams; otherwise the
    elevation range is cut into 0.2° rows (a beam may straddle two rows; that
    only hides neighbours, it never invents them).
    """
    xyz = np.asarray(points[:, :3], np.float64)
    az = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0]))
    wraps = np.flatnonzero(np.diff(az) < -180.0)
    if 16 <= len(wraps) <= 256 and np.median(np.diff(wraps)) > 200:
        # stored ring after ring (KITTI, most drivers' raw order): each ring ends where the azimuth wraps
        return np.repeat(np.arange(len(wraps) + 1), np.diff(np.r_[0, wraps + 1, len(xyz)]))
    elev = np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))
    if beams and fov_deg and beams > 1:
        step = (fov_deg[1] - fov_deg[0]) / (beams - 1)
        return np.clip(np.rint((elev - fov_deg[0]) / step), 0, beams - 1).astype(np.int64)
    return np.floor((elev - elev.min()) / 0.2).astype(np.int64)


def elevation_rings(elev: np.ndarray, gap_deg: float = 0.05) -> np.ndarray | None:
    """Ring ``[N]`` int of each point from its elevation ``[N]`` (degrees), for sweeps stored in
    firing order with fixed beam elevations (Hesai/Ouster-style, the pjlab PCDs): the sorted
    elevations fall into one tight cluster per beam, split where consecutive values are more
    than ``gap_deg`` apart (both pjlab sweeps: exactly 64 clusters for any gap in 0.03-0.08°).
    Not used by :func:`scan_rows` yet: with these rings the pjlab manual_calib refinement from
    the bench's first start ended 1.37° off instead of 0.105° with 0.2° rows (cause not found).
    None when that does not give 8-256 clusters of 50+ points each (elevations spread out)."""
    if len(elev) < 400:
        return None
    order = np.argsort(elev)
    cut = np.flatnonzero(np.diff(elev[order]) > gap_deg)
    sizes = np.diff(np.r_[0, cut + 1, len(elev)])
    if not 8 <= len(sizes) <= 256 or sizes.min() < 50:
        return None
    rings = np.empty(len(elev), np.int64)
    rings[order] = np.repeat(np.arange(len(sizes)), sizes)
    return rings


def lidar_edges(points: np.ndarray, rows: np.ndarray, min_jump: float = 0.5, rel_jump: float = 0.08,
                max_gap_deg: float = 1.0, intensity_jump: float | None = 0.25, vertical: bool = True,
                continuity: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edge points of one sweep, with the orientation of the silhouette they lie on.

    Along each scan row a point is a depth edge when its range jumps to a farther
    neighbour (the near side of a vertical-ish silhouette: kind 0). Across rows (the
    nearest-azimuth point of the next beam) a jump makes a horizontal-ish silhouette
    point (kind 1) only where the near side is locally flat in range (a surface facing
    the sensor), which rejects the ground, whose range grows from beam to beam.
    Intensity steps where the range is continuous make kind-2 points.

    Args:
        points: ``[N, 3+]`` LiDAR frame (metres), column 3 = intensity when present.
        rows: ``[N]`` scan row of each point (see :func:`scan_rows`).
        min_jump / rel_jump: a neighbour farther by ``max(min_jump, rel_jump·r)`` m makes
            the point a depth edge (the near side).
        max_gap_deg: neighbours farther apart in azimuth are not neighbours.
        intensity_jump: intensity step (fraction of the sweep's intensity range) that
            makes an intensity edge where the range is continuous; None = none.
        vertical: also look for jumps across rows (kind 1).
        continuity: keep a row jump only when the next or previous row has one within
            ``max_gap_deg`` of azimuth (a beam grazing a horizontal edge makes isolated
            jumps that belong to no vertical silhouette).

    Returns:
        ``index [K]`` into points, ``weight [K]`` (1 depth edge, 0.5 intensity edge),
        ``xyz [K, 3]`` edge positions (moved half-way towards the far neighbour, at the
        near range, where the silhouette is expected on average) and ``kind [K]`` int8.
    """
    xyz = np.asarray(points[:, :3], np.float64)
    r = np.linalg.norm(xyz, axis=1)
    az = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0]))
    order = np.lexsort((az, rows))
    rs, azs, rw = r[order], az[order], rows[order]
    pos0 = xyz[order]
    unit = pos0 / np.maximum(rs, 1e-6)[:, None]
    same = (rw[1:] == rw[:-1]) & (np.abs(azs[1:] - azs[:-1]) < max_gap_deg)
    thr = np.maximum(min_jump, rel_jump * np.minimum(rs[1:], rs[:-1]))
    jump = same & (np.abs(rs[1:] - rs[:-1]) > thr)
    left, right = np.flatnonzero(jump & (rs[:-1] < rs[1:])), np.flatnonzero(jump & (rs[1:] < rs[:-1])) + 1
    a, b = np.r_[left, right], np.r_[left + 1, right - 1]  # near side, far side
    if continuity:  # a vertical silhouette continues in the next or previous row; a beam
        a, b = _continued(a, b, azs, rw, max_gap_deg)  # grazing a roof line jumps back and forth
    near, far, kind = [a], [b], [np.zeros(len(a), np.int8)]
    if vertical:
        nv, fv = _row_jumps(rs, azs, rw, max_gap_deg, min_jump, rel_jump)
        near.append(nv), far.append(fv), kind.append(np.ones(len(nv), np.int8))
    near, far, kind = np.concatenate(near), np.concatenate(far), np.concatenate(kind)
    # near on both sides in the same direction (a one-sample object): keep it in place
    key = near.astype(np.int64) * 2 + kind
    _, first, count = np.unique(key, return_index=True, return_counts=True)
    single = np.zeros(len(near), bool)
    single[first[count == 1]] = True
    mid = unit[near] + np.where(single[:, None], unit[far], unit[near])
    pos = mid / np.linalg.norm(mid, axis=1, keepdims=True) * rs[near, None]
    sel = np.sort(first)
    near, pos, kind = near[sel], pos[sel], kind[sel]
    weight = np.ones(len(near), np.float32)
    if intensity_jump is not None and points.shape[1] > 3:
        it = np.asarray(points[:, 3], np.float64)[order]
        span = np.ptp(it) if len(it) else 0.0
        if span > 0:
            cont = same & (np.abs(rs[1:] - rs[:-1]) < 0.5 * thr)
            step = np.abs(it[1:] - it[:-1])
            big = step > intensity_jump * span
            # a step between two plateaus, not a one-sample spike of a noisy reflectance
            calm = step < 0.5 * intensity_jump * span
            ij = cont & big & np.r_[False, calm[:-1] & cont[:-1]] & np.r_[calm[1:] & cont[1:], False]
            ie = np.zeros(len(order), bool)
            ie[:-1] |= ij
            ie[1:] |= ij
            ie[near] = False
            k = np.flatnonzero(ie)
            near = np.r_[near, k]
            pos = np.r_[pos, pos0[k]]
            kind = np.r_[kind, np.full(len(k), 2, np.int8)]
            weight = np.r_[weight, np.full(len(k), 0.5, np.float32)]
    return order[near], weight, pos, kind


def _continued(a: np.ndarray, b: np.ndarray, azs: np.ndarray, rw: np.ndarray, tol_deg: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """The row jumps ``(near a, far b)`` (positions in row/azimuth order) that have another
    jump in an adjacent row within ``tol_deg`` of azimuth."""
    if len(a) == 0:
        return a, b
    k = np.sort(rw[a] * 1000.0 + azs[a] + 180.0)
    ok = np.zeros(len(a), bool)
    for dr in (-1, 1):
        q = (rw[a] + dr) * 1000.0 + azs[a] + 180.0
        j = np.searchsorted(k, q - tol_deg)
        ok |= (j < len(k)) & (k[np.minimum(j, len(k) - 1)] <= q + tol_deg)
    return a[ok], b[ok]


def _row_jumps(rs: np.ndarray, azs: np.ndarray, rw: np.ndarray, max_gap_deg: float, min_jump: float,
               rel_jump: float) -> tuple[np.ndarray, np.ndarray]:
    """Depth jumps between vertically adjacent samples (sorted by row, then azimuth):
    ``near [M]`` and ``far [M]`` positions in that order."""
    n = len(rs)
    if n < 3:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    key = rw.astype(np.float64) * 1000.0 + (azs + 180.0)

    def up(offset: int) -> np.ndarray:
        """Nearest-azimuth sample ``offset`` rows away (-1 = none)."""
        q = (rw + offset) * 1000.0 + (azs + 180.0)
        j = np.clip(np.searchsorted(key, q), 1, n - 1)
        j = np.where(np.abs(key[j - 1] - q) < np.abs(key[j] - q), j - 1, j)
        ok = (rw[j] == rw + offset) & (np.abs(azs[j] - azs) < max_gap_deg)
        return np.where(ok, j, -1)

    above, below = up(1), up(-1)
    out_n, out_f = [], []
    for nb, other in ((above, below), (below, above)):  # far neighbour above (object tops), or below
        i = np.flatnonzero((nb >= 0) & (other >= 0))
        f, o = nb[i], other[i]
        thr = np.maximum(min_jump, rel_jump * rs[i])
        jump = rs[f] - rs[i] > thr
        flat = np.abs(rs[o] - rs[i]) < 0.25 * (rs[f] - rs[i])
        k = jump & flat
        out_n.append(i[k]), out_f.append(f[k])
    return np.concatenate(out_n), np.concatenate(out_f)
