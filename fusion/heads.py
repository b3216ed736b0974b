"""Heads of the fusion model: each reads trunk tokens and writes named outputs.

- :class:`PoseHead`: relative motion of consecutive frames (metric translation, axis-angle
  rotation) and a diagonal log-variance (→ 6×6 covariance), from camera tokens.
- :class:`DenseHead`: per-pixel depth + confidence (DUSt3R's ``1 + exp``), semantics and
  dynamic logit at the model's full image resolution, and L2-normalised matching
  descriptors (MASt3R's idea) at stride 4.
- :class:`RangeHead`: per range-image pixel semantics and dynamics, read back per LiDAR point.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU(inplace=True))


def _coords(x: torch.Tensor) -> torch.Tensor:
    """``[N, 2, h, w]`` pixel-centre coordinates of ``x [N, C, h, w]`` in [-1, 1] (column, row)."""
    N, _, h, w = x.shape
    v = (torch.arange(h, dtype=x.dtype, device=x.device) + 0.5) * (2.0 / h) - 1.0
    u = (torch.arange(w, dtype=x.dtype, device=x.device) + 0.5) * (2.0 / w) - 1.0
    return torch.stack([u.view(1, w).expand(h, w), v.view(h, 1).expand(h, w)]).expand(N, 2, h, w)


def _grid(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``[N, P, C]`` → ``[N, C, h, w]``."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, grid[0], grid[1])


class PoseHead(nn.Module):
    """Camera tokens → relative pose of frame i-1 → i in the reference sensor frame."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(3 * dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim), nn.GELU(),
                                 nn.Linear(dim, 12))

    def forward(self, cam: torch.Tensor, prev_last: torch.Tensor | None,
                imu_rot: torch.Tensor | None = None, imu_weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``cam [B, S, D]``, ``prev_last [B, D]`` (previous window's last frame, or None);
        ``imu_rot [B, S, 3]`` the gyro-preintegrated rotation of each frame's interval (axis-angle,
        rad, reference frame) and ``imu_weight [B, S]`` its gate (0 where absent): the rotation is
        then predicted as a residual on the IMU's, so a clean gyro gives its accuracy directly.

        Returns ``pose_t [B, S, 3]`` m, ``pose_r [B, S, 3]`` rad, ``pose_logvar [B, S, 6]``
        (t then r); row 0 is meaningful only when ``prev_last`` is given.
        """
        c = self.norm(cam)
        first = torch.zeros_like(c[:, :1]) if prev_last is None else self.norm(prev_last)[:, None]
        prev = torch.cat([first, c[:, :-1]], 1)
        out = self.mlp(torch.cat([prev, c, c - prev], -1))
        r = out[..., 3:6] * 0.1
        if imu_rot is not None:
            r = r + imu_weight[..., None] * imu_rot
        return {"pose_t": out[..., :3], "pose_r": r, "pose_logvar": out[..., 6:].clamp(-14.0, 6.0)}


class DenseHead(nn.Module):
    """Image tokens + stem skips → depth, confidence, semantics, dynamic (at the model's full
    image resolution) and descriptors (at a quarter).

    Args:
        dim: token width; classes: semantic classes; desc_dim: descriptor channels;
        max_depth: metres; coords: pixel-coordinate channels at half and full resolution.
    """

    def __init__(self, dim: int, classes: int, desc_dim: int, max_depth: float, coords: bool = False):
        super().__init__()
        self.classes, self.max_depth, self.coords = classes, max_depth, coords
        c = 2 if coords else 0
        self.proj = nn.Linear(dim, 64)
        self.up8 = _conv(64 + 48, 64)
        self.up4 = _conv(64 + 32 + 16, 48)
        self.desc = nn.Conv2d(48, desc_dim, 1)
        self.up2 = _conv(48 + 16 + 16 + c, 32)
        self.up1 = nn.Sequential(_conv(32 + 8 + 4 + c, 24), _conv(24, 24))
        self.out = nn.Conv2d(24, 3 + classes, 1)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int], skips: list[torch.Tensor],
                depth_skip: torch.Tensor | None, depth_full: torch.Tensor | None,
                depth_prior: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Decode one batch of frames.

        Args:
            tokens: ``[N, P, D]`` image tokens; grid: ``(h, w)`` patches.
            skips: RGB stem ``[s1 [N,8,H,W], s2 [N,16,H/2,W/2], s4 [N,32,H/4,W/4], s8 [N,48,H/8,W/8]]``.
            depth_skip: ``[N, 16, H/2, W/2]`` sparse-depth features (gated), or None.
            depth_full: ``[N, 4, H, W]`` sparse-depth channels at full resolution (gated), or None.
            depth_prior: ``[N, 2, H, W]`` densified log-depth prior (log m) and its weight
                in [0, 1] (support × gate), or None.

        Returns (at ``H × W``) ``depth [N,H,W]`` m, ``depth_conf [N,H,W]`` (> 1),
        ``sem_logits [N,C,H,W]``, ``dyn_logit [N,H,W]``; ``desc [N,desc_dim,H/4,W/4]`` (unit length).
        """
        s1, s2, s4, s8 = skips
        N = s2.shape[0]
        if depth_skip is None:
            depth_skip = s2.new_zeros(N, 16, *s2.shape[-2:])
        if depth_full is None:
            depth_full = s1.new_zeros(N, 4, *s1.shape[-2:])
        x = F.interpolate(_grid(self.proj(tokens), grid), size=s8.shape[-2:], mode="bilinear", align_corners=False)
        x = self.up8(torch.cat([x, s8], 1))
        x = F.interpolate(x, size=s4.shape[-2:], mode="bilinear", align_corners=False)
        x = self.up4(torch.cat([x, s4, F.avg_pool2d(depth_skip, 2)], 1))
        desc = F.normalize(self.desc(x), dim=1)
        x = F.interpolate(x, size=s2.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([x, s2, depth_skip] + ([_coords(x)] if self.coords else []), 1)
        x = self.up2(x)
        x = F.interpolate(x, size=s1.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([x, s1, depth_full] + ([_coords(x)] if self.coords else []), 1)
        o = self.out(self.up1(x))
        log_d = o[:, 0] + math.log(10.0)
        if depth_prior is not None:
            w = depth_prior[:, 1]
            log_d = o[:, 0] + w * depth_prior[:, 0] + (1 - w) * math.log(10.0)
        depth = torch.exp(log_d.clamp(math.log(0.1), math.log(self.max_depth)))
        return {"depth": depth, "depth_conf": 1.0 + torch.exp(o[:, 1].clamp(-10, 10)),
                "dyn_logit": o[:, 2], "sem_logits": o[:, 3:], "desc": desc}


class RangeHead(nn.Module):
    """Range tokens + range-stem skips → per-pixel semantics and dynamic logit on the
    range image (``[N, C, rows, cols]``, ``[N, rows, cols]``); ``coords`` adds pixel-coordinate
    channels (a row of the range image is a beam elevation)."""

    def __init__(self, dim: int, classes: int, coords: bool = False):
        super().__init__()
        self.coords = coords
        c = 2 if coords else 0
        self.proj = nn.Linear(dim, 48)
        self.c2 = _conv(48 + 32 + c, 32)
        self.c1 = _conv(32 + 16 + c, 32)
        self.out = nn.Conv2d(32, classes + 1, 1)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int], skips: list[torch.Tensor],
                size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """``tokens [N, P_r, D]``, skips ``[s1, s2]`` of the range encoder, ``size`` = range image
        ``(rows, cols)`` → ``point_sem_logits [N, C, rows, cols]``, ``point_dyn_logit [N, rows, cols]``."""
        s1, s2 = skips
        x = F.interpolate(_grid(self.proj(tokens), grid), size=s2.shape[-2:], mode="bilinear", align_corners=False)
        x = self.c2(torch.cat([x, s2] + ([_coords(x)] if self.coords else []), 1))
        x = F.interpolate(x, size=s1.shape[-2:], mode="bilinear", align_corners=False)
        x = self.c1(torch.cat([x, s1] + ([_coords(x)] if self.coords else []), 1))
        o = F.interpolate(self.out(x), size=size, mode="bilinear", align_corners=False)
        return {"point_sem_logits": o[:, 1:], "point_dyn_logit": o[:, 0]}
