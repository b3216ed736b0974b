"""Procedural surface appearance: albedo per hit (textures), lighting, and LiDAR reflectivity.

Textures are functions of the world hit point, so they stick to surfaces and
give the camera trackable features: asphalt noise with lane markings, paving
tiles, facades (stone blocks, brick, plaster, panels or glass, with windows in
storeys and bays of a per-building style), leafy noise on vegetation.
:class:`Lighting` (per world) sets the sun direction, ambient light, sky colour
and the camera's exposure and contrast (a tone curve on the 8-bit image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fuse4d.data.classes import BUILDING, NUM_CLASSES, POLE, ROAD, SIDEWALK, TERRAIN, VEGETATION
from fuse4d.data.synthetic.primitives import STYLE_DIM
from fuse4d.data.synthetic.terrain import CENTRE_LINE, ROAD_EDGES

SUN = (np.array([0.45, 0.3, 0.84]) / np.linalg.norm([0.45, 0.3, 0.84])).astype(np.float32)
#: facade wall patterns (style[5])
FACADES = ("stone", "brick", "plaster", "panels", "glass")
_WINDOW_TINTS = np.array([[0.12, 0.15, 0.22], [0.2, 0.22, 0.24], [0.1, 0.2, 0.22], [0.35, 0.45, 0.55],
                          [0.08, 0.08, 0.1], [0.25, 0.2, 0.15]], np.float32)


@dataclass(frozen=True)
class Lighting:
    """Sun, ambient light, sky and camera exposure of one world.

    Attributes:
        sun: ``[3]`` unit vector towards the sun (world); ambient: share of light that is not direct;
        gain: exposure factor; gamma: contrast exponent of the tone curve (> 1: darker mid-tones);
        sky_horizon, sky_zenith: ``[3]`` sky colours.
    """

    sun: tuple[float, float, float] = tuple(float(x) for x in SUN)
    ambient: float = 0.4
    gain: float = 1.0
    gamma: float = 1.0
    sky_horizon: tuple[float, float, float] = (0.8, 0.85, 0.92)
    sky_zenith: tuple[float, float, float] = (0.45, 0.62, 0.9)

    def tone_lut(self) -> np.ndarray | None:
        """uint8 ``[256]`` tone curve ``255 (gain x / 255)^gamma`` (None when it is the identity)."""
        if self.gain == 1.0 and self.gamma == 1.0:
            return None
        x = np.arange(256) / 255.0
        return np.clip(255.0 * np.clip(self.gain * x, 0, 1) ** self.gamma + 0.5, 0, 255).astype(np.uint8)

    def summary(self) -> dict:
        """Sun azimuth/elevation (deg), ambient, exposure gain and gamma, JSON-safe."""
        sx, sy, sz = self.sun
        return {"sun_azimuth_deg": round(float(np.degrees(np.arctan2(sy, sx))), 2),
                "sun_elevation_deg": round(float(np.degrees(np.arcsin(sz))), 2), "ambient": round(self.ambient, 3),
                "exposure": round(self.gain, 3), "gamma": round(self.gamma, 3)}


def draw_lighting(rng: np.random.Generator) -> Lighting:
    """A random sun (elevation 20-70°, any azimuth), ambient share, exposure (0.7-1.25) and contrast."""
    az, el = rng.uniform(-np.pi, np.pi), np.radians(rng.uniform(20.0, 70.0))
    sun = (float(np.cos(el) * np.cos(az)), float(np.cos(el) * np.sin(az)), float(np.sin(el)))
    haze = rng.uniform(0.0, 1.0)  # clear deep blue .. hazy pale sky
    horizon = tuple(float(x) for x in np.array([0.8, 0.85, 0.92]) + haze * np.array([0.1, 0.08, 0.04]))
    zenith = tuple(float(x) for x in np.array([0.35, 0.55, 0.88]) + haze * np.array([0.3, 0.22, 0.04]))
    return Lighting(sun, float(rng.uniform(0.3, 0.5)), float(rng.uniform(0.7, 1.25)), float(rng.uniform(0.8, 1.25)),
                    horizon, zenith)


def facade_style(rng: np.random.Generator) -> np.ndarray:
    """A building's facade parameters ``[STYLE_DIM]`` float32: storey height (m), bay width (m),
    window width / bottom / top fractions, wall pattern (index into FACADES), window RGB, roof grey."""
    pattern = int(rng.choice(len(FACADES), p=[0.3, 0.25, 0.25, 0.1, 0.1]))
    lo, hi = (0.08, 0.92) if pattern == 4 else (rng.uniform(0.22, 0.4), rng.uniform(0.65, 0.85))
    width = rng.uniform(0.75, 0.9) if pattern == 4 else rng.uniform(0.3, 0.7)
    tint = _WINDOW_TINTS[rng.integers(len(_WINDOW_TINTS))] * rng.uniform(0.8, 1.2)
    style = np.array([rng.uniform(2.8, 3.8), rng.uniform(2.2, 4.2), width, lo, hi, pattern, *tint,
                      rng.uniform(0.2, 0.5)], np.float32)
    assert len(style) == STYLE_DIM
    return style
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
           paint: np.ndarray, style: np.ndarray | None = None) -> np.ndarray:
    """Surface colour ``[N, 3]`` float32 in [0, 1].

    Args:
        cls: ``[N]`` class ids of the hits; p: ``[N, 3]`` world hit points;
        normal: ``[N, 3]`` unit normals; base: ``[N, 3]`` primitive/actor colour
        (used for buildings, vegetation, poles, vehicles, pedestrians); paint: ``[N]`` bool,
        road markings (white); style: ``[B, STYLE_DIM]`` facade styles of the building hits
        (in the order they appear in cls; None: one default style).
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
                                 fine[m], style))
    return np.clip(out, 0.0, 1.0, out=out)


