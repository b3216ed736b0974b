"""The dynamics stage the pipeline drives frame by frame (pass 3, final poses).

``DynamicsStage(config, calibration)`` keeps the LiDAR moving-object
segmentation, the tracker and the camera cues together:

* ``add_frame(frame, T_world_body, prediction_row)`` → ``{"point_dynamic": [N] float32}``
  when the frame has LiDAR, plus ``{"pixel_dynamic": [H, W] float32, "pixel_cues": {...}}``
  when it has a camera and ``prediction_row`` carries the model's window;
* ``finish()`` → the tracks table; ``write(store)`` → ``dynamics/tracks`` (and the
  per-cue camera masks ``dynamics/pixel_<cue>`` as uint8 probability × 255).

``prediction_row`` (all keys optional): ``point_dynamic [N]`` the model's per-point
probability for this frame (fused as extra evidence), ``window`` the
:class:`~fuse4d.data.prediction.WindowPrediction` holding this frame and
``position`` the frame's row in it (camera cues need the whole window: other frames'
depth, the attention tokens, and the ego-motion).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from fuse4d.data.types import Calibration, Frame
from fuse4d.deskew import constant_velocity_motion, deskew
from fuse4d.dynamics.config import DynamicsConfig
from fuse4d.dynamics.lidar_mos import LidarMOS, SphericalGrid
from fuse4d.dynamics.tracking import TRACK_COLUMNS, Tracker

log = logging.getLogger(__name__)

#: camera cues, in the order of ``DynamicsConfig.cue_weights``
CUES = ("attention", "consistency", "head")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 0.02, 0.98)
    return np.log(p / (1 - p))


def combine_cues(cues: dict[str, np.ndarray], weights: dict[str, np.ndarray | float]) -> np.ndarray:
    """Weighted mean in log-odds of the cues present (each ``[H, W]`` in [0, 1]) → ``[H, W]`` float32.

    ``weights`` may be per pixel (e.g. zero where the consistency cue had no observation).
    """
    num, den = 0.0, 0.0
    for name, c in cues.items():
        w = weights.get(name, 0.0)
        num = num + w * _logit(c)
        den = den + w
    den = np.maximum(den, 1e-9) if isinstance(den, np.ndarray) else max(den, 1e-9)
    return (1.0 / (1.0 + np.exp(-num / den))).astype(np.float32)


def sweep_to_world(points: np.ndarray, point_time: np.ndarray | None, T_world_sensor: np.ndarray,
                   T_world_sensor_prev: np.ndarray | None, dt: float) -> np.ndarray:
    """Points of a sweep ``[N, >=3]`` (sensor frame at each point's capture time) → world ``[N, 3]`` float64.

    Each point captured ``point_time`` seconds from the stamp is moved to the stamp by
    :func:`fuse4d.deskew.deskew` at constant velocity between ``T_world_sensor_prev`` (``dt`` s
    earlier) and ``T_world_sensor``: the rotation vector scaled in time, the sensor on the straight
    chord between the two positions (the translation in the stamp's axes), then into the world.
    Without times or a previous pose (or ``dt <= 0``), every point takes ``T_world_sensor``.
    """
    xyz = np.asarray(points, np.float64)[:, :3]
    if point_time is not None and T_world_sensor_prev is not None and dt > 0 and len(xyz):
        T_prev_cur = np.linalg.inv(T_world_sensor_prev) @ T_world_sensor
        T_prev_cur[:3, 3] = T_world_sensor[:3, :3].T @ (T_world_sensor[:3, 3] - T_world_sensor_prev[:3, 3])
        xyz = deskew(xyz, point_time, constant_velocity_motion(T_prev_cur, dt))
    return xyz @ T_world_sensor[:3, :3].T + T_world_sensor[:3, 3]


class DynamicsStage:
    """Moving-object segmentation (LiDAR, camera) and tracks, one frame at a time in time order.

    Args:
        config: a :class:`DynamicsConfig`, a dict of its fields, or None (defaults).
        calibration: the log's calibration (LiDAR/camera extrinsics, K, LiDAR geometry).
        lidar_deskewed: True when the log's sweeps are already motion-compensated
            (``seq.metadata["lidar_deskewed"]``, e.g. Argoverse 2): points are not moved again.
    """

    def __init__(self, config: DynamicsConfig | dict | None, calibration: Calibration,
                 lidar_deskewed: bool = False):
        if not isinstance(config, DynamicsConfig):
            config = DynamicsConfig.from_dict(config if isinstance(config, dict) else None)
        self.config, self.calibration, self.lidar_deskewed = config, calibration, bool(lidar_deskewed)
        grid = SphericalGrid.for_sensor(config, calibration.lidar_beams, calibration.lidar_azimuth_steps,
                                        calibration.lidar_fov_deg)
        self.mos = LidarMOS(config, grid)
        self.tracker = Tracker(config, self.mos.ground.lookup)
        self._prev: tuple[float, np.ndarray] | None = None  # (t, T_world_lidar)
        self._prev_velocity: np.ndarray | None = None  # [N_prev, 3] m/s per point of the last scan
        self._window_cache: tuple[int, dict[str, np.ndarray]] | None = None
        self._cue_frames: dict[float, dict[str, np.ndarray]] = {}
        self._table: dict[str, np.ndarray] | None = None
        self._observed: np.ndarray | float = 1.0
        self._revised: list[tuple[float, np.ndarray]] = []

    @classmethod
    def for_sequence(cls, seq, config: DynamicsConfig | dict | None = None) -> "DynamicsStage":
        """A stage set up for a log: ``metadata["lidar_deskewed"]`` (sweeps already motion-compensated)
        and, for logs whose points are in the vehicle frame (Argoverse 2), the ray origin at the
        roof LiDAR (``metadata["av2_lidar_extrinsics"]["up_lidar"]``) unless the config sets one."""
        if not isinstance(config, DynamicsConfig):
            config = DynamicsConfig.from_dict(config if isinstance(config, dict) else None)
        up = (seq.metadata.get("av2_lidar_extrinsics") or {}).get("up_lidar")
        if config.ray_origin_lidar is None and up is not None:
            T_lidar_up = np.linalg.inv(seq.calibration.T_body_lidar) @ np.asarray(up, np.float64)
            config = DynamicsConfig.from_dict({**config.to_dict(), "ray_origin_lidar": T_lidar_up[:3, 3].tolist()})
        return cls(config, seq.calibration, lidar_deskewed=bool(seq.metadata.get("lidar_deskewed")))

    # -- per frame -----------------------------------------------------------------------------
    def add_frame(self, frame: Frame, T_world_body: np.ndarray, prediction_row: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
        """Segment one frame (frames in time order, with final poses).

        Args:
            frame: the frame (``points`` and/or ``image`` used).
            T_world_body: ``[4, 4]`` final body pose.
            prediction_row: see the module docstring, or None.
        Returns:
            ``point_dynamic [N]`` float32 (with LiDAR); ``pixel_dynamic [H, W]`` float32 and
            ``pixel_cues {cue: [H, W]}`` (with a camera and a model window). Empty without either.
        """
        row = prediction_row or {}
        out: dict[str, Any] = {}
        T_world_body = np.asarray(T_world_body, np.float64)
        if frame.points is not None and len(frame.points) and np.isfinite(T_world_body).all():
            out["point_dynamic"] = self._lidar(frame, T_world_body, row.get("point_dynamic"))
            if self._revised:
                out["revised"] = self._revised
        if frame.image is not None and row.get("window") is not None:
            cues = self._camera(row["window"], int(row.get("position", 0)))
            if cues:
                weights = dict(zip(CUES, self.config.cue_weights))
                w = {k: weights[k] * (self._observed if k == "consistency" else 1.0) for k in cues}
                out["pixel_dynamic"] = combine_cues(cues, w)
                out["pixel_cues"] = cues
                self._cue_frames[float(frame.timestamp)] = {
                    k: np.round(255 * v).astype(np.uint8) for k, v in {**cues, "combined": out["pixel_dynamic"]}.items()}
        return out

    def _lidar(self, frame: Frame, T_world_body: np.ndarray, model_prob: np.ndarray | None) -> np.ndarray:
        cfg = self.config
        T_wl = T_world_body @ self.calibration.T_body_lidar
        t = float(frame.timestamp)
        prev_T, dt = None, 0.0
        if self._prev is not None:
            dt = t - self._prev[0]
            if 0 < dt <= 0.5:
                prev_T = self._prev[1]
        pts = sweep_to_world(frame.points, None if self.lidar_deskewed else frame.point_time, T_wl, prev_T, dt)
        flow = None
        if self._prev_velocity is not None and 0 < dt <= 0.5:
            flow = self._prev_velocity * dt
        extra = None
        if model_prob is not None and len(model_prob) == len(pts) and cfg.l_model > 0:
            extra = cfg.l_model * _logit(model_prob)
        T_rays = T_wl
        if cfg.ray_origin_lidar is not None:
            T_rays = T_wl.copy()
            T_rays[:3, 3] = T_wl[:3, :3] @ np.asarray(cfg.ray_origin_lidar, np.float64) + T_wl[:3, 3]
        res = self.mos.update(pts, T_rays, flow_prev=flow, extra_logodds=extra)
        prob = res["prob"]
        # moving objects → tracks; their velocity moves this scan's posterior into the next one
        objects = res["objects"]
        velocity = np.zeros((len(pts), 3))
        ids = np.unique(objects[(objects >= 0) & (prob > 0.5)])
        if len(ids):
            share = np.bincount(objects[objects >= 0], weights=prob[objects >= 0] > 0.5)
            count = np.bincount(objects[objects >= 0])
            ids = ids[share[ids] / count[ids] > 0.5]
        order = np.argsort(objects, kind="stable")
        starts = np.searchsorted(objects[order], ids)
        ends = np.searchsorted(objects[order], ids, side="right")
        members = [order[a:b] for a, b in zip(starts, ends)]
        times = None
        if frame.point_time is not None and not self.lidar_deskewed and len(frame.point_time) == len(pts):
            pt = np.asarray(frame.point_time, np.float64)
            times = [float(pt[m].mean()) for m in members]
        vel = self.tracker.update(t, [pts[m] for m in members], times, T_rays[:3, 3])
        for m, v in zip(members, vel):
            velocity[m] = v
        self._prev, self._prev_velocity = (t, T_wl), velocity
        self._revised = self.mos.backward(velocity, t)
        return prob

    def _camera(self, wp, position: int) -> dict[str, np.ndarray]:
        """This frame's camera cues from its window (the window's cues are computed once)."""
        from fuse4d.dynamics.attention import attention_cue
        from fuse4d.dynamics.consistency import consistency_cue, window_camera_poses

        cfg, cal = self.config, self.calibration
        if self._window_cache is None or self._window_cache[0] != id(wp):
            cues: dict[str, np.ndarray] = {}
            shape = None if wp.depth is None else wp.depth.shape[1:]
            if wp.dynamic is not None:
                cues["head"] = np.asarray(wp.dynamic, np.float32)
                shape = wp.dynamic.shape[1:]
            if wp.attn_tokens is not None and wp.patch_grid is not None and shape is not None:
                cues["attention"] = attention_cue(wp.attn_tokens, wp.patch_grid, shape, cfg.attn_layers,
                                                  cfg.attn_topk)
            if wp.depth is not None and cal.K is not None and len(wp) > 1:
                poses = window_camera_poses(np.asarray(wp.T_prev_cur, np.float64), cal.T_body_cam)
                cues["consistency"], cues["_observed"] = consistency_cue(wp.depth, poses, cal.K, cfg.consistency_tau)
            self._window_cache = (id(wp), cues)
        cues = self._window_cache[1]
        self._observed = (cues["_observed"][position] > 0).astype(np.float64) if "_observed" in cues else 1.0
        return {k: v[position] for k, v in cues.items() if not k.startswith("_")}

    # -- end -----------------------------------------------------------------------------------
    def finish(self) -> dict[str, np.ndarray]:
        """The tracks table: columns of :data:`~fuse4d.dynamics.tracking.TRACK_COLUMNS`, one row
        per confirmed track and frame (world frame; m, s, m/s, rad)."""
        self._table = self.tracker.table()
        return self._table

    def write(self, store) -> None:
        """Write ``dynamics/tracks`` (a group of column arrays) and, when camera cues were computed,
        ``dynamics/pixel_<cue>`` ``[S, H, W]`` uint8 (probability × 255) at the run rows of their frames."""
        table = self._table if self._table is not None else self.finish()
        store.write_map("dynamics/tracks", table, attrs={"columns": list(TRACK_COLUMNS), "frame": "world",
                                                         "units": "m, s, m/s, rad"})
        self.flush_cues(store)

    def flush_cues(self, store) -> None:
        """Write the camera cue masks computed so far (``dynamics/pixel_<cue>``, see :meth:`write`) and
        drop them from memory: a pipeline calls it every few frames so long logs stay in bounded memory."""
        if not self._cue_frames:
            return
        stamps = np.asarray(store.read("timestamps"), np.float64)
        for t, cues in self._cue_frames.items():
            rows = np.flatnonzero(np.isclose(stamps, t, atol=1e-6))
            if not len(rows):
                log.warning("dynamics: no run frame at t=%.6f for its camera cues", t)
                continue
            for name, arr in cues.items():
                store.write_frames(f"dynamics/pixel_{name}", int(rows[0]), arr[None])
        self._cue_frames.clear()
