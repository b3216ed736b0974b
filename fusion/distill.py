"""Knowledge distillation of a smaller fusion model (the student) from a trained one (the teacher).

    fuse4d train --distill-from fusion/weights/tiny.pt --config configs/student.yaml --out runs/student

The student is a :class:`FusionModel` of its own :class:`ModelConfig` (fewer attention blocks,
a smaller image, a smaller range image); its classes and descriptor width must match the
teacher's. Training (``fusion/train.py`` with a :class:`Distiller`) renders the frame pool
at the TEACHER's resolution; each step the teacher runs on the window as rendered and the
student on the same window resampled to its own resolution (:func:`student_inputs`: images
antialiased, sparse depth keeps the nearest point of each student pixel, range images keep
the nearest return of each block). The loss is the ordinary supervised loss on the ground
truth (``train.compute_losses``, targets resampled to the student's outputs) plus the
``kd_*`` terms of :func:`kd_losses` on the teacher's outputs: log depth, semantics (KL at
temperature :data:`TEMPERATURE`), dynamics, descriptors, per-point semantics and dynamics,
relative poses and their log-variances, and the modality gates.

The student starts from the teacher's weights wherever they fit (:func:`init_from_teacher`):
every tensor of the same name and shape, the attention blocks it keeps (evenly spaced,
ending with the teacher's last), and the positional embeddings resampled to its patch grids.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from fuse4d.errors import ConfigError
from fuse4d.fusion.config import ModelConfig, TrainSetup

#: softmax temperature of the semantic KL terms
TEMPERATURE = 2.0
#: weights of the distillation terms (added to the ground-truth terms of ``train.compute_losses``)
KD_WEIGHTS = {"kd_depth": 2.0, "kd_sem": 1.0, "kd_dyn": 1.0, "kd_desc": 0.5, "kd_point_sem": 0.5,
              "kd_point_dyn": 0.5, "kd_pose": 0.2, "kd_pose_var": 0.01, "kd_gate": 0.5}
#: weight of the ground-truth terms in a distillation step
GT_WEIGHT = 0.5


# ---------------------------------------------------------------------------------- resampling

def sparse_resize(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample a sparse depth image, keeping the nearest point that falls in each new pixel.

    ``depth [N, H, W]`` (m, 0 = no point) → ``[N, h, w]``. A source pixel centre ``(v, u)``
    lands in new pixel ``floor((v + 0.5) h / H)`` (likewise for u) — what projecting the
    points at the new resolution gives, up to sub-pixel rounding.
    """
    N, H, W = depth.shape
    h, w = size
    if (h, w) == (H, W):
        return depth
    tv = ((torch.arange(H, device=depth.device) + 0.5) * h / H).long().clamp(max=h - 1)
    tu = ((torch.arange(W, device=depth.device) + 0.5) * w / W).long().clamp(max=w - 1)
    idx = (tv[:, None] * w + tu[None, :]).flatten().expand(N, -1)
    val = torch.where(depth > 0, depth, torch.full_like(depth, math.inf)).flatten(1)
    out = torch.full((N, h * w), math.inf, dtype=depth.dtype, device=depth.device)
    out = out.scatter_reduce(1, idx, val, reduce="amin")
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out)).view(N, h, w)


