"""2.5D elevation map: per-cell height mean and variance by a Kalman update, min/max,
a semantic layer, and traversability from slope, roughness and step height.

Each scan is reduced to one height measurement per cell (Fankhauser et al.'s
robot-centric elevation mapping, batched): the static points of the cell within
``3σ`` of its highest point, averaged with inverse-variance weights (σ grows with
range). The measurement is fused into the cell with a 1D Kalman update; a
measurement more than 3 standard deviations *above* the cell replaces it (a higher
surface was found: the map holds the top surface), one more than 3 below is
ignored (a lower surface under an overhang). The grid is dense and grows (by
whole tiles) as the map extends; cells are ``[i, i+1) × resolution`` from
``anchor``. The exported height is the cell's top, not the mean of its points: on a
slope the points average to the centre's height, which lies below the cell's highest
surface (:func:`cell_maximum`).
"""

from __future__ import annotations

import numpy as np

from fuse4d.data.classes import GROUND, NUM_CLASSES

_TILE = 64          # growth granularity, cells
_GATE = 3.0         # Mahalanobis gate of the height update
_MIN_VAR = 1e-6     # variance floor, m²
_COUNT_MAX = np.iinfo(np.uint16).max


class ElevationMap:
    """Growable 2.5D grid of height statistics.

    Args:
        resolution: cell edge, m.
        anchor: ``[2]`` world xy of a cell corner (the lattice), m.
        sigma0, sigma_per_m: height noise of a point, ``sigma0 + sigma_per_m × range``, m.
        num_classes: length of the per-cell class histogram.
    """

    def __init__(self, resolution: float = 0.5, anchor: np.ndarray | None = None, sigma0: float = 0.02,
                 sigma_per_m: float = 0.001, num_classes: int = NUM_CLASSES):
        self.res = float(resolution)
        self.anchor = np.zeros(2) if anchor is None else np.asarray(anchor, np.float64).reshape(2)
        self.sigma0, self.sigma_per_m = float(sigma0), float(sigma_per_m)
        self.num_classes = int(num_classes)
        self.lo = None  # [2] int64 cell index of grid[0, 0] relative to the anchor
        self._alloc(np.zeros(2, np.int64), (0, 0))

    def _alloc(self, lo: np.ndarray, shape: tuple[int, int]) -> None:
        self.lo = lo
        self.mean = np.full(shape, np.nan, np.float32)
        self.var = np.full(shape, np.nan, np.float32)
        self.zmin = np.full(shape, np.nan, np.float32)
        self.zmax = np.full(shape, np.nan, np.float32)
        self.hist = np.zeros((*shape, self.num_classes), np.uint16)
        self.gmean = np.full(shape, np.nan, np.float32)   # ground points only (no top-surface rule)
        self.gvar = np.full(shape, np.nan, np.float32)
        self.ghist = np.zeros((*shape, self.num_classes), np.uint16)
        self.ntop = np.zeros(shape, np.uint16)      # scans that confirmed the current top surface
        self.nunder = np.zeros(shape, np.uint16)    # later scans that saw only ground in the cell
        self.nmoving = np.zeros(shape, np.uint16)   # scans that saw a moving object above the cell's ground

    def _grow(self, cmin: np.ndarray, cmax: np.ndarray) -> None:
        """Make cells ``cmin..cmax`` (inclusive, anchor-relative) part of the grid."""
        shape = np.array(self.mean.shape)
        if shape.all() and (cmin >= self.lo).all() and (cmax < self.lo + shape).all():
            return
        if shape.all():
            cmin, cmax = np.minimum(cmin, self.lo), np.maximum(cmax, self.lo + shape - 1)
        new_lo = np.floor_divide(cmin, _TILE) * _TILE
        new_hi = (np.floor_divide(cmax, _TILE) + 1) * _TILE
        names = ("mean", "var", "zmin", "zmax", "hist", "gmean", "gvar", "ghist", "ntop", "nunder", "nmoving")
        old_lo, old = self.lo, [getattr(self, k) for k in names]
        self._alloc(new_lo, tuple(int(v) for v in new_hi - new_lo))
        if shape.all():
            a = old_lo - new_lo
            sl = (slice(a[0], a[0] + shape[0]), slice(a[1], a[1] + shape[1]))
            for k, arr in zip(names, old):
                getattr(self, k)[sl] = arr

    @property
    def origin(self) -> np.ndarray:
        """``[2]`` world xy of the lower corner of cell ``[0, 0]``, m."""
        return self.anchor + self.lo * self.res

    def integrate(self, points: np.ndarray, ranges: np.ndarray, labels: np.ndarray | None = None,
                  ground: np.ndarray | None = None) -> None:
        """Fuse one scan's static points.

        Args:
            points: ``[N, 3]`` world positions, m (moving points already removed).
            ranges: ``[N]`` distance to the sensor, m (sets each point's height noise).
            labels: ``[N]`` uint8 class per point, or None.
            ground: ``[N]`` bool ground points, also fused into the ground layer
                (:meth:`drop_transient` falls back to it), or None.
        """
        p = np.asarray(points, np.float64).reshape(-1, 3)
        ok = np.isfinite(p).all(1)
        if not ok.all():
            p, ranges = p[ok], np.asarray(ranges)[ok]
            labels = None if labels is None else np.asarray(labels)[ok]
            ground = None if ground is None else np.asarray(ground, bool)[ok]
        if len(p) == 0:
            return
        gsub = None
        if ground is not None and np.any(ground):
            g = np.asarray(ground, bool)
            gsub = (p[g], np.asarray(ranges, np.float64)[g], None if labels is None else np.asarray(labels)[g])
        c = np.floor((p[:, :2] - self.anchor) / self.res).astype(np.int64)
        self._grow(c.min(0), c.max(0))
        c -= self.lo
        W = self.mean.shape[1]
        flat = c[:, 0] * W + c[:, 1]
        z = p[:, 2]
        sig = self.sigma0 + self.sigma_per_m * np.asarray(ranges, np.float64)
        order = np.lexsort((-z, flat))  # by cell, highest first
        flat, z, sig = flat[order], z[order], sig[order]
        lab = None if labels is None else np.asarray(labels).astype(np.int64)[order]
        start = np.flatnonzero(np.concatenate([[True], flat[1:] != flat[:-1]]))
        cells = flat[start]
        count = np.diff(np.append(start, len(flat)))
        top = np.repeat(z[start], count)
        band = z >= top - 3.0 * np.maximum(np.repeat(sig[start], count), 0.03)
        w = np.where(band, 1.0 / sig ** 2, 0.0)
        wsum = np.add.reduceat(w, start)
        m = np.add.reduceat(w * z, start) / wsum
        v = 1.0 / wsum
        mean, var = self.mean.reshape(-1), self.var.reshape(-1)
        zmin, zmax = self.zmin.reshape(-1), self.zmax.reshape(-1)
        zmin[cells] = np.fmin(zmin[cells], np.minimum.reduceat(z, start))
        zmax[cells] = np.fmax(zmax[cells], z[start])
        m0, v0 = mean[cells].astype(np.float64), var[cells].astype(np.float64)
        new = np.isnan(m0)
        gate = _GATE * np.sqrt(np.where(new, 0.0, v0) + v)
        higher = new | (m - m0 > gate)
        lower = ~higher & (m0 - m > gate)
        fuse = ~higher & ~lower
        k = v0 / (v0 + v)
        out_m = np.where(higher, m, np.where(fuse, m0 + k * (m - m0), m0))
        out_v = np.where(higher, v, np.where(fuse, (1 - k) * v0, v0))
        mean[cells] = out_m
        var[cells] = np.maximum(out_v, _MIN_VAR)
        # how the top surface holds up over time: scans confirming it, and scans after it was set
        # that saw the cell's ground but nothing above it (the top stood there for a while only)
        ntop, nunder = self.ntop.reshape(-1), self.nunder.reshape(-1)
        ntop[cells[higher]], nunder[cells[higher]] = 1, 0
        ntop[cells[fuse]] = np.minimum(ntop[cells[fuse]].astype(np.int64) + 1, _COUNT_MAX)
        if ground is not None:
            only_ground = np.logical_and.reduceat(np.asarray(ground, bool)[order], start)
            under = cells[lower & only_ground]
            nunder[under] = np.minimum(nunder[under].astype(np.int64) + 1, _COUNT_MAX)
        if lab is not None:
            hist = self.hist.reshape(-1, self.num_classes)
            hist[cells[higher & ~new]] = 0  # a new top surface: its classes start over
            keep = band & ~np.repeat(lower, count)
            idx = np.repeat(cells, count)[keep] * self.num_classes + np.clip(lab[keep], 0, self.num_classes - 1)
            uidx, cnt = np.unique(idx, return_counts=True)
            hf = hist.reshape(-1)
            hf[uidx] = np.minimum(hf[uidx].astype(np.int64) + cnt, np.iinfo(np.uint16).max).astype(np.uint16)
        if gsub is not None:
            self._integrate_ground(*gsub)

    def _integrate_ground(self, p: np.ndarray, ranges: np.ndarray, labels: np.ndarray | None) -> None:
        """Kalman-fuse ground points into the ground layer (mean of all, no top-surface rule)."""
        c = np.floor((p[:, :2] - self.anchor) / self.res).astype(np.int64) - self.lo
        flat = c[:, 0] * self.mean.shape[1] + c[:, 1]
        w = 1.0 / (self.sigma0 + self.sigma_per_m * ranges) ** 2
        cells, inv = np.unique(flat, return_inverse=True)
        wsum = np.bincount(inv, w)
        m, v = np.bincount(inv, w * p[:, 2]) / wsum, 1.0 / wsum
        gm, gv = self.gmean.reshape(-1), self.gvar.reshape(-1)
        m0, v0 = gm[cells].astype(np.float64), gv[cells].astype(np.float64)
        new = np.isnan(m0)
        k = np.where(new, 1.0, v0 / (v0 + v))
        gm[cells] = np.where(new, m, m0 + k * (m - m0))
        gv[cells] = np.maximum(np.where(new, v, (1 - k) * v0), _MIN_VAR)
        if labels is not None:
            idx = flat * self.num_classes + np.clip(labels.astype(np.int64), 0, self.num_classes - 1)
            uidx, cnt = np.unique(idx, return_counts=True)
            hf = self.ghist.reshape(-1)
            hf[uidx] = np.minimum(hf[uidx].astype(np.int64) + cnt, np.iinfo(np.uint16).max).astype(np.uint16)

    def add_moving(self, points: np.ndarray) -> None:
        """Count one scan's moving points ``[N, 3]`` (world m, above the ground) in their cells
        (once per cell and scan): where moving things were seen, a top seen as often is theirs."""
        p = np.asarray(points, np.float64).reshape(-1, 3)
        p = p[np.isfinite(p).all(1)]
        if not len(p):
            return
        c = np.floor((p[:, :2] - self.anchor) / self.res).astype(np.int64)
        self._grow(c.min(0), c.max(0))
        c -= self.lo
        cells = np.unique(c[:, 0] * self.mean.shape[1] + c[:, 1])
        n = self.nmoving.reshape(-1)
        n[cells] = np.minimum(n[cells].astype(np.int64) + 1, _COUNT_MAX)

    def outlived(self, moving: float = 0.5, under: float = 0.0, window: int = 1) -> np.ndarray:
        """Cells ``[H, W]`` bool whose top surface above the ground layer was a moving object.

        The dynamics stage misses a moving object in a scan or two (far away, mostly), and the
        top it leaves stays: no later ray crosses a car's roof (a ray from the sensor's height
        passes it only tens of metres beyond). Such a top is one that:

        * ``moving``: at least ``moving`` times as many scans saw moving points above the cell's
          ground as confirmed the top (:meth:`add_moving`); a static top keeps being confirmed
          while its cell is in view, and moving things seldom cross it; 0 = off;
        * ``under``: more than ``under`` times as many later scans saw only the ground in the
          cell as confirmed the top; 0 = off (it also takes overhangs the sensor's field of view
          cuts off near by, tree crowns, for transient).
        """
        out = np.zeros(self.mean.shape, bool)
        ntop = self.ntop.astype(np.float64)
        if moving > 0:
            nm = self.nmoving
            if window > 1:  # an object's flagged points fall beside the cell its missed ones topped
                from scipy.ndimage import maximum_filter
                nm = maximum_filter(nm, size=window, mode="constant")
            out |= (nm > 0) & (nm >= moving * ntop)
        if under > 0:
            out |= self.nunder > under * ntop
        with np.errstate(invalid="ignore"):
            return out & (self.mean > self.gmean)

    def drop_transient(self, free: np.ndarray) -> int:
        """Replace top surfaces that turned out to be transient by the ground layer.

        Args:
            free: ``[H, W]`` bool, cells whose top-surface voxel was later seen through
                (occupancy log-odds < 0) or whose top was a moving object's (:meth:`outlived`):
                a moving object the dynamics stage missed.
        Returns:
            the number of cells changed (those without a ground layer become unobserved).
        """
        free = np.asarray(free, bool) & np.isfinite(self.mean)
        has = free & np.isfinite(self.gmean)
        self.mean[free] = np.where(has[free], self.gmean[free], np.nan)
        self.var[free] = np.where(has[free], self.gvar[free], np.nan)
        self.hist[free] = self.ghist[free]
        return int(free.sum())

    def cell_centres(self) -> np.ndarray:
        """``[H, W, 3]`` world x, y of each cell centre and its height (NaN unobserved), m."""
        H, W = self.mean.shape
        ii, jj = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
        o = self.origin
        return np.stack([o[0] + (ii + 0.5) * self.res, o[1] + (jj + 0.5) * self.res, self.mean], -1)

    def semantics(self) -> np.ndarray:
        """``[H, W]`` uint8 class of each cell's top surface (0 where unobserved/unlabelled)."""
        return np.where(self.hist.any(-1), self.hist.argmax(-1), 0).astype(np.uint8)

    def layers(self, max_slope_deg: float = 20.0, max_step: float = 0.25, max_roughness: float = 0.1,
               top_max_residual: float = 0.04) -> dict:
        """Every layer of the map (the store's ``maps/elevation`` group).

        ``height`` is each cell's top (:func:`cell_maximum` of the fused mean heights, with
        ``top_max_residual``); traversability is judged on the mean heights (the surface sampled
        at the cell centres: the top's slope-dependent offset would read as roughness).

        Returns:
            ``height``, ``variance``, ``min``, ``max`` float32 ``[H, W]`` (NaN = unobserved),
            ``traversable`` uint8 (0 no, 1 yes, 255 unknown), ``semantics`` uint8,
            ``origin [2]`` m, ``resolution`` m.
        """
        sem = self.semantics()
        height = cell_maximum(self.mean, self.res, top_max_residual)
        trav = traversability(self.mean, sem, self.res, max_slope_deg, max_step, max_roughness)
        return {"height": height, "variance": self.var.copy(), "min": self.zmin.copy(),
                "max": self.zmax.copy(), "traversable": trav, "semantics": sem,
                "origin": self.origin.copy(), "resolution": self.res}


