"""The static point map keeps one point per fine voxel and at most ``cap`` per coarse voxel:
revisits of a full place add nothing, so the map follows the area, not the log's length."""

from __future__ import annotations

import numpy as np

from fuse4d.mapping.pointmap import PointMap


def _reference(batches, spacing, cap_voxel, cap, origin):
    """The rule, one point at a time with dicts: first point per fine voxel, at most ``cap`` per coarse one."""
    fine, coarse, kept = set(), {}, []
    for xyz in batches:
        for p in xyz:
            f = tuple(np.floor((p.astype(np.float64) - origin) / spacing).astype(int))
            c = tuple(np.floor((p.astype(np.float64) - origin) / cap_voxel).astype(int))
            if f in fine or (cap and coarse.get(c, 0) >= cap):
                continue
            fine.add(f)
            coarse[c] = coarse.get(c, 0) + 1
            kept.append(p)
    return np.array(kept, np.float32).reshape(-1, 3)


def _offer(m, xyz):
    rgb = (np.abs(xyz) * 10 % 255).astype(np.uint8)
    return m.add(xyz, rgb, (np.arange(len(xyz)) % 7).astype(np.uint8))


def test_same_points_as_the_rule_one_point_at_a_time(monkeypatch):
    import fuse4d.mapping.pointmap as pm
    monkeypatch.setattr(pm, "MERGE_MIN", 100)  # small: the recent keys are merged into the main ones several times
    monkeypatch.setattr(pm, "CHUNK", 500)      # and the points span several chunks
    rng = np.random.default_rng(3)
    origin = np.array([0.05, -0.2, 0.3])
    batches = [rng.uniform(-2, 2, (n, 3)).astype(np.float32) for n in (1500, 1, 0, 1200, 2000)]
    for cap in (0, 1, 4):
        m = PointMap(0.1, 0.5, cap, origin)
        kept = [_offer(m, b) for b in batches]
        got = m.arrays()
        ref = _reference(batches, 0.1, 0.5, cap, origin)
        assert sum(kept) == len(m) == len(got["xyz"]) == len(ref) > 0
        np.testing.assert_array_equal(got["xyz"], ref)  # same points, same order of arrival
        assert got["rgb"].shape == (len(ref), 3) and got["labels"].dtype == np.uint8


def test_revisits_of_a_full_place_add_nothing():
    g = np.arange(0.0, 4.0, 0.02) + 0.01
    x, y = np.meshgrid(g, g)
    plane = np.stack([x.ravel(), y.ravel(), np.full(x.size, 0.05)], 1).astype(np.float32)  # 4 x 4 m of road
    m = PointMap(0.1, 0.5, 16)
    assert _offer(m, plane) == 64 * 16  # 64 coarse voxels of 25 fine ones each, 16 kept per coarse voxel
    rng = np.random.default_rng(0)
    for _ in range(3):  # later laps sample the same road elsewhere: nothing new
        lap = np.clip(plane + rng.uniform(-0.04, 0.04, plane.shape), 0.001, 3.999).astype(np.float32)
        assert _offer(m, lap) == 0
    assert len(m) == 64 * 16
    uncapped = PointMap(0.1, 0.5, 0)
    _offer(uncapped, plane)
    assert len(uncapped) == 40 * 40  # without the cap: every 0.1 m voxel of the plane


def test_builder_map_obeys_both_voxel_rules(gt_built):
    b, maps, _ = gt_built
    xyz = maps["points"]["xyz"]
    cfg = b.config
    assert len(xyz) > 1000
    for edge, most in ((cfg.point_voxel, 1), (cfg.voxel_size, cfg.point_max_per_voxel)):
        keys = np.floor((xyz.astype(np.float64) - b.grid_origin) / edge).astype(np.int64)
        _, counts = np.unique(keys, axis=0, return_counts=True)
        assert counts.max() <= most
