"""Point classes from the shape of what the LiDAR hit, over many scans.

The model labels each scan through a coarse range view (16-px patches of a 64-row image): a pole
one or two beams wide is never called a pole, and the foot of a wall or a car that the geometric
ground mask calls ground takes a ground class. A LiDAR person would look at the shape instead,
and this module does, on the static points of a few neighbouring scans gathered in the world
frame (``context``), which see a thin object from many ranges and angles:

A point is on a **pole** when the column of non-ground points it stands in (within
``pole_radius`` m of it horizontally, on an xy grid of ``cell`` m)

- rises from the ground (its lowest point within ``pole_base`` m of the local ground, the mean
  height of the ground points on a 1 m grid) at least ``pole_height`` m: taller than a person;
- is narrow over its whole height (twice the RMS horizontal distance of its points from their
  mean, ``column_width``): a wall's column is as wide as the box it is cut by;
- and at the point's own height (± ``slab`` m) has almost nothing beside it (points within
  ``pole_ring`` m but outside ``pole_radius`` at most ``pole_isolation`` × those inside) and is
  thinner than ``pole_width`` m (about 3/4 of a diameter, as the sensors see a half circle): a tree
  trunk is wider, a person shorter, a car lower.

A **moving** object's class comes from its size (``moving_classes``): the moving points of one scan
are grouped into objects (points closer than ``link`` m in xy); an object no longer than
``person_length`` m whose top stands ``person_height`` m above the ground is a pedestrian, whatever
the model said (it sees a person one patch wide next to a wall as the wall); an object the model
calls a vehicle is a truck or bus (other-vehicle) when its own vertical extent exceeds
``truck_height`` m or it is longer than ``truck_length`` m, and a car otherwise (cars and vans are
at most about 2.4 m tall and 5.5 m long; a truck's box is taller than 2.6 m). A vehicle's
extent is measured on its own points, not from the ground: its lower body is often hidden by the
traffic in between.

The geometric ground mask keeps every point within 0.25 m of the local ground, so the **base** of
a wall, a car or a trunk takes a ground class. A static ground-band point whose column goes on
upward as an object (at least ``base_points`` non-ground context points within ``base_radius`` m
of it horizontally and up to ``base_height`` m above it, ``base_classes``) takes the class most of
those points have, when that is not a ground class or a pedestrian (a person seldom stands
still over the scans gathered, and a slow walker the motion segmentation missed smears over them).

Units are metres in a world frame whose z axis is up (the odometry's level frame); every size is a
physical one, nothing is fitted to the synthetic world. The points must be deskewed: at 10 m/s a
sweep smears a pole over a metre, and the scans no longer agree on where it stands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np



@dataclass
class ShapeRules:
    """Sizes of the shape rules (m; see the module docstring)."""

    cell: float = 0.2
    pole_height: float = 2.2
    pole_radius: float = 0.3
    pole_ring: float = 1.1
    pole_isolation: float = 0.15
    pole_base: float = 0.8
    slab: float = 0.5
    pole_width: float = 0.2
    column_width: float = 0.3
    link: float = 0.5
    min_points: int = 5
    person_length: float = 1.0
    person_height: tuple[float, float] = (1.2, 2.2)
    truck_height: float = 2.6
    truck_length: float = 7.0
    base_radius: float = 0.15
    base_height: float = 1.0
    base_points: int = 3


class _Grid:
    """A dense xy grid of ``cell`` m over a point set, with box sums by integral image."""

    def __init__(self, xy: np.ndarray, cell: float, pad: int):
        self.cell, self.pad = float(cell), int(pad)
        self.lo = np.floor(xy.min(0) / cell).astype(np.int64) - pad if len(xy) else np.zeros(2, np.int64)
        hi = np.floor(xy.max(0) / cell).astype(np.int64) + pad if len(xy) else np.zeros(2, np.int64)
        self.shape = tuple(int(v) for v in hi - self.lo + 1)

    def index(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cell ``(i, j)`` of each ``[N, 2]`` position (clipped into the grid)."""
        ij = np.floor(xy / self.cell).astype(np.int64) - self.lo
        return (np.clip(ij[:, 0], 0, self.shape[0] - 1), np.clip(ij[:, 1], 0, self.shape[1] - 1))

    def box(self, grid: np.ndarray, r: int) -> np.ndarray:
        """Sum of ``grid`` over the ``(2r+1)²`` cells around each cell (zero outside)."""
        s = np.pad(np.cumsum(np.cumsum(grid, 0), 1), ((1, 0), (1, 0)))
        p = np.pad(s, ((r, r + 1), (r, r + 1)), mode="edge")
        # p[a, b] = s[clip(a - r), clip(b - r)]: the integral image, clamped at the borders
        n0, n1 = grid.shape
        a0, a1, b0, b1 = np.arange(n0), np.arange(n0) + 2 * r + 1, np.arange(n1), np.arange(n1) + 2 * r + 1
        return p[a1][:, b1] - p[a0][:, b1] - p[a1][:, b0] + p[a0][:, b0]