_DEFAULT_STYLE = np.array([3.0, 3.2, 0.4375, 0.333, 0.767, 0, 0.12, 0.15, 0.22, 0.35], np.float32)


def _facade(pt: np.ndarray, normal: np.ndarray, base: np.ndarray, fine: np.ndarray,
            style: np.ndarray | None = None) -> np.ndarray:
    """Facade colour: a wall pattern with windows in storeys and bays; flat roofs.

    ``pt [3, M]`` hit points (coordinate-major), ``normal [M, 3]``, ``base [M, 3]``, ``fine [M]``,
    ``style [M, STYLE_DIM]`` (None: the default stone facade).
    """
    M = pt.shape[1]
    st = np.broadcast_to(_DEFAULT_STYLE, (M, STYLE_DIM)) if style is None else style
    tx, ty = -normal[:, 1], normal[:, 0]
    inv = 1.0 / np.maximum(np.sqrt(tx * tx + ty * ty), 1e-6)
    a = (pt[0] * tx + pt[1] * ty) * inv
    z = pt[2]
    pattern = st[:, 5].astype(np.int8)
    shade = np.empty(M, np.float32)
    for k, (bw, bh, mortar_w, mortar_h, spread) in enumerate(((0.9, 0.45, 0.055, 0.11, 0.35),
                                                             (0.25, 0.085, 0.08, 0.16, 0.3))):
        m = np.flatnonzero(pattern == k)  # stone blocks, bricks: staggered rows with mortar
        if m.size:
            zr = z[m] * np.float32(1 / bh)
            row = np.floor(zr)
            ar = a[m] * np.float32(1 / bw) + 0.5 * (row - 2 * np.floor(row * 0.5))
            col = np.floor(ar)
            mortar = (zr - row < mortar_h) | (ar - col < mortar_w)
            block = value_noise(np.stack([col, row]), 1.0, soa=True)
            shade[m] = np.where(mortar, np.float32(0.55), 0.75 + spread * block + 0.1 * fine[m])
    m = np.flatnonzero(pattern == 2)  # plaster
    shade[m] = 0.9 + 0.12 * fine[m]
    m = np.flatnonzero(pattern >= 3)  # panels (seams at bays and storeys), glass (mullions)
    if m.size:
        pa, pz = _frac(a[m] / st[m, 1]), _frac(z[m] / st[m, 0])
        seam = (pa < 0.03) | (pz < 0.03)
        panel = value_noise(np.stack([np.floor(a[m] / st[m, 1]), np.floor(z[m] / st[m, 0])]), 1.0, soa=True)
        shade[m] = np.where(seam, np.float32(0.5), 0.85 + 0.2 * panel)
    c = _scale_rows(np.array(base, np.float32), shade)
    wa, wz = _frac(a / st[:, 1]), _frac(z / st[:, 0])
    window = (np.abs(wa - 0.5) < 0.5 * st[:, 2]) & (wz > st[:, 3]) & (wz < st[:, 4])
    w = np.flatnonzero(window)
    if w.size:  # each window a little brighter or darker (reflections, curtains, lights)
        pane = value_noise(np.stack([np.floor(a[w] / st[w, 1]), np.floor(z[w] / st[w, 0])]), 1.0, soa=True)
        put_rows(c, w, _scale_rows(np.array(st[w, 6:9], np.float32), 0.75 + 0.6 * pane))
    roof = np.abs(normal[:, 2]) > 0.9
    c[roof] = (st[roof, 9] + 0.1 * fine[roof])[:, None]
    return c


def shade(col: np.ndarray, normal: np.ndarray, light: Lighting | None = None) -> np.ndarray:
    """Lambert shading with ambient light: ``[N, 3]`` albedo × (ambient + (1 - ambient) max(0, n·sun))."""
    light = light or _DEFAULT_LIGHT
    sun = np.asarray(light.sun, np.float32)
    lam = np.maximum(normal.astype(np.float32, copy=False) @ sun, np.float32(0.0))
    amb = np.float32(light.ambient)
    return _scale_rows(np.array(col, np.float32), amb + (np.float32(1.0) - amb) * lam)


def sky(dirs: np.ndarray, light: Lighting | None = None) -> np.ndarray:
    """Sky colour ``[N, 3]`` for unit-free ray directions ``[N, 3]`` (lighter near the horizon)."""
    light = light or _DEFAULT_LIGHT
    elev = dirs[:, 2] / np.sqrt((dirs * dirs).sum(1))
    k = np.clip(elev * 2.0, 0.0, 1.0).astype(np.float32)[:, None]
    horizon = np.asarray(light.sky_horizon, np.float32)
    return horizon + k * (np.asarray(light.sky_zenith, np.float32) - horizon)


_DEFAULT_LIGHT = Lighting()


def intensity(cls: np.ndarray, cos_incidence: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """LiDAR intensity in [0, 1] from class reflectivity, incidence angle and road paint."""
    r = np.where(painted, 0.8, REFLECTIVITY[cls])
    return np.clip(r * (0.3 + 0.7 * np.abs(cos_incidence)), 0.0, 1.0).astype(np.float32)
