"""ROS bag reader (``"rosbag"``): ROS 1 ``.bag``, ROS 2 bag folders (sqlite3 or MCAP) and bare ``.mcap``.

Read with the pure-Python ``rosbags`` library — no ROS install. Frames are
LiDAR sweeps (``sensor_msgs/PointCloud2``); each gets the IMU samples since
the previous sweep (``sensor_msgs/Imu``) and the image nearest in time
(``sensor_msgs/Image`` or ``CompressedImage``, intrinsics from ``CameraInfo``).
A log without a LiDAR topic has one frame per image. Extrinsics come from
``/tf_static`` (body = the IMU's frame, or the LiDAR's without IMU), or from a
calibration YAML (``load_sequence(path, calib=...)``, ``--calib``). Ground-truth
poses come from a ``nav_msgs/Odometry`` / ``geometry_msgs/PoseStamped`` topic
the user names (``gt_topic=``), or from one whose name says ``ground_truth``.

Streaming: opening the bag makes one pass that keeps only stamps (parsed from
the serialised header, not deserialised) and the IMU; a frame's scan and image
are read when the frame is asked for, by seeking to their receive time. A 10 GB
bag is never loaded whole.

Topics are picked automatically when a log has one of a kind; otherwise the
error lists them with the option that picks one (``lidar_topic=``,
``imu_topic=``, ``camera_topic=``; ``fuse4d info --lidar-topic ...``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fuse4d.data.readers import _ros_msgs as rm
from fuse4d.data.registry import register_reader
from fuse4d.data.types import Calibration, Frame, ImuSamples, Sequence
from fuse4d.errors import DataError

log = logging.getLogger(__name__)

KINDS = {
    "lidar": ("sensor_msgs/msg/PointCloud2",),
    "imu": ("sensor_msgs/msg/Imu",),
    "camera": ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
    "camera_info": ("sensor_msgs/msg/CameraInfo",),
    "gt": ("nav_msgs/msg/Odometry", "geometry_msgs/msg/PoseStamped"),
}
_SUFFIXES = (".bag", ".mcap", ".db3")


def bag_inside(path: Path) -> Path | None:
    """The bag a path names: a bag file, a ROS 2 bag folder, or a folder holding exactly one of those."""
    if path.is_file():
        return path if path.suffix in _SUFFIXES else None
    if not path.is_dir():
        return None
    if (path / "metadata.yaml").is_file():
        return path
    found = [p for p in path.iterdir() if (p.is_file() and p.suffix in (".bag", ".mcap"))
             or (p.is_dir() and (p / "metadata.yaml").is_file())]
    return found[0] if len(found) == 1 else None


def detect(path: Path) -> bool:
    """True for a ``.bag`` / ``.mcap`` / ``.db3`` file, a ROS 2 bag folder, or a folder holding one bag."""
    return bag_inside(path) is not None


def _open(bag: Path):
    from rosbags.highlevel import AnyReader
    try:
        reader = AnyReader([bag])
        reader.open()
    except Exception as e:  # rosbags raises several types for a bad file (ReaderError, struct, sqlite, ...)
        raise DataError(bag, f"cannot open bag: {e}") from None
    return reader


def _pick(conns: dict[str, list], kind: str, wanted: str | None, bag: Path, required: bool = False):
    """The connection of ``kind`` to use: the named topic, or the only one of its kind."""
    cands = conns.get(kind, [])
    if wanted is not None:
        hit = [c for c in cands if c.topic == wanted]
        if not hit:
            names = ", ".join(sorted({c.topic for c in cands})) or "none"
            raise DataError(bag, f"no {kind} topic {wanted!r} (topics of that kind: {names})")
        return hit[0]
    topics = sorted({c.topic for c in cands})
    if len(topics) > 1:
        raise DataError(bag, f"several {kind} topics ({', '.join(topics)}): pick one with --{kind}-topic "
                             f"({kind}_topic=...)")
    if not topics:
        if required:
            raise DataError(bag, f"no {kind} topic in this bag")
        return None
    return cands[0]


def load(path: Path, lidar_topic: str | None = None, imu_topic: str | None = None,
         camera_topic: str | None = None, gt_topic: str | None = None) -> Sequence:
    """Open a bag as a lazy :class:`Sequence` (see the module notes).

    Raises:
        DataError: unreadable/truncated bag, no LiDAR, IMU or camera topic, several
            topics of a kind without a choice, a PointCloud2 without x/y/z,
            out-of-order stamps (named by topic and message index).
    """
    bag = bag_inside(Path(path))
    if bag is None:
        raise DataError(path, "not a ROS bag (.bag, .mcap, .db3 or a ROS 2 bag folder)")
    reader = _open(bag)
    conns: dict[str, list] = {}
    for c in reader.connections:
        for kind, types in KINDS.items():
            if c.msgtype in types:
                conns.setdefault(kind, []).append(c)
    lidar = _pick(conns, "lidar", lidar_topic, bag)
    imu_c = _pick(conns, "imu", imu_topic, bag)
    cam = _pick(conns, "camera", camera_topic, bag)
    if lidar is None and imu_c is None and cam is None:
        topics = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections) or "none"
        raise DataError(bag, f"no LiDAR (PointCloud2), IMU or camera topic; topics: {topics}")
    if gt_topic is None:
        auto = [c for c in conns.get("gt", []) if "ground_truth" in c.topic or "groundtruth" in c.topic]
        gt_c = auto[0] if len(auto) == 1 else None
    else:
        gt_c = _pick(conns, "gt", gt_topic, bag)
    info_c = None
    if cam is not None:
        ns = cam.topic.rsplit("/", 1)[0]
        infos = [c for c in conns.get("camera_info", []) if c.topic.rsplit("/", 1)[0] == ns] or conns.get("camera_info", [])
        info_c = infos[0] if infos else None
    idx = _index(reader, bag, lidar, imu_c, cam, info_c, gt_c)
    calibration = _calibration(idx, bag)
    main = "lidar" if lidar is not None else "camera" if cam is not None else None
    if main is None:
        raise DataError(bag, "an IMU-only bag has no frames: fuse4d needs a LiDAR or camera topic for frames")
    t_frames = np.asarray(idx[main]["stamp"])
    if len(t_frames) == 0:
        raise DataError(bag, f"topic {(lidar or cam).topic} has no messages")
    cam_t = np.asarray(idx["camera"]["stamp"]) if cam is not None else None
    dt = float(np.median(np.diff(t_frames))) if len(t_frames) > 1 else 0.1
    imu = None
    if imu_c is not None and idx["imu"]["t"]:
        imu = ImuSamples(np.asarray(idx["imu"]["t"]), np.asarray(idx["imu"]["acc"]), np.asarray(idx["imu"]["gyro"]))
    gt_poses = _gt_at(idx.get("gt"), t_frames, 0.5 * dt) if gt_c is not None else None
    state = {"reader": reader}

    def read_one(conn, log_ns: int, k: int):
        r = state["reader"]
        for _, _, raw in r.messages([conn], start=log_ns, stop=log_ns + 1):
            try:
                return r.deserialize(raw, conn.msgtype)
            except Exception as e:
                raise DataError(bag, f"topic {conn.topic}, message {k}: cannot decode: {e}") from None
        raise DataError(bag, f"topic {conn.topic}, message {k}: not found at its indexed time (truncated bag?)")

    def loader(i: int) -> Frame:
        f = Frame(index=i, timestamp=float(t_frames[i]))
        if lidar is not None:
            msg = read_one(lidar, idx["lidar"]["log"][i], i)
            try:
                f.points, f.point_time = rm.pointcloud2(msg)
            except ValueError as e:
                raise DataError(bag, f"topic {lidar.topic}, message {i}: {e}") from None
        if cam is not None:
            k = i if main == "camera" else int(np.argmin(np.abs(cam_t - f.timestamp)))
            if main == "camera" or abs(cam_t[k] - f.timestamp) <= 0.5 * dt:
                msg = read_one(cam, idx["camera"]["log"][k], k)
                try:
                    f.image = rm.image(msg, compressed=cam.msgtype.endswith("CompressedImage"))
                except ValueError as e:
                    raise DataError(bag, f"topic {cam.topic}, message {k}: {e}") from None
        if gt_poses is not None:
            f.T_world_body = gt_poses[i] if np.isfinite(gt_poses[i]).all() else None
        return f

    sensors = {s for s, c in (("lidar", lidar), ("imu", imu_c), ("camera", cam)) if c is not None}
    if imu is None:
        sensors.discard("imu")
    meta = {"source": str(bag), "format": "rosbag2" if reader.is2 else "rosbag1",
            "topics": {k: c.topic for k, c in (("lidar", lidar), ("imu", imu_c), ("camera", cam), ("gt", gt_c))
                       if c is not None},
            "ground_truth": ["poses"] if gt_poses is not None else []}
    name = bag.stem if bag.is_file() else bag.name
    return Sequence(t_frames, loader, calibration, sensors, imu, gt_poses, meta, name=name, path=bag)


def _index(reader, bag: Path, lidar, imu_c, cam, info_c, gt_c) -> dict:
    """One streaming pass: stamps and receive times of scans/images, all IMU samples, tf_static, K, GT."""
    idx: dict = {"lidar": {"stamp": [], "log": []}, "camera": {"stamp": [], "log": []},
                 "imu": {"t": [], "acc": [], "gyro": []}, "tf": rm.TransformTree(), "K": None, "gt": None,
                 "frames": {}}
    wanted = [c for c in (lidar, imu_c, cam, info_c, gt_c) if c is not None]
    tf_conns = [c for c in reader.connections if c.topic in ("/tf_static", "tf_static")]
    counts: dict[str, int] = {}
    gt_t, gt_T = [], []
    try:
        for conn, log_ns, raw in reader.messages(wanted + tf_conns):
            k = counts.get(conn.topic, 0)
            counts[conn.topic] = k + 1
            where = f"topic {conn.topic}, message {k}"
            if conn in tf_conns:
                for tf in reader.deserialize(raw, conn.msgtype).transforms:
                    idx["tf"].add(tf.header.frame_id, tf.child_frame_id, rm.transform_matrix(tf.transform))
                continue
            if conn is lidar or conn is cam:
                key = "lidar" if conn is lidar else "camera"
                stamp = rm.header_stamp(raw, reader.is2)
                st = idx[key]["stamp"]
                if st and stamp <= st[-1]:
                    raise DataError(bag, f"{where}: stamp {stamp:.9f} s not after the previous {st[-1]:.9f} s "
                                         "(out-of-order or duplicated messages)")
                st.append(stamp)
                idx[key]["log"].append(int(log_ns))
                if k == 0:
                    idx["frames"][key] = reader.deserialize(raw, conn.msgtype).header.frame_id
            elif conn is imu_c:
                m = reader.deserialize(raw, conn.msgtype)
                t = rm.msg_stamp(m)
                if idx["imu"]["t"] and t <= idx["imu"]["t"][-1]:
                    raise DataError(bag, f"{where}: IMU stamp {t:.9f} s not after the previous one "
                                         "(out-of-order or duplicated messages)")
                a, w = m.linear_acceleration, m.angular_velocity
                idx["imu"]["t"].append(t)
                idx["imu"]["acc"].append((a.x, a.y, a.z))
                idx["imu"]["gyro"].append((w.x, w.y, w.z))
                if k == 0:
                    idx["frames"]["imu"] = m.header.frame_id
            elif conn is info_c and idx["K"] is None:
                idx["K"] = rm.camera_info(reader.deserialize(raw, conn.msgtype))
            elif conn is gt_c:
                m = reader.deserialize(raw, conn.msgtype)
                gt_t.append(rm.msg_stamp(m))
                gt_T.append(rm.transform_matrix(m.pose.pose if hasattr(m.pose, "pose") else m.pose))
    except DataError:
        raise
    except Exception as e:  # truncated or corrupt data part-way through the bag
        raise DataError(bag, f"cannot read bag after {sum(counts.values())} messages: {e}") from None
    if gt_t:
        idx["gt"] = (np.asarray(gt_t), np.asarray(gt_T))
    return idx


def _calibration(idx: dict, bag: Path) -> Calibration:
    """From ``/tf_static`` and CameraInfo (identity where unknown; ``load_sequence(calib=...)`` overrides)."""
    fr = idx["frames"]
    body = fr.get("imu") or fr.get("lidar") or fr.get("camera")
    c = Calibration()
    for key, attr in (("lidar", "T_body_lidar"), ("camera", "T_body_cam")):
        if key in fr:
            T = idx["tf"].lookup(body, fr[key])
            if T is None:
                log.warning("%s: no /tf_static path from %s to %s; using the identity (give calib=)",
                            bag, body, fr[key])
            else:
                setattr(c, attr, T)
    if idx["K"] is not None:
        c.K, c.image_size = idx["K"]
    return c


def _gt_at(gt, t: np.ndarray, tol: float) -> np.ndarray | None:
    """Ground-truth poses ``[S, 4, 4]`` at the frame times: the nearest message within ``tol`` s, else NaN."""
    if gt is None:
        return None
    gt_t, gt_T = gt
    k = np.clip(np.searchsorted(gt_t, t), 1, max(len(gt_t) - 1, 1))
    k = np.where(np.abs(gt_t[k - 1] - t) <= np.abs(gt_t[np.minimum(k, len(gt_t) - 1)] - t), k - 1, k)
    k = np.minimum(k, len(gt_t) - 1)
    out = gt_T[k].copy()
    out[np.abs(gt_t[k] - t) > tol] = np.nan
    return out


register_reader("rosbag", detect, load, priority=-5,
                description="ROS 1 .bag, ROS 2 bag folders (sqlite3, MCAP), bare .mcap (rosbags; no ROS install)")
