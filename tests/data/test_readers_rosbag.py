"""ROS bags without ROS: the synthetic world written as ROS 1, ROS 2 (sqlite3, MCAP) and bare MCAP,
read back against ground truth; and every kind of bad bag gives one DataError naming file/topic/message."""

from __future__ import annotations

import numpy as np
import pytest

from fuse4d.data.registry import detect_format, load_sequence
from fuse4d.data.rosbag_writer import BAG_FORMATS, TOPICS, _Msgs, time_shift, write_bag
from fuse4d.data.synthetic import synthesize
from fuse4d.errors import DataError

pytest.importorskip("rosbags")


@pytest.fixture(scope="module")
def world():
    return synthesize(seed=3, frames=6, scenario="default")


@pytest.fixture(scope="module")
def bags(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("bags")
    paths = {fmt: write_bag(world, out / fmt, fmt) for fmt in BAG_FORMATS}
    paths["bare_mcap"] = next(paths["mcap"].glob("*.mcap"))
    return paths


@pytest.mark.parametrize("kind", ["rosbag", "ros2", "mcap", "bare_mcap"])
def test_bag_round_trip_matches_the_world(world, bags, kind):
    seq = load_sequence(bags[kind])
    assert detect_format(bags[kind]) == "rosbag"
    assert len(seq) == len(world) and seq.sensors == world.sensors
    shift = time_shift(world)
    assert shift == 1.0  # the world's IMU starts 0.1 s before its first frame; ROS time cannot be negative
    np.testing.assert_allclose(seq.timestamps, world.timestamps + shift, atol=1e-12)
    np.testing.assert_allclose(seq.imu.t, world.imu.t + shift, atol=1e-12)
    np.testing.assert_array_equal(seq.imu.acc, world.imu.acc)
    np.testing.assert_array_equal(seq.imu.gyro, world.imu.gyro)
    c, w = seq.calibration, world.calibration
    np.testing.assert_allclose(c.T_body_lidar, w.T_body_lidar, atol=1e-12)
    np.testing.assert_allclose(c.T_body_cam, w.T_body_cam, atol=1e-12)
    np.testing.assert_array_equal(c.K, w.K)
    np.testing.assert_allclose(seq.gt_poses, world.gt_poses, atol=1e-12)
    for i in (0, 4):
        f, g = seq[i], world[i]
        np.testing.assert_array_equal(f.points, g.points)
        np.testing.assert_array_equal(f.point_time, g.point_time)
        np.testing.assert_array_equal(f.image, g.image)
        np.testing.assert_allclose(f.imu.t, g.imu.t + shift, atol=1e-12)


def test_bag_folder_with_sidecars_is_found_and_several_bags_are_refused(bags, tmp_path):
    assert detect_format(bags["rosbag"].parent) == "rosbag"  # folder holding one bag
    (tmp_path / "a.bag").write_bytes(bags["rosbag"].read_bytes())
    (tmp_path / "b.bag").write_bytes(bags["rosbag"].read_bytes())
    with pytest.raises(DataError, match="unknown log layout"):
        load_sequence(tmp_path)


def test_truncated_bag_is_one_line_naming_the_file(bags, tmp_path):
    data = bags["rosbag"].read_bytes()
    bad = tmp_path / "cut.bag"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.bag") as e:
        load_sequence(bad)[0]
    assert "\n" not in str(e.value)


def _write_custom(path, ros1: bool, msgs):
    """A bag with the given ``(topic, typename, t, msg)`` messages, in the given order."""
    m = _Msgs(ros1)
    if ros1:
        from rosbags.rosbag1 import Writer
        w = Writer(path)
    else:
        from rosbags.rosbag2 import Writer
        w = Writer(path, version=9)
    with w:
        conns = {}
        for topic, typename, t, msg in msgs:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, typename, typestore=m.ts)
            w.write(conns[topic], int(round(t * 1e9)), m.serialize(msg(m), typename))
    return path


