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
