"""The stixel-world depth correction on a scene with a known answer: a level camera 1.5 m
above a flat road, a wall and a car standing on it."""

import numpy as np

from fuse4d.data.classes import BUILDING, CAR, ROAD
from fuse4d.fusion.stixels import ground_plane, stixel_depth

H, W, FY, CY, HEIGHT = 80, 160, 100.0, 40.0, 1.5
K = np.array([[100.0, 0, 80.0], [0, FY, CY], [0, 0, 1]])


def scene(wall_z: float = 12.0, car_z: float = 8.0):
    """True depth and classes: road below the horizon, a wall across columns 40-119 at
    ``wall_z``, a car (rows down to its ground contact, 1.2 m tall) in columns 60-79 at ``car_z``."""
    v = np.arange(H)[:, None] + np.zeros((1, W))
    u = np.zeros((H, 1)) + np.arange(W)[None]
    z_road = np.where(v > CY, HEIGHT * FY / np.maximum(v - CY, 1e-9), 0.0)
    depth, sem = z_road.copy(), np.where(v > CY, ROAD, 0).astype(np.uint8)
    wall = (u >= 40) & (u < 120) & ((z_road > wall_z) | (v <= CY))
    depth[wall], sem[wall] = wall_z, BUILDING
    car_top = CY + FY * (HEIGHT - 1.2) / car_z
    car = (u >= 60) & (u < 80) & (v >= car_top) & ((z_road > car_z) | (v <= CY))
    depth[car], sem[car] = car_z, CAR
    return depth, sem, wall & ~car, car


def test_upright_surfaces_take_the_depth_of_their_ground_contact():
    gt, sem, wall, car = scene()
    rng = np.random.default_rng(0)
    model = gt * rng.uniform(0.97, 1.03, gt.shape)       # the road: a few % noise
    model[wall], model[car] = 18.0, 4.0                   # the network is unsure how far upright things are
    out = stixel_depth(model.astype(np.float32), sem, K)
    rel = np.abs(out - gt) / np.where(gt > 0, gt, 1)
    # the wall's bottom-up runs start at the road, except above the car, where the class changes
    above_car = wall & (np.arange(W)[None] >= 60) & (np.arange(W)[None] < 80)
    # the contact row's centre lies half a row below the true contact: ~4 % short here
    assert np.median(rel[wall & ~above_car]) < 0.05 and np.median(rel[car]) < 0.05
    assert np.median(np.abs(model - gt)[wall] / gt[wall]) > 0.4
    # the wall above the car has no contact of its own: it takes the base line of the wall either side
    assert np.median(rel[above_car]) < 0.05
    no_facade = stixel_depth(model.astype(np.float32), sem, K, facade_gap=0)
    assert np.allclose(no_facade[above_car], 18.0)        # without it the network's depth stays
    assert np.array_equal(out[sem == ROAD], model[sem == ROAD].astype(np.float32))


def test_far_contacts_and_non_ground_views_are_left_alone():
    gt, sem, wall, _ = scene(wall_z=45.0, car_z=40.0)
    model = gt.copy()
    model[wall] = 60.0
    out = stixel_depth(model.astype(np.float32), sem, K)
    assert np.allclose(out[wall], 60.0)                   # beyond MAX_CONTACT_M (30 m)
    # a camera looking straight down at a table: the "ground" plane faces the camera
    table = np.full((H, W), 0.8, np.float32)
    sem_t = np.full((H, W), ROAD, np.uint8)
    sem_t[:20] = BUILDING
    assert np.array_equal(stixel_depth(table, sem_t, K), table)


def test_ground_plane_recovers_height_and_normal_despite_outliers():
    rng = np.random.default_rng(1)
    X = np.c_[rng.uniform(-5, 5, 2000), np.full(2000, HEIGHT), rng.uniform(2, 30, 2000)]
    X[:, 1] += rng.normal(0, 0.02, 2000)
    X[:400, 1] -= rng.uniform(0.5, 3, 400)                # 20 % off the plane (kerbs, cars called road)
    n, d, frac = ground_plane(X)
    assert np.degrees(np.arccos(n[1])) < 0.5 and abs(d - HEIGHT) < 0.02 and 0.75 < frac < 0.85
    assert ground_plane(X[:10]) is None


def test_a_run_cut_by_the_image_bottom_is_bounded_by_the_bottom_edge_ray():
    gt, sem, _, car = scene(car_z=3.0)                    # the car's ground contact is below the image
    assert car[-1].any()
    model = gt.copy()
    model[car] = 9.0
    model[car & (np.arange(W)[None] >= 70)] = 2.0         # nearer than the bound: kept
    out = stixel_depth(model.astype(np.float32), sem, K)
    bound = HEIGHT * FY / (H - 0.5 - CY)                  # where the bottom edge's ray meets the road (3.8 m)
    left, right = car & (np.arange(W)[None] < 70), car & (np.arange(W)[None] >= 70)
    assert np.allclose(out[left], bound, rtol=1e-3) and np.allclose(out[right], 2.0)
