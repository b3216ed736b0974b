"""Procedural surface appearance: albedo per hit (textures) and LiDAR reflectivity.

Textures are functions of the world hit point, so they stick to surfaces and
give the camera trackable features: asphalt noise with lane markings, paving
tiles, stone blocks and windows on buildings, leafy noise on vegetation.
"""

from __future__ import annotations

import numpy as np

from fuse4d.data.classes import BUILDING, NUM_CLASSES, POLE, ROAD, SIDEWALK, TERRAIN, VEGETATION
from fuse4d.data.synthetic.terrain import CENTRE_LINE, ROAD_EDGES

SUN = (np.array([0.45, 0.3, 0.84]) / np.linalg.norm([0.45, 0.3, 0.84])).astype(np.float32)
#: LiDAR reflectivity per class
REFLECTIVITY = np.array([0.1, 0.12, 0.25, 0.35, 0.45, 0.5, 0.6, 0.3, 0.3, 0.55], np.float32)
assert len(REFLECTIVITY) == NUM_CLASSES


def value_noise(p: np.ndarray, scale: float, soa: bool = False) -> np.ndarray:
    """Blocky hash noise in [0, 1) of points ``p [N, k]`` (k ≤ 3) on a lattice of ``scale`` metres → ``[N]``.

    ``soa=True``: p is given coordinate-major, ``[k, N]`` (faster: contiguous rows).
    """
    p = np.asarray(p, np.float32)
    q = np.floor((p if soa else p.T) * np.float32(1.0 / scale))
    q = np.ascontiguousarray(q.astype(np.int32).view(np.uint32))
    h = np.full(q.shape[1], 2166136261, np.uint32)
    for row, prime in zip(q, (73856093, 19349663, 83492791)):
        row *= np.uint32(prime)
        h ^= row
        h *= np.uint32(16777619)
    h ^= h >> np.uint32(13)
    h *= np.uint32(1274126177)
    h ^= h >> np.uint32(16)
    return h.astype(np.float32) * np.float32(2.0 ** -32)


def put_rows(dst: np.ndarray, idx: np.ndarray, src: np.ndarray) -> None:
    """``dst[idx] = src`` for C-contiguous 2-D arrays (rows moved as opaque records: ~3x faster)."""
    row = np.dtype((np.void, dst.dtype.itemsize * dst.shape[1]))
    src = np.ascontiguousarray(src, dtype=dst.dtype)
    np.put(dst.view(row).reshape(-1), idx, src.view(row).reshape(-1))


def _frac(x: np.ndarray) -> np.ndarray:
    """Fractional part ``x - floor(x)`` in [0, 1)."""
    return x - np.floor(x)


def lane_candidate(d: np.ndarray) -> np.ndarray:
    """Whether lateral offsets ``d`` (m) fall on a painted line's band (dash phase still to check)."""
    return ((np.abs(d - CENTRE_LINE) < 0.08) | (np.abs(d + 1.75) < 0.07)
            | (np.abs(d - (ROAD_EDGES[1] - 0.25)) < 0.07))


def lane_marking(d: np.ndarray, sin_phase: np.ndarray) -> np.ndarray:
    """Whether road points with lateral offset ``d`` and dash phase ``sin φ`` are painted → bool.

    A dashed centre line (3 m dash, 3 m gap) and solid lines at both edges of the driving lanes.
    """
    dashed = (np.abs(d - CENTRE_LINE) < 0.08) & (sin_phase > 0)
    solid = (np.abs(d + 1.75) < 0.07) | (np.abs(d - (ROAD_EDGES[1] - 0.25)) < 0.07)
    return dashed | solid


#: per-class colour (ground classes) and brightness model k0 + k1·fine + k2·coarse noise
_CLASS_RGB = np.ones((NUM_CLASSES, 3), np.float32)
_CLASS_RGB[ROAD] = (1.0, 1.0, 1.02)
_CLASS_RGB[SIDEWALK] = (1.0, 0.97, 0.92)
_CLASS_RGB[TERRAIN] = (0.36, 0.4, 0.2)
_USE_BASE = np.ones(NUM_CLASSES, bool)
_USE_BASE[[ROAD, SIDEWALK, TERRAIN]] = False
_K = np.zeros((NUM_CLASSES, 3), np.float32)
_K[:] = (0.88, 0.0, 0.12)
_K[ROAD] = (0.24, 0.1, 0.06)
_K[SIDEWALK] = (0.5, 0.05, 0.12)
_K[TERRAIN] = (0.6, 0.5, 0.3)
_K[VEGETATION] = (0.55, 0.7, 0.0)
_K[POLE] = (0.9, 0.2, 0.0)


_K_COLS = [np.ascontiguousarray(_K[:, j]) for j in range(3)]


