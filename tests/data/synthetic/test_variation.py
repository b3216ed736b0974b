"""The seed varies what a model must generalise over; splits keep evaluation seeds unseen."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from fuse4d.data.classes import CAR, OTHER_VEHICLE, PEDESTRIAN, ROAD
from fuse4d.data.synthetic import SynthConfig, seeds_of, split_of, synthesize
from fuse4d.data.synthetic.vehicles import TYRE
from fuse4d.data.synthetic.world import road_and_drive
from fuse4d.errors import ConfigError
from fuse4d.geometry import rotation_angle

SEEDS = list(range(12))


@pytest.fixture(scope="module")
def drives():
    """Road and ego drive of seeds 0..11 (no rendering)."""
    cfg = SynthConfig()
    return {s: road_and_drive(s, cfg) for s in SEEDS}


class TestRoads:
    def test_loops_differ_in_size_shape_and_direction(self, drives):
        lengths = np.array([r.loop.length for r, _ in drives.values()])
        assert lengths.std() > 15.0 and lengths.min() > 120.0
        assert len({r.info["shape"] for r, _ in drives.values()}) >= 3
        assert {r.info["direction"] for r, _ in drives.values()} == {"cw", "ccw"}
        # no two seeds draw the same curve: rotation-invariant descriptors (curvature, distance from the centroid)
        u = np.linspace(0, 2 * np.pi, 1024, endpoint=False)
        q = [50, 75, 90, 99]
        k = np.array([np.percentile(np.abs(r.loop.curvature(u)), q) for r, _ in drives.values()])
        c = [r.loop.curve(u) for r, _ in drives.values()]
        rad = np.array([np.percentile(np.linalg.norm(p - p.mean(0), axis=1), [5, 25, 50, 75, 95]) for p in c])
        for i in range(len(k)):
            for j in range(i):
                assert np.abs(k[i] - k[j]).max() > 3e-4 or np.abs(rad[i] - rad[j]).max() > 0.2, (i, j)
        assert np.ptp(rad[:, 2]) > 5.0 and np.ptp(k[:, 0]) > 0.01  # small and large, round and boxy loops

    def test_every_loop_has_straights_and_a_side_street(self, drives):
        for seed, (road, _) in drives.items():
            loop = road.loop
            u = np.linspace(0, 2 * np.pi, 2048, endpoint=False)
            straight = np.abs(loop.curvature(u)) < 1 / 200.0
            # the start lies mid-way along the longest straight
            run = np.argmin(straight[::-1]) + np.argmin(straight)
            assert straight.mean() > 0.1 and run * loop.length / 2048 > 8.0, seed
            assert len(road.side_streets) >= 1, seed
            for st in road.side_streets:
                assert st.length >= 18.0
                # it leaves the loop: its far end is well away from the loop centreline
                end = np.asarray(st.origin) + st.length * np.asarray(st.direction)
                assert np.linalg.norm(loop.curve(u) - end, axis=1).min() > 0.8 * st.length

    def test_hills_vary(self, drives):
        ptp = [np.ptp(r.loop.height(np.linspace(0, 2 * np.pi, 512))) for r, _ in drives.values()]
        assert max(ptp) > 2.5 and np.std(ptp) > 0.3


class TestDrive:
    def test_loop_closes_each_lap(self, drives):
        """Identity first pose; back at the start pose (< 0.5 m, < 1°) at frame 185 of the 200-frame demo."""
        for seed, (road, ego) in drives.items():
            T = ego.poses(np.arange(200) / 10.0)
            np.testing.assert_allclose(T[0], np.eye(4), atol=1e-12)
            d = np.linalg.norm(T[150:, :3, 3], axis=1)
            i = 150 + int(d.argmin())
            assert d.min() < 0.5 and i == 185, seed
            assert np.degrees(rotation_angle(T[i, :3, :3])) < 1.0, seed

    def test_plausible_speeds_and_stops(self, drives):
        stopped_seeds = 0
        for seed, (road, ego) in drives.items():
            t = np.arange(-0.1, 20.0, 0.01)
            k = ego.kinematics(t)
            speed = np.linalg.norm(k["v"], axis=1)
            moving = speed > 0.5
            assert 5.0 < speed[moving].mean() and speed.max() < 20.0, seed
            assert np.linalg.norm(k["a"], axis=1).max() < 8.5, seed
            assert np.isfinite(k["omega"]).all() and np.isfinite(k["R"]).all()
            # the IMU needs a rolling start: moving and not accelerating at t = 0
            assert speed[10] > 5.0 and np.linalg.norm(k["a"][10]) < 0.05
            for t0, t1 in ego.profile.stops:
                assert 1.0 <= t1 - t0 <= 2.0
                inside = (t > t0 + 0.01) & (t < t1 - 0.01)
                assert speed[inside].max() < 1e-6
                stopped_seeds += 1
        assert 0 < stopped_seeds < len(drives)  # some seeds stop, some do not

    def test_stopped_ego_keeps_its_heading(self, drives):
        road, ego = next((r, e) for r, e in drives.values() if e.profile.stops)
        t0, t1 = ego.profile.stops[0]
        T = ego.poses(np.linspace(t0 + 0.05, t1 - 0.05, 5))
        np.testing.assert_allclose(T, np.broadcast_to(T[0], T.shape), atol=1e-9)


class TestSplits:
    def test_split_convention(self):
        assert [split_of(s) for s in (0, 10, 1, 21, 2, 9, 13)] == ["test", "test", "val", "val", "train", "train",
                                                                   "train"]
        assert seeds_of("test", 3) == [0, 10, 20]
        assert seeds_of("val", 2, start=5) == [11, 21]
        assert seeds_of("train", 3) == [2, 3, 4]
        train, test = set(seeds_of("train", 200)), set(seeds_of("test", 50)) | set(seeds_of("val", 50))
        assert not train & test
        with pytest.raises(ConfigError, match="unknown split 'dev'"):
            seeds_of("dev", 1)

    def test_split_recorded_and_round_trips_through_the_log(self, small_config, tmp_path):
        from fuse4d.data.export import export_sequence
        from fuse4d.data.registry import load_sequence

        seq = synthesize(seed=11, frames=3, config=small_config)
        assert seq.metadata["split"] == "val"
        world = seq.metadata["world"]
        assert world["loop_length_m"] > 100 and world["direction"] in ("cw", "ccw") and world["side_streets"]
        path = export_sequence(seq, tmp_path / "log", format="zarr")
        back = load_sequence(path)
        assert back.metadata["split"] == "val" and back.metadata["world"] == world

    def test_cli_picks_a_seed_of_a_split(self, tmp_path):
        from fuse4d.cli import app

        runner = CliRunner()
        r = runner.invoke(app, ["synth", "--split", "test", "--index", "1", "--frames", "2", "--out",
                                str(tmp_path / "w")])
        assert r.exit_code == 0, r.output
        assert "seed 10" in r.output and "split test" in r.output
        r = runner.invoke(app, ["synth", "--split", "test", "--seed", "3", "--frames", "2", "--out",
                                str(tmp_path / "x")])
        assert r.exit_code != 0 and "not both" in r.output


class TestAppearance:
    def test_vehicles_look_like_vehicles(self, make_world):
        w = make_world("dense_traffic", seed=12)
        a = w.actors
        kinds = set(a.kind)
        assert {"car", "van", "truck", "pedestrian"} <= kinds
        for k in range(len(a)):
            parts = a.parts.actor == k
            colours = a.parts.color[parts]
            if a.cls[k] in (CAR, OTHER_VEHICLE):
                assert parts.sum() >= 4 and (colours == TYRE).all(1).sum() >= 2  # body, cabin/cargo, wheels
            else:
                assert a.cls[k] == PEDESTRIAN and parts.sum() == 2  # body, head
        cars = a.cls == CAR
        assert np.ptp(a.size[cars, 0]) > 0.8 and np.ptp(a.size[cars, 2]) > 0.4  # cars and vans
        assert np.ptp(a.size[a.cls == PEDESTRIAN, 2]) > 0.1
        paint = a.parts.color[np.isin(a.parts.actor, np.flatnonzero(cars))]
        assert len(np.unique(paint.round(3), axis=0)) >= 6

    def test_buildings_differ_between_seeds(self, make_world):
        from fuse4d.data.classes import BUILDING

        colours = [np.unique(make_world("default", seed=s).prims.color[
            make_world("default", seed=s).prims.cls == BUILDING].round(3), axis=0) for s in (0, 12)]
        assert len(colours[0]) >= 4 and len(colours[1]) >= 4
        assert not np.array_equal(colours[0], colours[1])


    def test_lighting_and_facades_vary(self, make_world):
        from dataclasses import replace

        from fuse4d.data.classes import BUILDING
        from fuse4d.data.synthetic.texture import FACADES

        worlds = [make_world("default", seed=s) for s in (0, 2, 3, 12)]
        lights = [w.lighting.summary() for w in worlds]
        assert len({x["sun_azimuth_deg"] for x in lights}) == 4 and np.ptp([x["exposure"] for x in lights]) > 0.1
        assert np.ptp([x["sun_elevation_deg"] for x in lights]) > 5.0
        st = worlds[0].prims.style[worlds[0].prims.cls == BUILDING]
        assert len(np.unique(st[:, 5])) >= 3 and set(np.unique(st[:, 5]).astype(int)) <= set(range(len(FACADES)))
        assert len(np.unique(st[:, 6:9].round(3), axis=0)) >= 3 and np.ptp(st[:, 0]) > 0.3  # tints, storeys
        # exposure and sun change the picture of the same scene
        w = worlds[0]
        T = w.ego.poses(np.array([0.0]))[0] @ w.T_body_cam
        light = w.lighting
        imgs = [w.camera.render(w.static, w.actors, T, 0.0, np.random.default_rng(0), 0.0, False, lt)["image"]
                for lt in (replace(light, gain=0.8), replace(light, gain=1.2),
                           replace(light, sun=(0.0, 0.0, 1.0)))]
        assert imgs[1].mean() > imgs[0].mean() + 10
        assert np.abs(imgs[2].astype(float) - imgs[0].astype(float) * 1.2 / 0.8).mean() > 3


class TestGroundTruthOnNewRoads:
    @pytest.fixture(scope="class")
    @classmethod
    def junction_world(cls, small_config):
        """A clockwise seed's exact world, and the frame closest to its first junction."""
        from dataclasses import replace

        from fuse4d.data.synthetic import World
        seed = next(s for s in range(2, 40) if split_of(s) == "train"
                    and road_and_drive(s, SynthConfig())[0].info["direction"] == "cw")
        cfg = replace(small_config, lidar_noise=False, camera_noise=False, imu_noise=False)
        w = World(seed, cfg, frames=200)
        st = w.road.side_streets[0]
        u = w.ego.param(w.times)[0] % (2 * np.pi)
        gap = np.abs(np.angle(np.exp(1j * (u - st.u0))))
        return w, int(gap.argmin())

    def test_side_street_is_road_on_the_ground(self, junction_world):
        w, i = junction_world
        f = w.frame(i)
        T = w.ego.poses(f.timestamp + f.point_time.astype(np.float64)) @ w.T_body_lidar
        pw = np.einsum("nij,nj->ni", T[:, :3, :3], f.points[:, :3].astype(np.float64)) + T[:, :3, 3]
        st = w.road.side_streets[0]
        along, lat = st.local(pw[:, 0], pw[:, 1])
        d, _ = w.terrain.lateral(pw[:, 0], pw[:, 1])
        on_street = (along > 9.0) & (along < st.length - 1) & (np.abs(lat) < st.half_width - 0.3) & (np.abs(d) > 9.0)
        ground = on_street & (pw[:, 2] < w.terrain.height_at(pw[:, 0], pw[:, 1]) + 0.05)
        assert ground.sum() > 50
        assert (f.point_semantics[ground] == ROAD).mean() > 0.99
        np.testing.assert_allclose(pw[ground, 2], st.height, atol=0.35)  # flat street, blended near the loop

    def test_points_on_vehicles_lie_in_their_boxes(self, junction_world):
        w, i = junction_world
        f = w.frame(i)
        veh = np.isin(f.point_semantics, (CAR, OTHER_VEHICLE))
        assert veh.sum() > 20
        assert (f.point_instance[veh] >= 0).all()
        T = w.ego.poses(f.timestamp + f.point_time.astype(np.float64)) @ w.T_body_lidar
        pw = np.einsum("nij,nj->ni", T[:, :3, :3], f.points[:, :3].astype(np.float64)) + T[:, :3, 3]
        b = f.boxes
        k = np.searchsorted(b["id"], f.point_instance[veh])
        rel = pw[veh] - b["center"][k]
        c, s = np.cos(b["yaw"][k]), np.sin(b["yaw"][k])
        local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], -1)
        slack = 0.1 * np.linalg.norm(b["velocity"][k], axis=1)[:, None] + 0.02
        assert (np.abs(local) <= 0.5 * b["size"][k] + slack).all()
        assert np.isin(f.semantics[f.dynamic_mask], (CAR, OTHER_VEHICLE, PEDESTRIAN)).all()
