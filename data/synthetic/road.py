"""The road network of a synthetic world, drawn per seed: a closed loop and side streets.

The ego-lane centre is a closed periodic cubic spline ``c(u)``, ``u ∈ [0, 2π)``,
through points spaced evenly in arc length (so ``|c'(u)| ≈ L / 2π``). The
points come from a rounded polygon of a random family (rectangle, irregular
convex polygon, rounded triangle, L-shape), with straight stretches between
corners of random radius, smoothed so the curvature ramps like a clothoid, then
optionally mirrored (clockwise driving). It is moved so that ``c(0) = 0`` with
heading +x, in the middle of the longest straight.

The road height ``h(u)`` is a sum of von Mises hills (random height, position
and width along the loop) times a window that keeps the start flat
(``h(0) = h'(0) = h''(0) = 0``), so the first body pose is the identity. Side streets
are straight two-lane roads leaving the loop towards its outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

from fuse4d.data.synthetic.config import SynthConfig

TWO_PI = 2 * np.pi
#: shape families of the loop
SHAPES = ("rectangle", "polygon", "triangle", "l_shape")


class Loop:
    """The closed ego-lane centre curve and the road height profile along it.

    Args:
        points: ``[N, 2]`` curve points at ``u_j = 2π j / N`` (metres, world frame; ``points[0] = 0``).
        hills: ``[K, 3]`` rows ``(amplitude m, centre u, concentration κ)`` of the height profile.
        flat_kappa: concentration of the flat window around the start.
        body_height: IMU height above the road (m); the road surface lies ``body_height`` below the body.
    """

    def __init__(self, points: np.ndarray, hills: np.ndarray, flat_kappa: float, body_height: float):
        pts = np.asarray(points, float)
        n = len(pts)
        u = TWO_PI * np.arange(n + 1) / n
        self.points = pts
        self._spline = CubicSpline(u, np.vstack([pts, pts[:1]]), bc_type="periodic")
        self._d1, self._d2 = self._spline.derivative(1), self._spline.derivative(2)
        self.hills = np.asarray(hills, float).reshape(-1, 3)
        self.flat_kappa = float(flat_kappa)
        self.body_height = float(body_height)
        uu = np.linspace(0.0, TWO_PI, 16 * n, endpoint=False)
        self.length = float(np.linalg.norm(self.curve(uu, 1), axis=1).mean() * TWO_PI)
        d1 = self.curve(uu, 1)
        cross = d1[:, 0] * np.roll(d1[:, 1], -1) - d1[:, 1] * np.roll(d1[:, 0], -1)
        #: +1 counter-clockwise (loop interior on the ego's left), -1 clockwise
        self.turn = 1 if cross.sum() > 0 else -1

    def curve(self, u: np.ndarray, order: int = 0) -> np.ndarray:
        """``order``-th derivative (0, 1, 2) of ``c(u)`` w.r.t. u, ``[..., 2]`` metres."""
        if order not in (0, 1, 2):
            raise ValueError(f"order must be 0, 1 or 2, got {order}")
        f = (self._spline, self._d1, self._d2)[order]
        return f(np.mod(np.asarray(u, dtype=np.float64), TWO_PI))

    def normal(self, u: np.ndarray) -> np.ndarray:
        """Unit left normal of the curve ``[..., 2]``."""
        d = self.curve(u, 1)
        return np.stack([-d[..., 1], d[..., 0]], -1) / np.linalg.norm(d, axis=-1, keepdims=True)

    def offset_point(self, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Point ``c(u) + d n(u)`` at lateral offset d (left positive), xy ``[..., 2]``."""
        return self.curve(u) + np.asarray(d)[..., None] * self.normal(u)

    def curvature(self, u: np.ndarray) -> np.ndarray:
        """Signed curvature (1/m, left turns positive) at ``u [...]``."""
        d1, d2 = self.curve(u, 1), self.curve(u, 2)
        return (d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]) / np.linalg.norm(d1, axis=-1) ** 3

    def height(self, u: np.ndarray, order: int = 0) -> np.ndarray:
        """Road surface height (m, world z) at ``u [...]`` (order 0), or its 1st/2nd u-derivative."""
        if order not in (0, 1, 2):
            raise ValueError(f"order must be 0, 1 or 2, got {order}")
        return self.heights(u, order)[order]

    def heights(self, u: np.ndarray, upto: int = 2) -> list[np.ndarray]:
        """``[h, h', h'']`` (up to order ``upto``) of the road height at ``u [...]``, in one pass."""
        u = np.asarray(u, dtype=np.float64)
        s, c = np.sin(u), np.cos(u)
        kw = self.flat_kappa
        # window W = (1 - g)^2, g = exp(kw (cos u - 1)): W, W' and W'' vanish at u = 0 (a flat start)
        g = np.exp(kw * (c - 1.0))
        g1 = -kw * s * g
        g2 = (kw * kw * s * s - kw * c) * g
        W = (1.0 - g) ** 2
        W1 = -2.0 * (1.0 - g) * g1
        W2 = 2.0 * g1 * g1 - 2.0 * (1.0 - g) * g2
        S0, S1, S2 = np.zeros_like(u), np.zeros_like(u), np.zeros_like(u)
        for a, uc, k in self.hills:
            sk, ck = np.sin(u - uc), np.cos(u - uc)
            f = a * np.exp(k * (ck - 1.0))
            S0 += f
            if upto >= 1:
                S1 -= k * sk * f
            if upto >= 2:
                S2 += (k * k * sk * sk - k * ck) * f
        out = [W * S0 - self.body_height]
        if upto >= 1:
            out.append(W1 * S0 + W * S1)
        if upto >= 2:
            out.append(W2 * S0 + 2 * W1 * S1 + W * S2)
        return out


