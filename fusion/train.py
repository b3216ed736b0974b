"""``fuse4d train``: supervised training of the fusion model on synthetic TRAIN seeds.

    fuse4d train --config configs/tiny_model.yaml --out runs/tiny

Renders a frame pool once (``fusion/data_pool.py``), then samples windows with modality
dropout and corruption (``fusion/augment.py``). Losses: confidence-weighted depth, semantics,
dynamics, pose (L1 on the residual, plus a Gaussian NLL of detached residuals
that fits the log-variance), per-LiDAR-point semantics and dynamics, and the gate target
``1 - corruption``. Deterministic given ``train.seed`` (each step's randomness is drawn from
``(seed, step)``); resumes from ``OUT/last.pt``; writes ``OUT/model.pt`` (the shippable
weights), ``OUT/train_log.jsonl`` and ``OUT/loss_curve.png``. Uses a GPU when present.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fuse4d.errors import DataError
from fuse4d.fusion.augment import make_batch
from fuse4d.fusion.config import TrainSetup, load_train_config
from fuse4d.fusion.data_pool import build_pool
from fuse4d.fusion.model import FusionModel

from fuse4d.fusion.losses import (class_balance_weights, depth_conf_loss, dynamic_loss, pose_residual,
                                  semantic_loss)

#: pose error scales (m, rad) of the L1 pose term
POSE_SCALE = (0.1, 0.01)


def _slice(d: dict, a: int, b: int) -> dict:
    return {k: v[:, a:b] for k, v in d.items()}


def compute_losses(out: dict, tgt: dict, setup: TrainSetup, first_has_prev: bool) -> dict[str, torch.Tensor]:
    """Loss terms for one model call on ``[B, S]`` windows (see module docstring)."""
    tc = setup.train
    terms: dict[str, torch.Tensor] = {}
    if "depth" in out:
        f = tgt["depth"].shape[-1] // out["depth"].shape[-1]          # heads decode at a lower resolution
        sub = {k: tgt[k][..., ::f, ::f] for k in ("depth", "semantics", "dynamic")}
        terms["depth"] = tc.w_depth * depth_conf_loss(out["depth"], out["depth_conf"], sub["depth"])
        terms["sem"] = tc.w_sem * semantic_loss(out["sem_logits"], sub["semantics"],
                                                weight=setup.class_weights.get("pixels"))
        terms["dyn"] = tc.w_dyn * dynamic_loss(out["dyn_logit"], sub["dynamic"])
    if "point_sem_logits" in out and bool(tgt["range_mask"].any()):
        m = tgt["range_mask"]
        terms["point_sem"] = tc.w_point * semantic_loss(out["point_sem_logits"], tgt["range_sem"] * m,
                                                        weight=setup.class_weights.get("points"))
        terms["point_dyn"] = tc.w_point * dynamic_loss(out["point_dyn_logit"], tgt["range_dyn"], m)
    valid = torch.isfinite(tgt["T_rel"]).flatten(-2).all(-1)
    valid[:, 0] &= first_has_prev
    if bool(valid.any()):
        T = torch.where(valid[..., None, None], tgt["T_rel"], torch.eye(4, device=valid.device))
        e = pose_residual(out["pose_t"], out["pose_r"], T)[valid]                      # [K, 6]
        terms["pose"] = tc.w_pose * (e[:, :3].abs().mean() / POSE_SCALE[0] + e[:, 3:].abs().mean() / POSE_SCALE[1])
        # the variance learns from detached residuals: NLL gradients never reach the pose itself
        lv = out["pose_logvar"][valid]
        terms["pose_var"] = 0.05 * tc.w_pose * 0.5 * (e.detach().square() * torch.exp(-lv) + lv).sum(-1).mean()
    gl, gt = out["gate_logits"], tgt["gate_target"]
    present = torch.isfinite(out["gates"])
    if bool(present.any()):
        terms["gate"] = tc.w_gate * F.binary_cross_entropy_with_logits(gl[present], gt[present])
    return terms


def pool_class_counts(pool: list[dict], classes: int) -> dict[str, np.ndarray]:
    """Label counts ``[classes]`` (one per class id, 0 = unlabeled) of the training pool's
    pixels and LiDAR points."""
    px = sum(np.bincount(d["semantics"].ravel(), minlength=classes)[:classes] for d in pool)
    pt = sum(np.bincount(d["range_sem"].ravel(), minlength=classes)[:classes] for d in pool)
    return {"pixels": np.asarray(px, np.int64), "points": np.asarray(pt, np.int64)}


def class_prior(counts: np.ndarray) -> list[float]:
    """Class frequencies ``[classes]`` over the labelled classes (unlabeled gets 0), as stored in
    checkpoints (``meta["class_prior_pixels"]``) for the predictor's logit adjustment."""
    c = np.asarray(counts, np.float64).copy()
    c[0] = 0
    return (c / max(c.sum(), 1.0)).round(6).tolist()


