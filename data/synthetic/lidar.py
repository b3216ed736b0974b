"""Spinning LiDAR with per-column timing (motion-distorted scans) and per-point labels.

Beams are spread evenly over the vertical FOV; azimuth columns sweep
counter-clockwise from -π (behind) through 0 (ahead) to π during the sweep
``[t - T, t]`` (T = 1 / frame rate), so the frame timestamp is the scan end.
Each column is cast from the LiDAR pose at its own time, and each point is
expressed in the LiDAR frame at its capture time, like a raw sensor output.
Points are ordered by capture time (column-major).
"""

from __future__ import annotations

import numpy as np

from fuse4d.data.synthetic.config import SynthConfig
from fuse4d.data.synthetic.raycast import Fans, trace
from fuse4d.data.synthetic.texture import intensity


class Lidar:
    """A ``beams × azimuth_steps`` spinning LiDAR.

    Attributes:
        elevation: ``[B]`` beam elevations (rad); azimuth: ``[J]`` column azimuths (rad);
        column_time: ``[J]`` capture time of each column relative to the scan end (s, ≤ 0);
        dirs_local: ``[J, B, 3]`` unit ray directions in the LiDAR frame.
    """

    def __init__(self, beams: int, azimuth_steps: int, fov_deg: tuple[float, float], sweep_time: float,
                 max_range: float):
        self.beams, self.steps, self.max_range = int(beams), int(azimuth_steps), float(max_range)
        self.elevation = np.radians(np.linspace(fov_deg[0], fov_deg[1], beams))
        self.azimuth = -np.pi + 2 * np.pi * (np.arange(azimuth_steps) + 0.5) / azimuth_steps
        self.column_time = -sweep_time * (azimuth_steps - 1 - np.arange(azimuth_steps)) / azimuth_steps
        self._column_time32 = self.column_time.astype(np.float32)
        ce, se = np.cos(self.elevation), np.sin(self.elevation)
        ca, sa = np.cos(self.azimuth), np.sin(self.azimuth)
        self.dirs_local = np.stack([ca[:, None] * ce[None], sa[:, None] * ce[None],
                                    np.broadcast_to(se[None], (azimuth_steps, beams))], -1).astype(np.float32)
        self._dirs_local_t = np.ascontiguousarray(self.dirs_local.reshape(-1, 3).T)
        zero = np.zeros_like(sa)
        self.fan_normal_local = np.stack([-sa, ca, zero], -1)
        self.fan_fwd_local = np.stack([ca, sa, zero], -1)
        self.fan_angle = np.broadcast_to(self.elevation[None], (azimuth_steps, beams))

    @classmethod
    def from_config(cls, cfg: SynthConfig) -> "Lidar":
        """LiDAR from the ``lidar_*`` fields of the config."""
        return cls(cfg.lidar_beams, cfg.lidar_azimuth_steps, cfg.lidar_fov_deg, 1.0 / cfg.frame_rate,
                   cfg.lidar_max_range)

    def render(self, static, actors, T_world_lidar: np.ndarray, t: float, rng: np.random.Generator,
               range_sigma: float = 0.0, dropout: float = 0.0,
               lost_sector_deg: tuple[float, float] | None = None) -> dict[str, np.ndarray]:
        """Scan ending at time ``t``.

        Args:
            static, actors: the world's ``StaticScene`` and ``Actors``.
            T_world_lidar: ``[J, 4, 4]`` LiDAR pose at each column's time ``t + column_time``.
            rng: noise generator; range_sigma: range noise σ (m); dropout: random loss probability.
            lost_sector_deg: ``(start, stop)`` azimuth degrees with no returns, or None.

        Returns ``points [N, 4]`` float32 (LiDAR frame at capture time + intensity), ``time [N]``
        float32 (relative to t), ``semantics [N]`` uint8, ``dynamic [N]`` bool, ``instance [N]`` int32.
        """
        R, o = T_world_lidar[:, :3, :3], T_world_lidar[:, :3, 3]
        dirs = np.matmul(self.dirs_local, R.transpose(0, 2, 1).astype(np.float32))
        fans = Fans(o, np.matmul(R, self.fan_normal_local[:, :, None])[..., 0],
                    np.matmul(R, self.fan_fwd_local[:, :, None])[..., 0], R[:, :, 2], dirs, self.fan_angle,
                    t + self.column_time)
        hits = trace(static, actors, fans, self.max_range, with_color=False)
        idx = hits["idx"]
        keep = np.ones(idx.size, bool)
        if dropout > 0:
            keep &= rng.random(idx.size, dtype=np.float32) >= dropout
        if lost_sector_deg is not None:
            az = np.degrees(self.azimuth[idx // self.beams])
            keep &= ~((az >= lost_sector_deg[0]) & (az < lost_sector_deg[1]))
        sel = np.flatnonzero(keep)
        ray = idx[sel]
        r = hits["t"][sel]
        if range_sigma > 0:
            r = r + np.float32(range_sigma) * rng.standard_normal(ray.size, dtype=np.float32)
        out = np.empty((sel.size, 4), np.float32)
        for k in range(3):  # one coordinate at a time: 1-D gathers are faster than [N, 3] rows
            out[:, k] = np.take(self._dirs_local_t[k], ray) * r
        cos_inc = np.einsum("ij,ij->i", np.take(hits["normal"], sel, axis=0), np.take(dirs.reshape(-1, 3), ray, axis=0))
        cls = hits["cls"][sel]
        out[:, 3] = intensity(cls, cos_inc, hits["paint"][sel])
        return {"points": out, "time": self._column_time32[ray // self.beams],
                "semantics": cls, "dynamic": hits["dynamic"][sel], "instance": hits["inst"][sel]}
