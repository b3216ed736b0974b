"""Solid primitives (yawed boxes, upright cylinders, spheres): batched meshes and inside tests.

Every primitive is a unit shape centred at the origin, scaled by ``size``
(full extents x, y, z in its own frame), rotated by ``yaw`` about z and moved to
``center``. A cylinder of radius r and height h has size ``(2r, 2r, h)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

BOX, CYLINDER, SPHERE = 0, 1, 2
#: length of a facade style vector (see ``texture.facade_style``)
STYLE_DIM = 10


def _templates() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    box = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 1.0)
    box.translate((-0.5, -0.5, -0.5))
    cyl = o3d.geometry.TriangleMesh.create_cylinder(radius=0.5, height=1.0, resolution=12, split=1)
    sph = o3d.geometry.TriangleMesh.create_sphere(radius=0.5, resolution=6)
    return {k: (np.asarray(m.vertices, dtype=np.float64), np.asarray(m.triangles, dtype=np.int64))
            for k, m in ((BOX, box), (CYLINDER, cyl), (SPHERE, sph))}


_TEMPLATES: dict[int, tuple[np.ndarray, np.ndarray]] | None = None


def templates() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Unit meshes per kind: ``{kind: (vertices [V, 3], triangles [T, 3])}``."""
    global _TEMPLATES
    if _TEMPLATES is None:
        _TEMPLATES = _templates()
    return _TEMPLATES


@dataclass
class Primitives:
    """A table of N static primitives.

    Attributes:
        kind: ``[N]`` int (BOX, CYLINDER, SPHERE); center ``[N, 3]`` m; size ``[N, 3]`` m;
        yaw ``[N]`` rad; cls ``[N]`` uint8 class ids; inst ``[N]`` int32 (-1 = stuff);
        color ``[N, 3]`` float32 albedo in [0, 1]; style ``[N, STYLE_DIM]`` float32 facade
        parameters (see ``texture.facade_style``; zeros for everything but buildings).
    """

    kind: np.ndarray
    center: np.ndarray
    size: np.ndarray
    yaw: np.ndarray
    cls: np.ndarray
    inst: np.ndarray
    color: np.ndarray
    style: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> "Primitives":
        """Build from rows ``(kind, center[3], size[3], yaw, cls, inst, color[3][, style[STYLE_DIM]])``."""
        if not rows:
            return cls(np.zeros(0, int), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0),
                       np.zeros(0, np.uint8), np.zeros(0, np.int32), np.zeros((0, 3), np.float32),
                       np.zeros((0, STYLE_DIM), np.float32))
        k, c, s, y, cl, ins, col = zip(*(r[:7] for r in rows))
        style = np.zeros((len(rows), STYLE_DIM), np.float32)
        for i, r in enumerate(rows):
            if len(r) > 7:
                style[i] = r[7]
        return cls(np.asarray(k, int), np.asarray(c, float).reshape(-1, 3), np.asarray(s, float).reshape(-1, 3),
                   np.asarray(y, float), np.asarray(cl, np.uint8), np.asarray(ins, np.int32),
                   np.asarray(col, np.float32).reshape(-1, 3), style)

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All primitives as one mesh: vertices ``[V, 3]``, triangles ``[M, 3]``, primitive index ``[M]``."""
        verts, tris, owner = [], [], []
        offset = 0
        for kind, (tv, tt) in templates().items():
            sel = np.flatnonzero(self.kind == kind)
            if sel.size == 0:
                continue
            local = tv[None] * self.size[sel, None, :]
            c, s = np.cos(self.yaw[sel])[:, None], np.sin(self.yaw[sel])[:, None]
            world = np.stack([c * local[..., 0] - s * local[..., 1], s * local[..., 0] + c * local[..., 1],
                              local[..., 2]], -1) + self.center[sel, None, :]
            verts.append(world.reshape(-1, 3))
            base = offset + len(tv) * np.arange(sel.size)
            tris.append((tt[None] + base[:, None, None]).reshape(-1, 3))
            owner.append(np.repeat(sel, len(tt)))
            offset += world.shape[0] * world.shape[1]
        if not verts:
            return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
        return np.concatenate(verts), np.concatenate(tris), np.concatenate(owner)

    def local(self, i: int, p: np.ndarray) -> np.ndarray:
        """Points ``p [..., 3]`` in primitive i's unit frame (inside the shape ⇔ within ±0.5)."""
        rel = p - self.center[i]
        c, s = np.cos(self.yaw[i]), np.sin(self.yaw[i])
        x = c * rel[..., 0] + s * rel[..., 1]
        y = -s * rel[..., 0] + c * rel[..., 1]
        return np.stack([x, y, rel[..., 2]], -1) / self.size[i]

    def contains(self, i: int, p: np.ndarray) -> np.ndarray:
        """Whether points ``p [..., 3]`` lie inside primitive i → bool ``[...]``."""
        q = self.local(i, p)
        if self.kind[i] == BOX:
            return np.all(np.abs(q) <= 0.5, axis=-1)
        if self.kind[i] == CYLINDER:
            return (q[..., 0] ** 2 + q[..., 1] ** 2 <= 0.25) & (np.abs(q[..., 2]) <= 0.5)
        return np.sum(q * q, axis=-1) <= 0.25

    def top_at(self, i: int, xy: np.ndarray) -> np.ndarray:
        """Top surface height of primitive i above points ``xy [..., 2]`` (NaN outside its footprint)."""
        p = np.concatenate([xy, np.full(xy.shape[:-1] + (1,), self.center[i, 2])], -1)
        q = self.local(i, p)
        r2 = q[..., 0] ** 2 + q[..., 1] ** 2
        half = 0.5 * self.size[i, 2]
        if self.kind[i] == BOX:
            inside, top = np.all(np.abs(q[..., :2]) <= 0.5, axis=-1), np.full(r2.shape, half)
        elif self.kind[i] == CYLINDER:
            inside, top = r2 <= 0.25, np.full(r2.shape, half)
        else:
            inside, top = r2 <= 0.25, self.size[i, 2] * np.sqrt(np.clip(0.25 - r2, 0, None))
        return np.where(inside, self.center[i, 2] + top, np.nan)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds ``lo, hi`` each ``[N, 3]`` (conservative for yawed boxes)."""
        r = 0.5 * np.linalg.norm(self.size[:, :2], axis=1)
        half = np.column_stack([r, r, 0.5 * self.size[:, 2]])
        return self.center - half, self.center + half
