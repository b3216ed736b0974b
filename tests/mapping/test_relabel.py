"""Map-consistent point classes: static points take their occupied voxel's class, late."""

from __future__ import annotations

import numpy as np
import pytest

from fuse4d.data.classes import BUILDING, CAR, ROAD, TERRAIN
from fuse4d.mapping.occupancy import OccupancyMap
from fuse4d.mapping.relabel import MapLabels


class _Shifted:
    def __init__(self, m, anchor):
        self.map, self.anchor = m, np.asarray(anchor, float)


def _map_with(points, labels, anchor=(0.0, 0.0, 0.0)):
    m = OccupancyMap(0.5)
    origin = np.array([0.0, 0.0, 10.0])
    for _ in range(3):
        m.integrate(origin - anchor, np.asarray(points, float) - anchor, np.asarray(labels, np.uint8))
    return _Shifted(m, anchor)


def test_static_points_take_their_voxel_class_after_the_lag():
    wall, road = [5.2, 0.2, 1.2], [3.2, 0.2, 0.1]
    occ = _map_with([wall, road], [BUILDING, ROAD], anchor=(0.1, -0.3, 0.0))
    ml = MapLabels(occ, lag=2)
    assert ml.classes_at(np.array([wall, road, [30.0, 30.0, 0.0]])).tolist() == [BUILDING, ROAD, 0]
    pts = np.array([wall, road, wall, [30.0, 30.0, 0.0]])
    lab = np.array([TERRAIN, BUILDING, CAR, CAR], np.uint8)
    moving = np.array([False, False, True, False])
    ground = np.array([False, True, False, False])
    assert ml.add(0, pts, lab, moving, ground) == [] and ml.add(1, None, None, None, None) == []
    out = ml.add(2, pts, lab, None, None)
    assert [j for j, _ in out] == [0]
    # wall → building; road (a ground point) → road; the moving point and the unknown voxel keep theirs
    assert out[0][1].tolist() == [BUILDING, ROAD, CAR, CAR]
    rest = ml.flush()
    assert [j for j, _ in rest] == [1, 2] and rest[0][1] is None
    assert rest[1][1].tolist() == [BUILDING, ROAD, BUILDING, CAR]


def test_ground_flag_vetoes_a_voxel_class_of_the_other_kind():
    road = [3.2, 0.2, 0.1]
    ml = MapLabels(_map_with([road], [ROAD]), lag=0)
    # a point flagged not-ground in a road voxel keeps the model's class, a ground point takes road
    (_, a), = ml.add(0, np.array([road, road]), np.array([CAR, TERRAIN], np.uint8), None, np.array([False, True]))
    assert a.tolist() == [CAR, ROAD]
    # a point within min_range of the sensor keeps its class
    ml = MapLabels(_map_with([road], [ROAD]), lag=0, min_range=5.0)
    (_, b), = ml.add(0, np.array([road, road]), np.array([TERRAIN, TERRAIN], np.uint8), None, None,
                     np.array([4.0, 6.0]))
    assert b.tolist() == [TERRAIN, ROAD]
    with pytest.raises(ValueError):
        MapLabels(None, lag=-1)
