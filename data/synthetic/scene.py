"""The static world: procedural placement of buildings, trees, poles and parked vehicles,
merged with the ground into one Embree scene (built once per world).

Buildings stand in rows along the outside of the loop (and, for some seeds, along
its inside), trees on the verges and in the park, street lights and signs on the
sidewalks, parked cars and vans in the parking lane; everything keeps clear of
the roads (the loop and its side streets) and buildings do not overlap.
Ground triangles come first; the class of a ground hit follows from its
interpolated lateral offset, the class, instance id and colour of an object hit
from its triangle (``obj_*`` tables). Parked vehicles are static but carry
instance ids ``0..P-1``.
"""

from __future__ import annotations

import numpy as np
import open3d as o3d

from fuse4d.data.classes import BUILDING, CAR, POLE, SIDEWALK, VEGETATION
from fuse4d.data.synthetic.config import SynthConfig
from fuse4d.data.synthetic.primitives import BOX, CYLINDER, SPHERE, Primitives
from fuse4d.data.synthetic.terrain import PARKING_OFFSET, SIDEWALK_IN, SIDEWALK_OUT, Terrain
from fuse4d.data.synthetic.texture import facade_style
from fuse4d.data.synthetic.vehicles import vehicle

BUILDING_COLORS = np.array([[0.62, 0.32, 0.24], [0.78, 0.72, 0.6], [0.6, 0.6, 0.62], [0.85, 0.83, 0.78],
                            [0.5, 0.38, 0.3], [0.7, 0.55, 0.4], [0.88, 0.86, 0.7], [0.45, 0.47, 0.5],
                            [0.75, 0.62, 0.55], [0.55, 0.6, 0.52], [0.92, 0.9, 0.88], [0.68, 0.45, 0.35]],
                           np.float32)
#: clearance (m) from the road surface for building walls and tree trunks
BUILDING_CLEARANCE, TREE_CLEARANCE = 6.0, 3.2


