"""Training windows from the frame pool, with modality dropout and corruption.

Each window gets a sensor subset (the batch shares it) and, per modality with probability
``corrupt_prob``, a corruption over a random span of frames: a dark or blurred camera,
LiDAR sector loss, heavy LiDAR thinning or whole scans dropped, IMU noise and bias bursts.
The corruption severity is known here, so ``gate_target = 1 - severity`` supervises the
gates (see ``fusion/gating.py``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fuse4d.encoders.imu import imu_features
from fuse4d.fusion.config import ModelConfig, TrainConfig
from fuse4d.fusion.inputs import T_body_ref, reference_frame

#: (sensor subset, probability) of a training step
SUBSETS = ((frozenset({"camera", "lidar", "imu"}), 0.35), (frozenset({"camera", "lidar"}), 0.15),
           (frozenset({"camera", "imu"}), 0.12), (frozenset({"camera"}), 0.15),
           (frozenset({"lidar", "imu"}), 0.1), (frozenset({"lidar"}), 0.08), (frozenset({"imu"}), 0.05))


class _Calib:
    def __init__(self, log):
        self.T_body_cam, self.T_body_lidar = log["T_body_cam"], log["T_body_lidar"]


def choose_sensors(rng: np.random.Generator) -> set[str]:
    """A sensor subset drawn from :data:`SUBSETS`."""
    p = np.array([w for _, w in SUBSETS])
    return set(SUBSETS[rng.choice(len(SUBSETS), p=p / p.sum())][0])


def _span(rng, S):
    a = int(rng.integers(0, S))
    return a, int(rng.integers(a + 1, S + 1))


def _blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(np.ceil(2 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
    img = F.conv2d(F.pad(img, (r, r, 0, 0), mode="replicate"), k, groups=3)
    return F.conv2d(F.pad(img, (0, 0, r, r), mode="replicate"), k.transpose(2, 3), groups=3)


def _window(log, rng, tc: TrainConfig, cfg: ModelConfig, sensors: set[str], S: int) -> tuple[dict, dict]:
    Fn = len(log["image"])
    stride = 1 if rng.random() < 0.8 or (S - 1) * 2 + 1 > Fn - 1 else 2
    start = int(rng.integers(1 if Fn > (S - 1) * stride + 1 else 0, Fn - (S - 1) * stride))
    idx = start + stride * np.arange(S)
    sev = np.zeros((S, 4), np.float32)
    inp: dict = {}
    ref = reference_frame(sensors)
    if "camera" in sensors:
        img = torch.from_numpy(log["image"][idx]).float() / 255.0
        img = (img * rng.uniform(0.8, 1.2) + rng.uniform(-0.05, 0.05)).clamp(0, 1)
        if rng.random() < tc.corrupt_prob:
            a, b = _span(rng, S)
            if rng.random() < 0.6:
                noise = torch.from_numpy(rng.normal(3 / 255, 4 / 255, img[a:b].shape).astype(np.float32))
                img[a:b] = (img[a:b] * rng.uniform(0.02, 0.08) + noise).clamp(0, 1)
                sev[a:b, 0] = 1.0
            else:
                img[a:b] = _blur(img[a:b], rng.uniform(1.0, 2.5))
                sev[a:b, 0] = 0.5
        inp["image"] = img
    has = log["has_lidar"][idx].copy()
    if "lidar" in sensors:
        rimg = torch.from_numpy(log["range"][idx].astype(np.float32))
        view = torch.from_numpy(log["lidar_view"][idx].astype(np.float32))
        if rng.random() < tc.corrupt_prob:
            a, b = _span(rng, S)
            kind = rng.random()
            C = rimg.shape[-1]
            if kind < 0.4:
                width, az0 = rng.uniform(90, 180), rng.uniform(0, 360)
                cols = ((np.arange(C) + 0.5) / C * 360 - az0) % 360 < width
                rimg[a:b, :, :, torch.from_numpy(cols)] = 0
                vaz = (log["view_az"][idx[a:b]].astype(np.float32) + 0.5) / 256 * 360
                view[a:b][torch.from_numpy((vaz - az0) % 360 < width)] = 0
                sev[a:b, 1] = width / 360
            elif kind < 0.75:
                keep = rng.uniform(0.02, 0.15)
                rimg[a:b] *= torch.from_numpy(rng.random((b - a, 1) + rimg.shape[2:]) < keep)
                view[a:b] *= torch.from_numpy(rng.random(view[a:b].shape) < keep)
                sev[a:b, 1] = 0.8
            else:
                has[a:b] = False
        rimg[~torch.from_numpy(has)] = 0
        view[~torch.from_numpy(has)] = 0
        inp["range"], inp["range_valid"] = rimg, torch.from_numpy(has)
        if "camera" in sensors:
            inp["lidar_view"] = view
    if "imu" in sensors:
        R = T_body_ref(_Calib(log), ref)[:3, :3].T
        samples = []
        burst = _span(rng, S) if rng.random() < tc.corrupt_prob else (0, 0)
        for j, i in enumerate(idx):
            n = int(log["imu_n"][i])
            if stride == 2 and i > 0:       # samples since the previous window frame
                n2 = int(log["imu_n"][i - 1])
                t = np.concatenate([log["imu_t"][i - 1, :n2], log["imu_t"][i, :n]])
                acc = np.concatenate([log["imu_acc"][i - 1, :n2], log["imu_acc"][i, :n]])
                gyr = np.concatenate([log["imu_gyro"][i - 1, :n2], log["imu_gyro"][i, :n]])
            else:
                t, acc, gyr = log["imu_t"][i, :n], log["imu_acc"][i, :n].copy(), log["imu_gyro"][i, :n].copy()
            if burst[0] <= j < burst[1]:
                acc = acc + rng.normal(0, rng.uniform(2, 8), acc.shape) + rng.normal(0, 2.0, 3)
                gyr = gyr + rng.normal(0, rng.uniform(0.2, 1.0), gyr.shape) + rng.normal(0, 0.2, 3)
                sev[j, 2] = 1.0
            samples.append((t, acc, gyr) if len(t) >= 2 else None)
        feats, ok = imu_features(samples, cfg.imu_bins, R)
        inp["imu"], inp["imu_valid"] = torch.from_numpy(feats), torch.from_numpy(ok)
    T = log["T_world_body"]
    prev = np.where(idx - stride >= 0, idx - stride, idx)
    rel = np.linalg.inv(T[prev]) @ T[idx]
    Tbr = T_body_ref(_Calib(log), ref)
    rel = np.linalg.inv(Tbr) @ rel @ Tbr
    rel[idx - stride < 0] = np.nan
    tgt = {"depth": torch.from_numpy(log["depth"][idx].astype(np.float32)),
           "semantics": torch.from_numpy(log["semantics"][idx].astype(np.int64)),
           "dynamic": torch.from_numpy(log["dynamic"][idx].astype(np.float32)),
           "range_sem": torch.from_numpy(log["range_sem"][idx].astype(np.int64) * has[:, None, None]),
           "range_dyn": torch.from_numpy(log["range_dyn"][idx].astype(np.float32)),
           "range_mask": torch.from_numpy(log["range"][idx][:, 1] > 0) & torch.from_numpy(has)[:, None, None],
           "T_rel": torch.from_numpy(rel).float(), "gate_target": torch.from_numpy(1.0 - sev)}
    return inp, tgt


def make_batch(pool: list[dict], rng: np.random.Generator, tc: TrainConfig, cfg: ModelConfig,
               sensors: set[str] | None = None) -> tuple[dict, dict, set[str]]:
    """A batch of ``tc.batch`` windows of ``tc.window`` frames.

    Returns ``inputs`` (FusionModel inputs ``[B, S, ...]``), ``targets`` (``depth [B,S,H,W]`` m,
    ``semantics`` int64, ``dynamic`` float, ``range_sem``/``range_dyn``/``range_mask [B,S,R,C]``,
    ``T_rel [B,S,4,4]`` relative poses in the reference frame (NaN = no previous frame),
    ``gate_target [B,S,4]``) and the sensor subset.
    """
    sensors = sensors or choose_sensors(rng)
    items = [_window(pool[int(rng.integers(len(pool)))], rng, tc, cfg, sensors, tc.window) for _ in range(tc.batch)]
    inputs = {k: torch.stack([it[0][k] for it in items]) for k in items[0][0]}
    targets = {k: torch.stack([it[1][k] for it in items]) for k in items[0][1]}
    return inputs, targets, sensors
