"""Rings of a sweep stored in firing order (no ring field): the beams come back from the
clusters of the points' elevations (the pjlab PCDs), never from a spread-out cloud."""

import numpy as np

from fuse4d.calib.features import elevation_rings


def _firing_order_sweep(beams: np.ndarray, columns: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points of a spinning LiDAR with the given beam elevations (deg), stored column by column
    (as Hesai drivers write them), 10 % dropped; returns ``points [N, 3]`` and their true beam."""
    rng = np.random.default_rng(seed)
    az = np.radians(np.repeat(np.linspace(-180, 180, columns, endpoint=False), len(beams)))
    beam = np.tile(np.arange(len(beams)), columns)
    el = np.radians(beams[beam] + rng.normal(0, 0.005, len(beam)))
    r = rng.uniform(2, 60, len(beam))
    pts = np.c_[r * np.cos(el) * np.cos(az), r * np.cos(el) * np.sin(az), r * np.sin(el)]
    keep = rng.random(len(beam)) > 0.1
    return pts[keep], beam[keep]


def test_rings_from_elevation_clusters_of_a_non_uniform_64_beam_lidar():
    beams = np.r_[np.linspace(-25, -6, 20), np.linspace(-5.9, 2.0, 40), np.linspace(3, 15, 4)]  # 0.2 deg near 0
    pts, beam = _firing_order_sweep(beams)
    rows = elevation_rings(np.degrees(np.arctan2(pts[:, 2], np.hypot(pts[:, 0], pts[:, 1]))))
    assert len(np.unique(rows)) == 64
    assert np.array_equal(rows, beam)  # sorted by elevation, as the beams are


def test_spread_elevations_are_not_rings():
    rng = np.random.default_rng(1)
    assert elevation_rings(rng.uniform(-25, 15, 5000)) is None
    assert elevation_rings(np.zeros(100)) is None


def test_pjlab_sweeps_have_64_rings(shared):
    from fuse4d.calib.io import load_opencalib_pair
    for name in ("manual_calib", "auto_calib"):
        p = load_opencalib_pair(shared("pjlab_sensorscalib", "lidar2camera", name, "data"))
        pts = p["points"][np.linalg.norm(p["points"][:, :3], axis=1) > 1.0]
        el = np.degrees(np.arctan2(pts[:, 2], np.hypot(pts[:, 0], pts[:, 1])))
        rows = elevation_rings(el)
        assert len(np.unique(rows)) == 64, name
        spread = max(np.ptp(el[rows == k]) for k in range(64))
        assert spread < 0.15, name  # one beam each (adjacent beams are 0.16 deg apart or more)