class _Footprints:
    """Occupied ground (1 m cells) of the buildings placed so far: new ones may not overlap."""

    def __init__(self, terrain: Terrain):
        self.origin = terrain.origin
        self.grid = np.zeros(np.ceil((np.asarray(terrain.shape) - 1) * terrain.spacing).astype(int) + 1, bool)

    def samples(self, xy: np.ndarray, w: float, dep: float, yaw: float, step: float = 1.0) -> np.ndarray:
        """Points ``[M, 2]`` covering a ``w × dep`` rectangle (edges included) centred at xy, yawed."""
        a = np.linspace(-w / 2, w / 2, max(2, int(np.ceil(w / step)) + 1))
        b = np.linspace(-dep / 2, dep / 2, max(2, int(np.ceil(dep / step)) + 1))
        A, B = np.meshgrid(a, b, indexing="ij")
        c, s = np.cos(yaw), np.sin(yaw)
        return np.stack([xy[0] + c * A - s * B, xy[1] + s * A + c * B], -1).reshape(-1, 2)

    def cells(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ij = np.floor(pts - self.origin).astype(int)
        ij = np.clip(ij, 0, np.array(self.grid.shape) - 1)
        return ij[:, 0], ij[:, 1]

    def free(self, pts: np.ndarray) -> bool:
        return not self.grid[self.cells(pts)].any()

    def take(self, pts: np.ndarray) -> None:
        self.grid[self.cells(pts)] = True


def place_static(terrain: Terrain, cfg: SynthConfig, rng: np.random.Generator) -> tuple[Primitives, dict]:
    """Place the static primitives.

    Returns:
        ``(prims, parked)`` where parked is a dict of arrays ``id [P]``, ``center [P, 3]``,
        ``size [P, 3]``, ``yaw [P]`` (the GT boxes of the parked vehicles).
    """
    loop, rows = terrain.loop, []
    L = terrain.length
    out = -loop.turn  # the outside of the loop: right (d < 0) when driving counter-clockwise
    foot = _Footprints(terrain)

    def frame(s: float, d: float) -> tuple[np.ndarray, float]:
        """xy [2] at arc length s and lateral offset d, and the road heading there (rad)."""
        u = terrain.u_at(s)
        xy = loop.offset_point(np.array(u), np.array(d))
        t = loop.curve(u, 1)
        return xy, float(np.arctan2(t[1], t[0]))

    def ground(xy: np.ndarray) -> float:
        """Ground height (m) at xy."""
        return float(terrain.height_at(xy[0], xy[1]))

    def building(xy: np.ndarray, w: float, dep: float, h: float, yaw: float) -> bool:
        """Add a building if it keeps clear of the roads and of other buildings."""
        pts = foot.samples(xy, w, dep, yaw)
        if terrain.outside(pts[:, 0], pts[:, 1]).min() < BUILDING_CLEARANCE or not foot.free(pts):
            return False
        g = terrain.height_at(pts[:, 0], pts[:, 1])
        base, top = float(g.min()) - 3.0, ground(xy) + h
        rows.append((BOX, (*xy, 0.5 * (base + top)), (w, dep, top - base), yaw, BUILDING, -1,
                     BUILDING_COLORS[rng.integers(len(BUILDING_COLORS))] * rng.uniform(0.9, 1.1),
                     facade_style(rng)))
        foot.take(pts)
        return True

    # rows of buildings along the outside of the loop (the back row taller), for some seeds one inside
    row_specs = [(out, (11.5, 15.0), (8, 14), (6, 22)), (out, (31.0, 33.0), (7, 10), (8, 24))]
    if rng.random() < 0.5:
        row_specs.append((-out, (11.5, 14.0), (7, 11), (5, 16)))
    for side, setback, depth, height in row_specs:
        s = start = rng.uniform(0, 10)
        while s < start + L - 10:
            w, dep, h = rng.uniform(8, 18), rng.uniform(*depth), rng.uniform(*height)
            d = side * (rng.uniform(*setback) + dep / 2)
            stretch = float(np.linalg.norm(frame(s + 1.0, d)[0] - frame(s, d)[0]))  # offset-curve m per loop m
            xy, yaw = frame(s + 0.5 * w / max(stretch, 0.2), d)
            building(xy, w, dep, h, yaw)
            s += (w + rng.uniform(2, 8)) / max(stretch, 0.2)
    # a few buildings in the park inside the loop, clear of the street
    lo, hi = terrain.curve_xy.min(0), terrain.curve_xy.max(0)
    placed = 0
    for _ in range(40):
        if placed == 2:
            break
        xy = rng.uniform(lo + 12, hi - 12)
        placed += building(xy, rng.uniform(7, 12), rng.uniform(7, 10), rng.uniform(4, 9), rng.uniform(0, np.pi))
    # trees on both verges and in the park, bushes
    green = np.array([0.16, 0.42, 0.12], np.float32)
    for _ in range(cfg.tree_count):
        where = rng.random()
        if where < 0.4:
            xy, _ = frame(rng.uniform(0, L), rng.uniform(-10.5, -8.5))
        elif where < 0.7:
            xy, _ = frame(rng.uniform(0, L), rng.uniform(9.0, 10.5))
        else:
            xy = rng.uniform(lo + 10, hi - 10)
        clear = float(terrain.outside(xy[0], xy[1]))
        if clear < TREE_CLEARANCE or not foot.free(xy[None]):
            continue
        g = ground(xy)
        r, th, cr = rng.uniform(0.15, 0.3), rng.uniform(2.0, 3.5), rng.uniform(1.3, 2.6)
        # crowns stay clear of the sidewalks (pedestrians walk there)
        cr = min(cr, max(0.8, clear - (SIDEWALK_IN[1] - SIDEWALK_IN[0]) - 0.45))
        rows.append((CYLINDER, (*xy, g + 0.5 * th - 0.15), (2 * r, 2 * r, th + 0.3), 0.0, VEGETATION, -1,
                     np.array([0.35, 0.25, 0.15], np.float32)))
        rows.append((SPHERE, (*xy, g + th + 0.6 * cr), (2 * cr, 2 * cr, 1.7 * cr), 0.0, VEGETATION, -1,
                     green * rng.uniform(0.8, 1.2)))
        if rng.random() < 0.4:
            bxy = xy + rng.uniform(-3, 3, 2)
            br = rng.uniform(0.5, 1.0)
            if terrain.outside(bxy[0], bxy[1]) > 4.5:
                rows.append((SPHERE, (*bxy, ground(bxy) + 0.2 * br), (2 * br, 2 * br, 1.4 * br), 0.0,
                             VEGETATION, -1, green * 0.9))
    # street lights on the right-hand sidewalk edge, signs on the left one (not in junction mouths)
    grey = np.array([0.55, 0.55, 0.57], np.float32)
    for s in np.arange(rng.uniform(5, 15), L, 24.0):
        xy, yaw = frame(s, SIDEWALK_OUT[0] + 0.3)
        if terrain.class_at(xy[0], xy[1]) != SIDEWALK or terrain.outside(xy[0], xy[1]) < 1.0:
            continue
        g = ground(xy)
        rows.append((CYLINDER, (*xy, g + 3.5), (0.2, 0.2, 7.0), 0.0, POLE, -1, grey))
        n = loop.normal(terrain.u_at(s))
        arm = xy + 0.75 * n
        rows.append((BOX, (*arm, g + 6.9), (1.5, 0.15, 0.15), yaw + np.pi / 2, POLE, -1, grey))
    for s in np.arange(rng.uniform(10, 30), L, 45.0):
        xy, yaw = frame(s, SIDEWALK_IN[1] - 0.2)
        if terrain.class_at(xy[0], xy[1]) != SIDEWALK or terrain.outside(xy[0], xy[1]) < 1.0:
            continue
        g = ground(xy)
        rows.append((CYLINDER, (*xy, g + 1.3), (0.1, 0.1, 2.6), 0.0, POLE, -1, grey))
        rows.append((BOX, (*xy, g + 2.6), (0.06, 0.7, 0.7), yaw, POLE, -1, np.array([0.8, 0.8, 0.85], np.float32)))
    # parked cars and vans in the parking lane (with instance ids), not across junction mouths
    parked = {"id": [], "center": [], "size": [], "yaw": []}
    mouths = [st.u0 * L / (2 * np.pi) for st in terrain.streets]
    for s in np.arange(4.0, L - 4.0, 6.5):
        if rng.random() >= cfg.parked_car_probability:
            continue
        if any(min(abs(s - m), L - abs(s - m)) < 10.0 for m in mouths):
            continue
        model = vehicle(rng)
        xy, yaw = frame(s, PARKING_OFFSET + rng.uniform(-0.15, 0.15))
        yaw += np.pi * (rng.random() < 0.3)
        z = float(loop.height(terrain.u_at(s))) + 0.5 * model.size[2]
        inst = len(parked["id"])
        c, sn = np.cos(yaw), np.sin(yaw)
        for (ox, oy, oz), size, color in model.parts:
            pc = (xy[0] + c * ox - sn * oy, xy[1] + sn * ox + c * oy, z + oz)
            rows.append((BOX, pc, size, yaw, CAR, inst, color))
        parked["id"].append(inst)
        parked["center"].append((*xy, z))
        parked["size"].append(model.size)
        parked["yaw"].append(yaw)
    parked = {"id": np.asarray(parked["id"], np.int32), "center": np.asarray(parked["center"], float).reshape(-1, 3),
              "size": np.asarray(parked["size"], float).reshape(-1, 3), "yaw": np.asarray(parked["yaw"], float)}
    return Primitives.from_rows(rows), parked


class StaticScene:
    """Ground + static primitives in one Open3D ``RaycastingScene``.

    Attributes:
        n_ground: number of ground triangles (they come first); obj_prim / obj_cls / obj_inst / obj_color:
        class, instance and albedo of the object triangles (index ``tri - n_ground``);
        lut_cls / lut_inst / lut_color / lut_style: the same per triangle, shifted by one (entry 0:
        ground, last: no hit), lut_style holding the facade style of building triangles;
        ground_d / ground_sin: ``[n_ground, 3]`` linear lateral-offset and dash-phase planes.
    """

    def __init__(self, terrain: Terrain, prims: Primitives, threads: int = 0):
        gv, gt, _ = terrain.mesh()
        pv, pt, owner = prims.mesh()
        self.n_ground = len(gt)
        self.n_triangles = len(gt) + len(pt)
        self.vertices = np.concatenate([gv, pv]).astype(np.float32)
        self.triangles = np.concatenate([gt, pt + len(gv)]).astype(np.uint32)
        self.obj_prim = owner
        self.prims, self.terrain, self.threads = prims, terrain, threads
        self.obj_cls = prims.cls[owner].astype(np.uint8)
        self.obj_inst = prims.inst[owner].astype(np.int32)
        self.obj_color = prims.color[owner].astype(np.float32)
        # the same tables indexed by clip(tri - n_ground + 1, 0, n_obj + 1): entry 0 for ground triangles,
        # the last for rays without a static hit (invalid triangle id)
        self.lut_cls = np.concatenate([[0], self.obj_cls, [0]]).astype(np.uint8)
        self.lut_inst = np.concatenate([[-1], self.obj_inst, [-1]]).astype(np.int32)
        self.lut_color = np.concatenate([np.zeros((1, 3)), self.obj_color, np.zeros((1, 3))]).astype(np.float32)
        style = prims.style[owner]
        self.lut_style = np.concatenate([np.zeros((1, style.shape[1])), style,
                                         np.zeros((1, style.shape[1]))]).astype(np.float32)
        # ground attributes per triangle as (A0, A1 - A0, A2 - A0): value at barycentric (u, v)
        # is A0 + u dA1 + v dA2; the lateral offset d and the lane-dash phase sin φ
        a = terrain.vertex_attr[gt]  # [Mg, 3 vertices, (d, cos φ, sin φ)]
        planes = np.stack([a[:, 0], a[:, 1] - a[:, 0], a[:, 2] - a[:, 0]], -1).astype(np.float32)
        self.ground_d = np.ascontiguousarray(planes[:, 0])
        self.ground_sin = np.ascontiguousarray(planes[:, 2])
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(o3d.core.Tensor(self.vertices), o3d.core.Tensor(self.triangles))

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> dict[str, np.ndarray]:
        """First hits of fans of rays: ``origins [F, 3]``, ``dirs [F, R, 3]`` (t in units of |dir|).

        Returns, flattened fan-major to ``N = F*R``: ``t [N]`` float32 (inf = miss), ``tri [N]``
        uint32 (triangle id, invalid on a miss), ``uv [N, 2]`` barycentrics and ``normal [N, 3]``
        float32 (outward: every mesh is wound counter-clockwise seen from outside, the
        ground faces up).
        """
        F, R, _ = dirs.shape
        rays = np.empty((F, R, 6), np.float32)
        # origin and direction written as 12-byte records (a float-by-float broadcast copy is ~2x slower)
        vec = np.dtype((np.void, 12))
        pairs = rays.view(vec)  # [F, R, 2]
        pairs[..., 0] = np.ascontiguousarray(origins, np.float32).view(vec)
        pairs[..., 1] = np.ascontiguousarray(dirs, np.float32).view(vec)[..., 0]
        # from_numpy shares the buffer (o3d.core.Tensor(array) would copy it)
        ans = self._scene.cast_rays(o3d.core.Tensor.from_numpy(rays.reshape(-1, 6)), nthreads=self.threads)
        return {"t": ans["t_hit"].numpy(), "tri": ans["primitive_ids"].numpy(), "uv": ans["primitive_uvs"].numpy(),
                "normal": ans["primitive_normals"].numpy()}
