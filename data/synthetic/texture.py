"""Procedural surface appearance: albedo per hit (textures) and LiDAR reflectivity.

Textures are functions of the world hit point, so they stick to surfaces and
give the camera trackable features: asphalt noise with lane markings, paving
tiles, stone blocks and windows on buildings, leafy noise on vegetation.
"""

from __future__ import annotations

import numpy as np

from fuse4d.data.classes import BUILDING, MOVABLE, NUM_CLASSES, POLE, ROAD, SIDEWALK, TERRAIN, VEGETATION
from fuse4d.data.synthetic.terrain import CENTRE_LINE, ROAD_EDGES

SUN = np.array([0.45, 0.3, 0.84]) / np.linalg.norm([0.45, 0.3, 0.84])
#: LiDAR reflectivity per class
REFLECTIVITY = np.array([0.1, 0.12, 0.25, 0.35, 0.45, 0.5, 0.6, 0.3, 0.3, 0.55], np.float32)
assert len(REFLECTIVITY) == NUM_CLASSES


def value_noise(p: np.ndarray, scale: float) -> np.ndarray:
    """Blocky hash noise in [0, 1) of points ``p [N, k]`` on a lattice of ``scale`` metres → ``[N]``."""
    q = np.floor(p / scale).astype(np.int64).astype(np.uint32)
    h = np.full(q.shape[0], 2166136261, np.uint32)
    for k, prime in zip(range(q.shape[1]), (73856093, 19349663, 83492791)):
        h = (h ^ (q[:, k] * np.uint32(prime))) * np.uint32(16777619)
    h ^= h >> np.uint32(13)
    h *= np.uint32(1274126177)
    h ^= h >> np.uint32(16)
    return h.astype(np.float32) / np.float32(2 ** 32)


def lane_marking(d: np.ndarray, cos_phase: np.ndarray, sin_phase: np.ndarray) -> np.ndarray:
    """Whether road points with lateral offset ``d`` and dash phase are painted white → bool."""
    dashed = (np.abs(d - CENTRE_LINE) < 0.08) & (sin_phase > 0)
    solid = (np.abs(d + 1.75) < 0.07) | (np.abs(d - (ROAD_EDGES[1] - 0.25)) < 0.07)
    return dashed | solid


def albedo(cls: np.ndarray, p: np.ndarray, normal: np.ndarray, base: np.ndarray,
           ground_attr: np.ndarray) -> np.ndarray:
    """Surface colour ``[N, 3]`` float32 in [0, 1].

    Args:
        cls: ``[N]`` class ids of the hits; p: ``[N, 3]`` world hit points;
        normal: ``[N, 3]`` unit normals; base: ``[N, 3]`` primitive/actor colour
        (used for buildings, poles, vehicles, pedestrians); ground_attr: ``[N, 3]``
        interpolated ``(d, cos φ, sin φ)`` of ground hits (ignored elsewhere).
    """
    n = len(cls)
    out = base.astype(np.float32).copy()
    fine = value_noise(p, 0.12)
    coarse = value_noise(p, 0.7)
    m = cls == ROAD
    if m.any():
        g = 0.24 + 0.1 * fine[m] + 0.06 * coarse[m]
        paint = lane_marking(ground_attr[m, 0], ground_attr[m, 1], ground_attr[m, 2])
        g = np.where(paint, 0.85, g)
        out[m] = g[:, None] * np.array([1.0, 1.0, 1.02], np.float32)
    m = cls == SIDEWALK
    if m.any():
        tile = value_noise(p[m, :2], 0.6)
        grout = (np.mod(p[m, 0], 0.6) < 0.04) | (np.mod(p[m, 1], 0.6) < 0.04)
        g = np.where(grout, 0.32, 0.5 + 0.12 * tile + 0.05 * fine[m])
        out[m] = g[:, None] * np.array([1.0, 0.97, 0.92], np.float32)
    m = cls == TERRAIN
    if m.any():
        patch = value_noise(p[m, :2], 1.7)
        out[m] = np.array([0.36, 0.4, 0.2], np.float32) * (0.6 + 0.5 * fine[m] + 0.3 * patch)[:, None]
    m = cls == VEGETATION
    if m.any():
        out[m] = base[m] * (0.55 + 0.7 * value_noise(p[m], 0.25))[:, None]
    m = cls == BUILDING
    if m.any():
        out[m] = _facade(p[m], normal[m], base[m], fine[m])
    m = cls == POLE
    if m.any():
        out[m] = base[m] * (0.9 + 0.2 * fine[m])[:, None]
    m = np.isin(cls, MOVABLE)
    if m.any():
        out[m] = base[m] * (0.88 + 0.12 * coarse[m])[:, None]
    return np.clip(out, 0.0, 1.0) if n else out


def _facade(p: np.ndarray, normal: np.ndarray, base: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """Stone blocks with mortar, windows every 3.2 m × 3 m; plain dark roofs."""
    t = np.stack([-normal[:, 1], normal[:, 0]], -1)
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-6)
    a = np.einsum("ij,ij->i", p[:, :2], t)
    z = p[:, 2]
    row = np.floor(z / 0.45)
    a_shift = a + 0.45 * (np.mod(row, 2))
    mortar = (np.mod(z, 0.45) < 0.05) | (np.mod(a_shift, 0.9) < 0.05)
    block = value_noise(np.stack([np.floor(a_shift / 0.9), row], -1), 1.0)
    c = base * (0.75 + 0.35 * block + 0.1 * fine)[:, None]
    c = np.where(mortar[:, None], base * 0.55, c)
    window = (np.mod(a, 3.2) > 1.0) & (np.mod(a, 3.2) < 2.4) & (np.mod(z, 3.0) > 1.0) & (np.mod(z, 3.0) < 2.3)
    c = np.where(window[:, None], np.array([0.12, 0.15, 0.22], np.float32), c)
    roof = np.abs(normal[:, 2]) > 0.9
    return np.where(roof[:, None], np.float32(0.3) + 0.1 * fine[:, None], c).astype(np.float32)


def shade(col: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Lambert shading with ambient light: ``[N, 3]`` albedo × (0.4 + 0.6 max(0, n·sun))."""
    lam = np.clip(normal @ SUN, 0.0, None)
    return col * (0.4 + 0.6 * lam)[:, None].astype(np.float32)


def sky(dirs: np.ndarray) -> np.ndarray:
    """Sky colour ``[N, 3]`` for unit-free ray directions ``[N, 3]`` (lighter near the horizon)."""
    elev = dirs[:, 2] / np.linalg.norm(dirs, axis=1)
    k = np.clip(elev * 2.0, 0.0, 1.0)[:, None]
    return ((1 - k) * np.array([0.8, 0.85, 0.92]) + k * np.array([0.45, 0.62, 0.9])).astype(np.float32)


def intensity(cls: np.ndarray, cos_incidence: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """LiDAR intensity in [0, 1] from class reflectivity, incidence angle and road paint."""
    r = np.where(painted, 0.8, REFLECTIVITY[cls])
    return np.clip(r * (0.3 + 0.7 * np.abs(cos_incidence)), 0.0, 1.0).astype(np.float32)