@dataclass(frozen=True)
class SideStreet:
    """A straight two-lane street leaving the loop at ``u0`` towards the outside of the loop.

    Attributes:
        u0: loop parameter of the junction; origin ``[2]``: the junction on the ego-lane centre;
        direction ``[2]``: unit vector along the street (away from the loop); length (m, from
        the origin); half_width: road half width (m); height: road surface z (m, flat).
    """

    u0: float
    origin: tuple[float, float]
    direction: tuple[float, float]
    length: float
    half_width: float
    height: float
    side: int = -1

    def local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Along-street and lateral (left positive) coordinates (m) of points ``[...]``."""
        dx, dy = np.asarray(x, float) - self.origin[0], np.asarray(y, float) - self.origin[1]
        ex, ey = self.direction
        return dx * ex + dy * ey, -dx * ey + dy * ex

    def outside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Signed distance (m) outside the street's road surface (negative inside; inf behind the origin)."""
        a, b = self.local(x, y)
        e = np.maximum(np.abs(b) - self.half_width, a - self.length)
        return np.where(a >= 0.0, e, np.inf)


@dataclass
class Road:
    """The road network: the loop, its side streets and a summary of what the seed drew."""

    loop: Loop
    side_streets: list[SideStreet]
    info: dict


def make_road(cfg: SynthConfig, rng: np.random.Generator, max_stop_time: float = 0.0, shrink: float = 1.0) -> Road:
    """Draw the loop (shape, size, direction, hills) and its side streets for one seed.

    Args:
        cfg: ``loop_length`` range, ``lap_time``, ``max_mean_speed``, ``hill_height``, ``hill_width``,
            ``side_streets``, ``body_height``.
        rng: the layout generator.
        max_stop_time: seconds the ego will stand still per lap (limits the loop length so the
            mean moving speed stays below ``max_mean_speed``).
        shrink: factor on the drawn loop length (the caller shrinks a loop the ego cannot drive
            in ``lap_time`` within plausible speeds and accelerations, redrawing with the same rng state).
    """
    lo, hi = cfg.loop_length
    # each standstill also costs the braking and speeding up around it (~4 s at city speeds)
    hi = max(lo, min(hi, cfg.max_mean_speed * (cfg.lap_time - max_stop_time - 3.0 * (max_stop_time > 0))))
    target = max(rng.uniform(lo, hi) * shrink, 135.0)  # smaller loops leave no room for corners of 12 m radius
    clockwise = bool(rng.random() < 0.5)
    for attempt in range(30):
        shape = SHAPES[rng.integers(len(SHAPES))] if attempt < 25 else "rectangle"
        if shape == "l_shape" and target < 190.0:  # too small for a notch with two corners on each side
            shape = "polygon"
        if shape == "polygon" and target < 170.0:  # five corners of >= 12 m radius would leave no straights
            shape = "rectangle" if rng.random() < 0.6 else "triangle"
        corners, radii = _polygon(shape, rng)
        if attempt >= 25:  # fall back to a near-square rectangle with tight corners: always fits
            w = rng.uniform(1.0, 1.2)
            corners, radii = np.array([[0, 0], [w, 0], [w, 1], [0, 1]], float), rng.uniform(0.1, 0.3, 4)
        dense, straight = _rounded(corners, radii, target)
        if dense is not None and straight.mean() > 0.25 and _self_clear(dense, 28.0):
            break
    dense = _smooth(dense, 5.0)
    if clockwise:
        dense = dense * np.array([1.0, -1.0])
    points = _resample_from_start(dense, straight)
    length = float(np.linalg.norm(np.diff(np.vstack([points, points[:1]]), axis=0), axis=1).sum())
    # hills along the loop: (amplitude, centre u, concentration) with widths in metres
    K = int(rng.integers(1, 4))
    amp = rng.uniform(*cfg.hill_height, K) * np.where(rng.random(K) < 0.75, 1.0, -0.6)
    width = rng.uniform(*cfg.hill_width, K)
    hills = np.column_stack([amp, rng.uniform(0, TWO_PI, K), (length / (TWO_PI * width)) ** 2])
    flat = (length / (TWO_PI * 15.0)) ** 2
    loop = Loop(points, hills, flat, cfg.body_height)
    uu = np.linspace(0, TWO_PI, 4096, endpoint=False)
    k = TWO_PI / loop.length
    slope = np.abs(loop.height(uu, 1)).max() * k
    bend = np.abs(loop.height(uu, 2)).max() * k * k
    # keep the grade (12 % at most) and crests and dips (vertical curvature 1/83 m at most) plausible
    gain = min(1.0, 0.12 / max(slope, 1e-9), 0.012 / max(bend, 1e-9))
    if gain < 1.0:
        hills[:, 0] *= gain
        loop = Loop(points, hills, flat, cfg.body_height)
    streets = _side_streets(loop, cfg, rng)
    info = {"shape": shape, "direction": "cw" if loop.turn < 0 else "ccw", "loop_length_m": round(loop.length, 3),
            "hills": [[round(float(a), 3), round(float(uc * loop.length / TWO_PI), 2)] for a, uc, _ in hills],
            "side_streets": [{"s_m": round(st.u0 * loop.length / TWO_PI, 2), "length_m": round(st.length, 2)}
                             for st in streets]}
    return Road(loop, streets, info)


