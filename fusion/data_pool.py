"""A pool of rendered synthetic frames at the model's resolution, for training.

Rendering runs at ~20 frames/s per core, too slow to do per step, so training first renders
``pool_seeds × pool_frames`` frames of TRAIN seeds once (cached as ``.npz`` under
``TrainConfig.cache_dir``) and then samples windows from them (``fusion/train.py``).
Arrays per seed (F frames): ``image [F,3,H,W]`` uint8, ``depth [F,H,W]`` float16 m (ground
truth), ``semantics``/``dynamic [F,H,W]`` uint8, ``lidar_view [F,H,W]`` float16 m and
``view_az [F,H,W]`` uint8 (azimuth bin of each projected point), ``range [F,4,R,C]`` float16,
``range_sem``/``range_dyn [F,R,C]`` uint8, ``has_lidar [F]``, ``T_world_body [F,4,4]``, the
IMU samples of each frame (``imu_t/imu_acc/imu_gyro`` padded ``[F,M,...]`` with ``imu_n [F]``),
and ``T_body_cam``/``T_body_lidar``. ``lidar_view`` holds the points moved to the camera's stamp
with the ground-truth sweep motion (:func:`fuse4d.fusion.inputs.camera_points`), as inference
does with the LiDAR odometry's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch.nn.functional as F
import torch

from fuse4d.encoders.lidar import range_image, sparse_depth
from fuse4d.fusion.config import ModelConfig, TrainConfig
from fuse4d.fusion.inputs import ImageWarp, camera_points, lidar_motions

log = logging.getLogger(__name__)
POOL_VERSION = 2  # 2: lidar_view deskewed to the camera stamp
LOG_FRAMES = 200


def train_seeds(n: int) -> list[int]:
    """The first ``n`` synthetic seeds of the TRAIN split (``data.synthetic.split_of``)."""
    try:
        from fuse4d.data.synthetic import split_of
    except ImportError:          # contract: seed % 10 in {0, 1} is test/val
        def split_of(seed: int) -> str:
            return {0: "test", 1: "val"}.get(seed % 10, "train")
    out, s = [], 0
    while len(out) < n:
        if split_of(s) == "train":
            out.append(s)
        s += 1
    return out


def _nearest(x: np.ndarray, warp: ImageWarp) -> np.ndarray:
    return warp.depth(x.astype(np.float32)).numpy()


def render_frame(frame, calib, cfg: ModelConfig, warp: ImageWarp, K: np.ndarray,
                 motion: tuple[np.ndarray, float] | None = None) -> dict[str, np.ndarray]:
    """One synthetic frame → the pool's arrays (see module docstring); ``motion`` is the LiDAR's
    ``(T_prev_cur, dt)`` over the sweep (None = points projected as captured)."""
    H, W = cfg.image_size
    R, C = cfg.range_size
    out = {"image": np.round(warp.image(frame.image).numpy() * 255).astype(np.uint8),
           "depth": _nearest(frame.depth, warp).astype(np.float16),
           "semantics": _nearest(frame.semantics, warp).astype(np.uint8),
           "dynamic": _nearest(frame.dynamic_mask, warp).astype(np.uint8),
           "T_world_body": np.asarray(frame.T_world_body, np.float64)}
    pts = frame.points
    has = pts is not None and len(pts) > 0
    out["has_lidar"] = np.bool_(has)
    if has:
        img, r, c = range_image(pts, cfg.range_size, calib.lidar_fov_deg)
        rng = np.linalg.norm(pts[:, :3], axis=1)
        order = np.argsort(-rng, kind="stable")
        pix = (r * C + c)[order]
        sem = np.zeros(R * C, np.uint8)
        dyn = np.zeros(R * C, np.uint8)
        sem[pix] = frame.point_semantics[order]
        dyn[pix] = frame.point_dynamic[order]
        T = calib.T_cam_lidar
        p = camera_points(frame, motion) @ T[:3, :3].T + T[:3, 3]
        az = (np.arctan2(pts[:, 1], pts[:, 0]) + np.pi) / (2 * np.pi) * 255.999
        view, vaz = sparse_depth(p, K, cfg.image_size, az.astype(np.uint8))
        out.update(range=img.astype(np.float16), range_sem=sem.reshape(R, C), range_dyn=dyn.reshape(R, C),
                   lidar_view=view.astype(np.float16), view_az=vaz)
    else:
        out.update(range=np.zeros((4, R, C), np.float16), range_sem=np.zeros((R, C), np.uint8),
                   range_dyn=np.zeros((R, C), np.uint8), lidar_view=np.zeros((H, W), np.float16),
                   view_az=np.zeros((H, W), np.uint8))
    return out


def render_log(seed: int, scenario: str, start: int, frames: int, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Render frames ``[start, start + frames)`` of a synthetic log into pool arrays."""
    from fuse4d.data.synthetic import synthesize
    seq = synthesize(seed, frames=LOG_FRAMES, scenario=scenario)
    calib = seq.calibration
    warp = ImageWarp.fit((calib.image_size[1], calib.image_size[0]), cfg.image_size)
    K = warp.K(calib.K)
    rows, imus = [], []
    lo = max(start - 1, 0)
    near = [seq[i] for i in range(lo, min(start + frames + 1, len(seq)))]
    motions = lidar_motions(np.stack([g.T_world_body @ calib.T_body_lidar for g in near]),
                            np.array([g.timestamp for g in near]))
    for i in range(start, start + frames):
        f = seq[i]
        rows.append(render_frame(f, calib, cfg, warp, K, motions[i - lo]))
        imus.append((f.imu.t, f.imu.acc, f.imu.gyro) if f.imu is not None else (np.zeros(0),) * 3)
    d = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    M = max(len(t) for t, _, _ in imus)
    d["imu_n"] = np.array([len(t) for t, _, _ in imus])
    d["imu_t"] = np.zeros((frames, M))
    d["imu_acc"] = np.zeros((frames, M, 3))
    d["imu_gyro"] = np.zeros((frames, M, 3))
    for j, (t, a, g) in enumerate(imus):
        d["imu_t"][j, :len(t)], d["imu_acc"][j, :len(t)], d["imu_gyro"][j, :len(t)] = t, a.reshape(-1, 3), g.reshape(-1, 3)
    d["T_body_cam"], d["T_body_lidar"] = calib.T_body_cam, calib.T_body_lidar
    return d