def test_bag_without_sensor_topics(tmp_path):
    bag = _write_custom(tmp_path / "odd.bag", True, [
        ("/odom", "nav_msgs/msg/Odometry", 1.0, lambda m: m.odometry(1.0, np.eye(4)))])
    with pytest.raises(DataError, match=r"odd.bag.*no LiDAR \(PointCloud2\), IMU or camera topic.*/odom"):
        load_sequence(bag)


def test_pointcloud_without_xyz_names_topic_and_message(tmp_path):
    def cloud(m):
        msg = m.pointcloud(1.0, np.zeros((3, 4), np.float32), None)
        for f in msg.fields:
            if f.name == "x":
                f.name = "u"
        return msg
    bag = _write_custom(tmp_path / "noxyz.bag", True, [("/points", "sensor_msgs/msg/PointCloud2", 1.0, cloud)])
    seq = load_sequence(bag)
    with pytest.raises(DataError, match=r"noxyz.bag.*topic /points, message 0: PointCloud2 without x/y/z"):
        seq[0]


def test_out_of_order_messages_name_topic_and_index(tmp_path):
    pts = np.zeros((3, 4), np.float32)
    msgs = [("/points", "sensor_msgs/msg/PointCloud2", t, (lambda m, s=s: m.pointcloud(s, pts, None)))
            for t, s in ((1.0, 1.0), (1.1, 1.2), (1.2, 1.1))]  # header stamps go back at message 2
    bag = _write_custom(tmp_path / "order", False, msgs)
    with pytest.raises(DataError, match=r"topic /points, message 2: stamp .* not after"):
        load_sequence(bag)


def test_several_lidar_topics_need_a_choice(tmp_path):
    pts = np.ones((5, 4), np.float32)
    msgs = [(topic, "sensor_msgs/msg/PointCloud2", t, (lambda m, t=t: m.pointcloud(t, pts, None)))
            for t in (1.0, 1.1) for topic in ("/front", "/rear")]
    bag = _write_custom(tmp_path / "two.bag", True, msgs)
    with pytest.raises(DataError, match=r"several lidar topics \(/front, /rear\).*--lidar-topic"):
        load_sequence(bag)
    seq = load_sequence(bag, lidar_topic="/rear")
    assert len(seq) == 2 and seq.metadata["topics"]["lidar"] == "/rear"
    np.testing.assert_array_equal(seq[1].points, pts)


def test_point_time_fields_of_common_drivers():
    """Velodyne float s, Ouster uint32 ns relative, Hesai float64 absolute s — all become relative seconds."""
    from types import SimpleNamespace as NS

    from fuse4d.data.readers._ros_msgs import pointcloud2
    n = 4
    rel = np.array([0.0, 0.025, 0.05, 0.075])
    stamp = NS(sec=1_700_000_000, nanosec=500_000_000)
    for name, dt, values in (("time", "<f4", rel), ("t", "<u4", rel * 1e9),
                             ("timestamp", "<f8", 1_700_000_000.5 + rel), ("offset_time", "<u4", rel * 1e9)):
        rec = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), (name, dt)])
        rec["x"] = [1, 2, np.nan, 4]
        rec[name] = values
        code = {"<f4": 7, "<u4": 6, "<f8": 8}[dt]
        fields = [NS(name=k, offset=rec.dtype.fields[k][1], datatype=c, count=1)
                  for k, c in (("x", 7), ("y", 7), ("z", 7), (name, code))]
        msg = NS(fields=fields, width=n, height=1, point_step=rec.dtype.itemsize, is_bigendian=False,
                 data=rec.view(np.uint8), header=NS(stamp=stamp))
        pts, t = pointcloud2(msg)
        assert pts.shape == (3, 4)  # the NaN point is dropped, order kept
        np.testing.assert_allclose(t, rel[[0, 1, 3]], atol=2e-6, err_msg=name)


def test_topics_table_is_what_drivers_publish():
    assert TOPICS["lidar"] == "/velodyne_points" and TOPICS["imu"] == "/imu/data"


# -- a folder of PCD / PLY scans ----------------------------------------------------------------

