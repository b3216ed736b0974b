"""Decoding ROS messages into fuse4d arrays: PointCloud2, Image/CompressedImage, stamps, transforms.

Pure numpy on the deserialised message objects of the ``rosbags`` library (no
ROS install). Errors are ``ValueError`` with a short reason; the bag reader
turns them into a DataError naming the file, topic and message index.
"""

from __future__ import annotations

import io
import struct

import numpy as np

#: sensor_msgs/PointField datatypes → numpy
_PF_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
#: per-point time fields the common drivers write, in order of preference
#: (Velodyne ``time``, Ouster ``t``, Hesai/Robosense ``timestamp``, Livox ``offset_time``)
TIME_FIELDS = ("time", "t", "timestamp", "offset_time", "time_stamp")
INTENSITY_FIELDS = ("intensity", "reflectivity", "i")


def header_stamp(raw: bytes | memoryview, ros2: bool) -> float:
    """Header stamp (s) read straight from a serialised message that starts with a std_msgs/Header.

    ROS 1: ``uint32 seq, uint32 sec, uint32 nsec``; ROS 2 (CDR): a 4-byte
    encapsulation header, then ``int32 sec, uint32 nanosec``.
    """
    if ros2:
        little = bytes(raw[1:2]) == b"\x01"
        sec, nsec = struct.unpack_from("<iI" if little else ">iI", raw, 4)
    else:
        sec, nsec = struct.unpack_from("<II", raw, 4)
    return stamp_seconds(sec, nsec)


def stamp_seconds(sec: int, nsec: int) -> float:
    """ROS time → float seconds (the same rounding everywhere, so equal stamps stay equal)."""
    return (int(sec) * 1_000_000_000 + int(nsec)) / 1e9


def msg_stamp(msg) -> float:
    """``msg.header.stamp`` in seconds."""
    s = msg.header.stamp
    return stamp_seconds(s.sec, getattr(s, "nanosec", getattr(s, "nsec", 0)))


def pointcloud2(msg) -> tuple[np.ndarray, np.ndarray | None]:
    """A ``sensor_msgs/PointCloud2`` → points ``[N, 4]`` float32 (x, y, z, intensity) and per-point
    time ``[N]`` float32 seconds relative to the header stamp (None without a time field).

    Non-finite points (organised clouds mark missing returns with NaN) are
    dropped; the remaining points keep their order. Integer time fields are
    nanoseconds; absolute times (epoch seconds or nanoseconds) are made relative.

    Raises:
        ValueError: no x/y/z field, or a data buffer shorter than its declared size.
    """
    fields = {f.name: f for f in msg.fields}
    if not {"x", "y", "z"} <= set(fields):
        raise ValueError(f"PointCloud2 without x/y/z fields (has {', '.join(fields) or 'none'})")
    n = int(msg.width) * int(msg.height)
    step = int(msg.point_step)
    data = np.asarray(msg.data, dtype=np.uint8)
    if len(data) < n * step:
        raise ValueError(f"PointCloud2 data holds {len(data)} bytes, {n} points of {step} bytes need {n * step}")
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for f in fields.values():
        if f.datatype in _PF_TYPES and int(getattr(f, "count", 1) or 1) == 1:
            names.append(f.name)
            formats.append(order + _PF_TYPES[f.datatype])
            offsets.append(int(f.offset))
    rec = np.frombuffer(data[:n * step].tobytes(), dtype=np.dtype({"names": names, "formats": formats,
                                                                   "offsets": offsets, "itemsize": step}), count=n)
    xyz = np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float32)
    inten = next((rec[k] for k in INTENSITY_FIELDS if k in rec.dtype.names), None)
    pts = np.zeros((n, 4), np.float32)
    pts[:, :3] = xyz
    if inten is not None:
        pts[:, 3] = inten.astype(np.float32)
    keep = np.isfinite(xyz).all(axis=1)
    tname = next((k for k in TIME_FIELDS if k in rec.dtype.names), None)
    ptime = None
    if tname is not None:
        raw = rec[tname]
        t = raw.astype(np.float64)
        if np.issubdtype(raw.dtype, np.integer):
            t = t * 1e-9  # nanoseconds (Ouster t, Livox offset_time)
        if len(t) and np.nanmedian(t[keep]) > 1e6:  # absolute epoch time (Hesai, Robosense): relative to the header
            t = t - msg_stamp(msg)
        ptime = t.astype(np.float32)
    if not keep.all():
        pts = pts[keep]
        ptime = None if ptime is None else ptime[keep]
    return pts, ptime


