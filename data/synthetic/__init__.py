"""The built-in synthetic multi-sensor world with full ground truth.

``synthesize(seed, frames, scenario)`` returns a lazy :class:`~fuse4d.data.types.Sequence`
with camera, LiDAR and IMU, ground-truth poses, per-pixel/per-point labels,
object boxes, and static occupancy/elevation maps. ``SCENARIOS`` lists the
named presets (default, dense_traffic, camera_dark, lidar_dropout, imu_burst,
degraded). ``split_of(seed)`` names a seed's dataset split (``seed % 10``: 0 test,
1 val, else train), recorded in every log's ``metadata["split"]``; ``seeds_of(split, n)``
lists seeds of a split. Training uses train seeds only; held-out figures use val/test.
"""

from fuse4d.data.synthetic.config import SCENARIOS, Scenario, SynthConfig
from fuse4d.data.synthetic.world import SPLITS, World, seeds_of, split_of, synthesize

__all__ = ["SCENARIOS", "SPLITS", "Scenario", "SynthConfig", "World", "seeds_of", "split_of", "synthesize"]
