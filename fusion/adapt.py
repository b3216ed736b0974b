"""Self-supervised adaptation of a trained fusion model to an unlabelled log.

``fuse4d train --data LOG --from CHECKPOINT [--frames a:b]`` fine-tunes the model on
any log ``load_sequence`` reads, without labels:

- projection consistency: each frame of a window warped into its neighbour with the
  predicted depth and relative pose must agree in colour (SSIM + L1) and depth,
  on pixels the model thinks static (both directions);
- epipolar: mutual-nearest-neighbour matches of the predicted descriptors must obey
  the predicted relative pose (Sampson distance, pixels² at model resolution, capped);
- LiDAR depth as sparse supervision: the model sees a random ``lidar_keep`` share of
  each scan; the other points, projected into the camera, supervise the depth
  (DUSt3R confidence-weighted), so it learns to complete depth, not to copy its input
  (with ``sensors`` excluding lidar, every point supervises a camera-only model);
- IMU preintegration as a pose prior: the gyro's preintegrated rotation between
  frames constrains the predicted rotation (translation needs a velocity state the
  network does not carry, so only rotation is used).

The last ``holdout`` frames of the selection are never trained on: the same losses and
the depth error against their held-out LiDAR points are measured there before and
after (``adapt.json``), with a fixed input/target split of each scan.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from fuse4d.data.types import Frame, Sequence, replace_frame
from fuse4d.errors import ConfigError, DataError
from fuse4d.fusion.inputs import T_body_ref, camera_points, lidar_motions, window_inputs
from fuse4d.fusion.losses import (depth_conf_loss, epipolar_loss, match_descriptors, pose_residual,
                                  pose_to_matrix, projection_consistency_loss)
from fuse4d.fusion.sparse_depth import lidar_depth_image

log = logging.getLogger(__name__)


@dataclass
class AdaptConfig:
    """Settings of an adaptation run.

    Attributes:
        steps: optimiser steps; lr: AdamW learning rate; window: frames per training window.
        holdout: last frames of the selection held back for evaluation (≥ 2, or 0 for none).
        lidar_keep: share of each scan fed to the model; the rest is the depth target.
        w_photo, w_epi, w_lidar, w_imu: loss weights; epi_clip: cap per match (px²).
        imu_sigma_rad: standard deviation of the gyro rotation prior (rad).
        seed: RNG seed (windows, point splits, init of nothing else); threads: torch CPU threads.
    """

    steps: int = 60
    lr: float = 1e-4
    window: int = 3
    holdout: int = 2
    lidar_keep: float = 0.5
    w_photo: float = 1.0
    w_epi: float = 0.05
    w_lidar: float = 1.0
    w_imu: float = 0.1
    epi_clip: float = 16.0
    imu_sigma_rad: float = 0.01
    seed: int = 0
    threads: int = 2


def parse_frames(text: str | None, n: int) -> slice:
    """``"a:b"`` (either end optional) → ``slice(a, b)`` over a log of ``n`` frames.

    Raises:
        ConfigError: not of that form, or fewer than 2 frames selected.
    """
    if not text:
        return slice(0, n)
    try:
        a, b = (p.strip() for p in text.split(":"))
        s = slice(int(a) if a else 0, int(b) if b else n)
    except ValueError:
        raise ConfigError(f"--frames must look like a:b (e.g. 0:200), got {text!r}") from None
    if len(range(n)[s]) < 2:
        raise ConfigError(f"--frames {text} selects {len(range(n)[s])} of the log's {n} frames; need at least 2")
    return s


def split_points(points: np.ndarray | None, keep: float, rng: np.random.Generator
                 ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Random split of a scan ``[N, 4]`` into model input (share ``keep``) and held-out target."""
    if points is None:
        return None, None
    m = rng.random(len(points)) < keep
    return points[m], points[~m]


def gyro_rotation(frame: Frame) -> np.ndarray | None:
    """Preintegrated body rotation ``[3, 3]`` from the previous frame to ``frame`` (pypose), or None."""
    imu = frame.imu
    if imu is None or len(imu) < 2:
        return None
    import pypose as pp
    dt = np.diff(imu.t, prepend=imu.t[0] - np.median(np.diff(imu.t)))
    integ = pp.module.IMUPreintegrator(reset=True, prop_cov=False).double()
    out = integ(torch.from_numpy(dt)[None, :, None], torch.from_numpy(imu.gyro)[None],
                torch.from_numpy(imu.acc)[None])
    return out["rot"][0, -1].matrix().numpy()


