"""SemanticKITTI point labels (``sequences/XX/labels/NNNNNN.label``) ↔ fuse4d classes.

A ``.label`` file holds one uint32 per point of the matching ``velodyne/*.bin``:
the lower 16 bits are the SemanticKITTI class id, the upper 16 bits the instance
id (0 = none). Moving objects have their own ids 252–259; they map to the same
fuse4d class as their static kind and set ``point_dynamic``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fuse4d.data import classes as C
from fuse4d.errors import DataError

_TO_OURS = {
    10: C.CAR, 11: C.OTHER_VEHICLE, 13: C.OTHER_VEHICLE, 15: C.OTHER_VEHICLE, 16: C.OTHER_VEHICLE,
    18: C.OTHER_VEHICLE, 20: C.OTHER_VEHICLE, 30: C.PEDESTRIAN, 31: C.OTHER_VEHICLE, 32: C.OTHER_VEHICLE,
    40: C.ROAD, 44: C.ROAD, 48: C.SIDEWALK, 49: C.TERRAIN, 50: C.BUILDING, 51: C.BUILDING, 52: C.BUILDING,
    60: C.ROAD, 70: C.VEGETATION, 71: C.VEGETATION, 72: C.TERRAIN, 80: C.POLE, 81: C.POLE,
    252: C.CAR, 253: C.OTHER_VEHICLE, 254: C.PEDESTRIAN, 255: C.OTHER_VEHICLE, 256: C.OTHER_VEHICLE,
    257: C.OTHER_VEHICLE, 258: C.OTHER_VEHICLE, 259: C.OTHER_VEHICLE,
}
#: SemanticKITTI class id (lower 16 bits) → fuse4d class, ``[260]`` uint8 (unknown ids → unlabeled)
SEMKITTI_TO_CLASS = np.zeros(260, np.uint8)
for _k, _v in _TO_OURS.items():
    SEMKITTI_TO_CLASS[_k] = _v
#: the moving classes of SemanticKITTI
MOVING_IDS = tuple(range(252, 260))
#: SemanticKITTI ground classes (road, parking, sidewalk, other-ground, lane-marking, terrain)
GROUND_IDS = (40, 44, 48, 49, 60, 72)
#: fuse4d class → SemanticKITTI id, static and moving
CLASS_TO_SEMKITTI = np.array([0, 40, 48, 50, 70, 80, 10, 30, 72, 20], np.uint32)
CLASS_TO_SEMKITTI_MOVING = np.array([0, 40, 48, 50, 70, 80, 252, 254, 72, 259], np.uint32)


def read_label(path: str | Path, n_points: int | None = None) -> np.ndarray:
    """Raw uint32 labels ``[N]`` of a ``.label`` file.

    Raises:
        DataError: unreadable, a size that is not a multiple of 4, or ``n_points`` mismatch.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot read label file: {e.strerror}") from None
    if len(raw) % 4:
        raise DataError(path, f"size {len(raw)} bytes is not a multiple of 4 (uint32 labels)")
    lab = np.frombuffer(raw, dtype="<u4")
    if n_points is not None and len(lab) != n_points:
        raise DataError(path, f"has {len(lab)} labels but the scan has {n_points} points")
    return lab


def decode(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``raw [N]`` uint32 → (fuse4d classes ``[N]`` uint8, moving ``[N]`` bool, instance ``[N]`` int32, -1 none)."""
    raw = np.asarray(raw, np.uint32)
    sem = (raw & 0xFFFF).astype(np.int64)
    inst = (raw >> 16).astype(np.int32) - 1
    cls = np.where(sem < len(SEMKITTI_TO_CLASS), SEMKITTI_TO_CLASS[np.minimum(sem, len(SEMKITTI_TO_CLASS) - 1)], 0)
    return cls.astype(np.uint8), np.isin(sem, MOVING_IDS), inst


def encode(classes: np.ndarray, dynamic: np.ndarray | None = None, instance: np.ndarray | None = None) -> np.ndarray:
    """fuse4d ``classes [N]`` (+ moving ``[N]`` bool, ``instance [N]`` int, -1 none) → raw uint32 labels."""
    cls = np.clip(np.asarray(classes, np.int64), 0, len(CLASS_TO_SEMKITTI) - 1)
    sem = CLASS_TO_SEMKITTI[cls]
    if dynamic is not None:
        sem = np.where(np.asarray(dynamic, bool), CLASS_TO_SEMKITTI_MOVING[cls], sem)
    inst = np.zeros(len(cls), np.uint32) if instance is None else (np.asarray(instance, np.int64) + 1).clip(0, 0xFFFF).astype(np.uint32)
    return (inst << 16) | sem.astype(np.uint32)


def write_label(path: str | Path, raw: np.ndarray) -> None:
    """Write raw uint32 labels ``[N]`` (little-endian)."""
    np.ascontiguousarray(raw, dtype="<u4").tofile(path)
