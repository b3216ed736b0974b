"""The ground: a triangulated heightfield with road, sidewalks (kerbs), side streets and terrain.

The street cross-section is laid out by the signed lateral offset ``d`` from the
ego-lane centre (left positive)::

    terrain | sidewalk | parking lane | ego lane | oncoming lane | sidewalk | terrain
          -7.0      -4.25          -1.75       1.75            5.25       7.75

Side streets (see :mod:`road`) leave the loop on the right; their road, 2.75 m
sidewalks and kerbs join the loop's. Road surface height along the loop is
``Loop.height(u)`` across the whole street (no roll); a side street is flat at
its junction's height; away from the streets the ground blends into a smooth
field interpolated from the road heights. Sidewalks and terrain sit a kerb
(0.15 m) higher; terrain adds random mounds and a terrace with a ramp, faded
out near the streets so the elevation map has slopes and steps.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from fuse4d.data.classes import ROAD, SIDEWALK, TERRAIN
from fuse4d.data.synthetic.config import SynthConfig
from fuse4d.data.synthetic.road import TWO_PI, Road

ROAD_EDGES = (-4.25, 5.25)
SIDEWALK_OUT = (-7.0, -4.25)
SIDEWALK_IN = (5.25, 7.75)
KERB = 0.15
PARKING_OFFSET = -3.0
ONCOMING_OFFSET = 3.5
CENTRE_LINE = 1.75
DASH_PERIOD = 6.0


class Terrain:
    """Ground heightfield on a regular grid with per-cell classes.

    Attributes:
        origin: ``[2]`` xy of vertex (0, 0), metres; ``spacing``: grid step, metres.
        heights: ``[NX, NY]`` vertex heights (world z, metres).
        cell_cls: ``[NX-1, NY-1]`` uint8 class per cell (road, sidewalk, terrain).
        vertex_attr: ``[NX*NY, 3]`` float32 ``(d, cos φ, sin φ)`` per vertex: lateral
            offset and lane-dash phase, interpolated by the camera for markings.
        length: loop length in metres.
    """

    def __init__(self, road: Road, cfg: SynthConfig, rng: np.random.Generator):
        self.road, self.loop, self.streets = road, road.loop, list(road.side_streets)
        loop = self.loop
        self.spacing = sp = float(cfg.terrain_spacing)
        u = np.linspace(0.0, TWO_PI, 8192, endpoint=False)
        self.curve_u, self.curve_xy, self.curve_n = u, loop.curve(u), loop.normal(u)
        seg = np.linalg.norm(np.roll(self.curve_xy, -1, 0) - self.curve_xy, axis=1)
        self.curve_s = np.concatenate([[0.0], np.cumsum(seg[:-1])])
        self.length = float(seg.sum())
        self._tree = cKDTree(self.curve_xy)
        lo = np.floor((self.curve_xy.min(0) - cfg.world_margin) / sp) * sp
        hi = np.ceil((self.curve_xy.max(0) + cfg.world_margin) / sp) * sp
        self.origin = lo
        self.shape = tuple(np.round((hi - lo) / sp).astype(int) + 1)
        X, Y = self.grid()
        d, s, uv, smooth = self._lateral_grid()
        e_loop = np.maximum(ROAD_EDGES[0] - d, d - ROAD_EDGES[1])
        e_side, h_side, s_side = self._side(X, Y)
        side = e_side < e_loop
        e = np.where(side, e_side, e_loop)
        # one offset field classifies both: side-street points map onto the loop's road edge on their side
        e_c = np.maximum(e_side, -1.0)
        d_eff = np.where(side, np.where(s_side < 0, ROAD_EDGES[0] - e_c, ROAD_EDGES[1] + e_c), d)
        u_near = np.arctan2(uv[..., 1], uv[..., 0])
        w_loop = _smoothstep((20.0 - np.abs(d)) / 12.0)
        w_side = _smoothstep((12.0 - np.maximum(e_side, 0.0)) / 8.0)
        base = w_loop * loop.height(u_near) + (1 - w_loop) * (w_side * h_side + (1 - w_side) * smooth)
        self.heights = base + self._street_offset(e) + self._features(rng, X, Y, e)
        dc = 0.25 * (d_eff[:-1, :-1] + d_eff[1:, :-1] + d_eff[:-1, 1:] + d_eff[1:, 1:])
        self.cell_cls = classify_offset(dc)
        self.vertex_attr = np.stack([d_eff, s[..., 0], s[..., 1]], -1).reshape(-1, 3).astype(np.float32)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Vertex coordinates ``X, Y`` each ``[NX, NY]`` metres."""
        xs = self.origin[0] + self.spacing * np.arange(self.shape[0])
        ys = self.origin[1] + self.spacing * np.arange(self.shape[1])
        return np.meshgrid(xs, ys, indexing="ij")

    def lateral(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Signed lateral offset ``d`` and arc length ``s`` (metres) of points ``[...]``."""
        p = np.stack([np.asarray(x, float), np.asarray(y, float)], -1)
        _, idx = self._tree.query(p.reshape(-1, 2))
        idx = idx.reshape(p.shape[:-1])
        rel = p - self.curve_xy[idx]
        n = self.curve_n[idx]
        d = np.einsum("...i,...i->...", rel, n)
        s = self.curve_s[idx] + rel[..., 0] * n[..., 1] - rel[..., 1] * n[..., 0]
        return d, s

    def _lateral_grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per vertex ``[NX, NY]``: loop lateral offset ``d``, dash phase ``(cos, sin)`` ``[.., 2]``,
        loop parameter of the nearest curve point as ``(cos u, sin u)`` ``[.., 2]``, and a smooth
        height field (Gaussian-weighted road heights, σ 15 m) for the ground away from the streets.

        Exact on a 1 m grid, bilinear in between (all are smooth near the street).
        """
        f = max(1, int(round(1.0 / self.spacing)))
        nx, ny = self.shape
        xs = self.origin[0] + self.spacing * f * np.arange((nx - 1) // f + 2)
        ys = self.origin[1] + self.spacing * f * np.arange((ny - 1) // f + 2)
        Xc, Yc = np.meshgrid(xs, ys, indexing="ij")
        d, s = self.lateral(Xc, Yc)
        period = self.length / max(1, round(self.length / DASH_PERIOD))
        phase = 2 * np.pi * s / period
        u = self.u_at(s)
        us = self.curve_u[::128]
        pts, hs = self.curve_xy[::128], self.loop.height(us)
        for st in self.streets:  # side streets pull the field to their height too
            along = np.arange(10.0, st.length, 4.0)
            pts = np.vstack([pts, np.asarray(st.origin) + along[:, None] * np.asarray(st.direction)])
            hs = np.r_[hs, np.full(len(along), st.height)]
        smooth = np.empty(Xc.shape)
        P = np.stack([Xc.ravel(), Yc.ravel()], -1)
        for a in range(0, len(P), 8192):
            r2 = ((P[a:a + 8192, None, :] - pts[None]) ** 2).sum(-1)
            w = np.exp(-(r2 - r2.min(1, keepdims=True)) / (2 * 15.0 ** 2))
            smooth.ravel()[a:a + 8192] = (w @ hs) / w.sum(1)
        vals = np.stack([d, np.cos(phase), np.sin(phase), np.cos(u), np.sin(u), smooth], -1)
        out = _upsample(_upsample(vals, f, nx, 0), f, ny, 1)
        return out[..., 0], out[..., 1:3], out[..., 3:5], out[..., 5]

    def _side(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distance outside the nearest side street's road (inf without one), its height and the side
        of the loop it leaves on (-1 right, +1 left), each ``[...]``."""
        e = np.full(np.shape(x), np.inf)
        h = np.zeros(np.shape(x))
        side = np.zeros(np.shape(x), np.int8)
        for st in self.streets:
            es = st.outside(x, y)
            closer = es < e
            e = np.where(closer, es, e)
            h = np.where(closer, st.height, h)
            side = np.where(closer, st.side, side)
        return e, h, side

    def outside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance (m) outside the nearest road surface (loop or side street; negative on a road) ``[...]``."""
        d, _ = self.lateral(x, y)
        e_loop = np.maximum(ROAD_EDGES[0] - d, d - ROAD_EDGES[1])
        return np.minimum(e_loop, self._side(np.asarray(x, float), np.asarray(y, float))[0])

    def u_at(self, s: np.ndarray) -> np.ndarray:
        """Curve parameter u for arc lengths ``s [...]`` (metres, wrapped to one lap)."""
        return np.interp(np.mod(s, self.length), self.curve_s, self.curve_u)

    def height_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Exact mesh surface height at ``x, y [...]`` (clamped to the grid), metres."""
        return self._interp(self.heights, x, y)

    def class_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground class (road / sidewalk / terrain) at ``x, y [...]`` → uint8, from the mesh's offset field."""
        return classify_offset(self._interp(self.vertex_attr[:, 0].reshape(self.shape), x, y))

    def _interp(self, field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Piecewise-linear value of a vertex field ``[NX, NY]`` on the mesh triangles."""
        fi = np.clip((np.asarray(x, float) - self.origin[0]) / self.spacing, 0, self.shape[0] - 1 - 1e-9)
        fj = np.clip((np.asarray(y, float) - self.origin[1]) / self.spacing, 0, self.shape[1] - 1 - 1e-9)
        i, j = np.floor(fi).astype(int), np.floor(fj).astype(int)
        fx, fy = fi - i, fj - j
        H = field
        h00, h10, h01, h11 = H[i, j], H[i + 1, j], H[i, j + 1], H[i + 1, j + 1]
        lower = h00 + fx * (h10 - h00) + fy * (h11 - h10)
        upper = h00 + fy * (h01 - h00) + fx * (h11 - h01)
        return np.where(fx >= fy, lower, upper)

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vertices ``[V, 3]``, triangles ``[M, 3]`` int64 and class per triangle ``[M]`` uint8.

        Triangles are ordered cell by cell (row-major), two per cell, normals up.
        """
        X, Y = self.grid()
        verts = np.stack([X, Y, self.heights], -1).reshape(-1, 3)
        nx, ny = self.shape
        idx = np.arange(nx * ny).reshape(nx, ny)
        v00, v10 = idx[:-1, :-1], idx[1:, :-1]
        v01, v11 = idx[:-1, 1:], idx[1:, 1:]
        tris = np.stack([np.stack([v00, v10, v11], -1), np.stack([v00, v11, v01], -1)], -2)
        return verts, tris.reshape(-1, 3), np.repeat(self.cell_cls.reshape(-1), 2)

    def _street_offset(self, e: np.ndarray) -> np.ndarray:
        """Kerb: 0 on the road, +KERB beyond, rising over one grid step just outside the road edge.

        ``e``: distance outside the road surface (m, negative on the road)."""
        return KERB * np.clip(e / self.spacing, 0.0, 1.0)

    def _features(self, rng: np.random.Generator, X: np.ndarray, Y: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Mounds and a terrace with a ramp, faded to 0 within 3 m of the sidewalks (``e``: distance
        outside the road, m)."""
        z = np.zeros_like(X)
        lo, hi = self.curve_xy.min(0), self.curve_xy.max(0)
        for _ in range(12):
            cx = rng.uniform(lo[0] - 30, hi[0] + 30)
            cy = rng.uniform(lo[1] - 30, hi[1] + 30)
            h, sig = rng.uniform(0.6, 2.2), rng.uniform(2.5, 6.0)
            z += h * np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * sig * sig))
        # terrace in the park inside the loop: a plateau with a ramp on one side
        centre = 0.5 * (lo + hi) + rng.uniform(-4, 4, 2)
        ang = rng.uniform(0, np.pi)
        a = (X - centre[0]) * np.cos(ang) + (Y - centre[1]) * np.sin(ang)
        b = -(X - centre[0]) * np.sin(ang) + (Y - centre[1]) * np.cos(ang)
        L, W, ramp, top = 16.0, 9.0, 6.0, rng.uniform(0.8, 1.2)
        sp = self.spacing
        inside = np.clip((L / 2 - np.abs(a)) / sp, 0, 1) * np.clip((W / 2 - np.abs(b)) / sp, 0, 1)
        z += inside * top * np.clip((a + L / 2) / ramp, 0.0, 1.0)
        fade = np.clip((e - (ROAD_EDGES[0] - SIDEWALK_OUT[0])) / 3.0, 0.0, 1.0)
        return z * fade * fade * (3 - 2 * fade)


def _upsample(a: np.ndarray, f: int, n: int, axis: int) -> np.ndarray:
    """Linear interpolation of ``a`` along ``axis`` onto ``n`` points ``f`` times denser (same origin)."""
    pos = np.arange(n) / f
    i = np.minimum(np.floor(pos).astype(int), a.shape[axis] - 2)
    w = (pos - i).reshape((-1,) + (1,) * (a.ndim - 1 - axis))
    return np.take(a, i, axis) * (1 - w) + np.take(a, i + 1, axis) * w


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, C1 in between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def classify_offset(d: np.ndarray) -> np.ndarray:
    """Ground class (road / sidewalk / terrain) for lateral offsets ``d [...]`` → uint8."""
    cls = np.full(np.shape(d), TERRAIN, dtype=np.uint8)
    cls[(d >= SIDEWALK_OUT[0]) & (d <= SIDEWALK_IN[1])] = SIDEWALK
    cls[(d >= ROAD_EDGES[0]) & (d <= ROAD_EDGES[1])] = ROAD
    return cls