def _write_scans(folder, world, suffix: str, names: str):
    import open3d as o3d
    folder.mkdir()
    stamps = []
    for i in range(len(world)):
        f = world[i]
        t = 1_700_000_000.0 + float(world.timestamps[i])
        pc = o3d.t.geometry.PointCloud()
        pc.point.positions = o3d.core.Tensor(f.points[:, :3])
        pc.point.intensity = o3d.core.Tensor(f.points[:, 3:4])
        pc.point.time = o3d.core.Tensor(f.point_time.reshape(-1, 1))
        name = f"{t:.6f}" if names == "stamped" else f"{i:06d}"
        o3d.t.io.write_point_cloud(str(folder / f"{name}{suffix}"), pc)
        stamps.append(f"{t:.6f}")
    if names != "stamped":
        (folder / "timestamps.txt").write_text("\n".join(stamps) + "\n")


@pytest.mark.parametrize("suffix,names", [(".pcd", "stamped"), (".ply", "numbered")])
def test_scan_folder_is_a_lidar_only_log(world, tmp_path, suffix, names):
    _write_scans(tmp_path / "scans", world, suffix, names)
    seq = load_sequence(tmp_path / "scans")
    assert detect_format(tmp_path / "scans") == "scan_folder"
    assert seq.sensors == {"lidar"} and len(seq) == len(world)
    np.testing.assert_allclose(seq.timestamps - seq.timestamps[0], world.timestamps - world.timestamps[0], atol=2e-6)
    f, g = seq[3], world[3]
    np.testing.assert_array_equal(f.points, g.points)
    np.testing.assert_array_equal(f.point_time, g.point_time)


def test_scan_folder_errors(world, tmp_path):
    _write_scans(tmp_path / "s", world, ".pcd", "numbered")
    (tmp_path / "s" / "timestamps.txt").write_text("1.0\n2.0\n")
    with pytest.raises(DataError, match=r"timestamps.txt: has 2 timestamps for 6 scans"):
        load_sequence(tmp_path / "s")
    (tmp_path / "s" / "timestamps.txt").unlink()
    with pytest.raises(DataError, match="scans have no time: add timestamps.txt"):
        load_sequence(tmp_path / "s")
    (tmp_path / "s" / "timestamps.txt").write_text("\n".join(str(float(i)) for i in range(6)))
    (tmp_path / "s" / "000002.pcd").write_text("garbage")
    seq = load_sequence(tmp_path / "s")
    with pytest.raises(DataError, match=r"000002.pcd: cannot read a point cloud"):
        seq[2]


# -- the whole pipeline on a bag -----------------------------------------------------------------

def _run_roundtrip(world, tmp_path, fmt):
    from fuse4d.config import load_config
    from fuse4d.data.export import export_sequence
    from fuse4d.pipeline import Pipeline
    cfg = load_config(run={"use_model": False, "write_plots": False})
    export_sequence(world, tmp_path / "zarr", "zarr")
    ref = Pipeline(cfg).run(load_sequence(tmp_path / "zarr"), tmp_path / "run_zarr")
    export_sequence(world, tmp_path / fmt, fmt)
    # extrinsics from the calibration YAML beside the bag: /tf_static quaternions lose the last bits
    seq = load_sequence(tmp_path / fmt, calib=tmp_path / fmt / "calib.yaml")
    res = Pipeline(cfg).run(seq, tmp_path / f"run_{fmt}")
    np.testing.assert_allclose(res.t, ref.t + time_shift(world), atol=1e-12)
    # the same trajectory: the 1 s stamp shift (ROS time cannot be negative) changes the float rounding
    # of every dt by ~1e-16 s, which the iterative back-end carries to well under a micrometre
    assert np.abs(res.T_world_body - ref.T_world_body).max() < 1e-6


def test_pipeline_on_a_ros2_bag_matches_the_zarr_log(world, tmp_path):
    _run_roundtrip(world, tmp_path, "ros2")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["rosbag", "mcap"])
def test_pipeline_on_bags_matches_the_zarr_log(world, tmp_path, fmt):
    _run_roundtrip(world, tmp_path, fmt)
