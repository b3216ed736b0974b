"""RGB → tokens: a conv stem (stride 8) and a patch embedding, plus the stem's skip
features for the dense head. Images enter as float ``[N, 3, H, W]`` in [0, 1]."""

from __future__ import annotations

import torch
from torch import nn

_MEAN, _STD = 0.45, 0.25


class RGBEncoder(nn.Module):
    """Image ``[N, 3, H, W]`` (0..1) → patch tokens ``[N, P, D]`` (``P = H/patch * W/patch``)
    and skips ``[s1 [N,8,H,W], s2 [N,16,H/2,W/2], s4 [N,32,H/4,W/4], s8 [N,48,H/8,W/8]]``."""

    def __init__(self, dim: int, size: tuple[int, int], patch: int):
        super().__init__()
        self.s1 = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(inplace=True))       # full-resolution skip
        self.s2 = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(inplace=True))
        self.s4 = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(inplace=True))
        self.s8 = nn.Sequential(nn.Conv2d(32, 48, 3, 2, 1), nn.ReLU(inplace=True), nn.Conv2d(48, 48, 3, 1, 1),
                                nn.ReLU(inplace=True))
        k = patch // 8
        self.embed = nn.Conv2d(48, dim, k, k)
        self.pos = nn.Parameter(torch.randn(1, (size[0] // patch) * (size[1] // patch), dim) * 0.02)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``image [N, 3, H, W]`` → tokens ``[N, P, D]``, skips ``[s1, s2, s4, s8]``."""
        x = (image - _MEAN) / _STD
        s1 = self.s1(x)
        s2 = self.s2(x)
        s4 = self.s4(s2)
        s8 = self.s8(s4)
        tok = self.embed(s8).flatten(2).transpose(1, 2)
        return tok + self.pos, [s1, s2, s4, s8]
