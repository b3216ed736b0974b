"""Training losses of the fusion model: supervised pose/depth/semantic/dynamic
terms and the self-supervised projection-consistency and epipolar terms.

All functions take torch tensors, batch first (B batch, S frames, H W image,
C classes, M correspondences), return a differentiable scalar, and ignore
pixels without a label. Transforms follow DESIGN.md: ``T_j_i`` maps points from
frame i to frame j. Pixel coordinates are ``(u, v)`` = (column, row) with pixel
centres at integer positions.

The forms follow the literature, written anew here:
- depth: DUSt3R's confidence-weighted regression ``c·err − α·log c``, with a
  scale-aware error ``|log d − log d_gt|`` (metres in, unitless out);
- dynamics: class-balanced binary cross-entropy (moving pixels are rare);
- pose: Gaussian negative log-likelihood with diagonal log-variances;
- projection consistency: monodepth2's photometric error
  ``0.85·(1 − SSIM)/2 + 0.15·|ΔI|`` on pixels warped with depth and pose, plus a
  relative depth error where the other frame has depth;
- epipolar: the Sampson distance (pixels²) under ``F = K_j^-T [t]_x R K_i^-1``.
"""

from __future__ import annotations

import pypose as pp
import torch
import torch.nn.functional as F

_EPS = 1e-6


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ``mask`` (same shape); 0 (still attached to the graph) if empty."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


# --------------------------------------------------------------------------- supervised

def depth_conf_loss(depth: torch.Tensor, conf: torch.Tensor, gt: torch.Tensor,
                    alpha: float = 0.2) -> torch.Tensor:
    """DUSt3R confidence-weighted depth regression.

    ``mean over valid pixels of conf · |log depth − log gt| − alpha · log conf``.

    Args:
        depth: ``[B, S, H, W]`` predicted depth, metres (> 0; clamped at 1e-3).
        conf: ``[B, S, H, W]`` confidence (> 0, e.g. ``1 + exp(x)``).
        gt: ``[B, S, H, W]`` ground-truth depth, metres; 0 = no value.
        alpha: weight of the ``−log conf`` regulariser.
    Returns:
        scalar; with ``err = 0`` its value is ``−alpha·mean(log conf)`` (its minimum
        for that confidence), and it grows with ``|log(depth/gt)|``.
    """
    valid = gt > 0
    err = (torch.log(depth.clamp_min(1e-3)) - torch.log(gt.clamp_min(1e-3))).abs()
    return _masked_mean(conf * err - alpha * torch.log(conf.clamp_min(_EPS)), valid)


