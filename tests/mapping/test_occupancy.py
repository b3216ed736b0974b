"""OccupancyMap on hand-made scans: hits, carving, queries."""

from __future__ import annotations

import numpy as np

from fuse4d.mapping.occupancy import OccupancyMap, pack, unpack


def _wall(x: float, n: int = 400) -> np.ndarray:
    """Points on the plane x = const, 4 m × 4 m, seen from the origin."""
    rng = np.random.default_rng(0)
    yz = rng.uniform(-2, 2, (n, 2))
    return np.column_stack([np.full(n, x), yz])


def test_hit_then_carved_when_seen_through():
    m = OccupancyMap(voxel_size=0.5)
    m.integrate(np.zeros(3), _wall(5.1), labels=np.full(400, 3, np.uint8))
    probe = np.array([[5.4, 0.1, 0.1]])  # in the voxel the wall's surface (x = 5.1) passes through
    assert m.occupancy_at(probe)[0] > 0.6
    assert m.class_of(np.floor(probe / 0.5).astype(int))[0] == 3
    for _ in range(6):  # the wall is gone: the same rays now end at x = 10
        m.integrate(np.zeros(3), _wall(10.1))
    assert m.occupancy_at(probe)[0] < 0.3
    assert m.occupancy_at(np.array([[10.4, 0.1, 0.1]]))[0] > 0.6
    assert m.occupancy_at(np.array([[-5.0, 0.0, 0.0]]))[0] == 0.5  # never observed


def test_far_points_carve_without_hits():
    m = OccupancyMap(voxel_size=0.5)
    m.integrate(np.zeros(3), _wall(30.0), max_range=20.0)
    assert m.voxels(occupied_only=True)["ijk"].shape == (0, 3)
    assert m.occupancy_at(np.array([[19.0, 0.0, 0.0]]))[0] < 0.5
    assert m.occupancy_at(np.array([[25.0, 0.0, 0.0]]))[0] == 0.5


def test_crop_matches_point_queries_and_keys_round_trip():
    m = OccupancyMap(voxel_size=0.5)
    m.integrate(np.array([0.3, -0.2, 0.1]), _wall(6.0) + [0, 0, 0.3])
    grid, origin = m.crop([4.0, -3.0, -3.0], [8.0, 3.0, 3.0])
    assert grid.shape == (8, 12, 12)
    idx = np.argwhere(grid != 0)
    centres = origin + (idx + 0.5) * 0.5
    lo = m.log_odds_at(np.floor(centres / 0.5).astype(int))
    assert np.allclose(lo, grid[tuple(idx.T)]) and (grid > 0).sum() > 50
    ijk = np.array([[-5, 7, 1 << 19], [0, 0, 0], [-(1 << 20), (1 << 20) - 1, 3]])
    assert np.array_equal(unpack(pack(ijk)), ijk)


def test_scan_normals_of_a_ring_scanned_plane():
    """A wall scanned by sparse rings (dense along, 0.5 m across): thinning gives its normal."""
    from fuse4d.mapping.normals import scan_normals
    a = np.radians(35.0)
    s, z = np.meshgrid(np.arange(-5, 5, 0.02), np.arange(0, 3, 0.5), indexing="ij")
    pts = np.stack([10 + s.ravel() * np.cos(a), s.ravel() * np.sin(a), z.ravel()], 1)
    n_true = np.array([np.sin(a), -np.cos(a), 0.0])
    raw = scan_normals(pts, 10, 1.5, 0.2)
    thin = scan_normals(pts, 10, 1.5, 0.2, thin=0.3)
    assert np.isnan(raw).any(1).mean() > 0.9          # k neighbours on one ring: a line, no normal
    ok = np.isfinite(thin).all(1)
    assert ok.mean() > 0.9 and np.median(np.abs(thin[ok] @ n_true)) > 0.999


def test_hits_mark_the_voxels_an_oblique_wall_passes_through():
    """Hits on a 35° wall occupy exactly the voxels its surface crosses (the GT convention: surface
    occupancy); the voxels behind it stay unknown, those in front are carved free."""
    a = np.radians(35.0)
    n = np.array([-np.sin(a), np.cos(a), 0.0])      # towards the sensor at the origin side
    s, z = np.meshgrid(np.arange(-4, 4, 0.05), np.arange(0.2, 3, 0.1), indexing="ij")
    base = np.array([12.0, 3.0, 0.0])
    pts = base + s.ravel()[:, None] * np.array([np.cos(a), np.sin(a), 0.0]) + z.ravel()[:, None] * [0, 0, 1]
    m = OccupancyMap(0.5)
    m.integrate(np.array([0.0, 0.0, 1.5]), pts, np.full(len(pts), 3, np.uint8), normals=np.repeat(n[None], len(pts), 0))
    v = m.voxels(occupied_only=True)
    sd = ((v["ijk"] + 0.5) * 0.5 - base) @ n       # signed distance of the centres, > 0 = in front
    crossed = np.abs(sd) < 0.25 * np.abs(n).sum()   # the plane passes through the voxel
    assert len(sd) > 50 and crossed.all()
    behind = np.unique(np.floor((pts - 0.6 * n) / 0.5).astype(int), axis=0)
    behind = behind[np.abs(((behind + 0.5) * 0.5 - base) @ n) >= 0.25 * np.abs(n).sum()]
    assert (m.log_odds_at(behind) == 0).all()