def pool_class_weights(pool: list[dict], power: float, classes: int) -> dict[str, torch.Tensor]:
    """Semantic loss weights ``[classes]`` (one per class id, 0 = unlabeled) for pixels and
    LiDAR points from the label counts of the training pool
    (:func:`fusion.losses.class_balance_weights`)."""
    return {k: class_balance_weights(v, power) for k, v in pool_class_counts(pool, classes).items()}


def lr_at(step: int, setup: TrainSetup) -> float:
    """Warm-up then cosine decay to 5 % of ``train.lr``."""
    tc = setup.train
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    p = (step - tc.warmup) / max(1, tc.steps - tc.warmup)
    return tc.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


def train_step(model, opt, pool, setup: TrainSetup, step: int, device) -> dict[str, float]:
    """One optimiser step (randomness drawn from ``(seed, step)``); returns the loss terms."""
    tc = setup.train
    rng = np.random.default_rng([tc.seed, step])
    torch.manual_seed(tc.seed * 1_000_003 + step)
    inputs, tgt, sensors = make_batch(pool, rng, tc, setup.model)
    inputs = {k: v.to(device) for k, v in inputs.items()}
    tgt = {k: v.to(device) for k, v in tgt.items()}
    S = tc.window
    if rng.random() < tc.split_prob and S >= 4:
        h = S // 2
        o1 = model(_slice(inputs, 0, h))
        o2 = model(_slice(inputs, h, S), state=o1["state"])
        t1, t2 = compute_losses(o1, _slice(tgt, 0, h), setup, False), compute_losses(o2, _slice(tgt, h, S), setup, True)
        terms = {k: 0.5 * (t1.get(k, 0) + t2.get(k, 0)) for k in set(t1) | set(t2)}
    else:
        terms = compute_losses(model(inputs), tgt, setup, False)
    loss = optimiser_step(model, opt, terms, step, setup)
    rec = {k: float(v.detach()) for k, v in terms.items()}
    rec.update(loss=float(loss.detach()), step=step, sensors="+".join(sorted(sensors)))
    return rec


def optimiser_step(model: FusionModel, opt: torch.optim.Optimizer, terms: dict[str, torch.Tensor], step: int,
                   setup: TrainSetup) -> torch.Tensor:
    """Sum the loss ``terms``, set the learning rate of ``step`` (:func:`lr_at`), back-propagate,
    clip the gradient norm at 1 and step ``opt``; returns the summed loss (scalar)."""
    loss = sum(terms.values())
    for g in opt.param_groups:
        g["lr"] = lr_at(step, setup)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss


@torch.no_grad()
def camera_depth_scale(model: FusionModel, pool: list[dict], setup: TrainSetup, windows: int = 48,
                       seed: int = 0) -> float:
    """The network's camera-only depth scale on its own training pool: the median of
    ground truth / predicted depth over valid pixels (≤ ``max_depth``) of ``windows`` clean
    camera-only windows (no corruption). A monocular network's depth carries a learnt scale
    bias; the predictor multiplies camera-only depth by this (``meta["depth_scale_camera"]``)."""
    import dataclasses
    tc = dataclasses.replace(setup.train, corrupt_prob=0.0, batch=1)
    rng = np.random.default_rng([seed, 20261129])
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ratios = []
    for _ in range(windows):
        inputs, tgt, _ = make_batch(pool, rng, tc, setup.model, sensors={"camera"})
        d = model({k: v.to(device) for k, v in inputs.items()})["depth"].cpu()
        g = tgt["depth"]
        ok = (g > 0) & (g <= setup.model.max_depth) & (d > 0)
        ratios.append((g[ok] / d[ok]).numpy())
    model.train(was_training)
    return float(np.median(np.concatenate(ratios)))


def save_weights(model: FusionModel, path: Path, meta: dict) -> None:
    """Write the shippable checkpoint ``{"model", "model_config", "meta"}`` atomically."""
    tmp = path.with_suffix(".tmp")
    torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "model_config": model.cfg.to_dict(), "meta": meta}, tmp)
    os.replace(tmp, path)


