"""KITTI raw OXTS (RT3003 GPS/IMU) records: IMU samples and Mercator poses.

A record is 30 numbers (``oxts/dataformat.txt``): lat lon alt roll pitch yaw
vn ve vf vl vu ax ay az af al au wx wy wz wf wl wu pos_acc vel_acc navstat
numsats posmode velmode orimode. The IMU/vehicle frame is x forward, y left, z up.

Which accelerations are body-frame: the real record in the sample data has
``ay − al = 0.360 m/s²`` with roll 0.0358 rad (g·sin(roll) = 0.350) and
``ax − af = −0.105`` with pitch 0.0090 (−g·sin(pitch) = −0.089): ``ax ay az`` /
``wx wy wz`` are in the tilted body frame, while ``af al au`` / ``wf wl wu`` are in
the level (yaw-only) frame that the ``vf vl vu`` velocities also use. The body
frame is what an IMU measures, so ``axes="body"`` is the default; ``"level"``
reproduces the kitti2bag convention.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from fuse4d.errors import DataError
from fuse4d.geometry import make_T

OXTS_FIELDS = 30
EARTH_RADIUS_M = 6378137.0
_AXES = {"body": (slice(11, 14), slice(17, 20)), "level": (slice(14, 17), slice(20, 23))}


def read_oxts(paths: list[Path]) -> np.ndarray:
    """Read OXTS text records → float64 ``[M, 30]``.

    Raises:
        DataError: a record without 30 numbers, or with NaN/inf.
    """
    out = np.empty((len(paths), OXTS_FIELDS))
    for k, p in enumerate(paths):
        try:
            v = np.array(p.read_text().split(), dtype=np.float64)
        except ValueError:
            raise DataError(p, "OXTS record is not numeric") from None
        if v.size != OXTS_FIELDS:
            raise DataError(p, f"OXTS record has {v.size} values, expected {OXTS_FIELDS}")
        if not np.isfinite(v).all():
            raise DataError(p, "OXTS record contains NaN/inf values")
        out[k] = v
    return out


def oxts_imu(records: np.ndarray, axes: str = "body") -> tuple[np.ndarray, np.ndarray]:
    """Accelerations (m/s², gravity included) and angular rates (rad/s) ``[M, 3]`` each.

    Raises:
        ValueError: ``axes`` is not ``"body"`` or ``"level"``.
    """
    if axes not in _AXES:
        raise ValueError(f"OXTS axes must be one of {sorted(_AXES)}, got {axes!r}")
    acc, gyro = _AXES[axes]
    return records[:, acc].copy(), records[:, gyro].copy()


def oxts_poses(records: np.ndarray, lat0: float | None = None) -> np.ndarray:
    """``T_merc_imu [M, 4, 4]`` from lat/lon/alt/roll/pitch/yaw (KITTI devkit Mercator).

    x east, y north, z up (altitude); ``scale = cos(lat0)`` with ``lat0`` the
    first record's latitude unless given. ``R = Rz(yaw) Ry(pitch) Rx(roll)``.
    """
    lat, lon, alt = records[:, 0], records[:, 1], records[:, 2]
    scale = np.cos(np.deg2rad(lat[0] if lat0 is None else lat0))
    tx = scale * np.deg2rad(lon) * EARTH_RADIUS_M
    ty = scale * EARTH_RADIUS_M * np.log(np.tan(np.deg2rad(90.0 + lat) / 2.0))
    R = Rotation.from_euler("ZYX", records[:, [5, 4, 3]]).as_matrix()
    return make_T(R, np.stack([tx, ty, alt], axis=1))
