"""Tracks: velocity of moving boxes of points, oriented boxes, CSV round trip."""

from __future__ import annotations

import numpy as np
import pytest

from fuse4d.dynamics.config import DynamicsConfig
from fuse4d.dynamics.tracking import (TRACK_COLUMNS, Tracker, full_centre, icp_translation, oriented_box,
                                      read_tracks_csv, rows_to_table, tracks_to_csv)
from fuse4d.errors import DataError


def _box_surface(centre, size, yaw, rng, n=300):
    """Points on the four vertical sides of a box (what a LiDAR sees of a car), world frame."""
    l, w, h = size
    side = rng.integers(0, 4, n)
    u = rng.uniform(-0.5, 0.5, n)
    x = np.where(side < 2, u * l, np.where(side == 2, l / 2, -l / 2))
    y = np.where(side < 2, np.where(side == 0, w / 2, -w / 2), u * w)
    z = rng.uniform(0, h, n)
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([centre[0] + c * x - s * y, centre[1] + s * x + c * y, centre[2] + z], 1)


def test_oriented_box_recovers_size_and_heading():
    rng = np.random.default_rng(1)
    pts = _box_surface(np.array([3.0, -2.0, 0.0]), (4.5, 1.8, 1.5), 0.6, rng, 2000)
    centre, size, yaw = oriented_box(pts)
    assert np.allclose(size, [4.5, 1.8, 1.5], atol=0.1)
    assert abs(np.sin(yaw - 0.6)) < 0.05
    assert np.allclose(centre[:2], [3.0, -2.0], atol=0.1)


def _turn(pts, pivot, th, d):
    c, s = np.cos(th), np.sin(th)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return (pts - pivot) @ R.T + pivot + d


def test_registration_with_turn_recovers_the_centre_displacement():
    """A car turning 3° while its centre moves 0.8 m: the fit with a pivot finds both; a translation
    alone is off by about the turn times the lever arm of the points from the centre."""
    rng = np.random.default_rng(4)
    centre = np.array([10.0, 5.0, 0.0])
    old = _box_surface(centre, (4.5, 1.8, 1.5), 0.3, rng, 1500)
    old = old[(old - centre) @ np.array([np.cos(0.3), np.sin(0.3), 0]) < 0.5]   # rear and sides, front hidden
    d_true, th_true = np.array([0.8 * np.cos(0.32), 0.8 * np.sin(0.32), 0.02]), np.radians(3.0)
    new = _turn(old, centre, th_true, d_true) + rng.normal(0, 0.01, old.shape)
    start = d_true + [0.15, -0.1, 0.0]      # the track's prediction
    d, share, th = icp_translation(new, old, start, pivot=centre, yaw_prior=0.01)
    assert share > 0.9 and abs(th - th_true) < np.radians(0.5) and np.linalg.norm(d - d_true) < 0.05
    d0, _ = icp_translation(new, old, start)
    assert np.linalg.norm(d0 - d_true) > 2 * np.linalg.norm(d - d_true)


def test_full_centre_of_a_car_seen_from_behind():
    """Only the rear 1.5 m of a 4.5 m car is visible from a sensor behind it: its centre lies
    2.25 m ahead of the rear face, not in the middle of the visible part."""
    rng = np.random.default_rng(5)
    heading = np.array([np.cos(0.4), np.sin(0.4)])
    centre = np.array([20.0, 3.0, 0.0])
    pts = _box_surface(centre, (4.5, 1.8, 1.5), 0.4, rng, 2000)
    a = (pts[:, :2] - centre[:2]) @ heading
    seen = pts[a < -0.75]
    sensor = centre - 15 * np.r_[heading, 0.0]
    assert np.linalg.norm(oriented_box(seen, heading)[0][:2] - centre[:2]) > 1.3
    assert np.linalg.norm(full_centre(seen, heading, sensor, 4.5)[:2] - centre[:2]) < 0.1
    ahead = centre + 15 * np.r_[heading, 0.0]    # seen from in front: the front is the near end
    front = pts[a > 0.75]
    assert np.linalg.norm(full_centre(front, heading, ahead, 4.5)[:2] - centre[:2]) < 0.1


def test_vertical_velocity_follows_the_ground_slope():
    """A car at 8 m/s up a 5 % slope: vertical velocity 0.4 m/s, from the ground ahead of and behind
    it (the registration alone constrains it least: a car's faces are upright)."""
    rng = np.random.default_rng(6)
    slope = 0.05
    tracker = Tracker(DynamicsConfig(), ground=lambda xy: slope * xy[:, 0])
    for k in range(25):
        t = 0.1 * k
        c = np.array([8.0 * t, 0.0, slope * 8.0 * t])
        pts = _box_surface(c, (4.5, 1.8, 1.5), 0.0, rng)
        keep = rng.random(len(pts)) < rng.uniform(0.4, 1.0)
        tracker.update(t, [pts[keep] + rng.normal(0, 0.02, (keep.sum(), 3))])
    table = tracker.table()
    assert len(table["t"]) > 10
    assert np.median(np.abs(table["vz"] - slope * 8.0)) < 0.03
    assert np.median(np.abs(table["vx"] - 8.0)) < 0.3


