"""The geometric half of fusion: LiDAR and IMU (and, later, network pose factors) → a metric trajectory.

Stages, one file each: ``deskew`` (per-point motion compensation), ``voxel_map``
(local map), ``registration`` (robust scan-to-map ICP), ``lidar_odometry``,
``imu`` (pypose preintegration), ``inertial_init`` (gravity/velocity from LiDAR +
IMU), ``pose_graph`` (pypose LM), ``loop_closure``; ``frontend``/``backend``
connect them and :class:`Estimator` is the stage object the pipeline drives.

Example:
    >>> from fuse4d.fusion.estimation import estimate_trajectory
    >>> result = estimate_trajectory(seq)           # doctest: +SKIP
    >>> result.write_tum("trajectory.txt")          # doctest: +SKIP
"""

from fuse4d.fusion.estimation.config import EstimationConfig
from fuse4d.fusion.estimation.estimator import Estimator, check_sequence, estimate_trajectory
from fuse4d.fusion.estimation.result import STATUSES, EstimationResult

__all__ = ["EstimationConfig", "EstimationResult", "Estimator", "STATUSES", "check_sequence", "estimate_trajectory"]
