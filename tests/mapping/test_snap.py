"""Noisy returns are moved along their rays onto the plane of their neighbours before binning."""

from __future__ import annotations

import numpy as np

from fuse4d.mapping.builder import snap_to_planes
from fuse4d.mapping.normals import scan_normals


def test_returns_of_a_wall_near_a_voxel_face_go_back_to_its_voxels():
    rng = np.random.default_rng(0)
    yz = np.stack(np.meshgrid(np.linspace(-4, 4, 80), np.linspace(-1, 2, 30), indexing="ij"), -1).reshape(-1, 2)
    wall = np.column_stack([np.full(len(yz), 10.02), yz])          # 2 cm inside the voxels x in [10, 10.5)
    u = wall / np.linalg.norm(wall, axis=1, keepdims=True)
    noisy = wall + u * 0.02 * rng.standard_normal((len(wall), 1))  # 2 cm range noise, along the rays
    nrm, cen, flat = scan_normals(noisy, 12, 1.5, 0.2, 0.3, return_centroids=True)
    flat_enough = flat <= 0.02                     # as MapBuilder gates it (range_sigma)
    out = snap_to_planes(noisy, np.zeros(3), nrm, cen, flat_enough, 0.06)
    spill = lambda p: np.mean(np.floor(p[:, 0] / 0.5) != 20)  # noqa: E731
    assert flat_enough.mean() > 0.8                # measured 0.9: a plane flat within the noise
    assert spill(noisy) > 0.12                     # measured 0.16 of the returns in the voxel in front
    assert spill(out) < 0.06                       # measured 0.043 (returns beyond 3 sigma stay)
    far = noisy.copy()
    far[0, 0] += 0.3                               # a return 30 cm off the plane is not moved
    out = snap_to_planes(far, np.zeros(3), nrm, cen, np.ones(len(far), bool), 0.06)
    assert np.array_equal(out[0], far[0])
