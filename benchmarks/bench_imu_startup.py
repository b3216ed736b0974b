"""IMU-only dead reckoning on EuRoC ``ForOnlineAlignment`` (V1_02_medium IMU): fuse4d vs plain integration.

Usage (from the repository root)::

    python benchmarks/bench_imu_startup.py

The anchor is the 20-line strapdown integration of DESIGN.md: gravity and gyro
bias from the mean of the first second of IMU, zero velocity, then plain
integration. fuse4d runs ``estimate_trajectory`` on the log (IMU only: rest
detection, levelling and biases over the whole rest, zero-velocity update
while resting). Errors are position RMSE over the frames of the first 2, 5 and
10 s, with both trajectories anchored on the first ground-truth pose (an IMU
cannot know the absolute yaw); the SE(3)-aligned ATE is printed where the
ground truth moves enough to align.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from fuse4d import load_sequence, metrics
from fuse4d.data.types import Sequence
from fuse4d.fusion.estimation import estimate_trajectory
from fuse4d.fusion.estimation.imu import propagate_path
from fuse4d.fusion.estimation.imu_startup import _level

EUROC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "euroc_kimera_vio_tests" / "tests" / \
    "data" / "ForOnlineAlignment" / "real_data"
SPANS = (2.0, 5.0, 10.0)


def plain_integration(seq: Sequence, init: float = 1.0) -> np.ndarray:
    """``T_world_body [S, 4, 4]``: gravity and gyro bias from the first ``init`` s of IMU, then strapdown."""
    imu, t = seq.imu, seq.timestamps
    m = imu.t <= imu.t[0] + init
    R, bg = _level(imu.acc[m].mean(0)), imu.gyro[m].mean(0)
    T, v, tc = np.eye(4), np.zeros(3), imu.t[0]
    T[:3, :3] = R
    out = []
    for tk in t:
        if tk > tc:
            _, P, V = propagate_path(imu, tc, tk, T[:3, :3], T[:3, 3], v, bg)
            T, v, tc = P[-1], V[-1], tk
        out.append(T)
    return np.stack(out)


def anchored_errors(est: np.ndarray, gt: np.ndarray, t: np.ndarray, spans=SPANS) -> list[float]:
    """Position RMSE (m) over the first ``span`` s for each span, both anchored on the first pose."""
    A = gt[0] @ np.linalg.inv(est[0]) @ est
    out = []
    for s in spans:
        k = np.searchsorted(t, t[0] + s, side="right")
        out.append(float(np.sqrt(np.mean(np.sum((A[:k, :3, 3] - gt[:k, :3, 3]) ** 2, 1)))))
    return out


def aligned_ate(est: np.ndarray, gt: np.ndarray, t: np.ndarray, span: float) -> float | None:
    """SE(3)-aligned ATE (m) over the first ``span`` s, or None when the ground truth barely moves."""
    k = np.searchsorted(t, t[0] + span, side="right")
    try:
        return metrics.ate(est[:k], gt[:k])["rmse"]
    except Exception:  # degenerate: the platform rests
        return None


def main() -> None:
    """Print the table (fuse4d and plain integration, anchored error at 2/5/10 s and the ratio)."""
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    if not EUROC.exists():
        raise SystemExit(f"EuRoC sample not found at {EUROC}")
    seq = load_sequence(EUROC)
    gt, t = seq.gt_poses, seq.timestamps
    res = estimate_trajectory(seq)
    plain = plain_integration(seq)
    f, p = anchored_errors(res.T_world_body, gt, t), anchored_errors(plain, gt, t)
    print("| span s | fuse4d m | plain integration m | ratio | fuse4d ATE se3 m | plain ATE se3 m |")
    print("|---|---|---|---|---|---|")
    for s, a, b in zip(SPANS, f, p):
        fa, pa = aligned_ate(res.T_world_body, gt, t, s), aligned_ate(plain, gt, t, s)
        fmt = lambda x: "n/a (at rest)" if x is None else f"{x:.3f}"  # noqa: E731
        print(f"| {s:.0f} | {a:.3f} | {b:.3f} | {a / b:.2f} | {fmt(fa)} | {fmt(pa)} |")
    print(f"rest at the start: {res.info.get('rest_start_s', 0):.2f} s; frames {len(seq)}")


if __name__ == "__main__":
    main()