def plot_losses(history: list[dict], path: Path) -> None:
    """Loss curves (running medians of each term) to a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = sorted({k for h in history for k in h if k not in ("step", "sensors", "time_s")})
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k in keys:
        pts = [(h["step"], h[k]) for h in history if k in h]
        if len(pts) < 2:
            continue
        s, v = np.array(pts).T
        w = max(1, len(v) // 50)
        med = np.array([np.median(v[max(0, i - w):i + 1]) for i in range(len(v))])
        ax.plot(s, med, label=k, lw=2 if k == "loss" else 1)
    ax.set_xlabel("step"), ax.set_ylabel("loss (running median)"), ax.legend(fontsize=7, ncol=3), ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def train(setup: TrainSetup, out: str | Path, echo=print, config_path: str | None = None,
          distill_from: str | Path | None = None) -> Path:
    """Train (or resume) into folder ``out``; returns the path of ``model.pt``. With
    ``distill_from`` (a checkpoint) the model is a student of that teacher (``fusion/distill.py``).

    Raises:
        DataError: ``out/last.pt`` exists but cannot be read.
    """
    tc = setup.train
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    model = FusionModel(setup.model).to(device)
    dist, step_fn = None, train_step
    if distill_from is not None:
        from fuse4d.fusion.distill import Distiller
        dist = Distiller.load(distill_from, device)
        echo(f"student of {distill_from}: teacher weights copied into {dist.prepare(model)}")
        step_fn = dist.train_step
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=0.01)
    start, history = 0, []
    last = out / "last.pt"
    if last.is_file():
        try:
            ck = torch.load(last, map_location=device, weights_only=True)
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            start, history = int(ck["step"]), json.loads(ck["history"])
        except Exception as e:
            raise DataError(last, f"cannot resume from this checkpoint ({str(e).splitlines()[0][:160]})") from None
        echo(f"resuming from {last} at step {start}")
    pool = build_pool(tc, setup.model if dist is None else dist.pool_config, echo=echo)
    if tc.sem_balance > 0:
        setup.class_weights = pool_class_weights(pool, tc.sem_balance, setup.model.classes)
        echo("class-balanced semantics: " + ", ".join(
            f"{k} [{' '.join(f'{w:.2f}' for w in v[1:].tolist())}]" for k, v in setup.class_weights.items()))
    meta = {"config": {"model": setup.model.to_dict(), "train": {k: getattr(tc, k) for k in tc.__dataclass_fields__}},
            "config_path": config_path, "device": str(device),
            "class_prior_pixels": class_prior(pool_class_counts(pool, setup.model.classes)["pixels"]),
            **({} if distill_from is None else {"distill_from": str(distill_from)})}
    model.train()
    t0, cpu0 = time.perf_counter(), time.process_time()
    with open(out / "train_log.jsonl", "a") as logf:
        for step in range(start, tc.steps):
            rec = step_fn(model, opt, pool, setup, step, device)
            rec["time_s"] = time.perf_counter() - t0
            history.append(rec)
            logf.write(json.dumps(rec) + "\n")
            done = step + 1
            if done % tc.log_every == 0 or done == tc.steps:
                recent = history[-tc.log_every:]
                echo(f"step {done}/{tc.steps} loss {np.mean([h['loss'] for h in recent]):.3f} "
                     f"({(time.perf_counter() - t0) / (done - start):.2f} s/step wall, "
                     f"{(time.process_time() - cpu0) / (done - start):.2f} s/step cpu)")
                logf.flush()
            if done % tc.ckpt_every == 0 or done == tc.steps:
                tmp = last.with_suffix(".tmp")
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": done,
                            "history": json.dumps(history)}, tmp)
                os.replace(tmp, last)
                save_weights(model, out / "model.pt", {**meta, "steps": done})
                plot_losses(history, out / "loss_curve.png")
    if start >= tc.steps:
        echo(f"{out} already trained for {start} steps")
    elif dist is None:   # a student's pool is rendered at the teacher's resolution: no scale (= 1)
        meta["depth_scale_camera"] = camera_depth_scale(model, pool, setup)
        echo(f"camera-only depth scale on the training pool: {meta['depth_scale_camera']:.3f}")
        save_weights(model, out / "model.pt", {**meta, "steps": tc.steps})
    return out / "model.pt"


def main(config: str | Path | None, out: str | Path, steps: int | None = None, echo=print,
         distill_from: str | Path | None = None) -> Path:
    """CLI entry: read the YAML, optionally override ``train.steps``, train (a student of
    ``distill_from`` when given)."""
    setup = load_train_config(config, **({} if steps is None else {"steps": steps}))
    return train(setup, out, echo=echo, config_path=None if config is None else str(config), distill_from=distill_from)
