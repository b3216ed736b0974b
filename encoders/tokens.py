"""The shared token type: every token gets a modality embedding and a frame-role
embedding (first frame of the window or not), so the trunk knows what and whose a token is."""

from __future__ import annotations

import torch
from torch import nn

#: token kinds of the trunk (camera and register tokens have their own learned values)
TOKEN_KINDS = ("rgb", "lidar_range", "lidar_view", "depth_view", "imu")


class TokenType(nn.Module):
    """Adds ``kind`` and frame-role embeddings to tokens ``[B, S, P, D]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.kind = nn.Parameter(torch.randn(len(TOKEN_KINDS), dim) * 0.02)
        self.role = nn.Parameter(torch.randn(2, dim) * 0.02)

    def forward(self, tokens: torch.Tensor, kind: str) -> torch.Tensor:
        """``tokens [B, S, P, D]`` → same shape with the type of ``kind`` and the role
        (frame 0 = first) added."""
        S = tokens.shape[1]
        role = self.role[(torch.arange(S, device=tokens.device) > 0).long()]       # [S, D]
        return tokens + self.kind[TOKEN_KINDS.index(kind)] + role[None, :, None, :]