def image(msg, compressed: bool) -> np.ndarray:
    """A ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8) or ``CompressedImage`` (JPEG/PNG)
    → uint8 RGB ``[H, W, 3]``.

    Raises:
        ValueError: an unsupported encoding or undecodable data.
    """
    if compressed:
        from PIL import Image, UnidentifiedImageError
        try:
            im = Image.open(io.BytesIO(np.asarray(msg.data, np.uint8).tobytes()))
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot decode compressed image ({msg.format}): {e}") from None
    h, w, enc = int(msg.height), int(msg.width), str(msg.encoding).lower()
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc1": 1, "8uc3": 3}.get(enc)
    if channels is None:
        raise ValueError(f"unsupported image encoding {msg.encoding!r} (rgb8, bgr8, rgba8, bgra8, mono8)")
    data = np.asarray(msg.data, np.uint8)
    step = int(msg.step) or w * channels
    if len(data) < h * step:
        raise ValueError(f"image data holds {len(data)} bytes, {h} rows of {step} need {h * step}")
    arr = data[:h * step].reshape(h, step)[:, :w * channels].reshape(h, w, channels)
    if channels == 1:
        return np.repeat(arr, 3, axis=2)
    if enc.startswith("bgr"):
        arr = arr[..., 2::-1]
    return np.ascontiguousarray(arr[..., :3])


def camera_info(msg) -> tuple[np.ndarray, tuple[int, int]]:
    """``sensor_msgs/CameraInfo`` → ``K [3, 3]`` and ``(width, height)``."""
    K = np.asarray(getattr(msg, "k", None) if hasattr(msg, "k") else msg.K, dtype=np.float64).reshape(3, 3)
    return K, (int(msg.width), int(msg.height))


def transform_matrix(tf) -> np.ndarray:
    """``geometry_msgs/Transform`` (or Pose) → ``[4, 4]``."""
    from scipy.spatial.transform import Rotation
    tr = getattr(tf, "translation", None) or getattr(tf, "position")
    q = getattr(tf, "rotation", None) or getattr(tf, "orientation")
    T = np.eye(4)
    if q.x == q.y == q.z == q.w == 0:
        raise ValueError("zero quaternion")
    T[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    T[:3, 3] = [tr.x, tr.y, tr.z]
    return T


class TransformTree:
    """Static transforms ``T_parent_child`` from ``/tf_static``; :meth:`lookup` chains them either way."""

    def __init__(self):
        self.edges: dict[tuple[str, str], np.ndarray] = {}

    def add(self, parent: str, child: str, T_parent_child: np.ndarray) -> None:
        """Record one transform (frame ids without a leading ``/``)."""
        p, c = parent.lstrip("/"), child.lstrip("/")
        self.edges[(p, c)] = T_parent_child
        self.edges[(c, p)] = np.linalg.inv(T_parent_child)

    def lookup(self, target: str, source: str) -> np.ndarray | None:
        """``T_target_source`` ``[4, 4]`` (maps points from source to target), or None when not connected."""
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return np.eye(4)
        frontier, seen = [(target, np.eye(4))], {target}
        while frontier:
            node, T = frontier.pop()
            for (a, b), E in self.edges.items():
                if a == node and b not in seen:
                    T_new = T @ E
                    if b == source:
                        return T_new
                    seen.add(b)
                    frontier.append((b, T_new))
        return None