def _polygon(shape: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Counter-clockwise corners ``[M, 2]`` (arbitrary scale) of a family and corner sizes ``[M]`` (the
    fraction of the shorter adjacent edge each fillet takes up)."""
    if shape == "rectangle":
        w, h = rng.uniform(1.0, 1.6), 1.0
        c = np.array([[0, 0], [w, 0], [w, h], [0, h]]) + rng.uniform(-0.12, 0.12, (4, 2))
    elif shape == "polygon":
        m = int(rng.integers(5, 7))
        a = TWO_PI * (np.arange(m) + rng.uniform(-0.2, 0.2, m)) / m
        r = rng.uniform(0.8, 1.2, m)
        c = np.column_stack([r * np.cos(a), r * np.sin(a)])
    elif shape == "triangle":
        a = TWO_PI * (np.arange(3) + rng.uniform(-0.2, 0.2, 3)) / 3
        c = np.column_stack([np.cos(a), np.sin(a)]) * rng.uniform(0.75, 1.25, (3, 1))
    else:  # L-shape: a rectangle with one corner cut out (one concave corner)
        w, h = rng.uniform(1.0, 1.3), 1.0
        nx, ny = rng.uniform(0.42, 0.5) * w, rng.uniform(0.42, 0.5) * h
        c = np.array([[0, 0], [w, 0], [w, h - ny], [w - nx, h - ny], [w - nx, h], [0, h]])
    # corner size as the fraction of the shorter adjacent edge that the fillet takes up
    return c.astype(float), rng.uniform(0.22, 0.4, len(c))


def _rounded(corners: np.ndarray, frac: np.ndarray, target: float,
             step: float = 0.25) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Dense closed polyline ``[P, 2]`` of the polygon scaled to about ``target`` metres with rounded
    corners, and a bool ``[P]`` marking the straight stretches; ``(None, None)`` when the corners
    do not fit their edges."""
    corners = corners - corners.mean(0)
    per = np.linalg.norm(np.roll(corners, -1, 0) - corners, axis=1).sum()
    scale = target / per
    for _ in range(3):
        out = _round_corners(corners * scale, frac, step)
        if out is None:
            return None, None
        pts, straight = out
        total = np.linalg.norm(np.diff(np.vstack([pts, pts[:1]]), axis=0), axis=1).sum()
        scale *= target / total
    return _round_corners(corners * scale, frac, step) or (None, None)


def _round_corners(c: np.ndarray, frac: np.ndarray, step: float, min_radius: float = 12.0):
    """Fillet every corner of a closed polygon ``c [M, 2]`` with an arc that takes up ``frac [M]`` of
    the shorter adjacent edge (radius at least ``min_radius`` m)."""
    M = len(c)
    e_in = c - np.roll(c, 1, 0)
    e_out = np.roll(c, -1, 0) - c
    L_in = np.linalg.norm(e_in, axis=1)
    e_in, e_out = e_in / L_in[:, None], e_out / np.roll(L_in, -1)[:, None]
    turn = np.arctan2(e_in[:, 0] * e_out[:, 1] - e_in[:, 1] * e_out[:, 0], (e_in * e_out).sum(1))
    edge = np.roll(L_in, -1)  # edge i runs from corner i to corner i + 1
    half_tan = np.tan(np.abs(turn) / 2)
    radii = np.maximum(frac * np.minimum(L_in, edge) / np.maximum(half_tan, 1e-3), min_radius)
    tan_len = radii * half_tan
    if np.any(tan_len + np.roll(tan_len, -1) > edge - 2.0) or np.any(np.abs(turn) > 2.3):
        return None
    pts, straight = [], []
    for i in range(M):
        t1 = c[i] - e_in[i] * tan_len[i]
        sgn = np.sign(turn[i])
        n_in = np.array([-e_in[i, 1], e_in[i, 0]]) * sgn
        centre = t1 + radii[i] * n_in
        a0 = np.arctan2(t1[1] - centre[1], t1[0] - centre[0])
        n = max(2, int(np.ceil(radii[i] * abs(turn[i]) / step)))
        a = a0 + turn[i] * np.arange(n) / n
        pts.append(centre + radii[i] * np.column_stack([np.cos(a), np.sin(a)]))
        straight.append(np.zeros(n, bool))
        t2 = c[i] + e_out[i] * tan_len[i]
        t1n = c[(i + 1) % M] - e_out[i] * tan_len[(i + 1) % M]
        seg = np.linalg.norm(t1n - t2)
        n = max(1, int(np.ceil(seg / step)))
        pts.append(t2 + (t1n - t2) * (np.arange(n) / n)[:, None])
        straight.append(np.ones(n, bool))
    return np.concatenate(pts), np.concatenate(straight)


def _self_clear(dense: np.ndarray, clearance: float) -> bool:
    """Whether parts of the closed polyline more than 3 clearances apart (along it) stay ``clearance`` apart."""
    from scipy.spatial import cKDTree

    seg = np.linalg.norm(np.diff(np.vstack([dense, dense[:1]]), axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg[:-1])])
    total = seg.sum()
    sub = slice(None, None, 8)
    pairs = cKDTree(dense[sub]).query_pairs(clearance, output_type="ndarray")
    if len(pairs) == 0:
        return True
    ds = np.abs(s[sub][pairs[:, 0]] - s[sub][pairs[:, 1]])
    ds = np.minimum(ds, total - ds)
    return bool(np.all(ds < 3 * clearance))


