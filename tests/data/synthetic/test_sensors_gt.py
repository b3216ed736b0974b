"""LiDAR and camera ground truth agree with the world geometry and with each other."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from fuse4d.data.classes import CAR, MOVABLE, PEDESTRIAN, ROAD


def world_points(world, frame):
    """LiDAR points in the world frame, each with the pose at its own capture time."""
    T = world.ego.poses(frame.timestamp + frame.point_time.astype(np.float64)) @ world.T_body_lidar
    p = frame.points[:, :3].astype(np.float64)
    return np.einsum("nij,nj->ni", T[:, :3, :3], p) + T[:, :3, 3]


@pytest.mark.parametrize("i", [3, 60, 140])
class TestLidarGeometry:
    def test_road_points_lie_on_the_ground(self, exact_world, i):
        f = exact_world.frame(i)
        pw = world_points(exact_world, f)
        road = f.point_semantics == ROAD
        assert road.sum() > 500
        h = exact_world.terrain.height_at(pw[road, 0], pw[road, 1])
        assert np.abs(pw[road, 2] - h).max() < 1e-3

    def test_road_points_match_elevation_grid(self, exact_world, i):
        f = exact_world.frame(i)
        pw = world_points(exact_world, f)
        e = exact_world.gt_maps["elevation"]
        ij = np.floor((pw[:, :2] - e["origin"]) / e["resolution"]).astype(int)
        inside = np.all((ij >= 0) & (ij < e["height"].shape), axis=1)  # the mesh's last partial cell has none
        ij = np.where(inside[:, None], ij, 0)
        cell_road = inside & (e["semantics"][ij[:, 0], ij[:, 1]] == ROAD)
        sel = (f.point_semantics == ROAD) & cell_road
        err = np.abs(pw[sel, 2] - e["height"][ij[sel, 0], ij[sel, 1]])
        # the cell holds the max height: on the 10 % hill a 0.5 m cell spans up to 5 cm
        assert np.median(err) < 0.03 and np.percentile(err, 95) < 0.05 and err.max() < 0.06

    def test_noisy_ranges(self, default_world, exact_world, i):
        noisy, exact = default_world.frame(i), exact_world.frame(i)
        hits = len(exact.points)
        assert 0.9 * hits < len(noisy.points) < 0.99 * hits  # ~5 % dropouts
        pw = world_points(default_world, noisy)
        road = noisy.point_semantics == ROAD
        h = default_world.terrain.height_at(pw[road, 0], pw[road, 1])
        assert np.median(np.abs(pw[road, 2] - h)) < 0.02

    def test_depth_image_matches_projected_lidar(self, exact_world, i):
        f = exact_world.frame(i)
        pw = world_points(exact_world, f)[~f.point_dynamic]
        T_wc = f.T_world_body @ exact_world.T_body_cam
        pc = (pw - T_wc[:3, 3]) @ T_wc[:3, :3]
        K = exact_world.camera.K
        H, W = f.depth.shape
        z = pc[:, 2]
        front = z > 0.5
        u = K[0, 0] * pc[front, 0] / z[front] + K[0, 2]
        v = K[1, 1] * pc[front, 1] / z[front] + K[1, 2]
        inside = (u >= 0) & (u < W - 1) & (v >= 0) & (v < H - 1)   # pixel centres at integer (u, v)
        assert inside.sum() > 300
        d = map_coordinates(f.depth, [v[inside], u[inside]], order=1)
        rel = np.abs(d - z[front][inside]) / z[front][inside]
        assert np.median(rel) < 0.005
        assert (rel < 0.02).mean() > 0.8  # the rest: occlusion seen from the 0.7 m lower camera


class TestDynamicLabels:
    def test_dense_traffic_labels(self, make_world):
        w = make_world("dense_traffic")
        n_parked = len(w.parked["id"])
        seen_dyn_pts = seen_dyn_px = 0
        for i in (0, 7, 14):
            f = w.frame(i)
            dyn = f.point_dynamic
            seen_dyn_pts += dyn.sum()
            seen_dyn_px += f.dynamic_mask.sum()
            assert np.isin(f.point_semantics[dyn], MOVABLE).all()
            assert (f.point_instance[dyn] >= n_parked).all()
            # static points: stuff has no instance, parked cars keep theirs and are not dynamic
            st = ~dyn
            assert ((f.point_instance[st] == -1) | (f.point_instance[st] < n_parked)).all()
            assert (f.point_semantics[st][f.point_instance[st] >= 0] == CAR).all()
            assert np.isin(f.semantics[f.dynamic_mask], MOVABLE).all()
            # dynamic points lie inside their actor's box (grown by its motion over the sweep)
            pw = world_points(w, f)[dyn]
            ids = f.point_instance[dyn]
            b = f.boxes
            k = np.searchsorted(b["id"], ids)
            rel = pw - b["center"][k]
            c, s = np.cos(b["yaw"][k]), np.sin(b["yaw"][k])
            local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], -1)
            slack = 0.1 * np.linalg.norm(b["velocity"][k], axis=1)[:, None] + 0.05
            assert (np.abs(local) <= 0.5 * b["size"][k] + slack).all()
        assert seen_dyn_pts > 100 and seen_dyn_px > 50

    def test_boxes(self, make_world):
        w = make_world("dense_traffic")
        b = w.frame(4).boxes
        moving = np.linalg.norm(b["velocity"], axis=1) > 0.5
        n_parked = len(w.parked["id"])
        assert (~moving[:n_parked]).all() and moving[n_parked:].all()
        assert moving.sum() == 4 + 12 + 3 + 30
        assert set(np.unique(b["cls"])) == {CAR, PEDESTRIAN, 9}
        np.testing.assert_array_equal(b["id"], np.arange(len(b["id"])))
        ped = b["cls"] == PEDESTRIAN
        speed = np.linalg.norm(b["velocity"][ped], axis=1)
        assert 0.8 < speed.min() and speed.max() < 2.2
