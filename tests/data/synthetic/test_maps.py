"""Ground-truth occupancy and elevation maps of the static world."""

from __future__ import annotations

import numpy as np

from fuse4d.data.classes import BUILDING, CAR, POLE, ROAD, SIDEWALK, TERRAIN, VEGETATION
from fuse4d.data.synthetic.terrain import KERB


class TestOccupancy:
    def test_non_trivial(self, default_world):
        occ = default_world.gt_maps["occupancy"]
        labels = occ["labels"]
        assert labels.dtype == np.uint8 and labels.ndim == 3 and occ["resolution"] == 0.5
        present = set(np.unique(labels)) - {0}
        assert {ROAD, SIDEWALK, TERRAIN, BUILDING, VEGETATION, POLE, CAR} <= present
        assert 0.005 < (labels > 0).mean() < 0.3

    def test_ground_voxels_hold_the_surface(self, default_world):
        occ = default_world.gt_maps["occupancy"]
        r, o = occ["resolution"], occ["origin"]
        # a road point under the start pose: z = -body_height
        i, j = np.floor((np.array([0.0, 0.0]) - o[:2]) / r).astype(int)
        k = int(np.floor((-default_world.cfg.body_height - o[2]) / r))
        assert occ["labels"][i, j, k] == ROAD
        assert (occ["labels"][i, j, k + 2:] == 0).all()  # nothing above the road

    def test_building_faces_are_occupied_and_the_inside_free(self, default_world):
        occ = default_world.gt_maps["occupancy"]
        prims = default_world.prims
        b = int(np.flatnonzero(prims.cls == BUILDING)[0])
        r, o = occ["resolution"], occ["origin"]
        c, s = prims.center[b], prims.size[b]
        top = c[2] + 0.5 * s[2]
        at = lambda p: occ["labels"][tuple(np.floor((np.asarray(p) - o) / r).astype(int))]
        assert at([c[0], c[1], top - 0.01]) == BUILDING          # the roof
        assert at([c[0], c[1], top - 2.0]) == 0                  # the inside is no surface
        # a wall: the middle of a side face, 1.5 m up from the top
        ax = np.array([np.cos(prims.yaw[b]), np.sin(prims.yaw[b]), 0.0])
        assert at(c + 0.5 * s[0] * ax + [0, 0, 0.5 * s[2] - 1.5]) == BUILDING

    def test_thin_objects_have_their_surface_voxels(self, default_world):
        """Every pole thinner than a voxel still occupies the voxels its surface passes."""
        occ = default_world.gt_maps["occupancy"]
        prims = default_world.prims
        r, o = occ["resolution"], occ["origin"]
        poles = np.flatnonzero((prims.cls == POLE) & (prims.size[:, :2].max(1) < r) & (prims.size[:, 2] > 2))
        assert len(poles) >= 3
        for i in poles:
            p = prims.center[i] + [0, 0, 0.25 * prims.size[i, 2]]  # well above the ground
            assert occ["labels"][tuple(np.floor((p - o) / r).astype(int))] == POLE

    def test_class_is_the_majority_of_matter(self, default_world):
        """A voxel a pole's foot shares with the ground is ground (more of its matter is ground);
        one the pole crosses a metre up is pole."""
        occ = default_world.gt_maps["occupancy"]
        prims, terrain = default_world.prims, default_world.terrain
        r, o = occ["resolution"], occ["origin"]
        i = int(np.flatnonzero((prims.cls == POLE) & (prims.size[:, :2].max(1) < r / 2))[0])
        x, y = prims.center[i, :2]
        h = float(terrain.height_at(np.array(x), np.array(y)))
        foot = np.floor((np.array([x, y, h]) - o) / r).astype(int)
        assert occ["labels"][tuple(foot)] in (ROAD, SIDEWALK, TERRAIN)
        up = np.floor((np.array([x, y, h + 1.25]) - o) / r).astype(int)
        assert occ["labels"][tuple(up)] == POLE

    def test_resolution_is_configurable(self, make_world):
        w = make_world("default", occupancy_resolution=1.0, elevation_resolution=1.0)
        a = w.gt_maps["occupancy"]["labels"]
        b = w.gt_maps["elevation"]["height"]
        assert w.gt_maps["occupancy"]["resolution"] == 1.0 and w.gt_maps["elevation"]["resolution"] == 1.0
        full = make_world("default").gt_maps
        assert abs(a.shape[0] * 2 - full["occupancy"]["labels"].shape[0]) <= 2
        assert abs(b.shape[1] * 2 - full["elevation"]["height"].shape[1]) <= 2


class TestElevation:
    def test_non_trivial(self, default_world):
        e = default_world.gt_maps["elevation"]
        h, sem = e["height"], e["semantics"]
        assert h.dtype == np.float32 and sem.dtype == np.uint8 and h.shape == sem.shape
        assert np.isfinite(h).all()
        ground = np.isin(sem, (ROAD, SIDEWALK, TERRAIN))
        assert np.ptp(h[ground]) > 1.0  # hill, mounds, terrace
        assert np.ptp(h) > 5.0  # buildings
        assert {ROAD, SIDEWALK, TERRAIN, BUILDING, VEGETATION, CAR} <= set(np.unique(sem))

    def test_kerb_step(self, default_world):
        """Sidewalk cells sit a kerb above the neighbouring road along the loop."""
        e = default_world.gt_maps["elevation"]
        loop = default_world.loop
        u = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        road = loop.offset_point(u, np.full(40, 3.5))
        walk = loop.offset_point(u, np.full(40, 6.5))
        ij_r = np.floor((road - e["origin"]) / e["resolution"]).astype(int)
        ij_w = np.floor((walk - e["origin"]) / e["resolution"]).astype(int)
        sem_r, sem_w = e["semantics"][tuple(ij_r.T)], e["semantics"][tuple(ij_w.T)]
        ok = (sem_r == ROAD) & (sem_w == SIDEWALK)
        assert ok.sum() > 20
        step = e["height"][tuple(ij_w[ok].T)] - e["height"][tuple(ij_r[ok].T)]
        assert np.median(step) == np.float32(np.median(step))
        assert abs(np.median(step) - KERB) < 0.05

    def test_building_tops(self, default_world):
        e = default_world.gt_maps["elevation"]
        prims = default_world.prims
        for b in np.flatnonzero(prims.cls == BUILDING)[:5]:
            ij = np.floor((prims.center[b, :2] - e["origin"]) / e["resolution"]).astype(int)
            assert e["semantics"][tuple(ij)] == BUILDING
            assert abs(e["height"][tuple(ij)] - (prims.center[b, 2] + 0.5 * prims.size[b, 2])) < 1e-3