def at_camera_stamp(frames: list[Frame], seq: Sequence) -> list[Frame]:
    """``frames`` with their LiDAR points moved to the frame stamp by the LiDAR odometry's sweep
    motion, as ``fuse4d run`` feeds the model (input and held-out points alike); unchanged
    without LiDAR, for already motion-compensated sweeps, or when the odometry cannot run."""
    if "lidar" not in seq.sensors or seq.metadata.get("lidar_deskewed"):
        return frames
    from fuse4d.fusion.estimation.estimator import estimate_trajectory
    try:
        res = estimate_trajectory(seq)
    except (DataError, ValueError) as e:
        log.warning("adaptation: LiDAR points stay as captured (no odometry: %s)", e)
        return frames
    motions = lidar_motions(res.T_world_lidar, np.asarray(seq.timestamps))
    timing = seq.metadata.get("lidar_timing")
    out = []
    for f, m in zip(frames, motions):
        if f.points is None or len(f.points) == 0 or m is None:
            out.append(f)
            continue
        p = np.array(f.points, copy=True)
        p[:, :3] = camera_points(f, m, timing)
        out.append(replace_frame(f, points=p, point_time=None))
    return out


def prepare(frames: list[Frame], seq: Sequence, cfg, sensors: set[str], keep: float,
            rng: np.random.Generator) -> tuple[dict, dict, dict]:
    """Model inputs, aux (``window_inputs``) and self-supervision targets for a window.

    Returns:
        ``inputs``, ``aux`` and ``targets``: ``lidar_points`` (per frame ``[N, 3]`` held-out
        points in the camera frame, m; absent without camera+LiDAR; see :func:`lidar_target`) and
        ``imu_R [1, S, 3, 3]`` with ``imu_valid [1, S]`` (rotation prev → cur in the
        model's reference frame).
    """
    calib = seq.calibration
    # LiDAR as an input: a random share goes in, the rest supervises; not an input: all of it supervises
    split = [split_points(f.points, keep, rng) if "lidar" in sensors else (None, f.points) for f in frames]
    fed = [replace_frame(f, points=s[0]) if f.points is not None else f for f, s in zip(frames, split)]
    inputs, aux = window_inputs(fed, calib, cfg, sensors, bool(seq.metadata.get("depth_sensor", False)))
    targets: dict = {}
    if aux["K"] is not None and any(s[1] is not None for s in split):
        T = calib.T_cam_lidar
        targets["lidar_points"] = [np.zeros((0, 3)) if s[1] is None else
                                   s[1][:, :3].astype(np.float64) @ T[:3, :3].T + T[:3, 3] for s in split]
    if "imu" in sensors:
        R_br = T_body_ref(calib, aux["ref"])[:3, :3]
        Rs = [gyro_rotation(f) for f in frames]
        ok = np.array([R is not None for R in Rs])
        if ok[1:].any():
            R = np.stack([R_br.T @ R @ R_br if R is not None else np.eye(3) for R in Rs])
            T = np.tile(np.eye(4), (len(frames), 1, 1))
            T[:, :3, :3] = R
            targets["imu_T"], targets["imu_valid"] = torch.from_numpy(T)[None].float(), torch.from_numpy(ok)[None]
    return inputs, aux, targets


