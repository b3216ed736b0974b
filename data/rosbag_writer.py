"""Write a :class:`Sequence` as a ROS bag: ROS 1 ``.bag``, ROS 2 (sqlite3) or ROS 2 MCAP — no ROS install.

Uses the pure-Python ``rosbags`` library. Topics and types are what common
drivers publish, so other tools read our world and our readers read theirs:

============================  ==============================  =================================
topic                         type                            content
============================  ==============================  =================================
``/velodyne_points``          ``sensor_msgs/PointCloud2``     x, y, z, intensity, time (float32,
                                                              s relative to the header stamp)
``/imu/data``                 ``sensor_msgs/Imu``             angular rate, specific force
``/camera/image_raw``         ``sensor_msgs/Image``           ``rgb8``
``/camera/camera_info``       ``sensor_msgs/CameraInfo``      K, image size (no distortion)
``/tf_static``                ``tf2_msgs/TFMessage``          ``imu_link`` → ``velodyne``, ``camera``
``/ground_truth/odom``        ``nav_msgs/Odometry``           ``T_world_body`` (when known)
============================  ==============================  =================================

Header stamps are the log's own times (seconds → integer nanoseconds), shifted
by a whole number of seconds when the log starts before 0 (ROS time cannot be
negative; the synthetic world's IMU starts 0.1 s before its first frame): the
shift is :func:`time_shift`. Messages are written in time order (the bag's
receive time = header stamp).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from fuse4d.data.types import Sequence
from fuse4d.errors import DataError
from fuse4d.geometry import invert

log = logging.getLogger(__name__)

BAG_FORMATS = ("rosbag", "ros2", "mcap")
TOPICS = {"lidar": "/velodyne_points", "imu": "/imu/data", "image": "/camera/image_raw",
          "camera_info": "/camera/camera_info", "tf_static": "/tf_static", "gt": "/ground_truth/odom"}
FRAMES = {"body": "imu_link", "lidar": "velodyne", "camera": "camera", "world": "world"}


def to_ns(t: float) -> int:
    """Seconds → integer nanoseconds (ROS time)."""
    return int(round(float(t) * 1e9))


def time_shift(seq: Sequence) -> float:
    """Seconds added to every stamp of ``seq`` in a bag: 0, or the whole seconds that make its first stamp >= 0."""
    t_min = float(seq.timestamps[0])
    if seq.imu is not None and len(seq.imu):
        t_min = min(t_min, float(seq.imu.t[0]))
    return float(max(0.0, np.ceil(-t_min)))


def _quat_xyzw(R: np.ndarray) -> tuple[float, float, float, float]:
    from scipy.spatial.transform import Rotation
    q = Rotation.from_matrix(R).as_quat()
    return tuple(float(v) for v in q)


class _Msgs:
    """Message builders for one typestore (ROS 1 field names differ in case: ``K`` vs ``k``)."""

    def __init__(self, ros1: bool):
        from rosbags.typesys import Stores, get_typestore
        self.ros1 = ros1
        self.ts = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
        if ros1:  # noetic's store lacks tf2_msgs; its definition is one line
            from rosbags.typesys import get_types_from_msg
            self.ts.register(get_types_from_msg("geometry_msgs/TransformStamped[] transforms", "tf2_msgs/msg/TFMessage"))
        self.T = self.ts.types

    def serialize(self, msg, typename: str) -> bytes:
        return bytes(self.ts.serialize_ros1(msg, typename) if self.ros1 else self.ts.serialize_cdr(msg, typename))

    def header(self, t: float, frame_id: str):
        ns = to_ns(t)
        stamp = self.T["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        if self.ros1:
            return self.T["std_msgs/msg/Header"](seq=0, stamp=stamp, frame_id=frame_id)
        return self.T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    def vec3(self, v):
        return self.T["geometry_msgs/msg/Vector3"](x=float(v[0]), y=float(v[1]), z=float(v[2]))

    def quat(self, R):
        x, y, z, w = _quat_xyzw(R)
        return self.T["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)

    def pointcloud(self, t: float, points: np.ndarray, point_time: np.ndarray | None):
        PF = self.T["sensor_msgs/msg/PointField"]
        names = ["x", "y", "z", "intensity"] + (["time"] if point_time is not None else [])
        rec = np.zeros(len(points), dtype=[(n, "<f4") for n in names])
        for k, n in enumerate(names[:4]):
            rec[n] = points[:, k]
        if point_time is not None:
            rec["time"] = point_time
        fields = [PF(name=n, offset=4 * k, datatype=7, count=1) for k, n in enumerate(names)]
        step = 4 * len(names)
        return self.T["sensor_msgs/msg/PointCloud2"](
            header=self.header(t, FRAMES["lidar"]), height=1, width=len(points), fields=fields, is_bigendian=False,
            point_step=step, row_step=step * len(points), data=rec.view(np.uint8).reshape(-1), is_dense=True)

    def imu(self, t: float, acc, gyro):
        cov = np.zeros(9)
        orient_cov = cov.copy()
        orient_cov[0] = -1.0  # orientation not provided (REP 145)
        return self.T["sensor_msgs/msg/Imu"](
            header=self.header(t, FRAMES["body"]), orientation=self.quat(np.eye(3)), orientation_covariance=orient_cov,
            angular_velocity=self.vec3(gyro), angular_velocity_covariance=cov,
            linear_acceleration=self.vec3(acc), linear_acceleration_covariance=cov)

    def image(self, t: float, img: np.ndarray):
        h, w = img.shape[:2]
        return self.T["sensor_msgs/msg/Image"](header=self.header(t, FRAMES["camera"]), height=h, width=w,
                                               encoding="rgb8", is_bigendian=0, step=3 * w,
                                               data=np.ascontiguousarray(img, np.uint8).reshape(-1))

    def camera_info(self, t: float, K: np.ndarray, size: tuple[int, int]):
        P = np.hstack([K, np.zeros((3, 1))]).reshape(-1)
        roi = self.T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        kw = {"K": K.reshape(-1), "D": np.zeros(5), "R": np.eye(3).reshape(-1), "P": P}
        if not self.ros1:
            kw = {k.lower(): v for k, v in kw.items()}
        return self.T["sensor_msgs/msg/CameraInfo"](header=self.header(t, FRAMES["camera"]), height=size[1],
                                                    width=size[0], distortion_model="plumb_bob", binning_x=0,
                                                    binning_y=0, roi=roi, **kw)

    def transform(self, t: float, parent: str, child: str, T: np.ndarray):
        tf = self.T["geometry_msgs/msg/Transform"](translation=self.vec3(T[:3, 3]), rotation=self.quat(T[:3, :3]))
        return self.T["geometry_msgs/msg/TransformStamped"](header=self.header(t, parent), child_frame_id=child,
                                                            transform=tf)

    def odometry(self, t: float, T: np.ndarray):
        pose = self.T["geometry_msgs/msg/Pose"](
            position=self.T["geometry_msgs/msg/Point"](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
            orientation=self.quat(T[:3, :3]))
        zero = self.T["geometry_msgs/msg/Twist"](linear=self.vec3([0, 0, 0]), angular=self.vec3([0, 0, 0]))
        return self.T["nav_msgs/msg/Odometry"](
            header=self.header(t, FRAMES["world"]), child_frame_id=FRAMES["body"],
            pose=self.T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
            twist=self.T["geometry_msgs/msg/TwistWithCovariance"](twist=zero, covariance=np.zeros(36)))


def bag_path(out_dir: str | Path, format: str) -> Path:
    """Where :func:`write_bag` puts the bag inside ``out_dir``: ``log.bag``, or the ROS 2 folder ``log_ros2/`` / ``log_mcap/``."""
    return Path(out_dir) / {"rosbag": "log.bag", "ros2": "log_ros2", "mcap": "log_mcap"}[format]


def write_bag(seq: Sequence, out_dir: str | Path, format: str = "rosbag", progress: bool = False,
              overwrite: bool = False) -> Path:
    """Write ``seq`` as a bag under ``out_dir`` (see the module notes); returns the bag's path.

    ``format``: ``rosbag`` (ROS 1 ``log.bag``), ``ros2`` (ROS 2 folder, sqlite3
    storage) or ``mcap`` (ROS 2 folder, MCAP storage; its ``.mcap`` file is also
    readable on its own). The bag is written under a temporary name and renamed
    into place when complete.

    Raises:
        DataError: unknown format, or the bag exists and ``overwrite`` is False.
    """
    if format not in BAG_FORMATS:
        raise DataError(out_dir, f"unknown bag format {format!r}; use one of {', '.join(BAG_FORMATS)}")
    final = bag_path(out_dir, format)
    if final.exists() and not overwrite:
        raise DataError(final, "already exists; pass overwrite to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        if format == "rosbag":
            from rosbags.rosbag1 import Writer
            writer = Writer(tmp)
        else:
            from rosbags.rosbag2 import StoragePlugin, Writer
            plugin = StoragePlugin.MCAP if format == "mcap" else StoragePlugin.SQLITE3
            writer = Writer(tmp, version=9, storage_plugin=plugin)
        with writer:
            _write_messages(writer, _Msgs(format == "rosbag"), seq, progress)
        if format != "rosbag":  # the storage file is named after the temporary folder: give it the final name
            for f in tmp.iterdir():
                if f.name.startswith(tmp.name):
                    os.replace(f, tmp / (final.name + f.name[len(tmp.name):]))
            meta = tmp / "metadata.yaml"
            meta.write_text(meta.read_text().replace(tmp.name, final.name))
    except BaseException:
        _remove(tmp)
        raise
    _remove(final)
    os.replace(tmp, final)
    return final


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


def _write_messages(writer, m: _Msgs, seq: Sequence, progress: bool) -> None:
    """All messages of ``seq`` in time order: static ones first, then per frame IMU → LiDAR → camera → GT."""
    c = seq.calibration
    conn = {}

    def add(key: str, typename: str, **kw):
        conn[key] = writer.add_connection(TOPICS[key], typename, typestore=m.ts, **kw)

    add("tf_static", "tf2_msgs/msg/TFMessage", **({"latching": 1} if m.ros1 else {}))
    if "lidar" in seq.sensors:
        add("lidar", "sensor_msgs/msg/PointCloud2")
    if "imu" in seq.sensors and seq.imu is not None:
        add("imu", "sensor_msgs/msg/Imu")
    if "camera" in seq.sensors:
        add("image", "sensor_msgs/msg/Image")
        if c.K is not None:
            add("camera_info", "sensor_msgs/msg/CameraInfo")
    gt = seq.gt_poses
    if gt is not None and np.isfinite(gt).any():
        add("gt", "nav_msgs/msg/Odometry")

    def write(key: str, t: float, msg, typename: str) -> None:
        writer.write(conn[key], to_ns(t), m.serialize(msg, typename))

    shift = time_shift(seq)
    ts = seq.timestamps + shift
    imu_t = None if seq.imu is None else seq.imu.t + shift
    t0 = float(min(ts[0], imu_t[0])) if imu_t is not None and len(imu_t) else float(ts[0])
    tfs = [m.transform(t0, FRAMES["body"], FRAMES["lidar"], c.T_body_lidar)]
    if "camera" in seq.sensors:
        tfs.append(m.transform(t0, FRAMES["body"], FRAMES["camera"], c.T_body_cam))
    write("tf_static", t0, m.T["tf2_msgs/msg/TFMessage"](transforms=tfs), "tf2_msgs/msg/TFMessage")
    imu, k_imu = seq.imu if "imu" in conn else None, 0
    frames = range(len(seq))
    if progress:
        from tqdm import tqdm
        frames = tqdm(frames, desc="writing bag", unit="frame")
    for i in frames:
        f, t = seq[i], float(ts[i])
        while imu is not None and k_imu < len(imu) and imu_t[k_imu] <= t:
            write("imu", imu_t[k_imu], m.imu(imu_t[k_imu], imu.acc[k_imu], imu.gyro[k_imu]), "sensor_msgs/msg/Imu")
            k_imu += 1
        if "lidar" in conn and f.points is not None:
            write("lidar", t, m.pointcloud(t, f.points, f.point_time), "sensor_msgs/msg/PointCloud2")
        if "image" in conn and f.image is not None:
            if "camera_info" in conn:
                write("camera_info", t, m.camera_info(t, c.K, (f.image.shape[1], f.image.shape[0])),
                      "sensor_msgs/msg/CameraInfo")
            write("image", t, m.image(t, f.image), "sensor_msgs/msg/Image")
        if "gt" in conn and np.isfinite(gt[i]).all():
            write("gt", t, m.odometry(t, gt[i]), "nav_msgs/msg/Odometry")
    while imu is not None and k_imu < len(imu):
        write("imu", imu_t[k_imu], m.imu(imu_t[k_imu], imu.acc[k_imu], imu.gyro[k_imu]), "sensor_msgs/msg/Imu")
        k_imu += 1


__all__ = ["BAG_FORMATS", "TOPICS", "FRAMES", "bag_path", "write_bag", "to_ns", "time_shift"]