def pool_plan(tc: TrainConfig) -> list[tuple[int, str, int]]:
    """``(seed, scenario, start)`` of each pool log, deterministic from the train config."""
    rng = np.random.default_rng([tc.seed, 7])
    return [(s, tc.scenarios[k % len(tc.scenarios)], int(rng.integers(0, LOG_FRAMES - tc.pool_frames + 1)))
            for k, s in enumerate(train_seeds(tc.pool_seeds))]


def build_pool(tc: TrainConfig, cfg: ModelConfig, echo=print, workers: int = 2) -> list[dict[str, np.ndarray]]:
    """Render (or read from the cache) every pool log; returns one dict of arrays per log.

    Logs not in the cache are rendered ``workers`` at a time (separate processes: training
    itself runs on one thread, so the second core of a 2-core machine renders too).
    """
    plan = pool_plan(tc)
    pool: list = [None] * len(plan)
    paths: list = [None] * len(plan)
    for k, (seed, scenario, start) in enumerate(plan):
        key = json.dumps([POOL_VERSION, seed, scenario, start, tc.pool_frames, cfg.image_size, cfg.range_size])
        if tc.cache_dir:
            paths[k] = Path(tc.cache_dir) / f"log_{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
            if paths[k].is_file():
                try:
                    with np.load(paths[k]) as z:
                        pool[k] = {n: z[n] for n in z.files}
                except Exception:      # a broken cache file is re-rendered
                    pool[k] = None
    todo = [k for k in range(len(plan)) if pool[k] is None]

    def done(k: int, d: dict) -> None:
        seed, scenario, start = plan[k]
        echo(f"rendered pool log {k + 1}/{len(plan)}: seed {seed} {scenario} frames {start}-{start + tc.pool_frames - 1}")
        if paths[k] is not None:
            paths[k].parent.mkdir(parents=True, exist_ok=True)
            tmp = paths[k].with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **d)
            os.replace(tmp, paths[k])
        pool[k] = d

    if len(todo) > 1 and workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn")) as ex:
            futures = {k: ex.submit(render_log, *plan[k], tc.pool_frames, cfg) for k in todo}
            for k in todo:
                done(k, futures[k].result())
    else:
        for k in todo:
            done(k, render_log(*plan[k], tc.pool_frames, cfg))
    return pool