def semantic_loss(logits: torch.Tensor, gt: torch.Tensor, ignore_index: int = 0,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel-wise cross-entropy over the classes of ``data/classes.py``.

    Args:
        logits: ``[B, S, C, H, W]`` unnormalised class scores.
        gt: ``[B, S, H, W]`` int64 class ids; ``ignore_index`` (0 = unlabeled) is skipped.
        weight: optional ``[C]`` weight per class id (0 = unlabeled, unused); the loss is then
            the weighted mean ``Σ w[y]·CE / Σ w[y]`` (rare classes count more, see
            :func:`class_balance_weights`).
    Returns:
        scalar mean over labelled pixels (0 when none is labelled).
    """
    B, S, C, H, W = logits.shape
    flat_logits = logits.reshape(B * S, C, H, W)
    flat_gt = gt.reshape(B * S, H, W).long()
    per_pixel = F.cross_entropy(flat_logits, flat_gt, ignore_index=ignore_index, reduction="none")
    mask = (flat_gt != ignore_index).to(per_pixel.dtype)
    if weight is not None:
        mask = mask * weight.to(per_pixel)[flat_gt.clamp(0, weight.numel() - 1)]
    return (per_pixel * mask).sum() / mask.sum().clamp_min(1e-6)


def class_balance_weights(counts, power: float = 0.5, cap: float = 10.0) -> torch.Tensor:
    """Per-class loss weights from label counts: ``(f_c)^-power`` normalised so that the
    frequency-weighted mean weight is 1, capped at ``cap``; class 0 (unlabeled) and classes
    never seen get weight 1.

    Args:
        counts: ``[C]`` label counts per class id (index 0 = unlabeled, not counted).
        power: 0 = plain cross-entropy, 0.5 = inverse square-root frequency, 1 = inverse.
    Returns:
        ``[C]`` float32 weights.
    """
    import numpy as np
    c = np.asarray(counts, np.float64).copy()
    c[0] = 0
    f = c / max(c.sum(), 1.0)
    w = np.ones_like(f)
    seen = f > 0
    w[seen] = f[seen] ** -power
    w[seen] /= float((f[seen] * w[seen]).sum())
    return torch.as_tensor(np.minimum(w, cap), dtype=torch.float32)


def dynamic_loss(logit: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Class-balanced binary cross-entropy of the moving-probability logit.

    Moving and static pixels each contribute half of the loss, whatever their
    counts (a window with no moving pixel uses the static half alone).

    Args:
        logit: ``[B, S, H, W]`` logit of P(moving).
        gt: ``[B, S, H, W]`` bool/float, 1 = moving.
        valid: optional ``[B, S, H, W]`` bool mask of labelled pixels.
    Returns:
        scalar.
    """
    target = gt.to(logit.dtype)
    bce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    valid = torch.ones_like(target, dtype=torch.bool) if valid is None else valid.bool()
    pos = valid & (target > 0.5)
    neg = valid & (target <= 0.5)
    if not bool(pos.any()):
        return _masked_mean(bce, neg)
    if not bool(neg.any()):
        return _masked_mean(bce, pos)
    return 0.5 * _masked_mean(bce, pos) + 0.5 * _masked_mean(bce, neg)


def pose_to_matrix(t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Translations ``[..., 3]`` (m) and axis-angle rotations ``[..., 3]`` (rad) → ``[..., 4, 4]``."""
    R = pp.so3(r).Exp().matrix()
    top = torch.cat([R, t.unsqueeze(-1)], dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def pose_residual(t_pred: torch.Tensor, r_pred: torch.Tensor, T_gt: torch.Tensor) -> torch.Tensor:
    """Residual ``[..., 6]`` of a predicted pose against ``T_gt [..., 4, 4]``.

    Translation error ``t_pred − t_gt`` (m) first, then the rotation error
    ``Log(R_gt^T · Exp(r_pred))`` (rad, axis-angle, geodesic).
    """
    R_gt = pp.mat2SO3(T_gt[..., :3, :3].to(r_pred.dtype), check=False)
    r_err = (R_gt.Inv() @ pp.so3(r_pred).Exp()).Log().tensor()
    return torch.cat([t_pred - T_gt[..., :3, 3].to(t_pred.dtype), r_err], dim=-1)


def pose_nll(t_pred: torch.Tensor, r_pred: torch.Tensor, log_var: torch.Tensor,
             T_gt: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Gaussian negative log-likelihood of a relative pose with diagonal covariance.

    ``0.5 · Σ_k (e_k² · exp(−log_var_k) + log_var_k)`` averaged over frames, with
    ``e`` from :func:`pose_residual` (translation m, rotation rad).

    Args:
        t_pred: ``[B, S, 3]`` translation of ``T_prev_cur``, metres.
        r_pred: ``[B, S, 3]`` axis-angle rotation of ``T_prev_cur``, radians.
        log_var: ``[B, S, 6]`` log variances (m², then rad²).
        T_gt: ``[B, S, 4, 4]`` ground-truth relative poses.
        valid: optional ``[B, S]`` bool (e.g. False for a window's first frame
            without a previous frame, or NaN ground truth).
    Returns:
        scalar; minimal over the pose at the true pose, and there minimal over
        ``log_var`` at ``−inf`` (clamp ``log_var`` in the head).
    """
    finite = torch.isfinite(T_gt).flatten(-2).all(-1)
    valid = finite if valid is None else valid.bool() & finite
    T_safe = torch.where(finite[..., None, None], T_gt, torch.eye(4, dtype=T_gt.dtype, device=T_gt.device))
    e = pose_residual(t_pred, r_pred, T_safe)
    nll = 0.5 * (e.square() * torch.exp(-log_var) + log_var).sum(-1)
    return _masked_mean(nll, valid)


# --------------------------------------------------------------------------- self-supervised

def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM ``[B, 3, H, W]`` of images ``[B, 3, H, W]`` in [0, 1] (3×3 windows)."""
    pad = lambda a: F.pad(a, (1, 1, 1, 1), mode="reflect")  # noqa: E731
    mu_x, mu_y = F.avg_pool2d(pad(x), 3, 1), F.avg_pool2d(pad(y), 3, 1)
    sxx = F.avg_pool2d(pad(x * x), 3, 1) - mu_x ** 2
    syy = F.avg_pool2d(pad(y * y), 3, 1) - mu_y ** 2
    sxy = F.avg_pool2d(pad(x * y), 3, 1) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2)
    return (num / den).clamp(-1.0, 1.0)


def project_to(depth_i: torch.Tensor, T_j_i: torch.Tensor, K: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-project every pixel of frame i with its depth, move it into frame j, project.

    Args:
        depth_i: ``[B, H, W]`` metres.
        T_j_i: ``[B, 4, 4]`` frame i → frame j (camera frames).
        K: ``[B, 3, 3]`` intrinsics (same camera in both frames).
    Returns:
        ``uv_j [B, H, W, 2]`` pixel coordinates in j and ``z_j [B, H, W]`` depth in j (m).
    """
    B, H, W = depth_i.shape
    v, u = torch.meshgrid(torch.arange(H, dtype=depth_i.dtype, device=depth_i.device),
                          torch.arange(W, dtype=depth_i.dtype, device=depth_i.device), indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], -1).reshape(1, H * W, 3)
    rays = pix @ torch.linalg.inv(K.to(depth_i.dtype)).transpose(1, 2)        # [B, HW, 3]
    X_i = rays * depth_i.reshape(B, H * W, 1)
    T = T_j_i.to(depth_i.dtype)
    X_j = X_i @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]
    x_j = X_j @ K.to(depth_i.dtype).transpose(1, 2)
    z_j = x_j[..., 2]
    uv_j = x_j[..., :2] / z_j.clamp_min(_EPS).unsqueeze(-1)
    return uv_j.reshape(B, H, W, 2), z_j.reshape(B, H, W)


