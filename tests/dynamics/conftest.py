"""Shared fixtures of the dynamics tests: a short dense-traffic log (held-out seed) rendered once."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def traffic():
    """20 frames of ``dense_traffic`` seed 20 (a test-split seed): frames without images, GT poses, calibration."""
    from fuse4d.data.synthetic import synthesize

    seq = synthesize(seed=20, frames=20, scenario="dense_traffic")
    frames = []
    for i in range(len(seq)):
        f = seq[i]
        f.image = f.depth = f.semantics = None
        frames.append(f)
    return frames, np.asarray(seq.gt_poses), seq.calibration


@pytest.fixture(scope="session")
def traffic_full_iou(traffic) -> float:
    """MOS IoU with the default settings on :func:`traffic` (computed once)."""
    return mos_iou(*traffic)


def mos_iou(frames, poses, calibration, skip: int = 3, **config) -> float:
    """Pooled IoU of ``point_dynamic > 0.5`` of a DynamicsStage over frames ``[skip:]``."""
    from fuse4d.dynamics import DynamicsConfig, DynamicsStage

    stage = DynamicsStage(DynamicsConfig(**config), calibration)
    inter = union = 0
    for i, f in enumerate(frames):
        p = stage.add_frame(f, poses[i])["point_dynamic"] > 0.5
        if i >= skip:
            inter += int((p & f.point_dynamic).sum())
            union += int((p | f.point_dynamic).sum())
    return inter / union
