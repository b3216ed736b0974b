"""MapBuilder: the mapping stage the pipeline drives frame by frame (CONTRACTS.md).

``MapBuilder(config, calibration).add_frame(frame, T_world_body, point_semantics,
point_dynamic, depth) -> {"ground": uint8 [N]}``, then ``finish()`` and
``write(store)``. Per frame: LiDAR points → world; ground segmentation (all
points); moving points (``point_dynamic > 0.5``) dropped; the static rest feeds the
occupancy map (ray casting), the elevation map, the static point map, and, with a
camera, the TSDF mesh. Point classes are the model's when given; without them,
geometric classes: ground → road, the rest → unlabeled.

Store layout written by :meth:`MapBuilder.write` (all in the run's world frame):

* ``maps/occupancy`` group: ``ijk`` int32 ``[N, 3]``, ``log_odds`` float32 ``[N]``,
  ``labels`` uint8 ``[N]`` for every *known* voxel (free ones too, log-odds < 0);
  attrs ``origin [3]`` (lower corner of voxel 0, 0, 0), ``resolution``, ``threshold``.
* ``maps/elevation`` group: ``height``, ``variance``, ``min``, ``max`` float32,
  ``traversable``, ``semantics`` uint8 ``[H, W]``; attrs ``origin [2]``, ``resolution``.
* ``maps/points`` group: ``xyz`` float32 ``[M, 3]``, ``rgb`` uint8 ``[M, 3]``, ``labels`` uint8 ``[M]``.
* ``maps/mesh`` group: ``vertices`` float32 ``[V, 3]``, ``colors`` uint8 ``[V, 3]``,
  ``triangles`` int32 ``[T, 3]`` (the mesh lives in the store, not beside it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fuse4d.data.classes import BUILDING, GROUND, ROAD, UNLABELED, colorize
from fuse4d.data.types import Calibration, Frame, Sequence
from fuse4d.deskew import MotionModel, deskew, polynomial_motion
from fuse4d.errors import DataError
from fuse4d.mapping.config import MappingConfig
from fuse4d.mapping.elevation import ElevationMap
from fuse4d.mapping.ground import segment_ground
from fuse4d.mapping.occupancy import OccupancyMap
from fuse4d.mapping.pointmap import PointMap


def _transform(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ T[:3, :3].T + T[:3, 3]


def snap_to_planes(points: np.ndarray, origin: np.ndarray, normals: np.ndarray, centres: np.ndarray,
                   which: np.ndarray, max_shift: float) -> np.ndarray:
    """Move noisy LiDAR returns along their rays onto the plane fitted to their neighbourhood.

    A return's error lies along its ray (range noise); the plane through its neighbours
    (``normals``, ``centres``: :func:`~fuse4d.mapping.normals.scan_normals`) averages that noise
    out, so a return is moved to where its ray meets that plane when that is at most
    ``max_shift`` m away and the ray meets the plane at least 0.2 off grazing: a return that
    noise pushed across a voxel face goes back to the voxel its surface passes through.

    Args:
        points: ``[N, 3]`` world m. origin: ``[3]`` sensor position. normals, centres: ``[N, 3]``
            (NaN normal = no plane: left). which: ``[N]`` bool, the returns that may move.
    Returns:
        ``[N, 3]`` float64 (a copy).
    """
    p = np.asarray(points, np.float64)
    d = p - origin
    r = np.linalg.norm(d, axis=1)
    u = d / np.maximum(r, 1e-9)[:, None]
    nrm = np.nan_to_num(np.asarray(normals, np.float64))
    cos = np.einsum("ij,ij->i", nrm, u)
    ok = np.asarray(which, bool) & np.isfinite(normals).all(1) & (np.abs(cos) >= 0.2)
    t = np.einsum("ij,ij->i", nrm, np.asarray(centres, np.float64) - origin) / np.where(ok, cos, 1.0)
    ok &= np.abs(t - r) <= max_shift
    out = p.copy()
    out[ok] = origin + u[ok] * t[ok, None]
    return out


class MapBuilder:
    """Builds occupancy, elevation, static points and mesh from posed frames.

    Args:
        config: :class:`MappingConfig` (or a dict of its fields; None = defaults).
        calibration: the log's calibration (LiDAR and camera extrinsics, K).
        grid_origin: ``[3]`` world point on a voxel/cell corner of the map lattices
            (default the world origin, the convention :meth:`for_sequence` keeps; the
            evaluator compares maps on other lattices by voxel centres).
        depth_sensor: the frames' ``depth`` is a real depth camera (RGB-D logs) and
            is used for the mesh; otherwise ``Frame.depth`` is never read.
        lidar_deskewed: the LiDAR points are already motion-compensated
            (``metadata["lidar_deskewed"]``); otherwise points with ``point_time`` are
            deskewed by :func:`fuse4d.deskew.polynomial_motion` through the poses of the
            last two frames (within 0.5 s) and this one: a turning, accelerating sensor's
            path, not only the mean velocity since the previous frame (which misplaces the
            sweep's first points by ~10 cm at 30 m when frames are 0.2 s apart in a bend).
    """

    def __init__(self, config: MappingConfig | dict | None = None, calibration: Calibration | None = None,
                 grid_origin: np.ndarray | None = None, depth_sensor: bool = False, lidar_deskewed: bool = False):
        if not isinstance(config, MappingConfig):
            config = MappingConfig.from_dict(config)
        self.config = cfg = config
        self.calibration = calibration or Calibration()
        self.grid_origin = np.zeros(3) if grid_origin is None else np.asarray(grid_origin, np.float64).reshape(3)
        self.depth_sensor = bool(depth_sensor)
        self.deskewed = bool(lidar_deskewed)
        self._prev: list[tuple[float, np.ndarray]] = []  # (timestamp, T_world_lidar) of the last two frames
        self._pending: tuple | None = None  # the first sweep, integrated once the next gives the motion
        self.occupancy = _ShiftedOccupancy(OccupancyMap(cfg.voxel_size, cfg.l_hit, cfg.l_miss, cfg.l_min, cfg.l_max,
                                                        cfg.occupied_threshold, carve_core=cfg.carve_core,
                                                        label_range=cfg.label_range),
                                           self.grid_origin)
        self.elevation = ElevationMap(cfg.elevation_resolution, self.grid_origin[:2], cfg.elevation_sigma0,
                                      cfg.elevation_sigma_per_m)
        self.mesher = None
        self.points = PointMap(cfg.point_voxel, cfg.voxel_size, cfg.point_max_per_voxel, self.grid_origin)
        self.frames = 0
        self._finished: dict[str, Any] | None = None

    @classmethod
    def for_sequence(cls, seq: Sequence, config: MappingConfig | dict | None = None) -> "MapBuilder":
        """A builder for ``seq``: its calibration, ``metadata["depth_sensor"]`` and
        ``metadata["lidar_deskewed"]``. Never its ground truth: the lattice is the fixed
        convention (corners on multiples of the voxel size from the run's world origin)."""
        return cls(config, seq.calibration, None, bool(seq.metadata.get("depth_sensor")),
                   bool(seq.metadata.get("lidar_deskewed")))

    # -- per frame ---------------------------------------------------------------------
    def add_frame(self, frame: Frame, T_world_body: np.ndarray, point_semantics: np.ndarray | None = None,
                  point_dynamic: np.ndarray | None = None, depth: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Integrate one frame.

        Args:
            frame: the input frame (its ``points``, ``image`` and, for depth cameras, ``depth``;
                ground-truth fields are never read).
            T_world_body: ``[4, 4]`` pose; a non-finite pose skips the frame.
            point_semantics: ``[N]`` uint8 classes per LiDAR point (model), or None.
            point_dynamic: ``[N]`` float32 probability of moving, or None (all static).
            depth: ``[H, W]`` float32 m model depth in the camera view, or None.
        Returns:
            ``{"ground": [N] uint8}`` (1 = ground; empty without LiDAR).
        Raises:
            DataError: per-point arrays whose length is not the frame's point count, or a pose
                that is not 4 × 4 (naming the frame).
        """
        T = np.asarray(T_world_body, np.float64)
        n = 0 if frame.points is None else len(frame.points)
        for name, arr in (("point_semantics", point_semantics), ("point_dynamic", point_dynamic)):
            if arr is not None and np.shape(arr) != (n,):
                raise DataError(None, f"frame {frame.index}: {name} has shape {list(np.shape(arr))}, "
                                      f"expected [{n}] (one value per LiDAR point)")
        if T.shape != (4, 4):
            raise DataError(None, f"frame {frame.index}: T_world_body must be 4x4, got {list(T.shape)}")
        if not np.isfinite(T).all():
            return {"ground": np.zeros(n, np.uint8)}
        T_wl = T @ self.calibration.T_body_lidar
        motion = None
        if n and not self.deskewed and frame.point_time is not None:
            if not self._prev:  # first frame: wait for the next one to know the motion
                self._pending = (frame, T, point_semantics, point_dynamic, depth)
                self._prev = [(frame.timestamp, T_wl)]
                pts = _transform(T_wl, np.asarray(frame.points[:, :3], np.float64))
                return {"ground": self._ground(pts).astype(np.uint8)}
            motion = self._motion(frame.timestamp, T_wl, self._prev)
        if self._pending is not None:
            p, self._pending = self._pending, None
            t0, T0 = self._prev[-1]
            self._integrate(*p, self._motion(t0, T0, [(frame.timestamp, T_wl)]) if n else None)
        if n:
            self._prev = (self._prev + [(frame.timestamp, T_wl)])[-2:]
        return {"ground": self._integrate(frame, T, point_semantics, point_dynamic, depth, motion).astype(np.uint8)}

    @staticmethod
    def _motion(t: float, T_wl: np.ndarray, others: list[tuple[float, np.ndarray]]) -> MotionModel | None:
        """Sweep motion of the frame at ``t`` (LiDAR pose ``T_wl``) from the poses of ``others``
        within 0.5 s of it (:func:`polynomial_motion`), None when there are none."""
        near = [(tk - t, Tk) for tk, Tk in others if 0 < abs(tk - t) < 0.5]
        if not near:
            return None
        inv = np.linalg.inv(T_wl)
        return polynomial_motion(np.array([d for d, _ in near]), np.stack([inv @ Tk for _, Tk in near]))

    def _ground(self, pts: np.ndarray, return_height: bool = False):
        cfg = self.config
        return segment_ground(pts, cfg.ground_cell, cfg.ground_window, cfg.ground_max_slope, cfg.ground_height,
                              return_height)

    def _integrate(self, frame: Frame, T: np.ndarray, point_semantics, point_dynamic, depth,
                   motion: MotionModel | None) -> np.ndarray:
        """Integrate a frame whose sweep moved by ``motion`` (None = no deskew); returns its
        ground mask ``[N]`` bool."""
        cfg, cal = self.config, self.calibration
        n = 0 if frame.points is None else len(frame.points)
        self.frames += 1
        ground = np.zeros(n, bool)
        static_world = None
        if n:
            T_wl = T @ cal.T_body_lidar
            local = np.asarray(frame.points[:, :3], np.float64)
            if motion is not None:
                local = deskew(local, frame.point_time, motion, bins=256)  # bins 0.4 ms apart at 10 Hz
            pts = _transform(T_wl, local)
            ground, above = self._ground(pts, True)
            static = np.ones(n, bool) if point_dynamic is None else ~(np.asarray(point_dynamic, np.float32) > 0.5)
            if point_semantics is not None:
                labels = np.asarray(point_semantics, np.uint8)
            else:
                labels = np.where(ground, ROAD, UNLABELED).astype(np.uint8)
            origin = T_wl[:3, 3]
            ps, gs, ls = pts[static], ground[static], labels[static]
            rng = np.linalg.norm(ps - origin, axis=1)
            keep = (rng >= cfg.min_range) & np.isfinite(rng)
            normals = None
            og = gs[keep]
            if point_semantics is not None:  # a point the model calls a wall is no ground surface for the voxels
                og = og & np.isin(ls[keep], (UNLABELED,) + GROUND)
            hits = ps[keep]
            if cfg.normals:
                from fuse4d.mapping.normals import scan_normals
                normals, centres, flat = scan_normals(hits, cfg.normal_neighbours, 1.5, 0.2, 0.3, return_centroids=True)
                if cfg.range_sigma > 0:  # planes flat to within the noise only (not a tree's crown)
                    hits = snap_to_planes(hits, origin, normals, centres, ~og & (flat <= cfg.range_sigma),
                                          3.0 * cfg.range_sigma)
            self.occupancy.integrate(origin, hits, ls[keep], og, cfg.max_range, cfg.min_range, normals,
                                     np.maximum(above[static][keep], 0.0))
            near = keep & (rng <= cfg.max_range)
            el = keep & (rng <= cfg.elevation_max_range)
            self.elevation.integrate(ps[el], rng[el], ls[el], gs[el])
            if not static.all():
                mv = ~static & ~ground & (np.linalg.norm(pts - origin, axis=1) <= cfg.elevation_max_range)
                self.elevation.add_moving(pts[mv])
            static_world = (ps[near], ls[near])
            self._add_points(frame, T, ps[near], ls[near])
        if cfg.mesh and frame.image is not None and cal.K is not None and self.frames % cfg.mesh_every == 0:
            self._add_mesh(frame, T, static_world, depth)
        return ground

    def _camera_rgb(self, frame: Frame, T: np.ndarray, pts: np.ndarray) -> np.ndarray | None:
        """RGB ``[N, 3]`` of world points seen by the camera (others black), or None."""
        cal = self.calibration
        if frame.image is None or cal.K is None:
            return None
        pc = _transform(np.linalg.inv(T @ cal.T_body_cam), pts)
        h, w = frame.image.shape[:2]
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = pc @ cal.K.T
            u, v = np.floor(uv[:, 0] / z + 0.5), np.floor(uv[:, 1] / z + 0.5)   # nearest pixel centre
        ok = (z > 0.1) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        rgb = np.zeros((len(pts), 3), np.uint8)
        rgb[ok] = frame.image[v[ok].astype(np.int64), u[ok].astype(np.int64)]
        return rgb, ok

    def _add_points(self, frame: Frame, T: np.ndarray, pts: np.ndarray, labels: np.ndarray) -> None:
        rgb = colorize(labels).astype(np.uint8)
        cam = self._camera_rgb(frame, T, pts)
        if cam is not None:
            rgb[cam[1]] = cam[0][cam[1]]
        self.points.add(pts, rgb, labels)

    def _add_mesh(self, frame: Frame, T: np.ndarray, static_world, depth: np.ndarray | None) -> None:
        from fuse4d.mapping.mesh import TsdfMesher, densify, lidar_depth
        cfg, cal = self.config, self.calibration
        h, w = frame.image.shape[:2]
        if self.depth_sensor and frame.depth is not None:
            d = np.asarray(frame.depth, np.float32)
            voxel = cfg.tsdf_voxel or 0.02
        else:
            d = None
            if static_world is not None and len(static_world[0]):
                pc = _transform(np.linalg.inv(T @ cal.T_body_cam), static_world[0])
                d = lidar_depth(pc, cal.K, (w, h), cfg.mesh_max_depth)
            if depth is not None:
                d = densify(np.zeros((h, w), np.float32) if d is None else d, depth)
            voxel = cfg.tsdf_voxel or 0.1
        if d is None:
            return
        if self.mesher is None:
            self.mesher = TsdfMesher(voxel, cfg.tsdf_trunc_voxels, cfg.mesh_max_depth)
        self.mesher.integrate(d, frame.image, cal.K, T @ cal.T_body_cam)

    # -- results -----------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """Finalise and return the maps: ``occupancy``, ``elevation``, ``points``, ``mesh``
        (dicts of arrays, as written by :meth:`write`)."""
        cfg = self.config
        if self._pending is not None:
            p, self._pending = self._pending, None
            self._integrate(*p, None)
        # elevation cells whose top surface was later seen through, or was seen less often than moving
        # things over it, were a missed moving object
        c = self.elevation.cell_centres().reshape(-1, 3)
        seen = np.isfinite(c[:, 2])
        lo = np.zeros(len(c), np.float32)
        lo[seen] = self.occupancy.log_odds_at(c[seen] - [0.0, 0.0, 0.5 * cfg.voxel_size])
        free = lo <= 0.5 * cfg.l_min  # seen through several times more than hit
        free = free.reshape(self.elevation.mean.shape) | self.elevation.outlived(cfg.elevation_moving, cfg.elevation_under, cfg.elevation_moving_window)
        self.transient_cells = self.elevation.drop_transient(free)
        occ = self.occupancy.arrays()
        occ["labels"] = self._ground_share(occ)
        self._finished = {
            "occupancy": occ,
            "elevation": self.elevation.layers(cfg.max_slope_deg, cfg.max_step, cfg.max_roughness,
                                               cfg.elevation_top_residual),
            "points": self.points.arrays(),
            "mesh": None if self.mesher is None else self.mesher.mesh(),
        }
        return self._finished

    def _ground_share(self, occ: dict) -> np.ndarray:
        """Labels ``[N]`` of the occupancy voxels, where the ground surface and an object share a voxel
        decided by the share of the voxel below the ground (the ground truth's majority of matter).

        The ground height at the voxel's column is the elevation map's ground layer (mean of the
        ground points); the part of the voxel below it is ground matter, except beside a building,
        whose walls go on below the ground (foundations). Above half, the voxel is the most voted
        ground class whatever the object's votes (nothing else can fill the rest to a majority);
        below ``thin_ground`` (a thin ground sliver) it is the most voted other class: an
        object's points outnumber the sliver's, or not, by where the sensor stood.
        """
        cfg, labels = self.config, np.asarray(occ["labels"]).copy()
        res = float(occ["resolution"])
        ijk = np.asarray(occ["ijk"], np.int64) + np.round((np.asarray(occ["origin"]) - self.grid_origin) / res).astype(np.int64)
        occupied = np.asarray(occ["log_odds"]) > float(occ["threshold"])
        if not occupied.any():
            return labels
        idx = np.flatnonzero(occupied)
        hist = self.occupancy.map.histograms(ijk[idx]).astype(np.int64)
        g = np.zeros(hist.shape[1], bool)
        g[list(GROUND)] = True
        g_votes, o_votes = hist[:, g].sum(1), hist[:, ~g][:, 1:].sum(1)
        mixed = (g_votes > 0) & (o_votes > 0)
        idx, hist, ijk = idx[mixed], hist[mixed], ijk[idx[mixed]]
        el = self.elevation
        cell = np.floor(((ijk[:, :2] + 0.5) * res) / el.res).astype(np.int64) - el.lo
        inside = np.all((cell >= 0) & (cell < el.gmean.shape), 1)
        h = np.full(len(idx), np.nan)
        h[inside] = el.gmean[cell[inside, 0], cell[inside, 1]]
        share = np.clip((h - (self.grid_origin[2] + ijk[:, 2] * res)) / res, 0.0, 1.0)  # below the ground
        gcls = np.flatnonzero(g)[hist[:, g].argmax(1)]
        ocls = np.flatnonzero(~g)[1:][hist[:, ~g][:, 1:].argmax(1)]
        known = np.isfinite(h)
        ground_wins = known & (share > 0.5) & (ocls != BUILDING)  # a building's matter goes on below the ground
        labels[idx[ground_wins]] = gcls[ground_wins]
        thin = known & (share < cfg.thin_ground)
        labels[idx[thin]] = ocls[thin]
        return labels

    def write(self, store) -> None:
        """Write every map into ``store`` (a :class:`~fuse4d.store.RunStore`), each atomically."""
        maps = self._finished or self.finish()
        occ = dict(maps["occupancy"])
        attrs = {k: occ.pop(k) for k in ("origin", "resolution", "threshold")}
        store.write_map("maps/occupancy", occ, attrs)
        el = dict(maps["elevation"])
        store.write_map("maps/elevation", el, {k: el.pop(k) for k in ("origin", "resolution")})
        store.write_map("maps/points", maps["points"])
        if maps["mesh"] is not None:
            store.write_map("maps/mesh", maps["mesh"])


class _ShiftedOccupancy:
    """An :class:`OccupancyMap` whose lattice has a corner at ``anchor`` instead of the origin."""

    def __init__(self, occ: OccupancyMap, anchor: np.ndarray):
        self.map, self.anchor = occ, np.asarray(anchor, np.float64)

    def integrate(self, origin, points, labels, ground, max_range, min_range, normals=None, clearance=None) -> None:
        self.map.integrate(np.asarray(origin) - self.anchor, np.asarray(points) - self.anchor, labels, ground,
                           max_range, min_range, normals, clearance)

    def occupancy_at(self, points: np.ndarray) -> np.ndarray:
        """Occupancy probability ``[N]`` at world points ``[N, 3]`` (0.5 unknown)."""
        return self.map.occupancy_at(np.asarray(points) - self.anchor)

    def log_odds_at(self, points: np.ndarray) -> np.ndarray:
        """Log-odds ``[N]`` of the voxels holding world points ``[N, 3]`` (0 unknown)."""
        ijk = np.floor((np.asarray(points, np.float64) - self.anchor) / self.map.res).astype(np.int64)
        return self.map.log_odds_at(ijk)

    def arrays(self) -> dict[str, Any]:
        """Known voxels with ``ijk`` from 0 and the ``origin`` of voxel ``(0, 0, 0)``."""
        v = self.map.voxels()
        lo = v["ijk"].min(0) if len(v["ijk"]) else np.zeros(3, np.int32)
        v["ijk"] = (v["ijk"] - lo).astype(np.int32)
        v["origin"] = self.anchor + lo * self.map.res
        v["resolution"] = self.map.res
        v["threshold"] = self.map.threshold
        return v
