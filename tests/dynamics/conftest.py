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
def traffic_ious(traffic) -> tuple[float, float]:
    """MOS IoU with the default settings on :func:`traffic` (computed once): each scan's output when
    it was returned, and its final output after the backward pass's revisions (what a run stores)."""
    return mos_iou(*traffic, both=True)


@pytest.fixture(scope="session")
def traffic_full_iou(traffic_ious) -> float:
    """Final MOS IoU with the default settings on :func:`traffic`."""
    return traffic_ious[1]


def mos_iou(frames, poses, calibration, skip: int = 3, both: bool = False, **config):
    """Pooled IoU of ``point_dynamic > 0.5`` of a DynamicsStage over frames ``[skip:]``, each scan's final
    output (after the backward pass's revisions); ``both``: (as first returned, final)."""
    from fuse4d.dynamics import DynamicsConfig, DynamicsStage

    stage = DynamicsStage(DynamicsConfig(**config), calibration)
    first, final = {}, {}
    for i, f in enumerate(frames):
        out = stage.add_frame(f, poses[i])
        first[float(f.timestamp)] = final[float(f.timestamp)] = out["point_dynamic"] > 0.5
        for t, p in out.get("revised", []):
            final[float(t)] = p > 0.5
    ious = []
    for moving in (first, final):
        inter = union = 0
        for f in frames[skip:]:
            p = moving[float(f.timestamp)]
            inter += int((p & f.point_dynamic).sum())
            union += int((p | f.point_dynamic).sum())
        ious.append(inter / union)
    return tuple(ious) if both else ious[1]