def test_ray_clipping_a_corner_does_not_free_the_voxel():
    """A wall voxel survives rays that only clip its corner."""
    m = OccupancyMap(1.0, carve_core=0.5)
    wall = np.array([[10.5, 0.5, 0.5]])                        # voxel (10, 0, 0)
    for _ in range(3):
        m.integrate(np.zeros(3), wall + [-0.2, 0, 0], np.array([3], np.uint8), normals=np.array([[1.0, 0, 0]]))
    # rays towards a far wall, passing 0.45 voxel from the centre of voxel (10, 0, 0): its corner
    far = np.array([[30.0, 30 * 0.95 / 10.5, 30 * 0.95 / 10.5]])
    for _ in range(10):
        m.integrate(np.zeros(3), far, np.array([3], np.uint8))
    assert m.log_odds_at(np.array([[10, 0, 0]]))[0] > 0
    full = OccupancyMap(1.0, carve_core=1.0)
    for _ in range(3):
        full.integrate(np.zeros(3), wall + [-0.2, 0, 0], np.array([3], np.uint8), normals=np.array([[1.0, 0, 0]]))
    for _ in range(10):
        full.integrate(np.zeros(3), far, np.array([3], np.uint8))
    assert full.log_odds_at(np.array([[10, 0, 0]]))[0] < 0   # carving anywhere erodes it


def test_near_labels_outvote_far_ones_and_unlabeled_never_wins():
    """One vote from 5 m outweighs three from 40 m (a far label's footprint is 64x larger) with
    ``label_range``; with equal votes the far majority wins. Unlabeled votes never decide a class."""
    target = np.array([[20.2, 0.2, 0.2]])            # voxel (40, 0, 0)
    for label_range, expect in ((10.0, 5), (0.0, 3)):
        m = OccupancyMap(0.5, label_range=label_range)
        for _ in range(3):  # seen from 40 m away as a building
            m.integrate(target[0] - [40.0, 0, 0], target, np.array([3], np.uint8))
        m.integrate(target[0] - [5.0, 0, 0], target, np.array([5], np.uint8))   # from 5 m: a pole
        assert m.class_of(np.array([[40, 0, 0]]))[0] == expect
    m = OccupancyMap(0.5)
    for lab in (0, 0, 0, 4):
        m.integrate(np.zeros(3), target, np.array([lab], np.uint8))
    assert m.class_of(np.array([[40, 0, 0]]))[0] == 4


def test_class_votes_saturate_at_the_uint16_ceiling_without_wrapping():
    """Votes are added in place while a voxel's scan cannot pass 65535; past it they saturate (a
    wrapped uint16 would drop the leading class to a few votes and hand the voxel to another)."""
    m = OccupancyMap(0.5, label_range=10.0)
    pts = np.random.default_rng(1).uniform([5.05, 0.05, 0.05], [5.45, 0.45, 0.45], (1500, 3))   # voxel (10, 0, 0)
    for _ in range(3):   # 1500 votes of weight 16 per scan: 24000, 48000, then past the ceiling
        m.integrate(np.zeros(3), pts, np.full(len(pts), 3, np.uint8))
    h = m.histograms(np.array([[10, 0, 0]]))[0]
    assert h[3] == 65535 and h.sum() == 65535
    m.integrate(np.zeros(3), pts[:100], np.full(100, 5, np.uint8))   # another class: the in-place path
    h = m.histograms(np.array([[10, 0, 0]]))[0]
    assert h[3] == 65535 and h[5] == 1600 and m.class_of(np.array([[10, 0, 0]]))[0] == 3


def test_endpoints_kilometres_apart_take_the_sorted_block_lookup():
    """A scan whose endpoints span more blocks than a dense per-scan table should hold (a return
    3 km away) is indexed by sorting; hits, carving and classes come out as for a compact scan."""
    far = np.array([[-3000.2, 0.2, 0.2]])   # behind the sensor: its ray shares no voxel with the wall's
    near = OccupancyMap(0.5)
    near.integrate(np.zeros(3), _wall(5.1), np.full(400, 3, np.uint8))
    both = OccupancyMap(0.5)
    both.integrate(np.zeros(3), np.vstack([_wall(5.1), far]), np.full(401, 3, np.uint8))
    a, b = near.voxels(), both.voxels()
    wall = b["ijk"][:, 0] >= 0
    assert np.array_equal(a["ijk"], b["ijk"][wall]) and np.allclose(a["log_odds"], b["log_odds"][wall])
    assert both.occupancy_at(far)[0] > 0.6 and both.class_of(np.floor(far / 0.5).astype(int))[0] == 3
    assert both.occupancy_at(np.array([[-1500.0, 0.1, 0.1]]))[0] < 0.5   # carved all the way
