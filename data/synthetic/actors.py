"""Moving actors: cars and trucks in the lanes, pedestrians on the sidewalks.

Every actor moves along an offset of the ego curve, ``c(u) + d n(u)``:

* cars in the ego lane use the ego's own parameter shifted by a phase,
  ``u = Δ + u_ego(t)``, so they keep their distance and never collide with it;
* oncoming cars and trucks run ``u = φ - r t`` at one common rate r per lane;
* pedestrians walk at a constant arc-length speed on sidewalk sub-lanes (one
  speed per sub-lane, so they never walk through each other).

Boxes are yaw-only, centred half their height above the surface under them.
Each actor is drawn as 1-2 box parts (body + cabin, torso + head, cab + cargo).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fuse4d.data.classes import CAR, OTHER_VEHICLE, PEDESTRIAN
from fuse4d.data.synthetic.config import SynthConfig
from fuse4d.data.synthetic.ego import EgoTrajectory
from fuse4d.data.synthetic.scene import CAR_PARTS, CAR_SIZE, car_color
from fuse4d.data.synthetic.terrain import KERB, ONCOMING_OFFSET, Terrain

PED_SIZE = (0.45, 0.6, 1.75)
PED_PARTS = (((0.0, 0.0, -0.15), (0.4, 0.55, 1.45), 1.0), ((0.0, 0.0, 0.725), (0.25, 0.25, 0.3), 0.8))
TRUCK_SIZE = (8.0, 2.5, 3.2)
TRUCK_PARTS = (((3.0, 0.0, -0.3), (2.0, 2.4, 2.6), 1.0), ((-1.0, 0.0, -0.2), (6.0, 2.5, 2.8), 0.9))
#: pedestrian sub-lanes: lateral offset and walking direction
PED_LANES = ((-4.9, 1.0), (-6.0, -1.0), (5.9, 1.0), (7.0, -1.0))


@dataclass
class ActorParts:
    """Box parts of all actors: ``actor [P]``, ``offset [P, 3]`` (box frame), ``size [P, 3]``, ``shade [P]``."""

    actor: np.ndarray
    offset: np.ndarray
    size: np.ndarray
    shade: np.ndarray


class Actors:
    """K moving actors with ids ``first_id .. first_id + K - 1``.

    Attributes:
        ids ``[K]`` int32, cls ``[K]`` uint8, size ``[K, 3]`` m, color ``[K, 3]`` albedo, parts.
    """

    def __init__(self, terrain: Terrain, ego: EgoTrajectory, cfg: SynthConfig, rng: np.random.Generator,
                 first_id: int = 0):
        self.terrain, self.loop, self.ego = terrain, terrain.loop, ego
        rows = []  # (cls, size, parts, d, z_base, mode, a, b, sign)
        for i in range(cfg.cars_same_lane):
            k = i // 2 + 1
            phase = (0.6 * k if i % 2 == 0 else -0.55 * k) + rng.uniform(-0.05, 0.05)
            rows.append((CAR, CAR_SIZE, CAR_PARTS, 0.0, 0.0, 0, phase, 1.0, 1.0))
        n_on = cfg.cars_oncoming + cfg.trucks
        kinds = np.array([OTHER_VEHICLE] * cfg.trucks + [CAR] * cfg.cars_oncoming)
        rng.shuffle(kinds)
        rate = 0.85 * ego.omega
        for i, kind in enumerate(kinds):
            phase = 2 * np.pi * (i + rng.uniform(-0.2, 0.2)) / max(n_on, 1)
            size, parts = (TRUCK_SIZE, TRUCK_PARTS) if kind == OTHER_VEHICLE else (CAR_SIZE, CAR_PARTS)
            rows.append((int(kind), size, parts, ONCOMING_OFFSET, 0.0, 1, phase, -rate, -1.0))
        speeds = rng.uniform(1.1, 1.6, len(PED_LANES))
        for i in range(cfg.pedestrians):
            lane = i % len(PED_LANES)
            d, direction = PED_LANES[lane]
            s0 = terrain.length * ((i // len(PED_LANES)) + rng.uniform(0, 0.8)) / max(1, -(-cfg.pedestrians // 4))
            rows.append((PEDESTRIAN, PED_SIZE, PED_PARTS, d, KERB, 2, s0, direction * speeds[lane], direction))
        K = len(rows)
        self.ids = first_id + np.arange(K, dtype=np.int32)
        self.cls = np.array([r[0] for r in rows], np.uint8)
        self.size = np.array([r[1] for r in rows], float).reshape(K, 3)
        self.d = np.array([r[3] for r in rows], float)
        self.z_base = np.array([r[4] for r in rows], float)
        self.mode = np.array([r[5] for r in rows], int)
        self.a = np.array([r[6] for r in rows], float)
        self.b = np.array([r[7] for r in rows], float)
        self.sign = np.array([r[8] for r in rows], float)
        self.color = np.array([car_color(rng) if r[0] != PEDESTRIAN else rng.uniform(0.15, 0.85, 3)
                               for r in rows], np.float32).reshape(K, 3)
        pa, po, ps, sh = [], [], [], []
        for k, r in enumerate(rows):
            for off, size, shade in r[2]:
                pa.append(k), po.append(off), ps.append(size), sh.append(shade)
        self.parts = ActorParts(np.array(pa, int), np.array(po, float).reshape(-1, 3),
                                np.array(ps, float).reshape(-1, 3), np.array(sh, np.float32))

    def __len__(self) -> int:
        return len(self.ids)

    def _u(self, t: np.ndarray) -> np.ndarray:
        """Curve parameter of every actor at times ``t [T]`` → ``[K, T]``."""
        t = np.asarray(t, float)[None, :]
        u_ego = self.ego.param(t)[0]
        a, b = self.a[:, None], self.b[:, None]
        mode = self.mode[:, None]
        return np.where(mode == 0, a + u_ego, np.where(mode == 1, a + b * t, self.terrain.u_at(a + b * t)))

    def poses(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Box centres ``[K, T, 3]`` (world, m) and yaws ``[K, T]`` (rad) at times ``t [T]``."""
        u = self._u(t)
        xy = self.loop.offset_point(u, np.broadcast_to(self.d[:, None], u.shape))
        z = self.loop.road_height(xy[..., 1]) + (self.z_base + 0.5 * self.size[:, 2])[:, None]
        tangent = self.loop.curve(u, 1)
        yaw = np.arctan2(tangent[..., 1], tangent[..., 0]) + np.where(self.sign < 0, np.pi, 0.0)[:, None]
        return np.concatenate([xy, z[..., None]], -1), yaw

    def velocities(self, t: np.ndarray, h: float = 1e-3) -> np.ndarray:
        """World velocities ``[K, T, 3]`` m/s (central differences)."""
        t = np.asarray(t, float)
        return (self.poses(t + h)[0] - self.poses(t - h)[0]) / (2 * h)

    def part_poses(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Part box centres ``[P, T, 3]`` and yaws ``[P, T]`` at times ``t [T]``."""
        centre, yaw = self.poses(t)
        p = self.parts
        cy, sy = np.cos(yaw[p.actor]), np.sin(yaw[p.actor])
        off = p.offset[:, None, :]
        dx = cy * off[..., 0] - sy * off[..., 1]
        dy = sy * off[..., 0] + cy * off[..., 1]
        return centre[p.actor] + np.stack([dx, dy, np.broadcast_to(off[..., 2], dx.shape)], -1), yaw[p.actor]

    def boxes(self, t: float) -> dict[str, np.ndarray]:
        """GT boxes at time t: ``id [K]``, ``center [K, 3]``, ``size [K, 3]``, ``yaw [K]``,
        ``velocity [K, 3]`` (world, m/s), ``cls [K]``."""
        h = 1e-3
        centre, yaw = self.poses(np.array([t, t - h, t + h]))
        return {"id": self.ids.copy(), "center": centre[:, 0], "size": self.size.copy(),
                "yaw": np.mod(yaw[:, 0] + np.pi, 2 * np.pi) - np.pi,
                "velocity": (centre[:, 2] - centre[:, 1]) / (2 * h), "cls": self.cls.copy()}
