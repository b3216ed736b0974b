"""Coloured triangle mesh of the static world by TSDF fusion (Open3D ``VoxelBlockGrid``).

Depth per frame, in the camera view: a depth camera's own image for RGB-D logs;
otherwise the static LiDAR points projected into the camera (nearest return per
pixel, splatted to a small footprint), densified by the model's depth where the
LiDAR gives none. Open3D is imported when the first frame is integrated.
"""

from __future__ import annotations

import numpy as np


def lidar_depth(points_cam: np.ndarray, K: np.ndarray, size: tuple[int, int], max_depth: float,
                splat: int = 1) -> np.ndarray:
    """Sparse depth image from points in the camera frame.

    Args:
        points_cam: ``[N, 3]`` m, camera frame (z forward). K: ``[3, 3]``.
        size: ``(width, height)`` px. splat: each point also fills its neighbours within
            ``splat`` px (nearest wins), so a 32-beam scan leaves fewer holes.
    Returns:
        ``[H, W]`` float32 m, 0 = none.
    """
    w, h = size
    p = np.asarray(points_cam, np.float64)
    z = p[:, 2]
    ok = (z > 0.1) & (z < max_depth)
    p, z = p[ok], z[ok]
    uv = p @ np.asarray(K).T
    u, v = uv[:, 0] / z, uv[:, 1] / z
    depth = np.full(h * w, np.inf)
    for du in range(-splat, splat + 1):
        for dv in range(-splat, splat + 1):
            ui, vi = np.floor(u).astype(np.int64) + du, np.floor(v).astype(np.int64) + dv
            inside = (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
            np.minimum.at(depth, vi[inside] * w + ui[inside], z[inside])
    depth[~np.isfinite(depth)] = 0.0
    return depth.reshape(h, w).astype(np.float32)


def densify(sparse: np.ndarray, dense: np.ndarray | None) -> np.ndarray:
    """Fill the holes of ``sparse [H, W]`` with ``dense [H, W]`` (the model's depth), after
    scaling it by the median ratio where both exist (m; 0 = none)."""
    if dense is None:
        return sparse
    dense = np.asarray(dense, np.float32)
    both = (sparse > 0) & (dense > 0)
    scale = float(np.median(sparse[both] / dense[both])) if both.sum() > 20 else 1.0
    return np.where(sparse > 0, sparse, dense * scale).astype(np.float32)


class TsdfMesher:
    """TSDF volume on Open3D's ``VoxelBlockGrid`` (CPU), coloured.

    Args:
        voxel_size: m. trunc_voxels: truncation distance in voxels.
        max_depth: depth beyond this is ignored, m.
    """

    def __init__(self, voxel_size: float = 0.1, trunc_voxels: float = 4.0, max_depth: float = 40.0):
        self.voxel_size, self.trunc_voxels, self.max_depth = float(voxel_size), float(trunc_voxels), float(max_depth)
        self._vbg = None
        self.frames = 0

    def _grid(self):
        import open3d as o3d
        import open3d.core as o3c
        if self._vbg is None:
            self._vbg = o3d.t.geometry.VoxelBlockGrid(
                attr_names=("tsdf", "weight", "color"), attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
                attr_channels=((1,), (1,), (3,)), voxel_size=self.voxel_size, block_resolution=16,
                block_count=20000, device=o3c.Device("CPU:0"))
        return self._vbg

    def integrate(self, depth: np.ndarray, color: np.ndarray | None, K: np.ndarray, T_world_cam: np.ndarray) -> None:
        """Fuse one frame.

        Args:
            depth: ``[H, W]`` float32 m (0 = none). color: ``[H, W, 3]`` uint8 RGB or None (grey).
            K: ``[3, 3]`` intrinsics. T_world_cam: ``[4, 4]`` camera → world.
        """
        import open3d as o3d
        import open3d.core as o3c
        depth = np.ascontiguousarray(depth, np.float32)
        if not (depth > 0).any():
            return
        if color is None:
            color = np.full((*depth.shape, 3), 180, np.uint8)
        vbg = self._grid()
        d = o3d.t.geometry.Image(o3c.Tensor(depth))
        # Open3D integrates (float depth, float colour) or (uint16, uint8): colour as float in [0, 1]
        c = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(color, np.float32) / np.float32(255.0)))
        intr = o3c.Tensor(np.asarray(K, np.float64))
        extr = o3c.Tensor(np.linalg.inv(np.asarray(T_world_cam, np.float64)))
        trunc = self.trunc_voxels  # Open3D takes the truncation as a multiple of the voxel size
        coords = vbg.compute_unique_block_coordinates(d, intr, extr, 1.0, self.max_depth, trunc)
        vbg.integrate(coords, d, c, intr, extr, 1.0, self.max_depth, trunc)
        self.frames += 1

    def mesh(self) -> dict[str, np.ndarray]:
        """The extracted mesh: ``vertices`` float32 ``[V, 3]`` m, ``colors`` uint8 ``[V, 3]``,
        ``triangles`` int32 ``[T, 3]`` (all empty before any frame)."""
        empty = {"vertices": np.zeros((0, 3), np.float32), "colors": np.zeros((0, 3), np.uint8),
                 "triangles": np.zeros((0, 3), np.int32)}
        if self._vbg is None:
            return empty
        try:
            m = self._vbg.extract_triangle_mesh(weight_threshold=0.5)
        except RuntimeError:
            return empty
        if "positions" not in m.vertex or m.vertex.positions.shape[0] == 0:
            return empty
        out = {"vertices": m.vertex.positions.numpy().astype(np.float32),
               "triangles": m.triangle.indices.numpy().astype(np.int32)}
        col = m.vertex.colors.numpy() if "colors" in m.vertex else np.full((len(out["vertices"]), 3), 0.7)
        scale = 255.0 if col.max(initial=0) <= 1.0 + 1e-6 else 1.0
        out["colors"] = np.clip(col * scale, 0, 255).astype(np.uint8)
        return out
