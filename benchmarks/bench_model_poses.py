"""Poses with the fusion model on held-out synthetic seeds: what its pose factors give the
back-end for each sensor subset, against the geometric (no-model) path in the same run.

Usage (from the repository root)::

    python benchmarks/bench_model_poses.py                        # test seeds 0, 10, 20 + val 1
    python benchmarks/bench_model_poses.py --seeds 0,10 --frames 100 --checkpoint runs/tiny/model.pt
    python benchmarks/bench_model_poses.py --rows imu,camera+imu  # only those rows (names as below)

Rows per seed (ATE RMSE after SE(3) alignment, metres, and as % of distance travelled):

- ``imu`` (no model): IMU dead reckoning, the anchor camera+IMU must halve;
- ``camera+imu`` (model): the goal is ATE ≤ 1 % of distance and ≤ ½ of ``imu``;
- ``camera`` (model): metric scale from a Sim(3) alignment (goal within 10 % of 1) and ATE;
- ``all, geometric`` vs ``all, model`` on the ``degraded`` scenario (goal: model ≤ geometric).

Translation comes from depth odometry on the model's predicted depth (``fusion/estimation/depth_odometry.py``),
rescaled by the IMU where there is one; the model's own factors bridge the rest. The camera rows also print
the model's depth scale: the median of predicted / ground-truth depth over valid pixels (up to 80 m), per seed
— scale error in depth is what limits camera-only metric scale.

Seeds must be val/test (``split_of``): the model never trained on them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fuse4d import metrics
from fuse4d.config import load_config
from fuse4d.data.synthetic import split_of, synthesize
from fuse4d.pipeline import Pipeline

ROWS = (("imu", "default", "imu", False), ("camera+imu", "default", "camera,imu", True),
        ("camera", "default", "camera", True), ("all, geometric", "degraded", None, False),
        ("all, model", "degraded", None, True))


def path_length(T: np.ndarray) -> float:
    """Distance travelled (m) along poses ``[S, 4, 4]``."""
    return float(np.linalg.norm(np.diff(T[:, :3, 3], axis=0), axis=1).sum())


def score(T_est: np.ndarray, T_gt: np.ndarray) -> dict:
    """ATE (SE(3) and Sim(3) aligned, m), the Sim(3) scale and the path length of the frames with a pose."""
    ok = np.isfinite(T_est).all((1, 2))
    if ok.sum() < 3:
        return {"ate": float("nan"), "ate_sim3": float("nan"), "scale": float("nan"), "dist": path_length(T_gt)}
    _, _, scale = metrics.align(T_est[ok], T_gt[ok], "sim3")
    return {"ate": metrics.ate(T_est[ok], T_gt[ok], align="se3")["rmse"],
            "ate_sim3": metrics.ate(T_est[ok], T_gt[ok], align="sim3")["rmse"],
            "scale": float(scale), "dist": path_length(T_gt[ok]), "covered": float(ok.mean())}


class DepthScaleRecorder:
    """A predictor wrapper that records, per frame, median(predicted / ground-truth depth) on valid pixels."""

    def __init__(self, inner):
        self.inner, self.ratios = inner, []

    def predict(self, window, *args, **kwargs):
        """The inner predictor's ``predict``, recording the depth ratio of each frame with a camera."""
        wp, state = self.inner.predict(window, *args, **kwargs)
        for k in range(len(window)):
            gt = window[k].depth
            if wp.depth is not None and gt is not None:
                ok = (gt > 0) & (gt < 80) & (wp.depth[k] > 0)
                if ok.any():
                    self.ratios.append(float(np.median(wp.depth[k][ok] / gt[ok])))
        return wp, state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,10,20,1")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default=None, help="comma-separated row names to run (default: all), e.g. 'camera+imu'")
    a = ap.parse_args()
    rows = ROWS if a.rows is None else tuple(r for r in ROWS if r[0] in a.rows.split(","))
    if not rows:
        raise SystemExit(f"--rows {a.rows!r} names no row of {[r[0] for r in ROWS]}")
    torch.set_num_threads(a.threads)
    seeds = [int(s) for s in a.seeds.split(",")]
    for s in seeds:
        if split_of(s) == "train":
            raise SystemExit(f"seed {s} is a training seed: pick val/test seeds (seed % 10 in (0, 1))")
    table: dict[str, list[dict]] = {}
    logs = {}
    for seed in seeds:
        for name, scen, sensors, model in rows:
            key = (seed, scen)
            if key not in logs:
                logs[key] = synthesize(seed, frames=a.frames, scenario=scen)
            seq = logs[key]
            cfg = load_config(run={"use_model": model, "sensors": sensors,
                                   **({"checkpoint": a.checkpoint} if a.checkpoint else {})})
            t0 = time.perf_counter()
            pipe = Pipeline(cfg)
            rec = DepthScaleRecorder(pipe.predictor()) if model and sensors and "camera" in sensors else None
            if rec is not None:
                pipe = Pipeline(cfg, predictor=rec)
            res = pipe.estimate(seq)
            r = score(np.asarray(res.T_world_body), seq.gt_poses)
            r["time_s"] = time.perf_counter() - t0
            r["depth_ratio"] = float(np.median(rec.ratios)) if rec is not None and rec.ratios else float("nan")
            r["vi_scale"] = res.info.get("depth_scale", {}).get("scale", float("nan"))
            table.setdefault(name, []).append(r)
            print(f"seed {seed:3d} {scen:9s} {name:15s} ATE {r['ate']:.3f} m ({100 * r['ate'] / r['dist']:.2f} % of "
                  f"{r['dist']:.0f} m)  sim3 {r['ate_sim3']:.3f} m  scale {r['scale']:.3f}  depth/GT {r['depth_ratio']:.3f}  "
                  f"IMU scale fit {r['vi_scale']:.3f}  {r['time_s']:.0f} s", flush=True)
    print(f"\n| sensors | scenario | ATE m (median over seeds {a.seeds}) | % of distance | Sim(3) scale | ATE Sim(3) m |")
    print("|---|---|---|---|---|---|")
    for name, scen, _, _ in rows:
        rs = table[name]
        med = lambda k: float(np.median([r[k] for r in rs]))  # noqa: E731
        pct = float(np.median([100 * r["ate"] / r["dist"] for r in rs]))
        print(f"| {name} | {scen} | {med('ate'):.3f} | {pct:.2f} | {med('scale'):.3f} | {med('ate_sim3'):.3f} |")
    if "camera+imu" in table and "imu" in table:
        ci, imu = [r["ate"] for r in table["camera+imu"]], [r["ate"] for r in table["imu"]]
        print(f"\ncamera+imu / imu ATE ratio per seed: {', '.join(f'{c / i:.2f}' for c, i in zip(ci, imu))} (goal ≤ 0.5)")
    if "all, geometric" in table and "all, model" in table:
        geo, mod = [r["ate"] for r in table["all, geometric"]], [r["ate"] for r in table["all, model"]]
        print(f"degraded model / geometric ATE per seed: {', '.join(f'{m / g:.2f}' for m, g in zip(mod, geo))} (goal ≤ 1)")
    if "camera+imu" in table:
        pct = [100 * r["ate"] / r["dist"] for r in table["camera+imu"]]
        print(f"camera+imu ATE % of distance per seed: {', '.join(f'{p:.2f}' for p in pct)} (goal ≤ 1)")
        fits = ", ".join(f"{r['vi_scale']:.3f}" for r in table["camera+imu"])
        print(f"camera+imu IMU scale fit per seed: {fits}")
    if "camera" in table:
        cam_scale = ", ".join(f"{r['scale']:.3f}" for r in table["camera"])
        cam_depth = ", ".join(f"{r['depth_ratio']:.3f}" for r in table["camera"])
        print(f"camera Sim(3) scale per seed: {cam_scale} (goal within 10 %)")
        print(f"camera depth median ratio to GT per seed: {cam_depth}")


if __name__ == "__main__":
    main()
