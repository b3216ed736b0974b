"""Encoder inputs with known answers: range-image pixels, camera projection of points,
IMU preintegration features, and the image warp (crop/resize with K)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fuse4d.encoders.imu import imu_features
from fuse4d.encoders.lidar import lidar_fov, range_image, sparse_depth
from fuse4d.fusion.inputs import ImageWarp


def test_range_image_pixels_and_nearest_wins():
    pts = np.array([[10.0, 0, 0, 0.5], [5.0, 0, 0, 0.2], [0, 10.0, 0, 1.0], [-10.0, 0, 10.0 * np.tan(np.radians(14)), 0]],
                   np.float32)
    img, r, c = range_image(pts, (32, 256), (-25.0, 15.0))
    assert c[0] == c[1] == 128 and c[2] == 192 and c[3] == 255        # +x in the middle, +y a quarter on, -x at the edge
    assert r[0] == r[1] == int(15 / 40 * 32) and r[3] == int(1 / 40 * 32)
    assert img[0, r[0], c[0]] == pytest.approx(np.log1p(5.0) / np.log1p(80.0))   # the nearer point wins
    assert img[1].sum() == 3 and img[2, r[2], c[2]] == pytest.approx(1.0)


def test_lidar_fov_estimated_from_points():
    rng = np.random.default_rng(0)
    elev = np.radians(rng.uniform(-24.9, 2.0, 20000))
    az = rng.uniform(-np.pi, np.pi, 20000)
    pts = np.stack([np.cos(elev) * np.cos(az), np.cos(elev) * np.sin(az), np.sin(elev)], 1) * 20
    lo, hi = lidar_fov(pts)
    assert lo == pytest.approx(-25.4, abs=0.3) and hi == pytest.approx(2.5, abs=0.3)
    assert lidar_fov(pts, (-10.0, 10.0)) == (-10.0, 10.0)


def test_sparse_depth_projects_and_keeps_nearest():
    K = np.array([[100.0, 0, 50], [0, 100.0, 20], [0, 0, 1]])
    pts = np.array([[0.0, 0, 10], [0.0, 0, 5], [1.0, 0.4, 4], [0, 0, -3]])
    d, v = sparse_depth(pts, K, (40, 100), values=np.array([1, 2, 3, 4], np.uint8))
    assert d[20, 50] == 5.0 and v[20, 50] == 2
    assert d[30, 75] == 4.0 and v[30, 75] == 3
    assert (d > 0).sum() == 2


def test_imu_features_preintegrate_known_motion():
    dt, n = 0.005, 20
    t = np.arange(1, n + 1) * dt
    gyro = np.tile([0.0, 0.0, 0.5], (n, 1))
    acc = np.tile([1.0, 0.0, 0.0], (n, 1))
    f, ok = imu_features([(t, acc, gyro), None, (t[:1], acc[:1], gyro[:1])], bins=4)
    assert ok.tolist() == [True, False, False]
    T = n * dt
    assert f[0, 2] == pytest.approx(0.5 * T, rel=1e-3)                 # ΔR about z
    assert f[0, 9] == pytest.approx(T * 10, rel=1e-6)
    assert np.hypot(f[0, 6], f[0, 7]) == pytest.approx(0.5 * T * T, rel=0.05)    # Δp ≈ ½ a t² (slight turn)
    assert f[0, 10] == pytest.approx(1.0 / 9.81, rel=1e-6) and (f[1] == 0).all()


def test_image_warp_crop_for_kitti_and_stretch_for_4_3():
    kitti = ImageWarp.fit((375, 1242), (64, 192))
    assert kitti.crop == (58, 0, 1125, 375)
    seven = ImageWarp.fit((480, 640), (64, 192))
    assert seven.crop == (0, 0, 640, 480)                               # a 3:1 crop would keep 56 %: stretch
    K = np.array([[700.0, 0, 620], [0, 700.0, 180], [0, 0, 1]])
    X = np.array([1.0, 0.5, 10.0])
    uv_in = (K @ X)[:2] / X[2]
    Km = kitti.K(K)
    uv_m = (Km @ X)[:2] / X[2]
    # pixel centres at integer coordinates (OpenCV): u_m + 0.5 = (u_in + 0.5 - x0) * scale
    assert uv_m[0] == pytest.approx((uv_in[0] + 0.5 - 58) * 192 / 1125 - 0.5)
    assert uv_m[1] == pytest.approx((uv_in[1] + 0.5) * 64 / 375 - 0.5)
    img = np.zeros((375, 1242, 3), np.uint8)
    img[:, 600:] = 255
    t = kitti.image(img)
    assert t.shape == (3, 64, 192) and float(t.max()) == pytest.approx(1.0)
    back = kitti.unwarp(torch.ones(2, 1, 64, 192), fill=0.0)
    assert back.shape == (2, 1, 375, 1242) and float(back[0, 0, :, :58].sum()) == 0 and float(back[0, 0, :, 100].min()) == 1


def test_occlusion_filter_drops_points_seen_past_a_nearer_surface():
    from fuse4d.encoders.lidar import occlusion_filter
    d = torch.zeros(1, 20, 20)
    d[0, 5:15:2, 5:15:2] = 5.0           # a sparse foreground surface at 5 m
    d[0, 8, 9] = 30.0                    # a background return landing between its points
    d[0, 2, 18] = 30.0                   # background far from any foreground point
    d[0, 6, 5] = 5.5                     # the foreground's own relief (10 %) stays
    out = occlusion_filter(d, k=5, tau=0.2)
    assert out[0, 8, 9] == 0 and out[0, 2, 18] == 30.0 and out[0, 6, 5] == 5.5
    assert int((out[0] == 5.0).sum()) == 25