def _smooth(dense: np.ndarray, half_window: float, step: float = 0.25) -> np.ndarray:
    """Circular moving average over ±half_window metres (curvature ramps in, like a clothoid)."""
    k = int(round(half_window / step))
    ker = np.ones(2 * k + 1) / (2 * k + 1)
    ext = np.concatenate([dense[-k:], dense, dense[:k]])
    return np.column_stack([np.convolve(ext[:, j], ker, mode="valid") for j in range(2)])


def _resample_from_start(dense: np.ndarray, straight: np.ndarray, spacing: float = 2.0) -> np.ndarray:
    """Even arc-length resampling starting mid-way along the longest straight, moved and rotated so
    the start is the origin with heading +x → ``[N, 2]``."""
    P = len(dense)
    # longest run of straight samples on the circular array
    best, best_mid, run, i0 = 0, 0, 0, 0
    flags = np.concatenate([straight, straight])
    for i, f in enumerate(flags):
        if f:
            if run == 0:
                i0 = i
            run += 1
            if run > best and run <= P:
                best, best_mid = run, (i0 + run // 2) % P
        else:
            run = 0
    pts = np.roll(dense, -best_mid, axis=0)
    seg = np.linalg.norm(np.diff(np.vstack([pts, pts[:1]]), axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    total = s[-1]
    n = int(round(total / spacing))
    si = total * np.arange(n) / n
    closed = np.vstack([pts, pts[:1]])
    out = np.column_stack([np.interp(si, s, closed[:, 0]), np.interp(si, s, closed[:, 1])])
    out -= out[0]
    # heading at the start from the periodic spline through the points
    u = TWO_PI * np.arange(n + 1) / n
    d = CubicSpline(u, np.vstack([out, out[:1]]), bc_type="periodic")(0.0, 1)
    a = np.arctan2(d[1], d[0])
    R = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    out = out @ R.T
    out[0] = 0.0
    return out


def _side_streets(loop: Loop, cfg: SynthConfig, rng: np.random.Generator) -> list[SideStreet]:
    """Up to ``cfg.side_streets`` straight streets leaving the loop towards its outside (the ego's right
    when it drives counter-clockwise, its left when clockwise), on low-curvature stretches away from
    the start, each at least 18 m long and 22 m clear of the rest of the loop."""
    from scipy.spatial import cKDTree

    streets: list[SideStreet] = []
    n_want = int(cfg.side_streets[0] + rng.integers(0, cfg.side_streets[1] - cfg.side_streets[0] + 1))
    u = np.linspace(0, TWO_PI, 2048, endpoint=False)
    curve = loop.curve(u)
    tree = cKDTree(curve)
    L = loop.length
    s = u * L / TWO_PI
    kappa = np.abs(np.convolve(np.r_[loop.curvature(u)[-40:], loop.curvature(u), loop.curvature(u)[:40]],
                               np.ones(81) / 81, mode="valid"))
    ok = (kappa < 1 / 80.0) & (s > 25.0) & (s < L - 15.0)
    if not ok.any():  # a small loop: accept gentler bends and places nearer the start
        ok = (kappa < 1 / 40.0) & (s > 15.0) & (s < L - 10.0)
    reach = cfg.world_margin - 6.0
    for _ in range(30):
        if len(streets) >= n_want or not ok.any():
            break
        j = int(rng.choice(np.flatnonzero(ok)))
        u0 = float(u[j])
        away = -loop.turn * loop.normal(u0)  # towards the outside of the loop
        ang = rng.uniform(-0.35, 0.35)
        dirn = np.array([np.cos(ang) * away[0] - np.sin(ang) * away[1],
                         np.sin(ang) * away[0] + np.cos(ang) * away[1]])
        origin = loop.curve(u0)
        steps = np.arange(12.0, 80.0, 1.0)
        pts = origin + steps[:, None] * dirn
        dist, idx = tree.query(pts)
        far = np.abs(s[idx] - s[j])
        far = np.minimum(far, L - far) > 20.0
        blocked = far & (dist < 22.0)
        lo, hi = curve.min(0) - reach, curve.max(0) + reach
        outside = np.any((pts < lo) | (pts > hi), axis=1)
        stop = np.flatnonzero(blocked | outside)
        length = float(steps[stop[0]] - 2.0) if stop.size else float(steps[-1])
        if length < 18.0:
            ok[max(0, j - 60):j + 60] = False
            continue
        streets.append(SideStreet(u0, (float(origin[0]), float(origin[1])), (float(dirn[0]), float(dirn[1])),
                                  min(length, 70.0), 3.5, float(loop.height(u0)), -loop.turn))
        ok[np.abs(s - s[j]) < 40.0] = False
    return streets
