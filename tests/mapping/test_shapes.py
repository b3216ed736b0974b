"""Shape rules of point classes: a thin upright column is a pole; a trunk, a wall, a person are not."""

from __future__ import annotations

import numpy as np

from fuse4d.data.classes import BUILDING, CAR, OTHER_VEHICLE, PEDESTRIAN, POLE, ROAD, VEGETATION
from fuse4d.mapping.relabel import MapLabels
from fuse4d.mapping.shapes import (ShapeRules, base_classes, ground_at, ground_height, moving_classes, objects,
                                   pole_features, pole_mask)

RNG = np.random.default_rng(0)


def _cylinder(x, y, r, z0, z1, n):
    """Points on the side of an upright cylinder that a sensor at the origin sees (its near half)."""
    a = np.arctan2(-y, -x) + RNG.uniform(-np.pi / 2, np.pi / 2, n)
    return np.c_[x + r * np.cos(a), y + r * np.sin(a), RNG.uniform(z0, z1, n)]


def _sphere(x, y, z, r, n):
    v = RNG.normal(size=(n, 3))
    return np.array([x, y, z]) + r * v / np.linalg.norm(v, axis=1, keepdims=True)


def _scene():
    """Ground at z = 0 and five objects; returns (ground [G,3], {name: points [K,3]})."""
    g = np.c_[RNG.uniform(-5, 30, 20000), RNG.uniform(-15, 15, 20000), RNG.normal(0, 0.02, 20000)]
    objs = {
        "street light": _cylinder(10.0, 5.0, 0.1, 0.3, 7.0, 600),
        "sign": _cylinder(14.0, -4.0, 0.05, 0.3, 2.6, 200),
        "trunk + crown": np.concatenate([_cylinder(12.0, 9.0, 0.25, 0.3, 3.0, 400), _sphere(12.0, 9.0, 4.5, 2.0, 2000)]),
        "wall": np.c_[RNG.uniform(5, 25, 8000), np.full(8000, -10.0) + RNG.normal(0, 0.02, 8000), RNG.uniform(0.3, 6, 8000)],
        "person": np.c_[RNG.uniform(19.85, 20.15, 300), RNG.uniform(2.75, 3.25, 300), RNG.uniform(0.3, 1.8, 300)],
        "car": np.c_[RNG.uniform(6, 10.5, 3000), RNG.uniform(-3, -1.2, 3000), RNG.uniform(0.3, 1.5, 3000)],
    }
    return g, objs


def test_poles_are_found_and_nothing_else_is():
    ground, objs = _scene()
    ctx = np.concatenate(list(objs.values()))
    gtab = ground_height(ground)
    assert abs(ground_at(gtab, np.array([[3.0, 2.0]]))[0]) < 0.05 and np.isnan(ground_at(gtab, np.array([[500.0, 0.0]])))[0]
    for name, pts in objs.items():
        share = pole_mask(pts, ctx, gtab).mean()
        if name in ("street light", "sign"):
            assert share > 0.9, (name, share)
        else:
            assert share < 0.02, (name, share)
    f = pole_features(objs["street light"], ctx, gtab)
    assert np.nanmedian(f["height"]) > 6.0 and np.nanmedian(f["width"]) < 0.2 and np.nanmedian(f["base"]) < 0.5
    # a pole standing on nothing known (no ground under it) is not a pole
    assert not pole_mask(objs["street light"], ctx, ground_height(ground[ground[:, 0] < 0])).any()
    # a shorter pole than the rule's height is not one either
    assert not pole_mask(objs["sign"], ctx, gtab, ShapeRules(pole_height=3.0)).any()


