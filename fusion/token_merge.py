"""Token merging for long windows (ToMe, Bolya et al. 2023; per-block merge/unmerge as in
ToMe for Stable Diffusion), applied to a :class:`FusionModel` from outside.

``merge_tokens(model, ratio)`` returns a copy whose attention blocks are wrapped: each
block merges, per frame, the ``ratio`` most redundant of the frame's patch tokens into their
most similar partner (bipartite soft matching on cosine similarity: alternate tokens are
sources and destinations, the best-matched sources are averaged into their destination),
runs the block on the shorter sequence with proportional attention (``log(size)`` added to
the attention logits, so a merged token weighs as the tokens it stands for), and unmerges
the block's update (each merged source gets its destination's update) before the residual.
Camera and register tokens and the recurrent state tokens are never merged. The global
attention, quadratic in ``S × T``, sees ``(1 - ratio)`` of the patch tokens of every frame;
the heads read full-size tokens. ``ratio = 0`` is the original model exactly.

    fast = merge_tokens(model, 0.5)     # a new module; ``model`` is untouched
"""

from __future__ import annotations

import copy

import torch
from torch import nn
import torch.nn.functional as F


class _Merge:
    """One bipartite matching of ``x [N, T, D]`` (first ``keep`` tokens protected), removing
    ``r`` tokens per row; :meth:`merge` / :meth:`unmerge` apply it."""

    def __init__(self, x: torch.Tensor, keep: int, r: int, key_mask: torch.Tensor | None):
        N, T, D = x.shape
        self.keep, self.T = keep, T
        m = F.normalize(x[:, keep:], dim=-1)
        a, b = m[:, 0::2], m[:, 1::2]                     # sources, destinations
        scores = a @ b.transpose(1, 2)                    # [N, Ta, Tb]
        if key_mask is not None:                          # absent tokens are never merged
            va, vb = key_mask[:, keep:][:, 0::2], key_mask[:, keep:][:, 1::2]
            scores = scores.masked_fill(~(va[:, :, None] & vb[:, None, :]), -torch.inf)
        best, dst = scores.max(-1)                        # [N, Ta]
        order = best.argsort(-1, descending=True)
        self.r = r = min(r, a.shape[1])
        self.src, self.unm = order[:, :r], order[:, r:]   # merged / kept sources
        self.dst = dst.gather(1, self.src)                # destination of each merged source
        self.Ta, self.Tb = a.shape[1], b.shape[1]

    def merge(self, x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        """``[N, T, C]`` → ``[N, T - r, C]`` (``keep`` | kept sources | destinations)."""
        head, rest = x[:, :self.keep], x[:, self.keep:]
        a, b = rest[:, 0::2], rest[:, 1::2]
        C = x.shape[-1]
        unm = a.gather(1, self.unm[..., None].expand(-1, -1, C))
        src = a.gather(1, self.src[..., None].expand(-1, -1, C))
        b = b.scatter_reduce(1, self.dst[..., None].expand(-1, -1, C), src, reduce=mode)
        return torch.cat([head, unm, b], 1)

    def unmerge(self, y: torch.Tensor) -> torch.Tensor:
        """``[N, T - r, C]`` → ``[N, T, C]``: merged sources take their destination's value."""
        N, _, C = y.shape
        k, n_unm = self.keep, self.Ta - self.r
        head, unm, b = y[:, :k], y[:, k:k + n_unm], y[:, k + n_unm:]
        a = y.new_empty(N, self.Ta, C)
        a.scatter_(1, self.unm[..., None].expand(-1, -1, C), unm)
        a.scatter_(1, self.src[..., None].expand(-1, -1, C), b.gather(1, self.dst[..., None].expand(-1, -1, C)))
        rest = y.new_empty(N, self.T - k, C)
        rest[:, 0::2], rest[:, 1::2] = a, b
        return torch.cat([head, rest], 1)


def _attn_bias(size: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Additive attention mask ``[N, T']``: ``log(size)``, ``-inf`` for absent keys."""
    bias = size.log()
    return bias if key_mask is None else bias.masked_fill(~key_mask, -torch.inf)


class _Shape:
    """Tokens per frame, shared by a frame block and the global block after it."""
    T: int = 0


class MergedFrameBlock(nn.Module):
    """A frame-attention ``Block`` (``[B*S, T, D]``) run on merged tokens."""

    def __init__(self, block: nn.Module, ratio: float, keep: int, shape: _Shape):
        super().__init__()
        self.block, self.ratio, self.keep, self.shape = block, ratio, keep, shape

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Same contract as ``Block.forward``: ``x [N, T, D]`` → ``[N, T, D]``."""
        self.shape.T = x.shape[1]
        r = int(self.ratio * (x.shape[1] - self.keep))
        if r < 1:
            return self.block(x, key_mask)
        mg = _Merge(x, self.keep, r, key_mask)
        size = mg.merge(x.new_ones(*x.shape[:2], 1), "sum")[..., 0]
        km = None if key_mask is None else mg.merge(key_mask[..., None].float(), "amax")[..., 0] > 0
        xm = mg.merge(x)
        return x + mg.unmerge(self.block(xm, _attn_bias(size, km)) - xm)


class MergedGlobalBlock(nn.Module):
    """A global-attention ``Block`` (``[B, S*T + M, D]``, state tokens last) run on tokens
    merged within each frame."""

    def __init__(self, block: nn.Module, ratio: float, keep: int, shape: _Shape, state_tokens: int):
        super().__init__()
        self.block, self.ratio, self.keep, self.shape, self.M = block, ratio, keep, shape, state_tokens

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Same contract as ``Block.forward``: ``x [B, S*T + M, D]`` → same shape."""
        T = self.shape.T
        B, L, D = x.shape
        r = int(self.ratio * (T - self.keep)) if T else 0
        if r < 1:
            return self.block(x, key_mask)
        M = self.M                               # the state tokens follow the S*T frame tokens
        S = (L - M) // T
        fr = x[:, :S * T].reshape(B * S, T, D)
        fm = None if key_mask is None else key_mask[:, :S * T].reshape(B * S, T)
        mg = _Merge(fr, self.keep, r, fm)
        size = mg.merge(fr.new_ones(B * S, T, 1), "sum")[..., 0].reshape(B, -1)
        size = torch.cat([size, x.new_ones(B, M)], 1)
        km = None
        if key_mask is not None:
            km = mg.merge(fm[..., None].float(), "amax")[..., 0].reshape(B, -1) > 0
            km = torch.cat([km, key_mask[:, S * T:]], 1)
        xm = torch.cat([mg.merge(fr).reshape(B, -1, D), x[:, S * T:]], 1)
        d = self.block(xm, _attn_bias(size, km)) - xm
        n = d.shape[1] - M
        df = mg.unmerge(d[:, :n].reshape(B * S, -1, D)).reshape(B, S * T, D)
        return x + torch.cat([df, d[:, n:]], 1)


def merge_tokens(model: nn.Module, ratio: float) -> nn.Module:
    """A copy of a :class:`FusionModel` whose frame and global attention run on merged tokens.

    Args:
        model: the float model (not changed).
        ratio: fraction of each frame's patch tokens merged away in every block, in [0, 0.5]
            (bipartite matching merges at most half).
    Returns:
        the wrapped copy (same ``forward`` contract and outputs).
    """
    from fuse4d.errors import ConfigError
    if not 0.0 <= ratio <= 0.5:
        raise ConfigError(f"token merging ratio must be in [0, 0.5], got {ratio}")
    m = copy.deepcopy(model).eval()
    if ratio == 0:
        return m
    keep = 1 + m.cfg.registers
    shape = _Shape()
    m.frame_blocks = nn.ModuleList(MergedFrameBlock(b, ratio, keep, shape) for b in m.frame_blocks)
    m.global_blocks = nn.ModuleList(MergedGlobalBlock(b, ratio, keep, shape, m.cfg.state_tokens)
                                    for b in m.global_blocks)
    return m