def output_camera(out: dict, inputs: dict, aux: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[S, 3, h, w]`` and intrinsics ``[3, 3]`` at the resolution of the dense outputs.

    The dense head may decode below the model's input resolution; images are
    area-resampled and K scaled (same pixel convention as ``ImageWarp.K``) to match.
    """
    img = inputs["image"][0]
    h, w = out["depth"].shape[-2:]
    H, W = img.shape[-2:]
    K = torch.as_tensor(aux["K"], dtype=torch.float32)
    if (h, w) != (H, W):
        img = torch.nn.functional.interpolate(img, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        sx, sy = w / W, h / H       # pixel centres at integer coordinates: u' + 0.5 = (u + 0.5) * sx
        S = torch.tensor([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        K = S @ K
    return img, K


def lidar_target(targets: dict, K: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor | None:
    """Held-out LiDAR depth ``[1, S, h, w]`` (m, 0 = none) at the output resolution (cached in ``targets``)."""
    if "lidar_points" not in targets:
        return None
    key = ("lidar_depth", tuple(hw))
    if key not in targets:
        d = [lidar_depth_image(p, np.eye(4), K.double().numpy(), tuple(hw)) for p in targets["lidar_points"]]
        targets[key] = torch.from_numpy(np.stack(d))[None]
    return targets[key]


def self_supervised_losses(out: dict, inputs: dict, aux: dict, targets: dict, ac: AdaptConfig
                           ) -> dict[str, torch.Tensor]:
    """Weighted loss terms (``photo``, ``epi``, ``lidar``, ``imu``) for one window of the batch of one.

    Consecutive frames ``k-1, k`` of the window are paired; the pose head's row k is the
    motion ``T_prev_cur`` in the reference (camera) frame.
    """
    terms: dict[str, torch.Tensor] = {}
    S = out["pose_t"].shape[1]
    T_pc = pose_to_matrix(out["pose_t"][0], out["pose_r"][0])          # [S, 4, 4] cur → prev
    if "depth" in out and aux["K"] is not None and S > 1:
        img, K = output_camera(out, inputs, aux)
        K = K[None]
        depth = out["depth"][0]
        static = (torch.sigmoid(out["dyn_logit"][0]) < 0.5).detach()
        desc = out["desc"][0].detach()
        hw = tuple(depth.shape[-2:])
        photo, epi = [], []
        for k in range(1, S):
            T = T_pc[k][None]
            T_inv = torch.linalg.inv(T)
            for i, j, T_ji in ((k, k - 1, T), (k - 1, k, T_inv)):
                photo.append(projection_consistency_loss(depth[i][None], img[i][None], img[j][None], T_ji, K,
                                                         depth_j=depth[j][None].detach(), valid=static[i][None]))
            x_cur, x_prev, score = match_descriptors(desc[k].permute(1, 2, 0), desc[k - 1].permute(1, 2, 0), hw)
            if len(x_cur) >= 8:
                epi.append(epipolar_loss(x_cur[None], x_prev[None], T, K, K, weight=score.clamp_min(0)[None],
                                         clip=ac.epi_clip))
        terms["photo"] = ac.w_photo * torch.stack(photo).mean()
        if epi:
            terms["epi"] = ac.w_epi * torch.stack(epi).mean()
    if "depth" in out and aux["K"] is not None:
        gt = lidar_target(targets, output_camera(out, inputs, aux)[1], tuple(out["depth"].shape[-2:]))
        if gt is not None and bool((gt > 0).any()):
            terms["lidar"] = ac.w_lidar * depth_conf_loss(out["depth"], out["depth_conf"], gt)
    if "imu_T" in targets and S > 1:
        valid = targets["imu_valid"][0].clone()
        valid[0] = False
        if bool(valid.any()):
            e = pose_residual(out["pose_t"][0], out["pose_r"][0], targets["imu_T"][0])[:, 3:]
            terms["imu"] = ac.w_imu * 0.5 * (e.square().sum(-1)[valid]).mean() / ac.imu_sigma_rad ** 2
    return terms


@torch.no_grad()
def evaluate(model, batches: list[tuple[dict, dict, dict]], ac: AdaptConfig) -> dict[str, float]:
    """Unweighted self-supervised losses and depth AbsRel vs held-out LiDAR points on prepared windows.

    Returns:
        ``photo``, ``epi`` (px², capped), ``imu`` (rad², where present), ``lidar_absrel`` and
        ``lidar_points`` (held-out points scored), means over windows.
    """
    unit = AdaptConfig(**{**asdict(ac), "w_photo": 1.0, "w_epi": 1.0, "w_lidar": 1.0, "w_imu": 1.0})
    acc: dict[str, list[float]] = {}
    err_sum, n = 0.0, 0
    model.eval()
    for inputs, aux, targets in batches:
        out = model(inputs)
        for k, v in self_supervised_losses(out, inputs, aux, targets, unit).items():
            if k != "lidar":
                acc.setdefault(k, []).append(float(v) * (2 * unit.imu_sigma_rad ** 2 if k == "imu" else 1.0))
        if "depth" in out and "lidar_points" in targets:
            gt = lidar_target(targets, output_camera(out, inputs, aux)[1], tuple(out["depth"].shape[-2:]))
            pred = out["depth"]
            m = gt > 0
            err_sum += float(((pred[m] - gt[m]).abs() / gt[m]).sum())
            n += int(m.sum())
    res = {k: float(np.mean(v)) for k, v in acc.items()}
    if n:
        res.update(lidar_absrel=err_sum / n, lidar_points=n)
    return res


def _windows(n: int, size: int) -> list[tuple[int, int]]:
    """Consecutive windows ``[a, b)`` of ``size`` frames covering ``range(n)`` (the last one may overlap)."""
    size = min(size, n)
    starts = list(range(0, max(n - size, 0) + 1, size))
    if starts[-1] + size < n:
        starts.append(n - size)
    return [(a, a + size) for a in starts]


def adapt(data: str | Path, checkpoint: str | Path | None, out: str | Path, frames: str | None = None,
          config: AdaptConfig | None = None, sensors: set[str] | None = None, echo=print,
          **load_options) -> dict:
    """Fine-tune ``checkpoint`` on the log at ``data`` without labels; write ``out/adapted.pt`` and ``out/adapt.json``.

    Args:
        data: a log folder/file ``load_sequence`` reads; frames: ``"a:b"`` selection.
        checkpoint: starting weights (None = the shipped checkpoint).
        out: output folder; config: :class:`AdaptConfig`; sensors: subset to use (None = all).
        echo: progress printer; load_options: passed to ``load_sequence`` (e.g. ``drive=...``).
    Returns:
        the report: held-out metrics ``before`` and ``after``, the loss history, frame split.
    Raises:
        DataError: unreadable log/checkpoint, or a log without a camera.
        ConfigError: a bad frame selection, or too few frames for training plus hold-out.
    """
    from fuse4d.data.registry import load_sequence
    from fuse4d.fusion.predict import SHIPPED_CHECKPOINT, build_model, load_checkpoint

    ac = config or AdaptConfig()
    torch.set_num_threads(ac.threads)
    torch.manual_seed(ac.seed)
    seq = load_sequence(data, **load_options)
    seq = seq[parse_frames(frames, len(seq))]
    used = set(seq.sensors) if sensors is None else set(sensors) & set(seq.sensors)
    if "camera" not in used or seq.calibration.K is None:
        raise DataError(data, "self-supervised adaptation needs a camera with intrinsics (its losses are image-based)")
    n_train = len(seq) - ac.holdout
    if n_train < 2 or ac.holdout == 1:
        raise ConfigError(f"{len(seq)} frames cannot give ≥ 2 training frames and a hold-out of {ac.holdout} (0 or ≥ 2)")
    ck_path = Path(checkpoint) if checkpoint else SHIPPED_CHECKPOINT
    ck = load_checkpoint(ck_path)
    model = build_model(ck, ck_path)
    cfg = model.cfg
    all_frames = at_camera_stamp(list(seq), seq)
    rng_eval = np.random.default_rng([ac.seed, 1])
    held = [prepare(all_frames[n_train + a:n_train + b], seq, cfg, used, ac.lidar_keep, rng_eval)
            for a, b in (_windows(ac.holdout, ac.window) if ac.holdout else [])]
    before = evaluate(model, held, ac) if held else {}
    echo(f"adapting {ck_path.name} on {len(seq)} frames of {seq.name} ({n_train} train, {ac.holdout} held out; "
         f"sensors {', '.join(sorted(used))}); held-out before: {_fmt(before)}")
    opt = torch.optim.AdamW(model.parameters(), lr=ac.lr, weight_decay=0.0)
    history, t0 = [], time.perf_counter()
    for step in range(ac.steps):
        rng = np.random.default_rng([ac.seed, 2, step])
        size = min(ac.window, n_train)
        a = int(rng.integers(0, n_train - size + 1))
        inputs, aux, targets = prepare(all_frames[a:a + size], seq, cfg, used, ac.lidar_keep, rng)
        model.train()
        terms = self_supervised_losses(model(inputs), inputs, aux, targets, ac)
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        rec = {"step": step, "loss": loss.item(), **{k: v.item() for k, v in terms.items()}}
        history.append(rec)
        if step % 10 == 0 or step == ac.steps - 1:
            echo(f"step {step:4d}  " + "  ".join(f"{k} {v:.4f}" for k, v in rec.items() if k != "step"))
    after = evaluate(model, held, ac) if held else {}
    echo(f"held-out after {ac.steps} steps ({time.perf_counter() - t0:.0f} s): {_fmt(after)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"data": str(data), "frames": frames, "checkpoint": str(ck_path), "sensors": sorted(used),
              "train_frames": [0, n_train], "heldout_frames": [n_train, len(seq)], "config": asdict(ac),
              "before": before, "after": after, "history": history}
    _save(model, out / "adapted.pt", {**(ck.get("meta") or {}), "adapted": {k: v for k, v in report.items()
                                                                           if k != "history"}})
    from fuse4d.fileio import atomic_write_text
    atomic_write_text(out / "adapt.json", json.dumps(report, indent=1) + "\n")
    return report


def _fmt(m: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in m.items()) or "n/a"


def _save(model, path: Path, meta: dict) -> None:
    """The adapted checkpoint in the shipped format ``{"model", "model_config", "meta"}``, atomically."""
    import os
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "model_config": model.cfg.to_dict(), "meta": json.loads(json.dumps(meta, default=str))}, tmp)
    os.replace(tmp, path)


def main(data: str | Path, checkpoint: str | Path | None, out: str | Path, frames: str | None = None,
         steps: int | None = None, echo=print, **load_options) -> dict:
    """``fuse4d train --data LOG --from CHECKPOINT --out DIR [--frames a:b] [--steps N]``: run
    :func:`adapt` with the default :class:`AdaptConfig` (``steps`` overridden) and print where it wrote."""
    ac = AdaptConfig() if steps is None else AdaptConfig(steps=int(steps))
    if ac.steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {ac.steps}")
    report = adapt(data, checkpoint, out, frames=frames, config=ac, echo=echo, **load_options)
    echo(f"weights: {Path(out) / 'adapted.pt'}\nreport:  {Path(out) / 'adapt.json'}")
    return report
