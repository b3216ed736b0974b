"""Sensor selection: a view of a sequence that hides some of its sensors.

``fuse4d run --sensors camera,imu`` on a log that also has a LiDAR must behave
exactly as if the LiDAR were not there: its frames carry no points, its
``sensors`` set lacks ``lidar``, and no stage can read it by accident.
"""

from __future__ import annotations

from dataclasses import replace

from fuse4d.data.types import SENSORS, Frame, Sequence
from fuse4d.errors import ConfigError


def parse_sensors(text: str | None) -> frozenset[str] | None:
    """``"camera,imu"`` → ``{"camera", "imu"}``; None or ``""`` → None (all).

    Raises:
        ConfigError: an unknown sensor name.
    """
    if not text:
        return None
    names = frozenset(s.strip() for s in text.split(",") if s.strip())
    bad = sorted(names - set(SENSORS))
    if bad:
        raise ConfigError(f"unknown sensor(s) {', '.join(bad)} in --sensors; choose from {', '.join(SENSORS)}")
    return names


def with_sensors(seq: Sequence, sensors: set[str] | frozenset[str] | None) -> Sequence:
    """A view of ``seq`` that keeps only ``sensors`` (None = all it has).

    Dropped sensors are removed from every frame (``image``; ``points`` and
    ``point_time``; ``imu``) and from ``seq.sensors``/``seq.imu``. A measured
    depth image (``metadata["depth_sensor"]``) goes with the camera. Ground-truth
    layers stay. Asking for a sensor the log lacks is not an error: it is simply
    absent (the intersection is kept).
    """
    if sensors is None:
        return seq
    keep = frozenset(sensors) & seq.sensors
    if keep == seq.sensors:
        return seq
    inner = seq._loader
    depth_sensor = bool(seq.metadata.get("depth_sensor"))

    def load(i: int) -> Frame:
        f = inner(i)
        changes = {}
        if "camera" not in keep:
            changes["image"] = None
            if depth_sensor:
                changes["depth"] = None
        if "lidar" not in keep:
            changes.update(points=None, point_time=None)
        if "imu" not in keep:
            changes["imu"] = None
        return replace(f, **changes) if changes else f

    meta = dict(seq.metadata, sensors_used=sorted(keep), sensors_all=sorted(seq.sensors))
    if "camera" not in keep and depth_sensor:
        meta["depth_sensor"] = False
    return Sequence(seq._timestamps, load, seq.calibration, keep, seq.imu if "imu" in keep else None,
                    seq._gt_poses, meta, seq.name, seq.path, seq.gt_maps, _indices=seq.indices)
