"""Sparse semantic occupancy map: log-odds voxels updated by LiDAR ray casting.

Storage is block-sparse: voxels live in dense blocks of ``8 × 8 × 8``, a block is
allocated the first time a ray touches it, and blocks are found through a sorted
table of 64-bit block keys (``numpy.searchsorted``). One scan is integrated without
a Python loop over points or rays:

1. rays are thinned to one per endpoint voxel (the first point landing in it), and
   beyond 16 voxels to one per direction bin of half a voxel (:func:`_segments`);
2. each ray is sampled every ``voxel_size`` from the sensor to ``margin`` before its
   endpoint; the samples' voxels get ``l_miss`` once per scan (a fancy-index
   ``+=`` applies once per repeated index, which is exactly OctoMap's "each cell
   once per scan" rule);
3. endpoint voxels get ``l_hit`` on their value from before the carving (a hit
   wins over a miss in the same scan), log-odds are clamped to ``[l_min, l_max]``;
4. every endpoint adds a vote to its voxel's class histogram, weighted by range (``label_range``).

Convention (the one of the synthetic ground truth, Occ3D / SemanticKITTI SSC): a voxel
is occupied when a surface passes through it, so every endpoint is binned in the voxel it
lies in. Non-ground surface normals (:func:`~fuse4d.mapping.normals.scan_normals`) only give
the incidence angle of the ray on its surface.
Carving stops ``voxel / max(cos incidence, 0.02)`` short of the endpoint (incidence on
the ground for ground points, on the estimated surface for the others), and a
descending ray stops where it comes within 1.5 voxels of the ground (``clearance``):
grazing rays do not erode the surface voxels that steeper rays mark. A ray sample frees
its voxel only when it passes the voxel's core (``carve_core``, the central half of its
edge by default): a ray clipping a corner says nothing about the voxel's centre.

Voxel ``(i, j, k)`` spans ``[i, i+1) × voxel_size`` etc. from the world origin.
"""

from __future__ import annotations

import numpy as np

from fuse4d.data.classes import NUM_CLASSES

_B = 8                     # voxels per block side
_BV = _B ** 3              # voxels per block
_OFF = 1 << 20             # key offset: indices in [-2^20, 2^20) per axis
_MASK = (1 << 21) - 1
_MIN_SIN = 0.02            # grazing-angle floor of the ground carving margin
_SKIM = 1.5               # voxels above the ground under which a ray stops carving
_HIST_MAX = np.iinfo(np.uint16).max
_MAX_TABLE = 1 << 22          # entries of a per-scan dense block table (beyond: sort)


def pack(ijk: np.ndarray) -> np.ndarray:
    """Integer indices ``[N, 3]`` → int64 keys ``[N]`` (21 bits per axis)."""
    ijk = np.asarray(ijk, dtype=np.int64) + _OFF
    return (ijk[:, 0] << 42) | (ijk[:, 1] << 21) | ijk[:, 2]


