"""Moving things: LiDAR moving-object segmentation, camera dynamic masks, object tracks.

``DynamicsStage`` is what the pipeline drives; see :mod:`fuse4d.dynamics.stage`.
"""

from fuse4d.dynamics.config import DynamicsConfig
from fuse4d.dynamics.stage import DynamicsStage

__all__ = ["DynamicsConfig", "DynamicsStage"]