def range_block_index(rng: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """For a range image ``rng [N, 4, R, C]`` (channel 0 normalised log range, 1 hit mask) and
    a smaller ``size = (r, c)`` dividing ``(R, C)``: the flat source pixel ``[N, r, c]`` (int64)
    of the nearest return in each ``R/r × C/c`` block (the block's first pixel when it has none)."""
    N, _, R, C = rng.shape
    r, c = size
    fr, fc = R // r, C // c
    key = torch.where(rng[:, 1] > 0, rng[:, 0], torch.full_like(rng[:, 0], math.inf))
    blocks = key.view(N, r, fr, c, fc).permute(0, 1, 3, 2, 4).reshape(N, r, c, fr * fc)
    k = blocks.argmin(-1)                                           # [N, r, c] index inside the block
    rows = torch.arange(r, device=rng.device)[:, None] * fr + k // fc
    cols = torch.arange(c, device=rng.device)[None, :] * fc + k % fc
    return rows * C + cols


def _gather_pixels(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x [N, ..., R, C]`` at flat pixels ``idx [N, r, c]`` → ``[N, ..., r, c]``."""
    lead = x.shape[1:-2]
    flat = x.reshape(x.shape[0], -1, x.shape[-2] * x.shape[-1])
    g = flat.gather(2, idx.flatten(1)[:, None, :].expand(-1, flat.shape[1], -1))
    return g.view(x.shape[0], *lead, *idx.shape[1:])


def check_pair(teacher: ModelConfig, student: ModelConfig) -> None:
    """Raise ConfigError when ``student`` cannot learn from ``teacher`` (different classes or
    descriptors, a range image that does not divide the teacher's)."""
    for k in ("classes", "desc_dim", "imu_bins"):
        if getattr(teacher, k) != getattr(student, k):
            raise ConfigError(f"student model.{k} must equal the teacher's ({getattr(teacher, k)}), "
                              f"got {getattr(student, k)}")
    (R, C), (r, c) = teacher.range_size, student.range_size
    if R % r or C % c:
        raise ConfigError(f"student model.range_size {student.range_size} must divide the teacher's {teacher.range_size}")


def student_inputs(inputs: dict, teacher: ModelConfig, student: ModelConfig) -> tuple[dict, torch.Tensor | None]:
    """A batch of model inputs rendered at the teacher's resolution, resampled to the student's.

    Args:
        inputs: ``FusionModel`` inputs ``[B, S, ...]`` (``image``, ``lidar_view``,
            ``depth_view``, ``range``, ``imu`` and their ``*_valid``; any subset).
    Returns:
        the student's inputs, and the range-image gather index ``[B*S, r, c]`` (None when
        the range image keeps its size or is absent) for :func:`student_targets`.
    """
    out = dict(inputs)
    H, W = student.image_size
    if inputs.get("image") is not None and tuple(inputs["image"].shape[-2:]) != (H, W):
        x = inputs["image"]
        y = F.interpolate(x.flatten(0, 1), size=(H, W), mode="bilinear", align_corners=False, antialias=True)
        out["image"] = y.clamp(0, 1).view(*x.shape[:2], 3, H, W)
    for name in ("lidar_view", "depth_view"):
        if inputs.get(name) is not None:
            x = inputs[name]
            out[name] = sparse_resize(x.flatten(0, 1), (H, W)).view(*x.shape[:2], H, W)
    idx = None
    if inputs.get("range") is not None and tuple(inputs["range"].shape[-2:]) != tuple(student.range_size):
        x = inputs["range"].flatten(0, 1)
        idx = range_block_index(x, student.range_size)
        out["range"] = _gather_pixels(x, idx).view(*inputs["range"].shape[:3], *student.range_size)
    return out, idx


def student_targets(tgt: dict, dense_size: tuple[int, int] | None, range_idx: torch.Tensor | None) -> dict:
    """Ground-truth targets of a teacher-resolution batch for the student's outputs: pixel
    targets sampled (nearest) at the dense head's ``dense_size = (h, w)``, range targets at
    the pixels :func:`student_inputs` kept. Shapes as ``augment.make_batch``."""
    out = dict(tgt)
    if dense_size is not None:
        for k in ("depth", "semantics", "dynamic"):
            x = tgt[k]
            y = F.interpolate(x.flatten(0, 1)[:, None].float(), size=dense_size, mode="nearest")[:, 0]
            out[k] = y.to(x.dtype).view(*x.shape[:2], *dense_size)
    if range_idx is not None:
        for k in ("range_sem", "range_dyn", "range_mask"):
            x = tgt[k]
            out[k] = _gather_pixels(x.flatten(0, 1), range_idx).view(*x.shape[:2], *range_idx.shape[1:])
    return out


def _resize_maps(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B, S, (C,) h, w]`` → ``[B, S, (C,) *size]`` bilinear (area average when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    lead = x.shape[:-2]
    y = x.reshape(-1, 1, *x.shape[-2:])
    y = F.interpolate(y, size=size, mode="bilinear", align_corners=False, antialias=True)
    return y.view(*lead, *size)


# ---------------------------------------------------------------------------------- losses

def _kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, dim: int = 2) -> torch.Tensor:
    """Mean KL(teacher ‖ student) per pixel at :data:`TEMPERATURE` (× T², as Hinton et al.)."""
    T = TEMPERATURE
    p = F.log_softmax(teacher_logits / T, dim)
    q = F.log_softmax(student_logits / T, dim)
    return (p.exp() * (p - q)).sum(dim).mean() * T * T


def kd_losses(out: dict, teacher: dict, first_has_prev: bool) -> dict[str, torch.Tensor]:
    """Distillation terms (weighted by :data:`KD_WEIGHTS`) of student outputs ``out`` against
    the teacher's outputs on the same window (``FusionModel.forward`` dicts; teacher maps are
    resampled to the student's). ``first_has_prev``: pose row 0 is meaningful (state given)."""
    w, terms = KD_WEIGHTS, {}
    if "depth" in out and "depth" in teacher:
        size = out["depth"].shape[-2:]
        ld_t = _resize_maps(torch.log(teacher["depth"]), size)
        terms["kd_depth"] = w["kd_depth"] * (torch.log(out["depth"]) - ld_t).abs().mean()
        terms["kd_sem"] = w["kd_sem"] * _kl(out["sem_logits"], _resize_maps(teacher["sem_logits"], size))
        terms["kd_dyn"] = w["kd_dyn"] * F.binary_cross_entropy_with_logits(
            out["dyn_logit"], torch.sigmoid(_resize_maps(teacher["dyn_logit"], size)))
        d_t = F.normalize(_resize_maps(teacher["desc"], out["desc"].shape[-2:]), dim=2)
        terms["kd_desc"] = w["kd_desc"] * (1 - (out["desc"] * d_t).sum(2)).mean()
    if "point_sem_logits" in out and "point_sem_logits" in teacher:
        size = out["point_dyn_logit"].shape[-2:]
        terms["kd_point_sem"] = w["kd_point_sem"] * _kl(out["point_sem_logits"],
                                                        _resize_maps(teacher["point_sem_logits"], size))
        terms["kd_point_dyn"] = w["kd_point_dyn"] * F.binary_cross_entropy_with_logits(
            out["point_dyn_logit"], torch.sigmoid(_resize_maps(teacher["point_dyn_logit"], size)))
    rows = slice(0 if first_has_prev else 1, None)
    if out["pose_t"][:, rows].numel():
        from fuse4d.fusion.train import POSE_SCALE     # the supervised pose term's scales (m, rad)
        e_t = (out["pose_t"] - teacher["pose_t"])[:, rows].abs().mean() / POSE_SCALE[0]
        e_r = (out["pose_r"] - teacher["pose_r"])[:, rows].abs().mean() / POSE_SCALE[1]
        terms["kd_pose"] = w["kd_pose"] * (e_t + e_r)
        terms["kd_pose_var"] = w["kd_pose_var"] * (out["pose_logvar"] - teacher["pose_logvar"])[:, rows].abs().mean()
    present = torch.isfinite(out["gates"]) & torch.isfinite(teacher["gates"])
    if bool(present.any()):
        terms["kd_gate"] = w["kd_gate"] * F.binary_cross_entropy_with_logits(
            out["gate_logits"][present], torch.sigmoid(teacher["gate_logits"][present]))
    return terms


def distill_losses(out: dict, teacher_out: dict, tgt: dict, range_idx, setup: TrainSetup,
                   first_has_prev: bool) -> dict[str, torch.Tensor]:
    """Ground-truth terms (``train.compute_losses`` × :data:`GT_WEIGHT`, targets resampled to
    the student) plus :func:`kd_losses`, for one student call on ``[B, S]`` windows."""
    from fuse4d.fusion.train import compute_losses
    dense = tuple(out["depth"].shape[-2:]) if "depth" in out else None
    gt = compute_losses(out, student_targets(tgt, dense, range_idx), setup, first_has_prev)
    return {**{k: GT_WEIGHT * v for k, v in gt.items()}, **kd_losses(out, teacher_out, first_has_prev)}


# ---------------------------------------------------------------------------------- initialisation

def _pos_grids(cfg: ModelConfig) -> dict[str, tuple[int, int]]:
    H, W = cfg.image_size
    dp = (H // cfg.depth_patch, W // cfg.depth_patch)
    return {"rgb.pos": cfg.patch_grid, "lidar_view.pos": dp, "depth_view.pos": dp,
            "range.pos": (cfg.range_size[0] // cfg.range_patch[0], cfg.range_size[1] // cfg.range_patch[1])}


def kept_blocks(n_teacher: int, n_student: int) -> list[int]:
    """Teacher block index for each student block: evenly spaced, ending with the last."""
    return [round((k + 1) * n_teacher / n_student) - 1 for k in range(n_student)]


def init_from_teacher(student: nn.Module, teacher: nn.Module) -> dict[str, int]:
    """Copy the teacher's weights into ``student`` wherever they fit (see module docstring).

    Returns counts ``{"copied", "resampled", "kept_random"}`` of student tensors.
    """
    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    blocks = kept_blocks(teacher.cfg.blocks, student.cfg.blocks)
    tg, sg = _pos_grids(teacher.cfg), _pos_grids(student.cfg)
    new, n = {}, {"copied": 0, "resampled": 0, "kept_random": 0}
    for name, v in s_sd.items():
        m = re.match(r"^(frame_blocks|global_blocks)\.(\d+)\.(.*)$", name)
        src = f"{m[1]}.{blocks[int(m[2])]}.{m[3]}" if m and int(m[2]) < len(blocks) else name
        t = t_sd.get(src)
        if t is not None and t.shape == v.shape:
            new[name] = t.clone()
            n["copied"] += 1
        elif t is not None and name in sg and t.dim() == 3 and t.shape[2] == v.shape[2]:
            (a, b), (c, d) = tg[name], sg[name]
            g = t[0].T.reshape(1, -1, a, b)
            g = F.interpolate(g, size=(c, d), mode="bilinear", align_corners=False, antialias=(c < a or d < b))
            new[name] = g.reshape(-1, c * d).T[None].contiguous()
            n["resampled"] += 1
        else:
            n["kept_random"] += 1
    student.load_state_dict(new, strict=False)
    return n


# ---------------------------------------------------------------------------------- training step

class Distiller:
    """The frozen teacher and the distillation step that ``fusion.train.train`` runs instead
    of its supervised step.

    Args:
        teacher: the trained model (its config fixes the pool's resolution); device: torch device.
    """

    def __init__(self, teacher: nn.Module, device: torch.device | str = "cpu"):
        self.teacher = teacher.to(device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> "Distiller":
        """The teacher of a checkpoint file (DataError naming it when unreadable)."""
        from fuse4d.fusion.predict import build_model, load_checkpoint
        return cls(build_model(load_checkpoint(path), path), device)

    @property
    def pool_config(self) -> ModelConfig:
        """The resolution the training pool is rendered at (the teacher's)."""
        return self.teacher.cfg

    def prepare(self, student: nn.Module) -> dict[str, int]:
        """Check the pair and copy the teacher's weights into ``student`` (see :func:`init_from_teacher`)."""
        check_pair(self.teacher.cfg, student.cfg)
        return init_from_teacher(student, self.teacher)

    def losses(self, student: nn.Module, inputs: dict, tgt: dict, setup: TrainSetup, split: bool) -> dict:
        """Loss terms of one window batch at the teacher's resolution (``split``: two halves
        with the recurrent state, as ``train.train_step``)."""
        s_inp, ridx = student_inputs(inputs, self.teacher.cfg, student.cfg)
        if not split:
            with torch.no_grad():
                t = self.teacher(inputs)
            return distill_losses(student(s_inp), t, tgt, ridx, setup, False)
        from fuse4d.fusion.train import _slice
        S = setup.train.window
        h = S // 2
        B = next(iter(inputs.values())).shape[0]
        ri = [None if ridx is None else ridx.view(B, S, *ridx.shape[1:])[:, a:b].flatten(0, 1) for a, b in ((0, h), (h, S))]
        with torch.no_grad():
            t1 = self.teacher(_slice(inputs, 0, h))
            t2 = self.teacher(_slice(inputs, h, S), state=t1["state"])
        o1 = student(_slice(s_inp, 0, h))
        o2 = student(_slice(s_inp, h, S), state=o1["state"])
        a = distill_losses(o1, t1, _slice(tgt, 0, h), ri[0], setup, False)
        b = distill_losses(o2, t2, _slice(tgt, h, S), ri[1], setup, True)
        return {k: 0.5 * (a.get(k, 0) + b.get(k, 0)) for k in set(a) | set(b)}

    def train_step(self, model, opt, pool, setup: TrainSetup, step: int, device) -> dict[str, float]:
        """One optimiser step of the student (same contract and randomness as ``train.train_step``)."""
        from fuse4d.fusion.augment import make_batch
        from fuse4d.fusion.train import optimiser_step
        tc = setup.train
        rng = np.random.default_rng([tc.seed, step])
        torch.manual_seed(tc.seed * 1_000_003 + step)
        inputs, tgt, sensors = make_batch(pool, rng, tc, self.teacher.cfg)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        tgt = {k: v.to(device) for k, v in tgt.items()}
        terms = self.losses(model, inputs, tgt, setup, rng.random() < tc.split_prob and tc.window >= 4)
        loss = optimiser_step(model, opt, terms, step, setup)
        rec = {k: float(v.detach()) for k, v in terms.items()}
        rec.update(loss=float(loss.detach()), kd=float(sum(v.detach() for k, v in terms.items() if k.startswith("kd_"))),
                   step=step, sensors="+".join(sorted(sensors)))
        return rec