def unpack(keys: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack`: int64 keys ``[N]`` → int64 indices ``[N, 3]``."""
    keys = np.asarray(keys, dtype=np.int64)
    return np.stack([(keys >> 42) & _MASK, (keys >> 21) & _MASK, keys & _MASK], -1) - _OFF


def _local(ijk: np.ndarray) -> np.ndarray:
    """Index of each voxel inside its block, ``[N]`` in ``[0, 512)``."""
    m = ijk & (_B - 1)
    return (m[:, 0] * _B + m[:, 1]) * _B + m[:, 2]


def _mode(hist: np.ndarray) -> np.ndarray:
    """Class ``[...]`` of class histograms ``[..., C]``: the most voted class other than 0
    (unlabeled: no evidence for any class), 0 when only unlabeled points (or none) fell in."""
    rest = hist[..., 1:]
    return np.where(rest.any(-1), rest.argmax(-1) + 1, 0).astype(np.uint8)


def _segments(u: np.ndarray, n: np.ndarray, tie: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which rays carve which stretch: ``(ray [M], first sample [M], samples [M])``.

    Rays ``u [R, 3]`` carve ``n [R]`` voxels each. Beyond 16 voxels the stretch
    ``[T, 2T)`` of neighbouring rays runs within half a voxel of each other, so there
    only the longest ray per direction bin of ``1 / 2T`` rad carves (directions binned
    as unit voxels at distance ``4T``): far fewer samples, the same voxels up to the
    bins' edges. Among equally long rays of a bin the lowest ``tie [R]`` carves (default:
    the first), so the choice does not depend on the rays' order.
    """
    rays, k0s, cnts = [np.arange(len(n))], [np.zeros(len(n), np.int64)], [np.minimum(n, 16)]
    t = 16
    while (n > t).any():
        idx = np.flatnonzero(n > t)
        key = pack(np.floor(u[idx] * (4 * t)).astype(np.int64))
        order = np.lexsort((-n[idx], key) if tie is None else (tie[idx], -n[idx], key))
        lead = order[np.concatenate([[True], key[order][1:] != key[order][:-1]])]
        sel = idx[lead]
        rays.append(sel)
        k0s.append(np.full(len(sel), t, np.int64))
        cnts.append(np.minimum(n[sel], 2 * t) - t)
        t *= 2
    return np.concatenate(rays), np.concatenate(k0s), np.concatenate(cnts)


class OccupancyMap:
    """Block-sparse log-odds occupancy with a per-voxel class histogram.

    Args:
        voxel_size: edge of a voxel, m.
        l_hit, l_miss: log-odds added by a hit (> 0) and a pass-through (< 0).
        l_min, l_max: clamping bounds of the log-odds.
        threshold: log-odds above which a voxel is occupied.
        num_classes: length of the class histogram.
        carve_core: a ray sample frees its voxel only when it lies within the central
            ``carve_core`` fraction of the voxel's edge on every axis (1 = anywhere): a ray that
            clips a voxel's corner says nothing about its centre.
        label_range: m; a point's class vote weighs ``min(1, (label_range / range)²)`` (at least
            1/16): labels of far points, whose footprint is larger, count less (0 = equal votes).
    """

    def __init__(self, voxel_size: float = 0.5, l_hit: float = 0.85, l_miss: float = -0.4,
                 l_min: float = -2.0, l_max: float = 3.5, threshold: float = 0.0, num_classes: int = NUM_CLASSES,
                 carve_core: float = 1.0, label_range: float = 0.0):
        self.res = float(voxel_size)
        self.l_hit, self.l_miss, self.l_min, self.l_max = float(l_hit), float(l_miss), float(l_min), float(l_max)
        self.threshold = float(threshold)
        self.carve_core = float(carve_core)
        self.label_range = float(label_range)
        self.num_classes = int(num_classes)
        self._bkeys = np.zeros(0, np.int64)     # sorted block keys
        self._bslot = np.zeros(0, np.int64)     # their slots in the pools
        self._lo = np.zeros((64, _BV), np.float32)
        self._hslot = np.full(64, -1, np.int64)  # block slot → histogram slot (-1 = none)
        self._hist = np.zeros((16, _BV, self.num_classes), np.uint16)
        self._n_blocks = 0
        self._n_hist = 0

    # -- block table -------------------------------------------------------------------
    def _find(self, bkeys: np.ndarray) -> np.ndarray:
        """Slots of blocks ``bkeys [M]`` (int64), -1 where not allocated."""
        if len(self._bkeys) == 0:
            return np.full(len(bkeys), -1, np.int64)
        pos = np.minimum(np.searchsorted(self._bkeys, bkeys), len(self._bkeys) - 1)
        return np.where(self._bkeys[pos] == bkeys, self._bslot[pos], -1)

    def _slots(self, ubkeys: np.ndarray) -> np.ndarray:
        """Slots of the unique, sorted block keys ``ubkeys [M]``, allocating missing blocks."""
        slots = self._find(ubkeys)
        new = slots < 0
        n_new = int(new.sum())
        if n_new:
            first = self._n_blocks
            need = first + n_new
            if need > len(self._lo):
                cap = max(need, 2 * len(self._lo))
                self._lo = np.concatenate([self._lo, np.zeros((cap - len(self._lo), _BV), np.float32)])
                self._hslot = np.concatenate([self._hslot, np.full(cap - len(self._hslot), -1, np.int64)])
            slots[new] = np.arange(first, need)
            self._n_blocks = need
            keys = np.concatenate([self._bkeys, ubkeys[new]])
            order = np.argsort(keys, kind="stable")
            self._bkeys = keys[order]
            self._bslot = np.concatenate([self._bslot, slots[new]])[order]
        return slots

    def _hist_slots(self, slots: np.ndarray) -> np.ndarray:
        """Histogram slots of block ``slots [M]`` (unique), allocating missing ones."""
        h = self._hslot[slots]
        new = h < 0
        n_new = int(new.sum())
        if n_new:
            need = self._n_hist + n_new
            if need > len(self._hist):
                cap = max(need, 2 * len(self._hist))
                grow = np.zeros((cap - len(self._hist), _BV, self.num_classes), np.uint16)
                self._hist = np.concatenate([self._hist, grow])
            h[new] = np.arange(self._n_hist, need)
            self._hslot[slots[new]] = h[new]
            self._n_hist = need
        return h

    def _index(self, ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxels ``ijk [N, 3]`` (allocating their blocks): ``(flat [N], compact [N], uslots [U])``.

        ``flat`` indexes the pools; ``compact = rank * 512 + local`` numbers the voxels within the
        ``U`` distinct blocks of this call (``uslots``, ordered by block key), so per-call scratch
        arrays of ``U * 512`` replace sorts. Blocks are found through a dense table over their
        bounding box when it is small (a scan's endpoints), else by ``np.unique``."""
        bijk = ijk >> 3
        if not len(bijk):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        lo = np.array([bijk[:, a].min() for a in range(3)])  # per column: a reduction over axis 0
        shape = np.array([bijk[:, a].max() for a in range(3)]) - lo + 1  # of [N, 3] is ~10x slower
        size = int(np.prod(shape))
        if size <= min(max(16 * len(bijk), 1 << 16), _MAX_TABLE):
            rel = bijk - lo
            lb = (rel[:, 0] * int(shape[1]) + rel[:, 1]) * int(shape[2]) + rel[:, 2]
            touched = np.zeros(size, bool)
            touched[lb] = True
            ulb = np.flatnonzero(touched)  # ascending = ascending block key
            ub = pack(np.stack(np.unravel_index(ulb, tuple(int(v) for v in shape)), -1) + lo)
            rank = np.empty(size, np.int64)
            rank[ulb] = np.arange(len(ulb))
            inv = rank[lb]
        else:
            ub, inv = np.unique(pack(bijk), return_inverse=True)
            inv = inv.reshape(-1)
        uslots = self._slots(ub)
        loc = _local(ijk)
        return uslots[inv] * _BV + loc, inv * _BV + loc, uslots

    # -- integration -------------------------------------------------------------------
    def integrate(self, origin: np.ndarray, points: np.ndarray, labels: np.ndarray | None = None,
                  ground: np.ndarray | None = None, max_range: float = np.inf, min_range: float = 0.0,
                  normals: np.ndarray | None = None, clearance: np.ndarray | None = None) -> None:
        """Integrate one scan.

        Args:
            origin: ``[3]`` sensor position in the world frame, m.
            points: ``[N, 3]`` endpoints in the world frame, m (moving points already removed).
            labels: ``[N]`` uint8 class per point (None = no histogram update).
            ground: ``[N]`` bool, points on the ground (not shifted; carving stops short by
                their grazing angle); None = no point is ground.
            max_range: endpoints farther than this carve up to ``max_range`` and add no hit.
            min_range: points closer than this are ignored.
            normals: ``[N, 3]`` surface normals (any sign; NaN rows = unknown), or None.
            clearance: ``[N]`` m each endpoint lies above the ground (0 for ground points), or None.
        """
        o = np.asarray(origin, np.float64).reshape(3)
        p = np.asarray(points, np.float64).reshape(-1, 3)
        d = p - o
        r = np.sqrt(np.einsum("ij,ij->i", d, d))
        ok = np.isfinite(r) & (r > max(min_range, 1e-6))
        if not ok.all():
            p, d, r = p[ok], d[ok], r[ok]
            labels = None if labels is None else np.asarray(labels)[ok]
            ground = None if ground is None else np.asarray(ground, bool)[ok]
            normals = None if normals is None else np.asarray(normals)[ok]
            clearance = None if clearance is None else np.asarray(clearance)[ok]
        if len(p) == 0:
            return
        u = d / r[:, None]
        res = self.res
        is_hit = r <= max_range
        g = np.zeros(len(p), bool) if ground is None else np.asarray(ground, bool)
        # endpoints are binned where they lie (the voxel the surface passes through); normals only
        # say how obliquely a ray meets its surface, i.e. how far short of it carving stops
        cos_inc = np.where(g, np.abs(u[:, 2]), 1.0)
        if normals is not None:
            nrm = np.asarray(normals, np.float64).reshape(-1, 3)
            good = np.isfinite(nrm).all(1)
            c = np.abs(np.einsum("ij,ij->i", np.where(good[:, None], nrm, 0.0), u))
            cos_inc = np.where(good & ~g, c, cos_inc)
        # the voxel each ray ends in (a hit's, or where a far ray stops at max_range); one ray per
        # endpoint voxel: the first point in it (a per-scan scratch, no sort)
        end = p if is_hit.all() else np.where(is_hit[:, None], p, o + u * np.minimum(r, max_range)[:, None])
        e_flat, e_comp, e_uslots = self._index(np.floor(end / res).astype(np.int64))
        order = np.arange(len(p), dtype=np.int32)
        scratch = np.full(len(e_uslots) * _BV, len(p), np.int32)
        np.minimum.at(scratch, e_comp, order)
        first = np.flatnonzero(scratch[e_comp] == order)
        rc = np.minimum(r, max_range)
        margin = np.where(g[first] | (normals is not None), res / np.maximum(cos_inc[first], _MIN_SIN), res)
        if clearance is not None:  # the last stretch of a descending ray skims the ground: no carving there
            h = np.asarray(clearance, np.float64)[first]
            skim = np.where(u[first, 2] < 0, np.maximum(_SKIM * res - h, 0.0) / np.maximum(-u[first, 2], _MIN_SIN), 0.0)
            margin = np.maximum(margin, skim)
        margin = np.where(is_hit[first], margin, 0.0)
        n = np.maximum(np.floor((rc[first] - margin) / res).astype(np.int64), 0)
        lo = self._lo.reshape(-1)
        flat_h = e_flat[is_hit]
        pre = lo[flat_h]  # a hit wins over a miss in the same scan: its update starts from before the carving
        if n.sum():
            # equally long rays of a direction bin: the one ending in the lowest voxel key carves
            ray, k0, cnt = _segments(u[first], n, pack(np.floor(end[first] / res).astype(np.int64)))
            flat_f = self._ray_samples(o / res, u[first][ray], k0, cnt)
            lo = self._lo.reshape(-1)  # the samples may have grown the pool
            lo[flat_f] = np.maximum(lo[flat_f] + self.l_miss, self.l_min)
        if not len(flat_h):
            return
        lo[flat_h] = np.minimum(pre + self.l_hit, self.l_max)
        if labels is None:
            return
        lab = np.clip(np.asarray(labels)[is_hit].astype(np.int64), 0, self.num_classes - 1)
        comp_h = e_comp[is_hit]
        hit_blocks = np.zeros(len(e_uslots), bool)
        hit_blocks[comp_h >> 9] = True
        self._hist_slots(e_uslots[hit_blocks])
        idx = (self._hslot[flat_h >> 9] * _BV + (flat_h & (_BV - 1))) * self.num_classes + lab
        # a label's footprint grows with range (a range-image pixel covers r² more):
        # votes weigh (label_range / r)², in 1/16 steps, from 1/16 up to 1
        if self.label_range > 0:
            w = np.clip(np.round(16.0 * (self.label_range / r[is_hit]) ** 2), 1, 16).astype(np.int64)
        else:
            w = np.ones(len(idx), np.int64)
        hist = self._hist.reshape(-1)
        # the scan's votes per voxel bound what any of its classes gains: where that cannot pass
        # the uint16 ceiling, votes are added in place (ufunc.at, no sort); the rest saturate
        total = np.zeros(len(e_uslots) * _BV, np.int64)
        np.add.at(total, comp_h, w)
        safe = hist[idx].astype(np.int64) + total[comp_h] <= _HIST_MAX
        if not safe.all():
            uidx, inv = np.unique(idx[~safe], return_inverse=True)
            cnt = np.bincount(inv.reshape(-1), weights=w[~safe]).astype(np.int64)
            hist[uidx] = np.minimum(hist[uidx].astype(np.int64) + cnt, _HIST_MAX).astype(np.uint16)
            idx, w = idx[safe], w[safe]
        np.add.at(hist, idx, w.astype(np.uint16))

    def _ray_samples(self, o: np.ndarray, u: np.ndarray, k0: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Flat pool indices ``[M]`` of the voxels under ``n [R]`` samples, one voxel apart from
        ``k0 [R]`` voxels on, along rays from ``o [3]`` (voxel units) in directions ``u [R, 3]``;
        blocks are allocated.

        No sort: samples are int32 voxel offsets from the sensor (float32 arithmetic is exact
        enough relative to the sensor), their blocks index a dense per-scan block table
        spanning the rays' reach, whose touched entries are allocated in one batch."""
        keep = n > 0
        u, k0, n = u[keep], k0[keep], n[keep]
        total = int(n.sum())
        start = np.cumsum(n) - n
        k = np.ones(total, np.float32)
        k[0] = k0[0] + 0.5
        # k0 + 0.5, k0 + 1.5, ... restarting at every segment
        k[start[1:]] = (k0[1:] + 0.5 - (k0[:-1] + 0.5 + n[:-1] - 1)).astype(np.float32)
        k = np.cumsum(k, dtype=np.float32)
        base = np.floor(o).astype(np.int64)
        frac = (o - base).astype(np.float32)
        reach = int((k0 + n).max()) + 2
        bmin = (base - reach) >> 3
        shape = ((base + reach) >> 3) - bmin + 1
        off = (base - bmin * _B).astype(np.int32)  # sensor voxel relative to the table's first voxel
        h = np.float32(0.5 * self.carve_core)
        cells, core = [], None
        for a in range(3):
            c = np.repeat(u[:, a].astype(np.float32), n)
            c *= k
            c += np.float32(frac[a] + off[a])  # >= 0 inside the table: truncation is floor
            ci = c.astype(np.int32)
            if self.carve_core < 1.0:  # the sample must pass the voxel's core, not clip a corner
                c -= ci
                c -= np.float32(0.5)
                inside = np.abs(c, out=c) < h
                core = inside if core is None else np.logical_and(core, inside, out=core)
            cells.append(ci)
        if core is not None:  # an index gather: a boolean mask this random compresses slowly
            keep = np.flatnonzero(core)
            if not len(keep):
                return np.zeros(0, np.int64)
            cells = [x[keep] for x in cells]
        ci, cj, ck = cells
        if int(np.prod(shape)) > _MAX_TABLE:  # rays kilometres long: the reach's cube of blocks is too big
            return self._index(np.stack(cells, -1).astype(np.int64) + bmin * _B)[0]
        loc = ((ci & 7) << 6) | ((cj & 7) << 3) | (ck & 7)
        lb = ((ci >> 3) * int(shape[1]) + (cj >> 3)) * int(shape[2]) + (ck >> 3)
        touched = np.zeros(int(np.prod(shape)), bool)
        touched[lb] = True
        ulb = np.flatnonzero(touched)  # ascending = ascending global block key
        bijk = np.stack(np.unravel_index(ulb, tuple(int(v) for v in shape)), -1) + bmin
        table = np.empty(len(touched), np.int64)
        table[ulb] = self._slots(pack(bijk)) * _BV
        flat = table[lb]
        flat += loc
        return flat

    # -- queries -----------------------------------------------------------------------
    def _lookup(self, ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Block slots ``[N]`` (-1 = unknown block) and local indices of voxels ``ijk [N, 3]``."""
        ijk = np.asarray(ijk, np.int64).reshape(-1, 3)
        return self._find(pack(ijk >> 3)), _local(ijk)

    def log_odds_at(self, ijk: np.ndarray) -> np.ndarray:
        """Log-odds ``[N]`` float32 of voxels ``ijk [N, 3]`` (0 = unknown)."""
        slot, loc = self._lookup(ijk)
        out = np.zeros(len(slot), np.float32)
        ok = slot >= 0
        out[ok] = self._lo[slot[ok], loc[ok]]
        return out

    def occupancy_at(self, points: np.ndarray) -> np.ndarray:
        """Occupancy probability ``[N]`` float32 at world points ``[N, 3]`` m (0.5 = unknown)."""
        ijk = np.floor(np.asarray(points, np.float64).reshape(-1, 3) / self.res).astype(np.int64)
        return (1.0 / (1.0 + np.exp(-self.log_odds_at(ijk)))).astype(np.float32)

    def histograms(self, ijk: np.ndarray) -> np.ndarray:
        """Class histograms ``[N, C]`` uint16 (weighted votes) of voxels ``ijk [N, 3]`` (zeros when none)."""
        slot, loc = self._lookup(ijk)
        out = np.zeros((len(slot), self.num_classes), np.uint16)
        h = np.where(slot >= 0, self._hslot[np.maximum(slot, 0)], -1)
        ok = h >= 0
        out[ok] = self._hist[h[ok], loc[ok]]
        return out

    def class_of(self, ijk: np.ndarray) -> np.ndarray:
        """Class ``[N]`` uint8 of voxels ``ijk [N, 3]``: the histogram's mode over the classes
        other than unlabeled (0 when none)."""
        slot, loc = self._lookup(ijk)
        out = np.zeros(len(slot), np.uint8)
        ok = slot >= 0
        h = np.where(ok, self._hslot[np.maximum(slot, 0)], -1)
        ok &= h >= 0
        hist = self._hist[h[ok], loc[ok]]
        out[ok] = _mode(hist)
        return out

    def voxels(self, occupied_only: bool = False) -> dict[str, np.ndarray]:
        """Every known voxel (log-odds ≠ 0), or only the occupied ones.

        Returns:
            ``ijk`` int32 ``[N, 3]``, ``log_odds`` float32 ``[N]``, ``labels`` uint8 ``[N]``
            (histogram mode over the classes other than unlabeled, 0 when none), sorted by key.
        """
        order = np.argsort(self._bkeys)
        bkeys, slots = self._bkeys[order], self._bslot[order]
        lo = self._lo[slots]
        keep = lo > self.threshold if occupied_only else lo != 0
        b, loc = np.nonzero(keep)
        bijk = unpack(bkeys[b])
        lijk = np.stack([loc // (_B * _B), (loc // _B) % _B, loc % _B], -1)
        ijk = bijk * _B + lijk
        labels = np.zeros(len(b), np.uint8)
        h = self._hslot[slots[b]]
        has = h >= 0
        hist = self._hist[h[has], loc[has]]
        labels[has] = _mode(hist)
        return {"ijk": ijk.astype(np.int32), "log_odds": lo[b, loc].astype(np.float32), "labels": labels}

    def crop(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense log-odds of the box ``[lo, hi)`` (world m): ``(grid [X, Y, Z] float32, origin [3])``,
        0 = unknown; ``origin`` is the lower corner of voxel ``grid[0, 0, 0]``."""
        a = np.floor(np.asarray(lo, np.float64) / self.res).astype(np.int64)
        b = np.ceil(np.asarray(hi, np.float64) / self.res).astype(np.int64)
        shape = np.maximum(b - a, 0)
        grid = np.zeros(tuple(shape), np.float32)
        if not len(self._bkeys) or not shape.all():
            return grid, a * self.res
        bijk = unpack(self._bkeys)
        sel = np.all((bijk * _B < b) & ((bijk + 1) * _B > a), axis=1)
        if sel.any():
            v = self._lo[self._bslot[sel]].reshape(-1, _B, _B, _B)
            base = bijk[sel] * _B - a
            loc = np.stack(np.meshgrid(*[np.arange(_B)] * 3, indexing="ij"), -1).reshape(-1, 3)
            idx = (base[:, None, :] + loc[None]).reshape(-1, 3)
            inside = np.all((idx >= 0) & (idx < shape), axis=1)
            grid[tuple(idx[inside].T)] = v.reshape(-1)[inside]
        return grid, a * self.res

    @property
    def n_blocks(self) -> int:
        """Allocated blocks of 512 voxels."""
        return self._n_blocks

    def __repr__(self) -> str:
        return f"OccupancyMap(voxel_size={self.res}, blocks={self._n_blocks})"
