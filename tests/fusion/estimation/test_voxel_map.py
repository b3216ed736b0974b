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


class TestIncrementalMap:
    def test_matches_brute_force_while_moving_and_culling(self):
        """Many updates along a path (culling, compaction): capacity and spacing hold, and nearest
        neighbours equal a KD-tree over the live points (queries inside ``max_distance``)."""
        from scipy.spatial import cKDTree
        rng = np.random.default_rng(0)
        m = VoxelMap(1.0, 10, max_distance=30.0, rebuild_every=4)
        origin = np.zeros(3)
        for k in range(25):
            origin = origin + [1.5, 0.3, 0.0]
            m.add(origin + rng.uniform(-35, 35, (3000, 3)) * [1, 1, 0.2], origin=origin)
            P = m.points
            assert len(P) == len(m)
            assert np.unique(voxel_keys(P, 1.0), return_counts=True)[1].max() <= 10
            assert len(np.unique(voxel_keys(P, m.min_spacing))) == len(P)
            if k % 5 == 4:  # culled every 5th update: no voxel left beyond max_distance (+ its diagonal)
                assert np.linalg.norm(P - origin, axis=1).max() < 30.0 + np.sqrt(3)
            q = rng.uniform(-25, 25, (2000, 3)) * [1, 1, 0.2]
            q = origin + q[np.linalg.norm(q, axis=1) < 25]
            d, rows = m.nearest(q, 1.0)
            np.testing.assert_allclose(d, cKDTree(P).query(q, distance_upper_bound=1.0)[0])
            hit = np.isfinite(d)
            pts, _, _ = m.at(rows[hit])
            np.testing.assert_allclose(np.linalg.norm(pts - q[hit], axis=1), d[hit])

    def test_base_tree_is_rebuilt_only_at_compaction(self):
        """An update leaves the base KD-tree (the map's bulk) alone until every ``rebuild_every``-th call:
        the per-sweep work follows the new points, not the map's size."""
        rng = np.random.default_rng(3)
        m = VoxelMap(1.0, 10, rebuild_every=8)
        m.add(rng.uniform(-20, 20, (20000, 3)))  # large first batch: compacted at once
        m.nearest(np.zeros((1, 3)), 1.0)
        base = m._base
        for _ in range(7):
            m.add(rng.uniform(-20, 20, (300, 3)))
            m.nearest(np.zeros((1, 3)), 1.0)
            assert m._base is base
        m.add(rng.uniform(-20, 20, (300, 3)))  # the 8th call after the last compaction
        m.nearest(np.zeros((1, 3)), 1.0)
        assert m._base is not base