def _scale_rows(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x *= w[:, None]`` for a C-contiguous ``[N, 3]`` x (a flat product: [N, 1] broadcasts are slow)."""
    x.reshape(-1)[:] *= np.repeat(w, x.shape[1])
    return x


def albedo(cls: np.ndarray, p: np.ndarray, normal: np.ndarray, base: np.ndarray,
           paint: np.ndarray) -> np.ndarray:
    """Surface colour ``[N, 3]`` float32 in [0, 1].

    Args:
        cls: ``[N]`` class ids of the hits; p: ``[N, 3]`` world hit points;
        normal: ``[N, 3]`` unit normals; base: ``[N, 3]`` primitive/actor colour
        (used for buildings, vegetation, poles, vehicles, pedestrians); paint: ``[N]`` bool,
        road markings (white).
    """
    pt = np.ascontiguousarray(np.asarray(p, np.float32).T)  # [3, N]: contiguous coordinate rows
    fine = value_noise(pt, 0.12, soa=True)
    coarse = value_noise(pt, 0.7, soa=True)
    bright = np.take(_K_COLS[0], cls) + np.take(_K_COLS[1], cls) * fine + np.take(_K_COLS[2], cls) * coarse
    out = np.take(_CLASS_RGB, cls, axis=0)
    own = np.flatnonzero(np.take(_USE_BASE, cls))
    put_rows(out, own, np.take(base, own, axis=0))
    _scale_rows(out, bright)
    out[paint] = 0.85
    m = np.flatnonzero(cls == SIDEWALK)
    if m.size:
        qx, qy = np.take(pt[0], m) * np.float32(1 / 0.6), np.take(pt[1], m) * np.float32(1 / 0.6)
        out[m[(_frac(qx) < 0.067) | (_frac(qy) < 0.067)]] = 0.32
    m = np.flatnonzero(cls == BUILDING)
    if m.size:
        put_rows(out, m, _facade(np.take(pt, m, axis=1), np.take(normal, m, axis=0), np.take(base, m, axis=0),
                                 fine[m]))
    return np.clip(out, 0.0, 1.0, out=out)


def _facade(pt: np.ndarray, normal: np.ndarray, base: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """Stone blocks (0.9 × 0.45 m) with mortar, windows every 3.2 m × 3 m; plain dark roofs.

    ``pt [3, M]`` hit points (coordinate-major), ``normal [M, 3]``, ``base [M, 3]``, ``fine [M]``.
    """
    tx, ty = -normal[:, 1], normal[:, 0]
    inv = 1.0 / np.maximum(np.sqrt(tx * tx + ty * ty), 1e-6)
    a = (pt[0] * tx + pt[1] * ty) * inv
    z = pt[2]
    zr = z * np.float32(1 / 0.45)
    row = np.floor(zr)
    ar = a * np.float32(1 / 0.9) + 0.5 * (row - 2 * np.floor(row * 0.5))
    col = np.floor(ar)
    mortar = (zr - row < 0.11) | (ar - col < 0.055)
    block = value_noise(np.stack([col, row]), 1.0, soa=True)
    shade = np.where(mortar, np.float32(0.55), 0.75 + 0.35 * block + 0.1 * fine)
    wa, wz = _frac(a * np.float32(1 / 3.2)), _frac(z * np.float32(1 / 3.0))
    window = (wa > 0.3125) & (wa < 0.75) & (wz > 0.333) & (wz < 0.767)
    c = _scale_rows(np.array(base, np.float32), shade.astype(np.float32, copy=False))
    c[window] = (0.12, 0.15, 0.22)
    roof = np.abs(normal[:, 2]) > 0.9
    c[roof] = (0.3 + 0.1 * fine[roof])[:, None]
    return c


def shade(col: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Lambert shading with ambient light: ``[N, 3]`` albedo × (0.4 + 0.6 max(0, n·sun))."""
    lam = np.maximum(normal.astype(np.float32, copy=False) @ SUN, np.float32(0.0))
    return _scale_rows(np.array(col, np.float32), np.float32(0.4) + np.float32(0.6) * lam)


def sky(dirs: np.ndarray) -> np.ndarray:
    """Sky colour ``[N, 3]`` for unit-free ray directions ``[N, 3]`` (lighter near the horizon)."""
    elev = dirs[:, 2] / np.sqrt((dirs * dirs).sum(1))
    k = np.clip(elev * 2.0, 0.0, 1.0).astype(np.float32)[:, None]
    return np.float32([0.8, 0.85, 0.92]) + k * np.float32([-0.35, -0.23, -0.02])


def intensity(cls: np.ndarray, cos_incidence: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """LiDAR intensity in [0, 1] from class reflectivity, incidence angle and road paint."""
    r = np.where(painted, 0.8, REFLECTIVITY[cls])
    return np.clip(r * (0.3 + 0.7 * np.abs(cos_incidence)), 0.0, 1.0).astype(np.float32)