def _sample(img: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``img [B, C, H, W]`` at pixel coordinates ``uv [B, H', W', 2]``."""
    H, W = img.shape[-2:]
    grid = torch.stack([2 * uv[..., 0] / max(W - 1, 1) - 1, 2 * uv[..., 1] / max(H - 1, 1) - 1], -1)
    return F.grid_sample(img, grid.to(img.dtype), mode="bilinear", padding_mode="border", align_corners=True)


def projection_consistency_loss(depth_i: torch.Tensor, image_i: torch.Tensor, image_j: torch.Tensor,
                                T_j_i: torch.Tensor, K: torch.Tensor, depth_j: torch.Tensor | None = None,
                                valid: torch.Tensor | None = None, ssim_weight: float = 0.85,
                                depth_weight: float = 1.0) -> torch.Tensor:
    """Photometric (and depth) agreement of frame i warped into frame j.

    Each pixel of i with ``depth_i > 0`` (and ``valid``, e.g. the static mask) is
    back-projected, moved by ``T_j_i``, projected into j and compared with the
    colour of ``image_j`` there: ``ssim_weight·(1 − SSIM)/2 + (1 − ssim_weight)·|ΔI|``
    (monodepth2). Where ``depth_j`` is given and positive around the projection,
    ``depth_weight · |z_j − depth_j| / (z_j + depth_j)`` is added. Pixels landing
    outside j or behind its camera are masked out.

    Args:
        depth_i: ``[B, H, W]`` metres (predicted).
        image_i, image_j: ``[B, 3, H, W]`` float in [0, 1].
        T_j_i: ``[B, 4, 4]`` camera i → camera j (predicted).
        K: ``[B, 3, 3]`` pixel intrinsics.
        depth_j: optional ``[B, H, W]`` metres, 0 = none.
        valid: optional ``[B, H, W]`` bool, pixels of i that may be used (static).
    Returns:
        scalar, 0 at the true depth and pose on a static scene (up to bilinear
        interpolation and SSIM windows at the view border).
    """
    B, H, W = depth_i.shape
    uv, z = project_to(depth_i, T_j_i, K)
    mask = (depth_i > 0) & (z > 1e-3) & (uv[..., 0] >= 0) & (uv[..., 0] <= W - 1) \
        & (uv[..., 1] >= 0) & (uv[..., 1] <= H - 1)
    if valid is not None:
        mask = mask & valid.bool()
    warped = _sample(image_j, uv)                                              # [B, 3, H, W]
    l1 = (warped - image_i).abs().mean(1)
    photo = l1 if ssim_weight <= 0 else \
        ssim_weight * ((1 - ssim(warped, image_i)) / 2).mean(1) + (1 - ssim_weight) * l1
    loss = _masked_mean(photo, mask)
    if depth_j is not None and depth_weight > 0:
        d_j = depth_j.unsqueeze(1)
        sampled = _sample(d_j, uv)[:, 0]
        covered = _sample((d_j > 0).to(d_j.dtype), uv)[:, 0] > 0.999
        dmask = mask & covered
        derr = (z - sampled).abs() / (z + sampled).clamp_min(_EPS)
        loss = loss + depth_weight * _masked_mean(derr, dmask)
    return loss


def _skew(t: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices ``[..., 3, 3]`` of vectors ``[..., 3]``."""
    z = torch.zeros_like(t[..., 0])
    return torch.stack([torch.stack([z, -t[..., 2], t[..., 1]], -1),
                        torch.stack([t[..., 2], z, -t[..., 0]], -1),
                        torch.stack([-t[..., 1], t[..., 0], z], -1)], -2)


def fundamental_matrix(T_j_i: torch.Tensor, K_i: torch.Tensor, K_j: torch.Tensor) -> torch.Tensor:
    """``F [B, 3, 3]`` with ``x_j^T F x_i = 0`` for pixels of one point; ``T_j_i`` maps i → j."""
    R, t = T_j_i[:, :3, :3], T_j_i[:, :3, 3]
    E = _skew(t) @ R
    return torch.linalg.inv(K_j).transpose(1, 2) @ E @ torch.linalg.inv(K_i)


def sampson_distance(x_i: torch.Tensor, x_j: torch.Tensor, Fm: torch.Tensor) -> torch.Tensor:
    """Sampson distance ``[B, M]`` (pixels²) of pixel pairs ``[B, M, 2]`` under ``F [B, 3, 3]``."""
    ones = torch.ones_like(x_i[..., :1])
    hi, hj = torch.cat([x_i, ones], -1), torch.cat([x_j, ones], -1)
    Fx = hi @ Fm.transpose(1, 2)                      # F x_i      [B, M, 3]
    Ftx = hj @ Fm                                     # F^T x_j    [B, M, 3]
    num = (hj * Fx).sum(-1).square()
    den = Fx[..., 0] ** 2 + Fx[..., 1] ** 2 + Ftx[..., 0] ** 2 + Ftx[..., 1] ** 2
    return num / den.clamp_min(1e-12)


def epipolar_loss(x_i: torch.Tensor, x_j: torch.Tensor, T_j_i: torch.Tensor, K_i: torch.Tensor,
                  K_j: torch.Tensor, weight: torch.Tensor | None = None, clip: float | None = None
                  ) -> torch.Tensor:
    """Weighted mean Sampson distance (pixels²) of correspondences under a relative pose.

    Args:
        x_i, x_j: ``[B, M, 2]`` matched pixels (u, v) in frames i and j.
        T_j_i: ``[B, 4, 4]`` camera i → camera j (only the direction of its
            translation matters; a pure rotation makes F vanish).
        K_i, K_j: ``[B, 3, 3]`` intrinsics.
        weight: optional ``[B, M]`` non-negative match weights.
        clip: optional robust cap on each distance (pixels²), so outlier matches
            cannot dominate.
    Returns:
        scalar, 0 at the true pose for exact matches.
    """
    dtype = x_i.dtype
    Fm = fundamental_matrix(T_j_i.to(dtype), K_i.to(dtype), K_j.to(dtype))
    d = sampson_distance(x_i, x_j, Fm)
    if clip is not None:
        d = d.clamp_max(clip)
    w = torch.ones_like(d) if weight is None else weight.to(dtype)
    return (d * w).sum() / w.sum().clamp_min(_EPS)


def match_descriptors(desc_i: torch.Tensor, desc_j: torch.Tensor, image_hw: tuple[int, int],
                      min_similarity: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mutual nearest neighbours of dense descriptors → pixel correspondences.

    Args:
        desc_i, desc_j: ``[h, w, C]`` L2-normalised descriptors on a coarse grid
            (``WindowPrediction.descriptors[k]``; numpy or torch, any float dtype).
        image_hw: ``(H, W)`` of the image the grid covers; cell centres map to pixels.
        min_similarity: cosine similarity a match must reach.
    Returns:
        ``x_i [M, 2]``, ``x_j [M, 2]`` pixel coordinates (u, v) float32 and
        ``score [M]`` cosine similarity of each mutual match.
    """
    a = torch.as_tensor(desc_i).float()
    b = torch.as_tensor(desc_j).float()
    h, w, C = a.shape
    sim = a.reshape(-1, C) @ b.reshape(-1, C).T                      # [hw, hw]
    best_j = sim.argmax(1)
    best_i = sim.argmax(0)
    idx_i = torch.arange(h * w)
    mutual = (best_i[best_j] == idx_i) & (sim[idx_i, best_j] >= min_similarity)
    ii, jj = idx_i[mutual], best_j[mutual]
    H, W = image_hw
    sx, sy = W / b.shape[1], H / b.shape[0]

    def to_pix(k: torch.Tensor, grid_w: int, sx_: float, sy_: float) -> torch.Tensor:
        return torch.stack([(k % grid_w + 0.5) * sx_ - 0.5, (k // grid_w + 0.5) * sy_ - 0.5], -1).float()

    return to_pix(ii, w, W / w, H / h), to_pix(jj, b.shape[1], sx, sy), sim[ii, jj]
