"""Dynamic cue mined from the fusion model's global-attention tokens (VGGT4D-style).

VGGT4D observes that in a geometry transformer's global attention, image patches
of the static world find consistent partners in the other frames of the window
(their token similarity — the Gram matrix of the layer's tokens across frames —
is high, and stable over frames), while patches of moving objects do not: the
scene behind them changed, so their best matches in other frames are weak and
vary. We measure, per patch token and exposed layer, the mean of its ``topk``
best cosine similarities in every other frame, average that over the best quarter
of the frames (a static place leaves the view as the camera moves) and layers, and call a patch moving when this match strength is an outlier low in
its window: the window's match strengths are split in two groups (Otsu) when
they clearly form two, else only robust outliers count (most of a scene is static).
"""

from __future__ import annotations

import numpy as np

from fuse4d.errors import DataError


def cross_frame_similarity(tokens: np.ndarray, layers: list[int] | None = None, topk: int = 1,
                           max_gap: int | None = None) -> np.ndarray:
    """Match strength of each patch token with the other frames of the window.

    Args:
        tokens: ``[L, S, P, D]`` image-patch tokens after L global-attention layers.
        layers: layer indices to use (None = all).
        topk: best matches in a frame that are averaged.
        max_gap: only frames at most this far apart are compared (None = all).
    Returns:
        ``[S, P]`` float32 mean (over layers and the best quarter of the other frames) of the top-k
        cosine similarity;
        NaN for a window of one frame.
    Raises:
        DataError: tokens not 4-D.
    """
    tokens = np.asarray(tokens, np.float32)
    if tokens.ndim != 4:
        raise DataError(None, f"attention tokens must be [L, S, P, D], got shape {list(tokens.shape)}")
    if layers is not None:
        tokens = tokens[list(layers)]
    L, S, P, _ = tokens.shape
    if S < 2:
        return np.full((S, P), np.nan, np.float32)
    x = tokens / np.maximum(np.linalg.norm(tokens, axis=-1, keepdims=True), 1e-8)
    k = min(topk, P)
    total = np.zeros((S, P), np.float64)
    count = np.zeros((S, 1), np.float64)
    for s in range(S):
        others = [t for t in range(S) if t != s and (max_gap is None or abs(t - s) <= max_gap)]
        if not others:
            continue
        # Gram of frame s's tokens with every other frame's: [L, P, len(others) * P]
        gram = np.einsum("lpd,ltqd->ltpq", x[:, s], x[:, others])
        best = -np.partition(-gram, k - 1, axis=-1)[..., :k].mean(-1)  # [L, T, P]
        # the best quarter of the other frames: a static place leaves the view as the camera moves,
        # so it has partners in the frames near it, not in all; a moving one has them in none
        part = max(1, len(others) // 4)
        top = -np.partition(-best, part - 1, axis=1)[:, :part]
        total[s] = top.mean(axis=(0, 1))
        count[s] = 1
    return np.where(count > 0, total, np.nan).astype(np.float32)


def split_threshold(values: np.ndarray, min_separation: float = 0.78, z_threshold: float = 3.0
                    ) -> tuple[float, float]:
    """Threshold and softness between weak (moving) and strong (static) match strengths ``[M]``.

    Midway between the two groups of Otsu's split of the histogram, when the values clearly form two (between-class share
    of the variance ≥ ``min_separation``; one Gaussian gives 0.64); otherwise the window is
    taken as all static and only robust outliers (``z_threshold`` MADs below the median) count.
    Returns ``(threshold, scale)``: probability ``sigmoid((threshold − value) / scale)``.
    """
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    med = float(np.median(v))
    mad = 1.4826 * float(np.median(np.abs(v - med))) + 1e-3
    hist, edges = np.histogram(v, 64)
    c = (edges[:-1] + edges[1:]) / 2
    p = hist / max(hist.sum(), 1)
    w0, m = np.cumsum(p), np.cumsum(p * c)
    between = (m[-1] * w0 - m) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    k = int(np.argmax(between))
    if v.var() > 0 and between[k] / v.var() >= min_separation:
        lo, hi = v[v <= c[k]].mean(), v[v > c[k]].mean()
        return float(lo + hi) / 2, max(float(hi - lo) / 8.0, 1e-3)  # midway between the groups' means
    return med - z_threshold * mad, mad


def attention_cue(tokens: np.ndarray, patch_grid: tuple[int, int], image_size: tuple[int, int],
                  layers: list[int] | None = None, topk: int = 1) -> np.ndarray:
    """Per-pixel moving probability from the attention tokens of a window.

    Args:
        tokens: ``[L, S, P, D]``; patch_grid: ``(h, w)`` with ``h * w == P``;
        image_size: ``(H, W)`` pixels of the output.
    Returns:
        ``[S, H, W]`` float32 in [0, 1] (0 where the window has one frame).
    Raises:
        DataError: ``patch_grid`` does not match P.
    """
    from scipy.ndimage import zoom

    h, w = patch_grid
    sim = cross_frame_similarity(tokens, layers, topk)
    S, P = sim.shape
    if h * w != P:
        raise DataError(None, f"patch grid {h}x{w} does not hold the {P} tokens per frame")
    if not np.isfinite(sim).any():
        return np.zeros((S, *image_size), np.float32)
    thr, scale = split_threshold(sim.ravel())
    z = np.clip((thr - np.nan_to_num(sim, nan=thr + 50 * scale)) / scale, -50, 50)
    prob = 1.0 / (1.0 + np.exp(-z))
    grid = prob.reshape(S, h, w)
    H, W = image_size
    out = zoom(grid, (1, H / h, W / w), order=1, mode="nearest", grid_mode=True)
    return np.clip(out[:, :H, :W], 0.0, 1.0).astype(np.float32)
