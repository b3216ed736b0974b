"""Adaptive modality weighting: a gate reads each modality's summary token (the mean of
that modality's tokens in a frame) and outputs a per-frame weight in [0, 1] that scales
the modality's tokens (and its skip features in the heads).

Trained by the task losses and, during training, an auxiliary target ``1 - corruption``
that the augmentation knows (see ``fusion/train.py``); the weights are a model output.
"""

from __future__ import annotations

import torch
from torch import nn

from fuse4d.fusion.config import MODALITIES


class ModalityGate(nn.Module):
    """Per-frame modality weights from summary tokens.

    Args:
        dim: token width D.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.modality = nn.Parameter(torch.randn(len(MODALITIES), dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, 1))
        nn.init.constant_(self.mlp[2].bias, 2.0)      # start open (sigmoid(2) = 0.88)

    def forward(self, tokens: torch.Tensor, modality: str, frame_valid: torch.Tensor | None = None) -> torch.Tensor:
        """Gate logits of one modality.

        Args:
            tokens: ``[B, S, P, D]`` the modality's tokens (all of its token kinds).
            modality: a name in ``MODALITIES``.
            frame_valid: ``[B, S]`` bool, frames that have the modality (None = all).

        Returns:
            logits ``[B, S]`` (weight = sigmoid(logit)); invalid frames get logit 0.
        """
        summary = tokens.mean(2) + self.modality[MODALITIES.index(modality)]
        logit = self.mlp(self.norm(summary)).squeeze(-1)
        if frame_valid is not None:
            logit = torch.where(frame_valid, logit, torch.zeros_like(logit))
        return logit
