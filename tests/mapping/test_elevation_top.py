"""An elevation cell's height is its top surface (the ground truth's convention), not its points' mean."""

from __future__ import annotations

import numpy as np

from fuse4d.mapping.elevation import ElevationMap, cell_maximum


def test_a_slope_reads_its_top_and_a_step_keeps_its_mean():
    res = 0.5
    ii, jj = np.meshgrid(np.arange(12), np.arange(10), indexing="ij")
    centre = 0.08 * (ii + 0.5) * res - 0.05 * (jj + 0.5) * res      # an 8 % / 5 % slope
    top = cell_maximum(centre, res)
    inner = (slice(1, -1), slice(1, -1))
    assert np.allclose(top[inner] - centre[inner], 0.5 * res * (0.08 + 0.05), atol=1e-6)  # 3.25 cm higher
    wall = centre + np.where(jj >= 5, 0.5, 0.0)                         # a 0.5 m step: no plane fits
    top = cell_maximum(wall, res)
    assert np.array_equal(top[:, 4:6], wall[:, 4:6].astype(np.float32))
    holes = centre.copy()
    holes[::2, ::2] = np.nan                                            # NaN stays NaN
    assert np.isnan(cell_maximum(holes, res)[::2, ::2]).all()


def test_map_of_a_sloped_road_matches_the_cell_tops():
    """Points on a 6 % road, 0.5 m cells: the exported heights sit on each cell's highest point."""
    rng = np.random.default_rng(3)
    xy = rng.uniform(0.0, 10.0, (40000, 2))
    z = 0.06 * xy[:, 0] + 0.005 * rng.standard_normal(len(xy))
    m = ElevationMap(0.5)
    m.integrate(np.column_stack([xy, z]), np.full(len(xy), 5.0))
    lay = m.layers()
    i = np.arange(lay["height"].shape[0])
    x_hi = lay["origin"][0] + (i + 1) * 0.5                            # the cell's upper x edge: its top
    truth = 0.06 * x_hi[:, None] * np.ones_like(lay["height"])
    ok = np.isfinite(lay["height"])
    ok[[0, -1]] = ok[:, [0, -1]] = False                                # edge cells lack a full window
    ok &= (truth > 0) & (x_hi[:, None] < 10.0)
    err_top = np.abs(lay["height"] - truth)[ok]
    err_mean = np.abs(m.mean - truth)[ok]
    assert np.median(err_mean) > 0.012                                   # the mean lies 1.5 cm low
    assert np.median(err_top) < 0.004                                    # measured ~0.001 m


def _scan(rng, xy_lo, xy_hi, z, n=400):
    xy = rng.uniform(xy_lo, xy_hi, (n, 2))
    return np.column_stack([xy, np.full(n, z) + 0.003 * rng.standard_normal(n)])


def test_a_missed_moving_objects_top_gives_way_to_the_ground_and_a_static_one_stays():
    """Cell A (x in [0, 0.5)): a car's roof leaks into the map in one scan, the dynamics flagged
    it in two others; cell B (x in [1, 1.5)): a static box top confirmed in three scans, one scan
    with a moving point over it. A's top becomes its ground (0 m), B keeps its 1.2 m."""
    rng = np.random.default_rng(0)
    m = ElevationMap(0.5)
    ground = lambda lo, hi: _scan(rng, (lo, 0.05), (hi, 0.45), 0.0)  # noqa: E731
    for k in range(3):
        pts = [ground(0.0, 0.5)] if k else [ground(0.0, 0.5), _scan(rng, (0.05, 0.05), (0.45, 0.45), 1.4, 20)]
        pts += [ground(1.0, 1.1), _scan(rng, (1.1, 0.05), (1.45, 0.45), 1.2)]
        p = np.concatenate(pts)
        m.integrate(p, np.full(len(p), 10.0), None, p[:, 2] < 0.25)
        if k:  # the car, flagged moving, over A; once a passer-by over B
            m.add_moving(_scan(rng, (0.05, 0.05), (0.45, 0.45), 1.0, 30))
        if k == 2:
            m.add_moving(_scan(rng, (1.1, 0.05), (1.45, 0.45), 0.9, 5))
    a, b = (0, 0), (2, 0)
    assert m.mean[a] > 1.3 and m.mean[b] > 1.1  # both tops are in the map before the check
    gone = m.outlived(moving=0.5)
    assert gone[a] and not gone[b]
    assert m.drop_transient(gone) == 1
    assert abs(m.mean[a]) < 0.01 and abs(m.mean[b] - 1.2) < 0.01
    assert not m.outlived(moving=0.0).any()


def test_moving_points_beside_the_cell_count_within_the_window():
    """A roof leaked into cell (0, 0) once; the object's flagged points fell in the next cell
    (0.5-1 m) only: the 3 x 3 window takes the top for the object's, the cell alone does not."""
    rng = np.random.default_rng(1)
    m = ElevationMap(0.5)
    for k in range(3):
        p = _scan(rng, (0.0, 0.05), (1.0, 0.45), 0.0)
        if k == 0:
            p = np.concatenate([p, _scan(rng, (0.05, 0.05), (0.45, 0.45), 1.4, 10)])
        m.integrate(p, np.full(len(p), 10.0), None, p[:, 2] < 0.25)
        m.add_moving(_scan(rng, (0.55, 0.05), (0.95, 0.45), 1.0, 30))
    assert m.mean[0, 0] > 1.3
    assert not m.outlived(moving=0.5, window=1)[0, 0]
    assert m.outlived(moving=0.5, window=3)[0, 0]
