"""Known-answer tests of the fusion model's losses: zero (or minimal) at the true
depth/pose/labels, growing with the perturbation, finite gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fuse4d.fusion.losses import (depth_conf_loss, dynamic_loss, epipolar_loss, match_descriptors,
                                  pose_nll, pose_to_matrix, projection_consistency_loss, sampson_distance,
                                  fundamental_matrix, semantic_loss, class_balance_weights)

torch.manual_seed(0)


def _increasing(values: list[float]) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


def _rot(axis: np.ndarray, angle: float) -> torch.Tensor:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return pose_to_matrix(torch.zeros(3, dtype=torch.float64), torch.tensor(axis * angle))


class TestDepthConf:
    def test_minimum_at_truth_and_grows(self):
        gt = torch.rand(2, 3, 8, 10) * 20 + 1
        gt[:, :, :2] = 0                                   # no ground truth there
        conf = torch.full_like(gt, 2.0)
        at_truth = depth_conf_loss(gt.clone(), conf, gt, alpha=0.2)
        assert at_truth.item() == pytest.approx(-0.2 * math.log(2.0), abs=1e-6)
        losses = []
        for s in (1.02, 1.1, 1.3, 2.0):
            losses.append(depth_conf_loss(gt * s, conf, gt).item())
            # error is |log s| on every valid pixel: the same for under-estimates
            assert depth_conf_loss(gt / s, conf, gt).item() == pytest.approx(losses[-1], rel=1e-5)
            assert losses[-1] == pytest.approx(2.0 * math.log(s) - 0.2 * math.log(2.0), rel=1e-5)
        assert _increasing([at_truth.item()] + losses)

    def test_pixels_without_truth_ignored_and_conf_optimum(self):
        gt = torch.full((1, 1, 4, 4), 10.0)
        gt[..., 0, :] = 0
        depth = gt * 1.5
        depth[..., 0, :] = 1e6                             # garbage where gt = 0
        e = math.log(1.5)
        best = 0.2 / e                                     # argmin_c c·e − α log c
        vals = [depth_conf_loss(depth, torch.full_like(gt, c), gt).item() for c in (best / 2, best, best * 2)]
        assert vals[1] < vals[0] and vals[1] < vals[2]
        assert vals[1] == pytest.approx(best * e - 0.2 * math.log(best), rel=1e-5)

    def test_gradients_finite(self):
        gt = torch.rand(1, 2, 5, 5) * 10
        gt[0, 0, 0, 0] = 0
        depth = (gt + 0.5).requires_grad_()
        conf = (1 + torch.rand_like(gt)).requires_grad_()
        depth_conf_loss(depth, conf, gt).backward()
        assert torch.isfinite(depth.grad).all() and torch.isfinite(conf.grad).all()
        assert depth.grad.abs().sum() > 0


class TestSemantic:
    def test_perfect_uniform_and_ignored(self):
        B, S, C, H, W = 1, 2, 10, 6, 7
        gt = torch.randint(0, C, (B, S, H, W))
        perfect = torch.nn.functional.one_hot(gt, C).permute(0, 1, 4, 2, 3).float() * 30
        assert semantic_loss(perfect, gt).item() < 1e-6
        uniform = torch.zeros(B, S, C, H, W, requires_grad=True)
        loss = semantic_loss(uniform, gt)
        assert loss.item() == pytest.approx(math.log(C), rel=1e-6)
        loss.backward()
        assert torch.isfinite(uniform.grad).all()
        # wrong logits on unlabeled (0) pixels change nothing
        wrong = perfect.clone()
        wrong[:, :, 3][gt == 0] = 100.0
        assert semantic_loss(wrong, gt).item() < 1e-6
        # every pixel unlabeled → 0, not NaN
        assert semantic_loss(perfect, torch.zeros_like(gt)).item() == 0.0

    def test_class_weights_known_answer(self):
        # two labelled pixels, class 1 right (CE = a) and class 2 wrong (CE = b)
        logits = torch.zeros(1, 1, 3, 1, 2)
        logits[0, 0, 1, 0, 0] = 2.0
        logits[0, 0, 1, 0, 1] = 2.0
        gt = torch.tensor([[[[1, 2]]]])
        ce = torch.nn.functional.cross_entropy(logits[0, 0].permute(1, 2, 0).reshape(-1, 3), gt.reshape(-1),
                                               reduction="none")
        a, b = ce.tolist()
        w = torch.tensor([1.0, 0.5, 3.0])
        assert semantic_loss(logits, gt).item() == pytest.approx((a + b) / 2, rel=1e-6)
        assert semantic_loss(logits, gt, weight=w).item() == pytest.approx((0.5 * a + 3 * b) / 3.5, rel=1e-6)
        assert semantic_loss(logits, gt, weight=torch.ones(3)).item() == pytest.approx((a + b) / 2, rel=1e-6)

    def test_class_balance_weights(self):
        # frequencies 0.8 / 0.2 (unlabeled ignored), inverse square root, mean weight 1
        w = class_balance_weights([1000, 80, 20, 0], power=0.5)
        s = 0.8 / math.sqrt(0.8) + 0.2 / math.sqrt(0.2)
        assert w.tolist() == pytest.approx([1.0, 1 / math.sqrt(0.8) / s, 1 / math.sqrt(0.2) / s, 1.0], rel=1e-6)
        assert float(0.8 * w[1] + 0.2 * w[2]) == pytest.approx(1.0, rel=1e-6)
        assert class_balance_weights([0, 50, 50], power=0.5).tolist() == pytest.approx([1, 1, 1])
        assert class_balance_weights([0, 1, 0, 10 ** 6], power=1.0, cap=10.0)[1].item() == 10.0


class TestDynamic:
    def test_balanced_rare_positives(self):
        gt = torch.zeros(1, 1, 10, 10)
        gt[0, 0, 0, 0] = 1                                  # one moving pixel in 100
        assert dynamic_loss(torch.zeros_like(gt), gt).item() == pytest.approx(math.log(2), rel=1e-6)
        all_static = dynamic_loss(torch.full_like(gt, -5.0), gt).item()
        # the missed moving pixel weighs half the loss, not 1 %
        assert all_static == pytest.approx(0.5 * (5 + math.log1p(math.exp(-5))) + 0.5 * math.log1p(math.exp(-5)),
                                           rel=1e-5)
        margins = [dynamic_loss((gt * 2 - 1) * m, gt).item() for m in (8.0, 2.0, 0.5, 0.0, -1.0)]
        assert _increasing(margins) and margins[0] < 1e-3

    def test_valid_mask_and_grad(self):
        gt = torch.zeros(2, 2, 4, 4, dtype=torch.bool)
        gt[:, :, :2] = True
        logit = torch.where(gt, 6.0, -6.0)
        valid = torch.ones_like(gt)
        valid[:, :, 3] = False
        logit[:, :, 3] = 50.0                               # wrong but invalid
        logit.requires_grad_()
        loss = dynamic_loss(logit, gt, valid)
        assert loss.item() == pytest.approx(math.log1p(math.exp(-6)), rel=1e-4)
        loss.backward()
        assert torch.isfinite(logit.grad).all()
        assert (logit.grad[:, :, 3] == 0).all()


class TestPoseNll:
    def _gt(self, B=2, S=3) -> torch.Tensor:
        t = torch.randn(B, S, 3, dtype=torch.float64)
        r = torch.randn(B, S, 3, dtype=torch.float64) * 0.3
        return t, r, pose_to_matrix(t, r)

    def test_zero_at_truth_finite_grad(self):
        t, r, T = self._gt()
        tp, rp = t.clone().requires_grad_(), r.clone().requires_grad_()
        lv = torch.zeros(2, 3, 6, dtype=torch.float64, requires_grad=True)
        loss = pose_nll(tp, rp, lv, T)
        assert abs(loss.item()) < 1e-10
        loss.backward()
        for g in (tp.grad, rp.grad, lv.grad):
            assert torch.isfinite(g).all()
        assert rp.grad.abs().max() < 1e-6                    # stationary at the truth

    def test_known_values(self):
        t, r, T = self._gt()
        lv = torch.zeros(2, 3, 6, dtype=torch.float64)
        for d in (0.1, 0.5, 2.0):
            shifted = t + torch.tensor([d, 0, 0], dtype=torch.float64)
            assert pose_nll(shifted, r, lv, T).item() == pytest.approx(0.5 * d * d, rel=1e-9)
        # rotation perturbed by θ about an axis on the right: geodesic error θ
        vals = []
        for theta in (0.01, 0.1, 0.5, 1.0):
            R = T[..., :3, :3] @ _rot([1, 2, 3], theta)[:3, :3]
            Tp = T.clone()
            Tp[..., :3, :3] = R
            r_p = torch.from_numpy(np.stack([[np.asarray(_so3_log(R[b, s])) for s in range(3)] for b in range(2)]))
            vals.append(pose_nll(t, r_p, lv, T).item())
            assert vals[-1] == pytest.approx(0.5 * theta ** 2, rel=1e-6)
        assert _increasing(vals)
        # information weighting: log_var = log 4 on translation halves the squared term (plus log_var)
        lv2 = lv.clone()
        lv2[..., 0] = math.log(4.0)
        got = pose_nll(t + torch.tensor([1.0, 0, 0]), r, lv2, T).item()
        assert got == pytest.approx(0.5 * (1.0 / 4.0 + math.log(4.0)), rel=1e-9)

    def test_nan_ground_truth_masked(self):
        t, r, T = self._gt()
        T[:, 0] = float("nan")
        loss = pose_nll(t, r, torch.zeros(2, 3, 6, dtype=torch.float64), T)
        assert torch.isfinite(loss) and abs(loss.item()) < 1e-10


def _so3_log(R: torch.Tensor) -> np.ndarray:
    from scipy.spatial.transform import Rotation
    return Rotation.from_matrix(R.numpy()).as_rotvec()


# ----------------------------------------------------------------------------- self-supervised

H, W = 48, 64
K = torch.tensor([[50.0, 0, (W - 1) / 2], [0, 50.0, (H - 1) / 2], [0, 0, 1]], dtype=torch.float64)
PLANE_N, PLANE_D = torch.tensor([0.0, -0.1, 1.0], dtype=torch.float64), 6.0   # n·X = d in frame i


def _texture(X: torch.Tensor) -> torch.Tensor:
    """Smooth colours [..., 3] of scene points [..., 3] in frame i (periods ≥ 1.5 m)."""
    x, y = X[..., 0], X[..., 1]
    return torch.stack([0.5 + 0.3 * torch.sin(2 * math.pi * x / 1.7),
                        0.5 + 0.3 * torch.cos(2 * math.pi * y / 1.5 + 0.4 * x),
                        0.5 + 0.2 * torch.sin(2 * math.pi * (x + y) / 2.3)], -1)


def _render(T_i_cam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image [3,H,W] and depth [H,W] of the textured plane seen by a camera at ``T_i_cam``."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    rays = torch.stack([u, v, torch.ones_like(u)], -1) @ torch.linalg.inv(K).T       # camera frame, z = 1
    R, o = T_i_cam[:3, :3], T_i_cam[:3, 3]
    rays_i = rays @ R.T
    z = (PLANE_D - PLANE_N @ o) / (rays_i @ PLANE_N)                                  # depth along camera z
    X_i = o + rays_i * z[..., None]
    return _texture(X_i).permute(2, 0, 1), z


@pytest.fixture(scope="module")
def scene():
    T_j_i = pose_to_matrix(torch.tensor([-0.8, 0.1, -0.3], dtype=torch.float64),
                           torch.tensor([0.01, 0.03, -0.02], dtype=torch.float64))
    T_i_j = torch.linalg.inv(T_j_i)
    img_i, d_i = _render(torch.eye(4, dtype=torch.float64))
    img_j, d_j = _render(T_i_j)
    return dict(T=T_j_i[None], img_i=img_i[None], img_j=img_j[None], d_i=d_i[None], d_j=d_j[None], K=K[None])


class TestProjectionConsistency:
    def test_zero_at_truth_grows_with_depth_error(self, scene):
        s = scene
        truth = projection_consistency_loss(s["d_i"], s["img_i"], s["img_j"], s["T"], s["K"], depth_j=s["d_j"])
        assert truth.item() < 2e-3
        vals = [projection_consistency_loss(s["d_i"] * f, s["img_i"], s["img_j"], s["T"], s["K"],
                                            depth_j=s["d_j"]).item() for f in (1.05, 1.15, 1.3)]
        assert _increasing([truth.item()] + vals) and vals[0] > 5 * truth.item()
        depth_only = [projection_consistency_loss(s["d_i"] * f, s["img_i"], s["img_j"], s["T"], s["K"],
                                                  depth_j=s["d_j"]).item()
                      - projection_consistency_loss(s["d_i"] * f, s["img_i"], s["img_j"], s["T"], s["K"]).item()
                      for f in (1.0, 1.05, 1.15)]
        assert depth_only[0] < 1e-3 and _increasing(depth_only)

    def test_grows_with_pose_error(self, scene):
        s = scene
        vals = []
        for dt in (0.0, 0.1, 0.25, 0.5):
            T = s["T"].clone()
            T[0, 0, 3] += dt
            vals.append(projection_consistency_loss(s["d_i"], s["img_i"], s["img_j"], T, s["K"], ssim_weight=0.0).item())
        assert _increasing(vals) and vals[0] < 5e-3 and vals[1] > 5 * vals[0]

    def test_masks_and_gradients(self, scene):
        s = scene
        base = projection_consistency_loss(s["d_i"], s["img_i"], s["img_j"], s["T"], s["K"], ssim_weight=0.0)
        # a moving object painted into frame i, flagged as not static, changes nothing
        img_i = s["img_i"].clone()
        img_i[..., 10:20, 20:30] = 0.0
        valid = torch.ones(1, H, W, dtype=torch.bool)
        valid[:, 10:20, 20:30] = False
        masked = projection_consistency_loss(s["d_i"], img_i, s["img_j"], s["T"], s["K"], valid=valid, ssim_weight=0.0)
        assert masked.item() == pytest.approx(base.item(), abs=2e-3)
        assert projection_consistency_loss(s["d_i"], img_i, s["img_j"], s["T"], s["K"], ssim_weight=0.0) > 5 * base
        # everything out of view → 0, no NaN
        T_far = s["T"].clone()
        T_far[0, 0, 3] += 500.0
        assert projection_consistency_loss(s["d_i"], s["img_i"], s["img_j"], T_far, s["K"]).item() == 0.0
        depth = (s["d_i"] * 1.1).requires_grad_()
        T = s["T"].clone().requires_grad_()
        projection_consistency_loss(depth, s["img_i"], s["img_j"], T, s["K"], depth_j=s["d_j"]).backward()
        assert torch.isfinite(depth.grad).all() and torch.isfinite(T.grad).all() and depth.grad.abs().sum() > 0


def _correspondences(T_j_i: torch.Tensor, n: int = 200):
    X = torch.rand(n, 3, dtype=torch.float64) * torch.tensor([8.0, 6.0, 10.0]) + torch.tensor([-4.0, -3.0, 4.0])
    Xj = X @ T_j_i[:3, :3].T + T_j_i[:3, 3]
    proj = lambda P: (P @ K.T)[:, :2] / P[:, 2:]  # noqa: E731
    return proj(X)[None], proj(Xj)[None]


class TestEpipolar:
    def test_zero_at_truth_grows_with_rotation_error(self):
        T = pose_to_matrix(torch.tensor([0.5, 0.05, 1.0], dtype=torch.float64),
                           torch.tensor([0.02, -0.05, 0.01], dtype=torch.float64))
        x_i, x_j = _correspondences(T)
        assert epipolar_loss(x_i, x_j, T[None], K[None], K[None]).item() < 1e-12
        vals = []
        for deg in (0.2, 0.5, 1.0, 2.0):
            Tp = T.clone()
            Tp[:3, :3] = _rot([0.3, 1.0, 0.2], math.radians(deg))[:3, :3] @ T[:3, :3]
            vals.append(epipolar_loss(x_i, x_j, Tp[None], K[None], K[None]).item())
        assert _increasing(vals) and vals[0] > 1e-3

    def test_rectified_pair_known_distance(self):
        # baseline along x, same K: epipolar lines are image rows; a vertical offset d
        # splits evenly between both images, Sampson distance = d² / 2 exactly.
        T = torch.eye(4, dtype=torch.float64)
        T[0, 3] = -0.5
        x_i, x_j = _correspondences(T, 50)
        for d in (0.5, 1.0, 3.0):
            shifted = x_j + torch.tensor([0.0, d], dtype=torch.float64)
            dist = sampson_distance(x_i, shifted, fundamental_matrix(T[None], K[None], K[None]))
            assert torch.allclose(dist, torch.full_like(dist, d * d / 2), rtol=1e-9)

    def test_weights_clip_and_gradients(self):
        T = pose_to_matrix(torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
        x_i, x_j = _correspondences(T, 100)
        x_j = x_j.clone()
        x_j[0, :10] += 40.0                                         # ten outliers
        w = torch.ones(1, 100, dtype=torch.float64)
        w[0, :10] = 0
        assert epipolar_loss(x_i, x_j, T[None], K[None], K[None], weight=w).item() < 1e-12
        full = epipolar_loss(x_i, x_j, T[None], K[None], K[None]).item()
        assert epipolar_loss(x_i, x_j, T[None], K[None], K[None], clip=4.0).item() <= 0.1 * 4.0 + 1e-9 < full
        t = torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
        r = torch.tensor([0.0, 0.01, 0.0], dtype=torch.float64, requires_grad=True)
        epipolar_loss(x_i, x_j, pose_to_matrix(t, r)[None], K[None], K[None], weight=w).backward()
        assert torch.isfinite(t.grad).all() and torch.isfinite(r.grad).all() and r.grad.abs().sum() > 0


def test_match_descriptors_recovers_shift():
    h, w, C = 6, 8, 32
    desc = torch.nn.functional.normalize(torch.randn(h, w, C), dim=-1)
    shifted = torch.roll(desc, shifts=1, dims=1)                    # cell (r, c) of i is (r, c+1) in j
    noisy = torch.nn.functional.normalize(shifted + 0.05 * torch.randn_like(shifted), dim=-1)
    x_i, x_j, score = match_descriptors(desc.half().numpy(), noisy, (48, 64))
    assert len(x_i) == h * w and (score > 0.9).all()
    du = (x_j[:, 0] - x_i[:, 0]) % 64                                 # wrap-around of roll
    assert torch.allclose(du, torch.full_like(du, 8.0)) and torch.allclose(x_j[:, 1], x_i[:, 1])
    assert x_i[:, 0].min() == pytest.approx(3.5) and x_i[:, 1].max() == pytest.approx(43.5)
    # a threshold above every similarity yields no matches
    assert len(match_descriptors(desc, noisy, (48, 64), min_similarity=1.01)[0]) == 0


def test_pool_class_weights_from_counts():
    import numpy as np
    from fuse4d.fusion.train import pool_class_weights
    pool = [{"semantics": np.array([[0, 1, 1, 1, 2]], np.uint8), "range_sem": np.array([[1, 2, 0]], np.uint8)}]
    w = pool_class_weights(pool, 1.0, 3)
    # pixels: f = 3/4, 1/4 → inverse frequency normalised to a mean of 1: 1/(2·0.75), 1/(2·0.25)
    assert w["pixels"].tolist() == pytest.approx([1.0, 2 / 3, 2.0], rel=1e-6)
    assert w["points"].tolist() == pytest.approx([1.0, 1.0, 1.0], rel=1e-6)