def test_map_labels_call_a_static_pole_a_pole_and_keep_moving_points():
    ground, objs = _scene()
    pole, wall = objs["street light"], objs["wall"]
    pts = np.concatenate([pole, wall, ground[:2000]]).astype(np.float32)
    lab = np.r_[np.full(len(pole), BUILDING), np.full(len(wall), BUILDING), np.full(2000, ROAD)].astype(np.uint8)
    gflag = np.r_[np.zeros(len(pole) + len(wall), bool), np.ones(2000, bool)]
    moving = np.zeros(len(pts), bool)
    moving[:10] = True

    class _Empty:  # no occupied voxel anywhere: only the shape rules act
        class map:
            res = 0.5

            @staticmethod
            def class_of(ijk):
                return np.zeros(len(ijk), np.uint8)

            @staticmethod
            def log_odds_at(ijk):
                return np.zeros(len(ijk))

    ml = MapLabels(_Empty, lag=1)
    assert ml.add(0, pts, lab, moving, gflag) == []
    (j, out), = ml.add(1, pts, lab, None, gflag)
    assert j == 0
    n = len(pole)
    assert (out[10:n] == POLE).mean() > 0.9 and (out[:10] == BUILDING).all()
    # ground points stay road, but for those the wall stands on (its column goes on up over them)
    g = pts[n + len(wall):]
    under = (np.abs(g[:, 1] + 10.0) < 0.2) | (np.hypot(g[:, 0] - 10.0, g[:, 1] - 5.0) < 0.3)
    assert (out[n:n + len(wall)] == BUILDING).all() and (out[n + len(wall):][~under] == ROAD).all()
    assert set(out[n + len(wall):][under].tolist()) <= {ROAD, BUILDING, POLE}
    # without ground flags, or with the rules off, nothing changes
    ml = MapLabels(_Empty, lag=0, shapes=None)
    (_, same), = ml.add(0, pts, lab, None, gflag)
    assert (same == lab).all()
    (_, same), = MapLabels(_Empty, lag=0).add(0, pts, lab, None, None)
    assert (same == lab).all()
    # a moving person-sized object the model called a wall is a pedestrian
    walker = _box(8.0, 4.0, 0.5, 0.35, 0.1, 1.75, 150)
    (_, out), = MapLabels(_Empty, lag=0).add(0, np.concatenate([pts, walker]), np.r_[lab, np.full(150, BUILDING, np.uint8)],
                                             np.r_[np.zeros(len(pts), bool), np.ones(150, bool)], np.r_[gflag, np.zeros(150, bool)])
    assert (out[-150:] == PEDESTRIAN).all() and (out[n:n + len(wall)] == BUILDING).all()


def test_world_points_are_deskewed_through_the_neighbouring_poses():
    from types import SimpleNamespace

    v, n = 10.0, 200   # m/s along x; a wall at x = 20 seen over a 0.1 s sweep
    tau = np.linspace(-0.05, 0.05, n)
    T = np.tile(np.eye(4), (3, 1, 1))
    T[:, 0, 3] = [0.0, 1.0, 2.0]  # 10 Hz
    local = np.c_[20.0 - (T[1, 0, 3] + v * tau), np.linspace(-3, 3, n), np.zeros(n)]  # the sensor moved in the sweep
    frame = SimpleNamespace(points=local, point_time=tau)
    seq = SimpleNamespace(timestamps=np.array([0.0, 0.1, 0.2]), metadata={},
                          calibration=SimpleNamespace(T_body_lidar=np.eye(4)))
    w = MapLabels.world_points(seq, T, 1, frame)
    assert np.abs(w[:, 0] - 20.0).max() < 5e-3  # 256 time bins: 0.4 ms, 4 mm at 10 m/s
    # already deskewed logs, and frames without neighbours, are only transformed (0.5 m off at the sweep's ends)
    seq.metadata["lidar_deskewed"] = True
    assert np.abs(MapLabels.world_points(seq, T, 1, frame)[:, 0] - 20.0).max() > 0.45
    T[[0, 2]] = np.nan
    seq.metadata.clear()
    assert np.abs(MapLabels.world_points(seq, T, 1, frame)[:, 0] - 20.0).max() > 0.45
    assert MapLabels.world_points(seq, T, 0, frame) is None


def _box(x, y, length, width, z0, z1, n):
    return np.c_[RNG.uniform(x - length / 2, x + length / 2, n), RNG.uniform(y - width / 2, y + width / 2, n),
                 RNG.uniform(z0, z1, n)]