def ground_height(points: np.ndarray, cell: float = 1.0) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-cell median-free ground height: the mean z of ground points ``[G, 3]`` on a ``cell`` grid.

    Returns ``(keys [K] int64 sorted, z [K] float64, cell)`` for :func:`ground_at`."""
    ij = np.floor(points[:, :2] / cell).astype(np.int64)
    keys = ij[:, 0] * 1_000_003 + ij[:, 1]
    u, inv = np.unique(keys, return_inverse=True)
    z = np.bincount(inv, points[:, 2], len(u)) / np.maximum(np.bincount(inv, minlength=len(u)), 1)
    return u, z, cell


def ground_at(table: tuple[np.ndarray, np.ndarray, float], xy: np.ndarray) -> np.ndarray:
    """Ground height ``[N]`` (m) under each ``[N, 2]`` position: the lowest of the 3 × 3 ground cells
    around it (NaN where none has ground points)."""
    keys, z, cell = table
    ij = np.floor(xy / cell).astype(np.int64)
    out = np.full(len(xy), np.inf)
    if len(keys) == 0:
        return np.full(len(xy), np.nan)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            k = (ij[:, 0] + di) * 1_000_003 + ij[:, 1] + dj
            pos = np.clip(np.searchsorted(keys, k), 0, len(keys) - 1)
            hit = keys[pos] == k
            out[hit] = np.minimum(out[hit], z[pos[hit]])
    out[~np.isfinite(out)] = np.nan
    return out


def pole_features(points: np.ndarray, context: np.ndarray, ground_table,
                  rules: ShapeRules = ShapeRules()) -> dict[str, np.ndarray]:
    """Shape of the column each point ``[N, 3]`` (world, m) stands in, from the non-ground
    ``context`` points ``[M, 3]`` (world, m) around it.

    Returns ``[N]`` float64 arrays: ``height`` (m, extent in z of the context points within
    ``pole_radius`` of the point's cell), ``base`` (m, the column's lowest point above the local
    ground; NaN where the ground is unknown), ``column_width`` (m, over the column's height);
    where the column is tall and narrow enough to be a pole (NaN elsewhere), at the point's
    height: ``isolation`` (points in the ring out to ``pole_ring`` per point inside
    ``pole_radius``) and ``width`` (m)."""
    nan = np.full(len(points), np.nan)
    if len(points) == 0 or len(context) == 0:
        return {k: nan.copy() for k in ("height", "isolation", "base", "width", "column_width")}
    c = rules.cell
    r_in = int(round(rules.pole_radius / c))
    g = _Grid(np.concatenate([context[:, :2], points[:, :2]]), c, r_in + 1)
    i, j = g.index(context[:, :2])
    flat = i * g.shape[1] + j
    n = np.bincount(flat, minlength=g.shape[0] * g.shape[1]).reshape(g.shape).astype(np.int32)
    zmin = np.full(n.size, np.inf)
    zmax = np.full(n.size, -np.inf)
    np.minimum.at(zmin, flat, context[:, 2])
    np.maximum.at(zmax, flat, context[:, 2])
    pi, pj = g.index(points[:, :2])
    # the column's horizontal spread over its whole height (a wall's is its length in the box)
    mom = [g.box(np.bincount(flat, v, n.size).reshape(g.shape), r_in)[pi, pj]
           for v in (context[:, 0] - g.lo[0] * c, context[:, 1] - g.lo[1] * c,
                     (context[:, 0] - g.lo[0] * c) ** 2 + (context[:, 1] - g.lo[1] * c) ** 2)]
    inner = g.box(n, r_in)[pi, pj]
    col_width = 2 * _spread(np.c_[inner, mom[0], mom[1], mom[2]])
    # the column's extent over the inner box: lowest and highest point within pole_radius
    zl = np.pad(zmin.reshape(g.shape), r_in, constant_values=np.inf)
    zh = np.pad(zmax.reshape(g.shape), r_in, constant_values=-np.inf)
    lo, hi = np.full(len(points), np.inf), np.full(len(points), -np.inf)
    for di in range(2 * r_in + 1):
        for dj in range(2 * r_in + 1):
            np.minimum(lo, zl[pi + di, pj + dj], out=lo)
            np.maximum(hi, zh[pi + di, pj + dj], out=hi)
    base = lo - ground_at(ground_table, points[:, :2])
    height = np.where(inner > 0, hi - lo, np.nan)
    iso, width = np.full(len(points), np.nan), np.full(len(points), np.nan)
    tall = np.flatnonzero((hi - lo >= rules.pole_height) & (col_width <= rules.column_width))
    if len(tall):
        p = points[tall]
        inner, ring, ring2 = _slab_sums(p, context, c, (rules.pole_radius, rules.pole_radius + c, rules.pole_ring),
                                        rules.slab, rules.slab)
        iso[tall] = (ring2[:, 0] - ring[:, 0]) / np.maximum(inner[:, 0], 1)
        width[tall] = 2 * _spread(inner)
    return {"height": height, "isolation": iso, "base": base, "width": width, "column_width": col_width}


def _slab_sums(points: np.ndarray, context: np.ndarray, cell: float, radii: tuple[float, ...],
               below: float, above: float, dz: float = 0.25, tile: float = 8.0) -> list[np.ndarray]:
    """Box sums around each point ``[N, 3]`` of the context points ``[M, 3]`` from ``below`` m
    under it to ``above`` m over it, within each horizontal (Chebyshev) radius of ``radii`` (each
    under ``tile``): for each radius ``[N, 4]`` float64 (count, Σx, Σy, Σ(x² + y²), coordinates
    relative to the point's tile), on dense grids of ``cell`` × ``cell`` × ``dz`` m, one per xy
    tile of ``tile`` m (one over a whole scan's box would take gigabytes)."""
    out = [np.zeros((len(points), 4)) for _ in radii]
    if len(points) == 0:
        return out
    pk = np.floor(points[:, :2] / tile).astype(np.int64)
    ck = np.floor(context[:, :2] / tile).astype(np.int64)
    span = 1 << 31
    ckey = ck[:, 0] * span + ck[:, 1]
    corder = np.argsort(ckey, kind="stable")
    ckey = ckey[corder]
    pkey = pk[:, 0] * span + pk[:, 1]
    order = np.argsort(pkey, kind="stable")
    bounds = np.flatnonzero(np.diff(pkey[order])) + 1
    r = max(radii) + cell
    for part in np.split(order, bounds):
        ti, tj = pk[part[0]]
        near = []
        for di in (-1, 0, 1):  # context from the tile and its 8 neighbours (radii < tile)
            keys = (ti + di) * span + tj + np.array([-1, 0, 1])
            a0, a1 = np.searchsorted(ckey, keys[0], "left"), np.searchsorted(ckey, keys[2], "right")
            near.append(corder[a0:a1])
        p, c = points[part], context[np.concatenate(near)]
        lo, hi = p.min(0) - [r, r, below + dz], p.max(0) + [r, r, above + dz]
        c = c[((c >= lo) & (c <= hi)).all(1)]
        for o, v in zip(out, _tile_sums(p, c, lo, hi, cell, radii, below, above, dz)):
            o[part] = v
    return out


def _tile_sums(points, context, lo, hi, cell, radii, below, above, dz) -> list[np.ndarray]:
    """:func:`_slab_sums` over one dense grid spanning ``lo``..``hi`` (``[3]`` m each)."""
    size = np.array([cell, cell, dz])
    shape = tuple(int(v) for v in np.floor((hi - lo) / size).astype(np.int64) + 1)
    flat = np.ravel_multi_index(tuple(np.floor((context - lo) / size).astype(np.int64).T), shape)
    xy = context[:, :2].astype(np.float64) - lo[:2]
    k_lo, k_hi = int(np.ceil(below / dz)), int(np.ceil(above / dz))
    i, j, k = np.floor((points - lo) / size).astype(np.int64).T
    out = [np.zeros((len(points), 4)) for _ in radii]
    for w, vals in enumerate((None, xy[:, 0], xy[:, 1], (xy ** 2).sum(1))):
        grid = np.bincount(flat, vals, int(np.prod(shape))).reshape(shape)
        # sum over the slab [k - k_lo, k + k_hi], then box sums in xy by an integral image
        cs = np.cumsum(np.pad(grid, ((0, 0), (0, 0), (k_lo + 1, k_hi))), 2)
        grid = cs[:, :, k_lo + k_hi + 1:] - cs[:, :, :-k_lo - k_hi - 1]
        integ = np.pad(np.cumsum(np.cumsum(grid, 0), 1), ((1, 0), (1, 0), (0, 0)))
        for o, r in zip(out, radii):
            ir = int(round(r / cell))
            a0, a1 = np.clip(i - ir, 0, shape[0]), np.clip(i + ir + 1, 0, shape[0])
            b0, b1 = np.clip(j - ir, 0, shape[1]), np.clip(j + ir + 1, 0, shape[1])
            o[:, w] = integ[a1, b1, k] - integ[a0, b1, k] - integ[a1, b0, k] + integ[a0, b0, k]
    return out


def _spread(s: np.ndarray) -> np.ndarray:
    """Horizontal RMS distance from their mean (m) of the points summed in ``s`` ``[N, 4]``."""
    n = np.maximum(s[:, 0], 1)
    var = s[:, 3] / n - (s[:, 1] / n) ** 2 - (s[:, 2] / n) ** 2
    return np.sqrt(np.maximum(var, 0))


def pole_mask(points: np.ndarray, context: np.ndarray, ground_table, rules: ShapeRules = ShapeRules()) -> np.ndarray:
    """Which non-ground points ``[N, 3]`` (world, m) lie on a pole, judged on the non-ground
    ``context`` points ``[M, 3]`` (the same scan's and its neighbours', world, m): ``[N]`` bool."""
    f = pole_features(points, context, ground_table, rules)
    with np.errstate(invalid="ignore"):
        return ((f["height"] >= rules.pole_height) & (f["isolation"] <= rules.pole_isolation) & (f["base"] <= rules.pole_base)
                & (f["width"] <= rules.pole_width))


def objects(points: np.ndarray, link: float) -> np.ndarray:
    """Object id ``[N]`` int64 of points ``[N, 3]`` (m): connected components of the points
    closer than ``link`` m to one another in xy."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if len(points) == 0:
        return np.zeros(0, np.int64)
    pairs = cKDTree(points[:, :2]).query_pairs(link, output_type="ndarray")
    g = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(len(points),) * 2)
    return connected_components(g, directed=False)[1].astype(np.int64)


def moving_classes(points: np.ndarray, labels: np.ndarray, nonground: np.ndarray, ground_table,
                   rules: ShapeRules = ShapeRules()) -> np.ndarray:
    """Classes ``[N]`` uint8 of the moving points ``[N, 3]`` (world, m) of one scan from the size of
    the object each belongs to (see the module docstring); ``labels`` ``[N]`` are the model's,
    ``nonground`` ``[N]`` bool the points off the ground band (the object's class is voted by
    them; a moving point in the band takes its object's class). 0 = keep the point's label."""
    from fuse4d.data.classes import CAR, OTHER_VEHICLE, PEDESTRIAN

    out = np.zeros(len(points), np.uint8)
    if len(points) < rules.min_points:
        return out
    obj = objects(points, rules.link)
    order = np.argsort(obj, kind="stable")
    ground = ground_at(ground_table, points[:, :2])
    for m in np.split(order, np.flatnonzero(np.diff(obj[order])) + 1):
        if len(m) < rules.min_points:
            continue
        p = points[m]
        xy = p[:, :2] - p[:, :2].mean(0)
        axes = np.linalg.eigh(xy.T @ xy)[1]
        length = np.ptp(xy @ axes[:, 1])  # along the principal axis
        g = ground[m]
        top = p[:, 2].max() - (np.nanmin(g) if np.isfinite(g).any() else p[:, 2].min())
        if length <= rules.person_length and rules.person_height[0] <= top <= rules.person_height[1]:
            out[m] = PEDESTRIAN
            continue
        ng = nonground[m]
        vote = np.bincount(labels[m][ng], minlength=max(CAR, OTHER_VEHICLE) + 1) if ng.any() else None
        if vote is not None and vote.argmax() in (CAR, OTHER_VEHICLE):
            tall = np.ptp(p[:, 2]) > rules.truck_height or length > rules.truck_length
            out[m] = OTHER_VEHICLE if tall else CAR
    return out


def base_classes(points: np.ndarray, context: np.ndarray, context_labels: np.ndarray,
                 rules: ShapeRules = ShapeRules(), k: int = 8) -> np.ndarray:
    """Classes ``[N]`` uint8 of static ground-band points ``[N, 3]`` (world, m) that are the base of
    an object standing over them: the majority class of the non-ground ``context`` points
    ``[M, 3]`` (labels ``context_labels`` ``[M]``) in the column above each (see the module
    docstring; the column is an upright ellipsoid of radius ``base_radius`` and height
    ``base_height`` resting on the point, its ``k`` nearest points counted). 0 = keep."""
    from scipy.spatial import cKDTree

    from fuse4d.data.classes import GROUND, NUM_CLASSES, PEDESTRIAN

    out = np.zeros(len(points), np.uint8)
    if len(points) == 0 or len(context) < rules.base_points:
        return out
    half = rules.base_height / 2
    s = np.array([1.0, 1.0, rules.base_radius / half])  # the ellipsoid becomes a ball of base_radius
    tree = cKDTree(np.asarray(context, np.float64) * s)
    q = (np.asarray(points, np.float64) + [0.0, 0.0, half]) * s
    d, idx = tree.query(q, k=min(k, len(context)), distance_upper_bound=rules.base_radius)
    d, idx = d.reshape(len(q), -1), idx.reshape(len(q), -1)
    hit = np.isfinite(d)
    many = np.flatnonzero(hit.sum(1) >= rules.base_points)
    if len(many) == 0:
        return out
    lab = np.where(hit[many], np.asarray(context_labels)[np.minimum(idx[many], len(context) - 1)], 0)
    votes = np.zeros((len(many), NUM_CLASSES), np.int32)
    np.add.at(votes, (np.repeat(np.arange(len(many)), lab.shape[1]), lab.reshape(-1)), 1)
    votes[:, [0, *GROUND, PEDESTRIAN]] = 0  # a person seldom stands still over the scans gathered
    best = votes.argmax(1)
    ok = votes[np.arange(len(many)), best] >= rules.base_points
    out[many[ok]] = best[ok]
    return out
