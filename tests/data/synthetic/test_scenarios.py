"""Scenarios: each degradation is present exactly in its recorded frame span."""

from __future__ import annotations

import numpy as np
import pytest

from fuse4d.data.synthetic import SCENARIOS, SynthConfig, synthesize
from fuse4d.data.synthetic.config import degradation_spans, resolve_config
from fuse4d.data.synthetic.imu import exact_imu
from fuse4d.errors import ConfigError


def spans(world, name):
    return [s for s in world.sequence().degradations if s["name"] == name]


def in_span(world, name):
    m = np.zeros(world.frames, bool)
    for s in spans(world, name):
        m[s["start"]:s["stop"]] = True
    return m


class TestSpans:
    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    def test_spans_recorded(self, scenario):
        cfg = resolve_config(scenario)
        sp = degradation_spans(cfg, 200)
        names = {s["name"] for s in sp}
        expected = {"default": set(), "dense_traffic": set(), "camera_dark": {"camera_dark"},
                    "lidar_dropout": {"lidar_dropout", "lidar_sector"}, "imu_burst": {"imu_burst"},
                    "degraded": {"camera_dark", "lidar_dropout", "lidar_sector", "imu_burst"}}[scenario]
        assert names == expected
        for s in sp:
            assert 0 <= s["start"] < s["stop"] <= 200
        if scenario == "degraded":  # separate spans
            marks = np.zeros(200, int)
            for s in sp:
                marks[s["start"]:s["stop"]] += 1
            assert marks.max() == 1

    def test_tiny_sequences_still_get_a_span(self):
        sp = degradation_spans(resolve_config("camera_dark"), 3)
        assert sp[0]["stop"] - sp[0]["start"] >= 1 and sp[0]["stop"] <= 3

    def test_unknown_scenario(self):
        with pytest.raises(ConfigError, match="unknown synthetic scenario 'foggy'"):
            synthesize(frames=2, scenario="foggy")

    def test_bad_config(self):
        with pytest.raises(ConfigError, match="lidar_dropout"):
            SynthConfig(lidar_dropout=1.5)
        with pytest.raises(ConfigError, match="unknown degradation"):
            SynthConfig(degradations=(("rain", 0.1, 0.2),))

    def test_config_from_dict_rejects_unknown_fields(self):
        with pytest.raises(ConfigError, match="unknown SynthConfig fields"):
            SynthConfig.from_dict({"lidar_beams": 16, "fog": 1})

    def test_user_config_wins_over_scenario_traffic(self):
        cfg = resolve_config("dense_traffic", SynthConfig(pedestrians=3))
        assert cfg.pedestrians == 3 and cfg.cars_oncoming == 12


class TestDegradedScenario:
    @pytest.fixture(scope="class")
    @classmethod
    def world(cls, make_world):
        return make_world("degraded", frames=20)

    def test_flags(self, world):
        for i in range(world.frames):
            assert world.frame(i).flags == world.active(i)

    def test_camera_dark(self, world):
        dark = in_span(world, "camera_dark")
        assert dark.any() and not dark.all()
        for i in range(world.frames):
            f = world.frame(i)
            if dark[i]:
                assert f.image.mean() < 15 and f.image.std() > 2  # near black, noisy
                assert (f.depth > 0).mean() > 0.5  # ground truth unaffected
            elif i % 4 == 0:
                assert f.image.mean() > 30

    def test_lidar_dropout_and_sector(self, world):
        gone = in_span(world, "lidar_dropout")
        sector = in_span(world, "lidar_sector")
        assert gone.any() and sector.any() and not (gone & sector).any()
        a0, a1 = world.cfg.lidar_sector_deg
        for i in range(world.frames):
            f = world.frame(i)
            if gone[i]:
                assert f.points is None and f.point_semantics is None and "lidar" not in f.sensors
                assert f.image is not None
                continue
            az = np.degrees(np.arctan2(f.points[:, 1], f.points[:, 0]))
            lost = ((az >= a0 + 1) & (az < a1 - 1)).sum()
            if sector[i]:
                assert lost == 0
            else:
                assert lost > 100

    def test_imu_burst(self, world):
        seq = world.sequence()
        imu = seq.imu
        np.testing.assert_allclose(np.diff(imu.t), 1 / 200, atol=1e-12)  # stream stays continuous
        res = imu.acc - exact_imu(world.ego, imu.t).acc
        burst = in_span(world, "imu_burst")
        t = seq.timestamps
        in_burst = np.zeros(len(imu), bool)
        for i in np.flatnonzero(burst):
            in_burst |= (imu.t > (t[i - 1] if i else -np.inf)) & (imu.t <= t[i])
        assert in_burst.sum() >= 20
        noisy = np.diff(res[in_burst], axis=0).std()
        calm = np.diff(res[~in_burst], axis=0).std()
        assert noisy > 10 * calm
        jump = np.abs(res[in_burst].mean(axis=0) - res[~in_burst].mean(axis=0)).max()
        assert jump > 0.2  # bias jump, m/s²


@pytest.mark.parametrize("scenario", ["camera_dark", "lidar_dropout", "imu_burst"])
def test_single_scenarios_degrade_their_span(make_world, scenario):
    w = make_world(scenario, frames=10)
    for s in w.sequence().degradations:
        f = w.frame(s["start"])
        assert s["name"] in f.flags
        if s["name"] == "camera_dark":
            assert f.image.mean() < 15
        if s["name"] == "lidar_dropout":
            assert f.points is None
    assert not w.frame(0).flags
