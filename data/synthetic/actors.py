"""Moving actors: cars, vans and trucks in the lanes, pedestrians on the sidewalks.

Every actor moves along an offset of the ego curve, ``c(u) + d n(u)``:

* cars in the ego lane use the ego's own parameter shifted by a phase,
  ``u = Δ + u_ego(t)``, so they keep their distance and never collide with it
  (they stop when the ego stops, like a queue);
* oncoming cars and trucks run ``u = φ - r t`` at one common rate r per lane;
* pedestrians walk at a constant speed along sidewalk sub-lanes (arc length of
  their own offset curve; one speed per sub-lane, so they never walk through
  each other).

Boxes are yaw-only, centred half their height above the surface under them.
Each actor is drawn as coloured box parts (see :mod:`vehicles`: body, cabin,
wheels; cab, cargo; body, head).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fuse4d.data.classes import OTHER_VEHICLE, PEDESTRIAN
from fuse4d.data.synthetic.config import SynthConfig
from fuse4d.data.synthetic.ego import EgoTrajectory
from fuse4d.data.synthetic.terrain import ONCOMING_OFFSET, Terrain
from fuse4d.data.synthetic.vehicles import Model, pedestrian, truck, vehicle

#: pedestrian sub-lanes: lateral offset and walking direction
PED_LANES = ((-4.9, 1.0), (-6.0, -1.0), (5.9, 1.0), (7.0, -1.0))


@dataclass
class ActorParts:
    """Box parts of all actors: ``actor [P]``, ``offset [P, 3]`` (box frame), ``size [P, 3]``, ``color [P, 3]``."""

    actor: np.ndarray
    offset: np.ndarray
    size: np.ndarray
    color: np.ndarray


class Actors:
    """K moving actors with ids ``first_id .. first_id + K - 1``.

    Attributes:
        ids ``[K]`` int32, cls ``[K]`` uint8, kind ``[K]`` (car, van, truck, pedestrian), size ``[K, 3]`` m,
        parts (one coloured box per body part).
    """

    def __init__(self, terrain: Terrain, ego: EgoTrajectory, cfg: SynthConfig, rng: np.random.Generator,
                 first_id: int = 0):
        self.terrain, self.loop, self.ego = terrain, terrain.loop, ego
        rows: list[tuple[Model, float, int, float, float, float]] = []  # (model, d, mode, a, b, sign)
        for i in range(cfg.cars_same_lane):
            k = i // 2 + 1
            phase = (0.6 * k if i % 2 == 0 else -0.55 * k) + rng.uniform(-0.05, 0.05)
            rows.append((vehicle(rng), 0.0, 0, phase, 1.0, 1.0))
        n_on = cfg.cars_oncoming + cfg.trucks
        kinds = np.array([OTHER_VEHICLE] * cfg.trucks + [0] * cfg.cars_oncoming)
        rng.shuffle(kinds)
        rate = 0.85 * ego.omega
        for i, kind in enumerate(kinds):
            phase = 2 * np.pi * (i + rng.uniform(-0.2, 0.2)) / max(n_on, 1)
            rows.append((truck(rng) if kind == OTHER_VEHICLE else vehicle(rng), ONCOMING_OFFSET, 1, phase, -rate, -1.0))
        speeds = rng.uniform(1.1, 1.6, len(PED_LANES))
        for i in range(cfg.pedestrians):
            lane = i % len(PED_LANES)
            d, direction = PED_LANES[lane]
            s0 = ((i // len(PED_LANES)) + rng.uniform(0, 0.8)) / max(1, -(-cfg.pedestrians // 4))  # lap fraction
            rows.append((pedestrian(rng), d, 2, s0, direction * speeds[lane], direction))
        K = len(rows)
        self.ids = first_id + np.arange(K, dtype=np.int32)
        self.cls = np.array([r[0].cls for r in rows], np.uint8)
        self.kind = np.array([r[0].kind for r in rows], dtype="<U10")
        self.size = np.array([r[0].size for r in rows], float).reshape(K, 3)
        self.d = np.array([r[1] for r in rows], float)
        self.mode = np.array([r[2] for r in rows], int)
        self.a = np.array([r[3] for r in rows], float)
        self.b = np.array([r[4] for r in rows], float)
        self.sign = np.array([r[5] for r in rows], float)
        pa, po, ps, pc = [], [], [], []
        for k, r in enumerate(rows):
            for off, size, color in r[0].parts:
                pa.append(k), po.append(off), ps.append(size), pc.append(color)
        # pedestrians walk at constant speed along their own sub-lane: arc length tables per offset
        u_tab = np.r_[terrain.curve_u, 2 * np.pi]
        self._lanes = {}
        for d in {r[1] for r in rows if r[2] == 2}:
            pts = self.loop.offset_point(u_tab, np.full(len(u_tab), d))
            s_tab = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
            self._lanes[d] = (s_tab, u_tab)
        walk = self.mode == 2
        self.a[walk] *= [self._lanes[d][0][-1] for d in self.d[walk]]  # lap fraction -> metres
        self.parts = ActorParts(np.array(pa, int), np.array(po, float).reshape(-1, 3),
                                np.array(ps, float).reshape(-1, 3), np.array(pc, np.float32).reshape(-1, 3))

    def __len__(self) -> int:
        return len(self.ids)

    def _u(self, t: np.ndarray) -> np.ndarray:
        """Curve parameter of every actor at times ``t [T]`` → ``[K, T]``."""
        t = np.asarray(t, float)[None, :]
        u_ego = self.ego.param(t)[0]
        a, b = self.a[:, None], self.b[:, None]
        mode = self.mode[:, None]
        u = np.where(mode == 0, a + u_ego, a + b * t)
        for d, (s_tab, u_tab) in self._lanes.items():
            k = np.flatnonzero((self.mode == 2) & (self.d == d))
            u[k] = np.interp(np.mod(u[k], s_tab[-1]), s_tab, u_tab)
        return u

    def poses(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Box centres ``[K, T, 3]`` (world, m) and yaws ``[K, T]`` (rad) at times ``t [T]``."""
        u = self._u(t)
        c, tangent = self.loop.curve(u), self.loop.curve(u, 1)
        n = np.stack([-tangent[..., 1], tangent[..., 0]], -1) / np.linalg.norm(tangent, axis=-1, keepdims=True)
        xy = c + self.d[:, None, None] * n
        # vehicles on the road surface of their lane, pedestrians on the mesh (kerbs, junction mouths)
        walk = self.mode == 2
        z = np.empty(u.shape)
        z[walk] = self.terrain.height_at(xy[walk, :, 0], xy[walk, :, 1])
        z[~walk] = self.loop.height(u[~walk])
        z += 0.5 * self.size[:, 2][:, None]
        yaw = np.arctan2(tangent[..., 1], tangent[..., 0]) + np.where(self.sign < 0, np.pi, 0.0)[:, None]
        return np.concatenate([xy, z[..., None]], -1), yaw

    def velocities(self, t: np.ndarray, h: float = 1e-3) -> np.ndarray:
        """World velocities ``[K, T, 3]`` m/s (central differences)."""
        t = np.asarray(t, float)
        return (self.poses(t + h)[0] - self.poses(t - h)[0]) / (2 * h)

    def part_poses(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Part box centres ``[P, T, 3]`` and yaws ``[P, T]`` at times ``t [T]``."""
        return self.parts_at(*self.poses(t))

    def parts_at(self, centre: np.ndarray, yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Part box centres ``[P, T, 3]`` and yaws ``[P, T]`` from actor centres ``[K, T, 3]`` and yaws ``[K, T]``."""
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