def _neighbours(h: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """The 8 shifted copies of ``h [H, W]`` (NaN outside), with their offsets."""
    pad = np.pad(h.astype(np.float64), 1, constant_values=np.nan)
    H, W = h.shape
    return [(di, dj, pad[1 + di:1 + di + H, 1 + dj:1 + dj + W])
            for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj]


def plane_fit(height: np.ndarray, resolution: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares plane through each cell's observed 3 × 3 neighbourhood.

    Args:
        height: ``[H, W]`` m, NaN = unobserved. resolution: cell edge, m.
    Returns:
        ``(gx, gy, rough, step, n)``, each ``[H, W]``: the plane's gradient along rows and
        columns (m/m), the RMS residual to it (m), the largest height difference to an observed
        8-neighbour (m) and the number of observed cells in the window (0 where unobserved).
    """
    h = np.asarray(height, np.float64)
    obs = np.isfinite(h)
    nbs = _neighbours(h)
    step = np.zeros_like(h)
    # least-squares plane through the observed cells of the 3 × 3 window, centred on the cell
    sxx = syy = sxy = sxz = syz = sz = n = sx = sy = 0.0
    for di, dj, nb in nbs + [(0, 0, h)]:
        okn = np.isfinite(nb) & obs
        dz = np.where(okn, nb - np.where(obs, h, 0.0), 0.0)
        x, y = di * resolution, dj * resolution
        sxx = sxx + okn * x * x
        syy = syy + okn * y * y
        sxy = sxy + okn * x * y
        sx = sx + okn * x
        sy = sy + okn * y
        sxz = sxz + x * dz
        syz = syz + y * dz
        sz = sz + dz
        n = n + okn
        if di or dj:
            step = np.fmax(step, np.where(okn, np.abs(dz), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        # centred normal equations (the mean offset is absorbed by the intercept)
        mx, my = sx / np.maximum(n, 1), sy / np.maximum(n, 1)
        cxx, cyy, cxy = sxx - n * mx * mx, syy - n * my * my, sxy - n * mx * my
        cxz, cyz = sxz - mx * sz, syz - my * sz
        det = cxx * cyy - cxy * cxy
        gx = np.where(det > 1e-9, (cyy * cxz - cxy * cyz) / det, 0.0)
        gy = np.where(det > 1e-9, (cxx * cyz - cxy * cxz) / det, 0.0)
        c0 = sz / np.maximum(n, 1) - gx * mx - gy * my
        rss = np.zeros_like(h)
        for di, dj, nb in nbs + [(0, 0, h)]:
            okn = np.isfinite(nb) & obs
            res = np.where(okn, nb - np.where(obs, h, 0.0) - (c0 + gx * di * resolution + gy * dj * resolution), 0.0)
            rss += res * res
        rough = np.sqrt(rss / np.maximum(n, 1))
    return gx, gy, rough, step, np.asarray(n, np.int64) * obs


def cell_maximum(mean: np.ndarray, resolution: float, max_residual: float = 0.04, min_cells: int = 6) -> np.ndarray:
    """Highest point of each cell's surface ``[H, W]`` m from the cells' mean heights ``[H, W]``.

    A cell's points average to the height at its centre, but the map holds the top of the cell
    (its highest surface, the ground truth's and an obstacle map's convention): on a plane of
    gradient ``(gx, gy)`` the top lies ``(|gx| + |gy|) · resolution / 2`` above the centre.
    The gradient is the 3 × 3 plane fit's (:func:`plane_fit`) where at least ``min_cells`` cells
    are observed and the fit leaves at most ``max_residual`` m RMS (a smooth surface); elsewhere
    (walls, object edges, sparse cells) the mean is kept. A 15 cm kerb leaves ~3.5 cm and
    reads as a slope: its cells are raised by up to ~4 cm. A fit steeper than 45° is no top
    surface either: cells observed in two columns only (ground beside a wall's top) fit a plane
    exactly whatever the step, and raised Argoverse 2 ground by 3.9 m.
    """
    gx, gy, rough, _, n = plane_fit(mean, resolution)
    smooth = (n >= min_cells) & (rough <= max_residual) & (np.abs(gx) + np.abs(gy) <= 1.0)
    return np.where(smooth, mean + 0.5 * resolution * (np.abs(gx) + np.abs(gy)), mean).astype(np.float32)


def traversability(height: np.ndarray, semantics: np.ndarray, resolution: float, max_slope_deg: float = 20.0,
                   max_step: float = 0.25, max_roughness: float = 0.1) -> np.ndarray:
    """Traversable cells of an elevation grid.

    A cell is traversable when its top surface is of a ground class (road, sidewalk,
    terrain), the plane fitted to its 3 × 3 neighbourhood is less steep than
    ``max_slope_deg``, the RMS residual to that plane is below ``max_roughness`` m, and
    no observed 8-neighbour differs in height by more than ``max_step`` m.

    Args:
        height: ``[H, W]`` m, NaN = unobserved. semantics: ``[H, W]`` class ids.
    Returns:
        ``[H, W]`` uint8: 1 yes, 0 no, 255 unknown (unobserved).
    """
    gx, gy, rough, step, _ = plane_fit(height, resolution)
    obs = np.isfinite(np.asarray(height, np.float64))
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    ok = np.isin(semantics, GROUND) & (slope <= max_slope_deg) & (rough <= max_roughness) & (step <= max_step)
    out = np.where(ok, 1, 0).astype(np.uint8)
    out[~obs] = 255
    return out
