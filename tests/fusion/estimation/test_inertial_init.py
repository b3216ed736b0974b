"""LiDAR-inertial initialisation: gravity, velocity and gyro bias from poses + IMU while driving."""

from __future__ import annotations

import numpy as np
import pytest

from fuse4d.fusion.estimation.imu import preintegrate_many
from fuse4d.fusion.estimation.inertial_init import initialise, track_velocity


@pytest.mark.parametrize("frames", [11, 21])
def test_gravity_velocity_from_noisy_poses(synthetic, frames):
    """1-2 s on the curving synthetic road (4 m/s² centripetal), 1 cm position noise."""
    seq = synthetic(200)  # only ground truth and the IMU stream are used: nothing is rendered
    gt, t = seq.gt_poses[:frames + 1], seq.timestamps[:frames + 1]
    rng = np.random.default_rng(0)
    R, p = gt[:frames, :3, :3], gt[:frames, :3, 3] + rng.normal(0, 0.01, (frames, 3))
    pre = preintegrate_many(seq.imu, t[:frames - 1], t[1:frames])
    st = initialise(R, p, pre)
    tilt = np.degrees(np.arccos(-st.gravity[2] / np.linalg.norm(st.gravity)))
    assert tilt < 0.6 and np.linalg.norm(st.gravity) == pytest.approx(9.81)
    v_true = (gt[frames, :3, 3] - gt[frames - 2, :3, 3]) / (t[frames] - t[frames - 2])  # central difference
    assert np.linalg.norm(st.velocities[-1] - v_true) < 0.3
    assert st.residual < 0.02
    deltas = [(q.dt, *q.corrected(st.gyro_bias, q.ba)[1:]) for q in pre]
    v_track = track_velocity(R, p, deltas, st.gravity)
    np.testing.assert_allclose(v_track, st.velocities[-1], atol=0.05)


def test_needs_three_poses(synthetic):
    seq = synthetic(200)
    pre = preintegrate_many(seq.imu, seq.timestamps[:1], seq.timestamps[1:2])
    with pytest.raises(ValueError, match="K >= 3"):
        initialise(seq.gt_poses[:2, :3, :3], seq.gt_poses[:2, :3, 3], pre)