def test_moving_objects_take_the_class_their_size_gives():
    ground, _ = _scene()
    gtab = ground_height(ground)
    parts = {  # (points, the model's label, the class the size rules should give; 0 = keep)
        "walker by a wall": (_box(8.0, 4.0, 0.5, 0.35, 0.1, 1.75, 150), BUILDING, PEDESTRIAN),
        "truck called a car": (_box(15.0, -3.0, 8.5, 2.5, 0.3, 3.4, 3000), CAR, OTHER_VEHICLE),
        "car called a truck": (_box(22.0, 3.0, 4.5, 1.8, 0.2, 1.5, 2000), OTHER_VEHICLE, CAR),
        "van": (_box(5.0, -8.0, 5.3, 2.0, 0.3, 2.4, 2000), CAR, CAR),
        "tree flagged moving": (_sphere(25.0, -10.0, 4.5, 2.0, 1500), VEGETATION, 0),
        "too few points": (_box(-2.0, 10.0, 0.4, 0.4, 0.1, 1.7, 4), BUILDING, 0),
    }
    pts = np.concatenate([v[0] for v in parts.values()])
    lab = np.concatenate([np.full(len(v[0]), v[1], np.uint8) for v in parts.values()])
    nonground = pts[:, 2] > 0.25
    assert len(np.unique(objects(pts, 0.5))) == len(parts)
    out = moving_classes(pts, lab, nonground, gtab)
    k = 0
    for name, (p, _, want) in parts.items():
        got = out[k:k + len(p)]
        k += len(p)
        assert (got == want).all(), (name, np.unique(got))  # the truck's band points too: ROAD never wins
    # sizes are the rule's: a lower truck limit calls the van a truck; a person taller than the limit is not one
    assert (moving_classes(pts, lab, nonground, gtab, ShapeRules(truck_height=2.0))[-3500 - 4:-1500 - 4] == OTHER_VEHICLE).all()
    assert (moving_classes(pts, lab, nonground, gtab, ShapeRules(person_height=(1.2, 1.6)))[:150] == 0).all()
    assert moving_classes(pts[:3], lab[:3], nonground[:3], gtab).tolist() == [0, 0, 0]


def test_ground_band_points_under_an_object_take_its_class():
    ground, objs = _scene()
    # the band's share of a wall, a parked car and a person (0-0.25 m), flagged ground by the segmentation
    wall_foot = np.c_[RNG.uniform(5, 25, 400), np.full(400, -10.0) + RNG.normal(0, 0.02, 400), RNG.uniform(0.0, 0.25, 400)]
    car_foot = _box(8.25, -2.1, 4.5, 1.8, 0.1, 0.25, 300)
    person_foot = _box(20.0, 3.0, 0.3, 0.3, 0.0, 0.25, 30)
    open_road = ground[np.abs(ground[:, 1] + 10.0) > 1.0][:3000]
    band = np.concatenate([wall_foot, car_foot, person_foot, open_road])
    ctx = np.concatenate([objs["wall"], objs["car"], objs["person"]])
    lab = np.r_[np.full(len(objs["wall"]), BUILDING), np.full(len(objs["car"]), CAR), np.full(len(objs["person"]), PEDESTRIAN)]
    out = base_classes(band, ctx, lab.astype(np.uint8))
    k = np.cumsum([0, 400, 300, 30, len(open_road)])
    assert (out[k[0]:k[1]] == BUILDING).mean() > 0.95 and (out[k[1]:k[2]] == CAR).mean() > 0.95
    # a person does not lend its class (it seldom stands still over the scans), and open road stays road
    assert (out[k[2]:k[3]] == 0).all()
    def in_car(pad):  # the open road under the parked car's footprint (x 6-10.5, y -3 to -1.2), grown by pad
        return ((open_road[:, 0] > 6 - pad) & (open_road[:, 0] < 10.5 + pad)
                & (open_road[:, 1] > -3 - pad) & (open_road[:, 1] < -1.2 + pad))
    assert (out[k[3]:][~in_car(0.2)] == 0).all() and (out[k[3]:][in_car(-0.2)] == CAR).mean() > 0.95
    # the road further than base_radius from a wall's plane keeps its class
    near = np.c_[RNG.uniform(5, 25, 200), np.full(200, -10.3), np.zeros(200)]
    assert (base_classes(near, ctx, lab.astype(np.uint8)) == 0).all()
    assert (base_classes(near, ctx, lab.astype(np.uint8), ShapeRules(base_radius=0.4)) == BUILDING).mean() > 0.9
