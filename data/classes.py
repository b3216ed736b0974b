"""The semantic class table shared by every part of fuse4d."""

from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "unlabeled", "road", "sidewalk", "building", "vegetation",
    "pole", "car", "pedestrian", "terrain", "other-vehicle",
)
NUM_CLASSES = len(CLASS_NAMES)
UNLABELED, ROAD, SIDEWALK, BUILDING, VEGETATION, POLE, CAR, PEDESTRIAN, TERRAIN, OTHER_VEHICLE = range(NUM_CLASSES)

#: classes that can move (their points never enter the static maps when moving)
MOVABLE = (CAR, PEDESTRIAN, OTHER_VEHICLE)
#: classes a ground vehicle can drive or walk on
GROUND = (ROAD, SIDEWALK, TERRAIN)

#: RGB colour per class, uint8 ``[NUM_CLASSES, 3]`` (SemanticKITTI-like palette)
CLASS_COLORS = np.array([
    [0, 0, 0], [255, 0, 255], [75, 0, 75], [255, 200, 0], [0, 175, 0],
    [255, 240, 150], [100, 150, 245], [255, 30, 30], [150, 240, 80], [80, 30, 180],
], dtype=np.uint8)


def colorize(labels: np.ndarray) -> np.ndarray:
    """Map class ids ``[...]`` to RGB ``[..., 3]`` uint8; unknown ids render black."""
    labels = np.asarray(labels)
    safe = np.where((labels >= 0) & (labels < NUM_CLASSES), labels, 0).astype(np.int64)
    return CLASS_COLORS[safe]