def test_tracker_velocity_of_moving_boxes():
    """A car (8 m/s, heading 30°), a pedestrian (1.3 m/s) and a parked car, 3 s at 10 Hz, seen
    each frame from a different random subset of their sides (the centroid wanders)."""
    rng = np.random.default_rng(2)
    objs = [(np.array([0.0, 0.0, 0.0]), np.array([8 * np.cos(0.5), 8 * np.sin(0.5), 0.0]), (4.5, 1.8, 1.5)),
            (np.array([5.0, 10.0, 0.0]), np.array([0.0, -1.3, 0.0]), (0.5, 0.5, 1.7)),
            (np.array([-10.0, 5.0, 0.0]), np.zeros(3), (4.2, 1.8, 1.4))]
    tracker = Tracker(DynamicsConfig())
    for k in range(30):
        t = 0.1 * k
        dets = []
        for c0, v, size in objs:
            pts = _box_surface(c0 + v * t, size, np.arctan2(v[1], v[0]) if v.any() else 0.0, rng)
            keep = rng.random(len(pts)) < rng.uniform(0.4, 1.0)  # partial views
            dets.append(pts[keep] + rng.normal(0, 0.02, (keep.sum(), 3)))
        tracker.update(t, dets)
    table = tracker.table()
    assert set(table) == set(TRACK_COLUMNS) and table["track_id"].dtype == np.int64
    ids = np.unique(table["track_id"])
    assert len(ids) == 3  # one track per object, no fragments
    errs = []
    for tid in ids:
        m = table["track_id"] == tid
        v = np.stack([table["vx"][m], table["vy"][m], table["vz"][m]], 1)
        pos = np.array([table["x"][m][0], table["y"][m][0]])
        c0, vt, _ = min(objs, key=lambda o: np.linalg.norm(o[0][:2] + o[1][:2] * table["t"][m][0] - pos))
        errs.append(np.linalg.norm(v - vt, axis=1))
    assert np.median(np.concatenate(errs)) <= 0.3


def test_smoother_removes_the_lag_of_span_registrations():
    """A car accelerating at 2 m/s² while turning at 0.3 rad/s, measured every 0.1 s by registrations over
    the last 0.4 s (mean velocities, noise 0.1 m/s). Dated at the span's end, as a causal filter reads them,
    they lag ~0.4 m/s; the smoother, dating them at the middle, is within noise of the truth."""
    from fuse4d.dynamics.tracking import smooth_velocities

    rng = np.random.default_rng(3)

    def vel(t):
        speed, yaw = 5.0 + 2.0 * t, 0.3 * t
        return np.stack([speed * np.cos(yaw), speed * np.sin(yaw)], -1)

    t_end = np.arange(0.4, 4.0, 0.1)
    span = 0.4
    meas = np.array([vel(np.linspace(t - span, t, 41)).mean(0) for t in t_end]) + rng.normal(0, 0.1, (len(t_end), 2))
    lag = np.linalg.norm(meas - vel(t_end), axis=1)
    out = smooth_velocities(t_end - span / 2, meas, np.full(len(t_end), 0.25), t_end, 1.0)
    err = np.linalg.norm(out - vel(t_end), axis=1)
    assert np.median(lag) > 0.35
    assert np.median(err[:-5]) < 0.1  # the last ones have no later registrations to centre them
    assert np.median(err) < 0.5 * np.median(lag)


def test_csv_round_trip(tmp_path):
    rows = [(3, 0.1, 1.0, 2.0, 0.5, 7.5, -0.25, 0.0, 4.5, 1.8, 1.5, 0.3),
            (3, 0.2, 1.75, 1.975, 0.5, 7.5, -0.25, 0.0, 4.5, 1.8, 1.5, 0.3),
            (12, 0.2, -5.0, 3.0, 0.9, 0.0, 1.2, 0.0, 0.6, 0.6, 1.7, -1.5707963267948966)]
    table = rows_to_table(rows)
    path = tmp_path / "tracks.csv"
    tracks_to_csv(table, path)
    assert path.read_text().splitlines()[0] == ",".join(TRACK_COLUMNS)
    back = read_tracks_csv(path)
    for c in TRACK_COLUMNS:
        assert np.array_equal(back[c], table[c]), c
    assert back["track_id"].dtype == np.int64
    tracks_to_csv(rows_to_table([]), tmp_path / "empty.csv")
    assert len(read_tracks_csv(tmp_path / "empty.csv")["t"]) == 0


def test_csv_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(TRACK_COLUMNS) + "\n1,0.1,x,2,3,4,5,6,7,8,9,10\n")
    with pytest.raises(DataError, match="bad.csv.*line 2"):
        read_tracks_csv(bad)
    with pytest.raises(DataError, match="lacks columns"):
        tracks_to_csv({"t": np.zeros(1)}, tmp_path / "x.csv")
