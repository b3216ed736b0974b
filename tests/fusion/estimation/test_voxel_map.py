"""VoxelMap: capacity, spacing, culling, nearest neighbours, plane fits."""

from __future__ import annotations

import numpy as np

from fuse4d.fusion.estimation.voxel_map import (LINEAR, PLANAR, VoxelMap, smallest_eigh, voxel_downsample,
                                                voxel_keys)


class TestDownsample:
    def test_one_point_per_cell_first_kept(self):
        pts = np.array([[0.1, 0.1, 0.1], [0.2, 0.2, 0.2], [1.5, 0.0, 0.0], [-0.1, 0.0, 0.0]])
        out = voxel_downsample(pts, 1.0)
        np.testing.assert_array_equal(out, pts[[0, 2, 3]])

    def test_negative_coordinates_have_their_own_cells(self):
        keys = voxel_keys(np.array([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0], [-1.5, -3.2, 7.0]]), 1.0)
        assert len(set(keys.tolist())) == 3


class TestVoxelMap:
    def test_capacity_and_spacing(self):
        rng = np.random.default_rng(0)
        m = VoxelMap(1.0, max_points_per_voxel=5)
        m.add(rng.uniform(0, 1, (1000, 3)))
        assert len(m) == 5
        d = np.linalg.norm(m.points[:, None] - m.points[None], axis=-1) + np.eye(5) * 9
        assert d.min() > 0  # distinct sub-cells
        m.add(rng.uniform(0, 1, (1000, 3)))  # full voxel: nothing enters, old points stay
        assert len(m) == 5

    def test_far_voxels_are_culled(self):
        m = VoxelMap(1.0, max_distance=10.0)
        m.add(np.array([[0.5, 0.5, 0.5], [50.5, 0.5, 0.5]]))
        for _ in range(5):
            m.add(np.zeros((0, 3)), origin=np.zeros(3))
        np.testing.assert_allclose(m.points, [[0.5, 0.5, 0.5]])

    def test_nearest_within_bound(self):
        m = VoxelMap(1.0)
        m.add(np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]]))
        dist, idx = m.nearest(np.array([[0.2, 0.0, 0.0], [2.5, 0.0, 0.0], [4.9, 0.0, 0.0]]), 1.0)
        np.testing.assert_allclose(dist[[0, 2]], [0.2, 0.1], atol=1e-9)
        assert np.isinf(dist[1])
        assert idx.tolist()[0] == np.argmin(np.linalg.norm(m.points - [0.2, 0, 0], axis=1))

    def test_plane_and_line_voxels(self):
        rng = np.random.default_rng(1)
        plane = np.c_[rng.uniform(0, 1, (200, 2)), np.full(200, 0.5) + rng.normal(0, 0.002, 200)]
        line = np.c_[rng.uniform(0, 1, 200) + 3, np.full(200, 0.5), np.full(200, 0.5)] + rng.normal(0, 0.002, (200, 3))
        m = VoxelMap(1.0, max_points_per_voxel=20)
        m.add(np.concatenate([plane, line]))
        normals, kind = m.normals()
        on_plane = m.points[:, 0] < 1
        assert (kind[on_plane] == PLANAR).all() and (kind[~on_plane] == LINEAR).all()
        np.testing.assert_allclose(np.abs(normals[on_plane, 2]), 1.0, atol=0.02)


def test_closed_form_eigen_matches_numpy():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(500, 3, 3))
    C = A @ A.transpose(0, 2, 1)
    evals, v = smallest_eigh(C)
    E, V = np.linalg.eigh(C)
    np.testing.assert_allclose(evals, E, atol=1e-9)
    np.testing.assert_allclose(np.abs(np.einsum("ij,ij->i", v, V[:, :, 0])), 1.0, atol=1e-7)
