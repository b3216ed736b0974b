"""The fusion transformer (trunk): modality tokens → gates → alternating frame-wise and
global self-attention with camera, register and recurrent state tokens → heads.

Token layout per frame: ``[camera, registers, rgb, lidar_view, lidar_range, depth_view, imu]``
(the kinds a window has; a modality the window lacks has no tokens). Frame attention runs
per frame (memory linear in S); global attention runs over all frames plus the recurrent
state tokens (CUT3R), whose updated values and the last frame's camera token are the state
handed to the next window. Frames that lack a modality the window has keep its tokens
masked out of every attention (they influence nothing) and report a NaN gate.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from fuse4d.encoders.imu import ImuEncoder
from fuse4d.encoders.lidar import DepthViewEncoder, RangeEncoder
from fuse4d.encoders.rgb import RGBEncoder
from fuse4d.encoders.tokens import TokenType
from fuse4d.fusion.config import MODALITIES, ModelConfig
from fuse4d.fusion.gating import ModalityGate
from fuse4d.fusion.heads import DenseHead, PoseHead, RangeHead


class Block(nn.Module):
    """Pre-norm self-attention + MLP over ``[N, T, D]`` with an optional key mask ``[N, T]``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [N, T, D]``, ``key_mask [N, T]`` bool (True = attend) → ``[N, T, D]``."""
        N, T, D = x.shape
        q, k, v = self.qkv(self.n1(x)).view(N, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(a.transpose(1, 2).reshape(N, T, D))
        return x + self.mlp(self.n2(x))


class FusionModel(nn.Module):
    """The multimodal fusion model (trunk + heads).

    ``forward(inputs, state=None)`` takes a dict of batched window tensors (any subset):
    ``image [B,S,3,H,W]`` (0..1), ``lidar_view``/``depth_view [B,S,H,W]`` sparse depth (m) in
    the camera view, ``range [B,S,4,rows,cols]`` range images, ``imu [B,S,F]`` IMU features,
    each with ``<name>_valid [B,S]`` bool (default all True). Returns a dict of outputs
    (see :meth:`forward`).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.dim
        self.rgb = RGBEncoder(D, cfg.image_size, cfg.patch)
        self.lidar_view = DepthViewEncoder(D, cfg.image_size, cfg.depth_patch, cfg.max_depth)
        self.depth_view = DepthViewEncoder(D, cfg.image_size, cfg.depth_patch, cfg.max_depth)
        self.range = RangeEncoder(D, cfg.range_size, cfg.range_patch)
        self.imu = ImuEncoder(D, cfg.imu_bins, cfg.imu_tokens)
        self.types = TokenType(D)
        self.gate = ModalityGate(D)
        self.camera = nn.Parameter(torch.randn(2, 1 + cfg.registers, D) * 0.02)   # [first/other, 1+R, D]
        self.state0 = nn.Parameter(torch.randn(cfg.state_tokens, D) * 0.02)
        self.frame_blocks = nn.ModuleList(Block(D, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.blocks))
        self.global_blocks = nn.ModuleList(Block(D, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.blocks))
        self.norm = nn.LayerNorm(D)
        self.pose_head = PoseHead(D)
        self.dense_head = DenseHead(D, cfg.classes, cfg.desc_dim, cfg.max_depth, cfg.coords)
        self.range_head = RangeHead(D, cfg.classes, cfg.coords)

    def _encode(self, inputs: dict, B: int, S: int) -> tuple[list, dict]:
        """Encode every modality present → token groups ``(kind, modality, [B,S,P,D], valid [B,S])``."""
        groups, skips = [], {}

        def valid(name):
            v = inputs.get(f"{name}_valid")
            return torch.ones(B, S, dtype=torch.bool, device=self.camera.device) if v is None else v.bool()

        if inputs.get("image") is not None:
            tok, sk = self.rgb(inputs["image"].flatten(0, 1))
            groups.append(("rgb", "rgb", tok.view(B, S, *tok.shape[1:]), valid("image")))
            skips["rgb"] = sk
        for name, enc, modality in (("lidar_view", self.lidar_view, "lidar"), ("depth_view", self.depth_view, "depth")):
            if inputs.get(name) is not None:
                d = inputs[name].flatten(0, 1)
                tok, sk, prior = enc(d)
                v = valid("range" if name == "lidar_view" and inputs.get("range") is not None else name)
                groups.append((name, modality, tok.view(B, S, *tok.shape[1:]), v))
                skips[name] = (sk, prior)
        if inputs.get("range") is not None:
            tok, sk = self.range(inputs["range"].flatten(0, 1))
            groups.append(("lidar_range", "lidar", tok.view(B, S, *tok.shape[1:]), valid("range")))
            skips["range"] = sk
        if inputs.get("imu") is not None:
            tok = self.imu(inputs["imu"].flatten(0, 1))
            groups.append(("imu", "imu", tok.view(B, S, *tok.shape[1:]), valid("imu")))
        return groups, skips

    def forward(self, inputs: dict, state: dict | None = None, attn: bool = False) -> dict:
        """Run trunk and heads on a batch of windows.

        Returns:
            ``gate_logits [B,S,4]`` and ``gates [B,S,4]`` (rgb, lidar, imu, depth; NaN =
            absent), ``pose_t/pose_r [B,S,3]``, ``pose_logvar [B,S,6]``, and when a camera is
            present ``depth, depth_conf, dyn_logit [B,S,H,W]`` (model image resolution), ``sem_logits [B,S,C,H,W]``,
            ``desc [B,S,Cd,H/4,W/4]``; with LiDAR ``point_sem_logits [B,S,C,rows,cols]``,
            ``point_dyn_logit [B,S,rows,cols]``; ``attn_tokens`` (list of ``[B,S,P,D]``) when
            ``attn``; ``state`` (dict ``tokens [B,M,D]``, ``last_cam [B,D]``); ``token_spans``
            (token kind → ``(start, stop)`` within a frame's tokens).
        """
        ref = next(v for k, v in inputs.items() if torch.is_tensor(v) and not k.endswith("_valid"))
        B, S = ref.shape[:2]
        D, cfg = self.cfg.dim, self.cfg
        groups, skips = self._encode(inputs, B, S)
        if not groups:
            raise ValueError("the window has no sensor data (no camera, LiDAR or IMU)")
        out: dict = {}
        gate_logits = torch.zeros(B, S, len(MODALITIES), device=ref.device)
        gates = torch.full((B, S, len(MODALITIES)), float("nan"), device=ref.device)
        gate_w = {}
        for m_i, m in enumerate(MODALITIES):
            gs = [g for g in groups if g[1] == m]
            if not gs:
                continue
            v = gs[0][3]
            logit = self.gate(torch.cat([g[2] for g in gs], 2), m, v)
            gate_logits[..., m_i] = logit
            w = torch.sigmoid(logit)
            gates[..., m_i] = torch.where(v, w, torch.full_like(w, float("nan")))
            gate_w[m] = w * v
        out["gate_logits"], out["gates"] = gate_logits, gates
        role = (torch.arange(S, device=ref.device) > 0).long()
        parts = [self.camera[role][None].expand(B, S, -1, -1)]
        masks = [torch.ones(B, S, parts[0].shape[2], dtype=torch.bool, device=ref.device)]
        spans = {}
        start = parts[0].shape[2]
        for kind, m, tok, v in groups:
            tok = self.types(tok * gate_w[m][..., None, None], kind)
            parts.append(tok)
            masks.append(v[..., None].expand(B, S, tok.shape[2]))
            spans[kind] = (start, start + tok.shape[2])
            start = start + tok.shape[2]  # not +=: under ONNX tracing sizes are tensors and += would shift recorded spans
        x = torch.cat(parts, 2)                                   # [B, S, T, D]
        T = x.shape[2]
        mask = torch.cat(masks, 2)
        full = not any(k.endswith("_valid") for k in inputs) or bool(mask.all())  # no _valid: all valid (torch.export)
        st = self.state0[None].expand(B, -1, -1) if state is None else state["tokens"]
        M = st.shape[1]
        fmask = None if full else mask.view(B * S, T)
        gmask = None if full else torch.cat([mask.view(B, S * T), mask.new_ones(B, M)], 1)
        attn_tokens = []
        for fb, gb in zip(self.frame_blocks, self.global_blocks):
            x = fb(x.reshape(B * S, T, D), fmask).view(B, S, T, D)
            y = gb(torch.cat([x.reshape(B, S * T, D), st], 1), gmask)
            x, st = y[:, :S * T].reshape(B, S, T, D), y[:, S * T:]
            if attn and "rgb" in spans:
                a, b = spans["rgb"]
                attn_tokens.append(x[:, :, a:b])
        x = self.norm(x)
        out["state"] = {"tokens": st, "last_cam": x[:, -1, 0]}
        out["token_spans"] = {"camera": (0, 1 + cfg.registers), **spans}
        out["attn_tokens"] = attn_tokens
        imu_rot = imu_w = None
        if "imu" in gate_w:
            imu_rot, imu_w = inputs["imu"][..., :3], gate_w["imu"]        # features start with ΔR (axis-angle)
        out.update(self.pose_head(x[:, :, 0], None if state is None else state["last_cam"], imu_rot, imu_w))
        if "rgb" in spans:
            out.update(self._dense(x, spans, skips, gate_w, B, S))
        if "lidar_range" in spans:
            a, b = spans["lidar_range"]
            grid = (cfg.range_size[0] // cfg.range_patch[0], cfg.range_size[1] // cfg.range_patch[1])
            r = self.range_head(x[:, :, a:b].flatten(0, 1), grid, skips["range"], cfg.range_size)
            out.update({k: v.view(B, S, *v.shape[1:]) for k, v in r.items()})
        return out

    def _dense(self, x, spans, skips, gate_w, B, S) -> dict:
        a, b = spans["rgb"]
        g_rgb = gate_w["rgb"].flatten()[:, None, None, None]
        sk = [s * g_rgb for s in skips["rgb"]]
        depth_skip = depth_full = prior = None
        for name, m in (("lidar_view", "lidar"), ("depth_view", "depth")):
            if name in skips:
                g = gate_w[m].flatten()[:, None, None, None]
                feat, full = skips[name][0] * g, skips[name][1]
                fill, support = full[:, 2:3], full[:, 3:4]
                w = support * g
                p = torch.cat([fill * math.log(self.cfg.max_depth), w], 1)
                depth_skip = feat if depth_skip is None else depth_skip + feat
                depth_full = full * g if depth_full is None else torch.where(w > prior[:, 1:], full * g, depth_full)
                prior = p if prior is None else torch.where(w > prior[:, 1:], p, prior)
        d = self.dense_head(x[:, :, a:b].flatten(0, 1), self.cfg.patch_grid, sk, depth_skip, depth_full, prior)
        return {k: v.view(B, S, *v.shape[1:]) for k, v in d.items()}
