"""The built-in synthetic multi-sensor world with full ground truth.

``synthesize(seed, frames, scenario)`` returns a lazy :class:`~fuse4d.data.types.Sequence`
with camera, LiDAR and IMU, ground-truth poses, per-pixel/per-point labels,
object boxes, and static occupancy/elevation maps. ``SCENARIOS`` lists the
named presets (default, dense_traffic, camera_dark, lidar_dropout, imu_burst,
degraded).
"""

from fuse4d.data.synthetic.config import SCENARIOS, Scenario, SynthConfig
from fuse4d.data.synthetic.world import World, synthesize

__all__ = ["SCENARIOS", "Scenario", "SynthConfig", "World", "synthesize"]
