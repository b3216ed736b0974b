"""KITTI-odometry and zarr export with sidecars; KISS-ICP reads the KITTI folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from scipy.spatial.transform import Rotation

from fuse4d.data.export import export_sequence, write_kitti_odometry, write_sidecars
from fuse4d.data.registry import detect_format, load_sequence
from fuse4d.data.trajectory import read_kitti, read_tum
from fuse4d.data.types import Calibration, Frame, Sequence
from fuse4d.errors import DataError
from fuse4d.geometry import invert, make_T, transform_points

S, DROP = 8, 4  # frames; frame DROP has no LiDAR and no image


def _world_points(rng: np.random.Generator) -> np.ndarray:
    """A street: ground, two facades and a few pillars, as ``[N, 3]`` surface samples (metres)."""
    n = 30000
    ground = np.c_[rng.uniform(-30, 60, n), rng.uniform(-12, 12, n), np.zeros(n)]
    walls = np.c_[rng.uniform(-30, 60, n), rng.choice([-12.0, 12.0], n), rng.uniform(0, 8, n)]
    centers = rng.uniform([-20, -9], [55, 9], (25, 2))
    k, a = rng.integers(0, 25, n), rng.uniform(0, 2 * np.pi, n)
    pillars = np.c_[centers[k] + 0.6 * np.c_[np.cos(a), np.sin(a)], rng.uniform(0, 4, n)]
    return np.vstack([ground, walls, pillars])


def _street_sequence(with_gt: bool = True, camera: bool = True) -> Sequence:
    rng = np.random.default_rng(3)
    W = _world_points(rng)
    yaw = np.linspace(0, 0.15, S)
    T_wb = make_T(Rotation.from_euler("z", yaw[:, None]).as_matrix(), np.c_[np.arange(S) * 1.2, 0.3 * yaw, np.zeros(S)])
    T_bl = make_T(Rotation.from_euler("z", 0.05).as_matrix(), [0.3, 0.0, 1.7])
    T_bc = make_T(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float), [0.5, 0.0, 1.5])  # camera looks +x
    calib = Calibration(K=np.array([[60.0, 0, 16], [0, 60, 8], [0, 0, 1]]) if camera else None,
                        image_size=(32, 16) if camera else None, T_body_cam=T_bc, T_body_lidar=T_bl)
    frames = []
    for i in range(S):
        f = Frame(i, 10.0 + 0.1 * i, T_world_body=T_wb[i])
        if i != DROP:
            p = transform_points(invert(T_wb[i] @ T_bl), W)
            p = p[np.linalg.norm(p, axis=1) < 40]
            f.points = np.c_[p, rng.uniform(0, 1, len(p))].astype(np.float32)
            if camera:
                f.image = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
        frames.append(f)
    meta = {"source": "test street", "degradations": [{"name": "lidar_dropout", "start": DROP, "stop": DROP + 1}]}
    sensors = {"camera", "lidar"} if camera else {"lidar"}
    return Sequence(np.array([f.timestamp for f in frames]), lambda i: frames[i], calib, sensors,
                    gt_poses=T_wb if with_gt else None, metadata=meta, name="street")


def test_kitti_layout(tmp_path):
    seq = _street_sequence()
    root = export_sequence(seq, tmp_path, format="kitti")
    sd = root / "sequences" / "00"
    assert len(list((sd / "velodyne").glob("*.bin"))) == S
    assert (sd / "velodyne" / f"{DROP:06d}.bin").stat().st_size == 0
    pts = np.fromfile(sd / "velodyne" / "000002.bin", dtype=np.float32).reshape(-1, 4)
    assert np.array_equal(pts, seq[2].points)
    assert np.array_equal(np.asarray(Image.open(sd / "image_2" / "000001.png")), seq[1].image)
    assert not np.asarray(Image.open(sd / "image_2" / f"{DROP:06d}.png")).any()  # black stand-in
    calib = {ln.split(":")[0]: np.array(ln.split()[1:], float) for ln in (sd / "calib.txt").read_text().splitlines()}
    assert set(calib) == {"P0", "P1", "P2", "P3", "Tr"}
    np.testing.assert_allclose(calib["P2"].reshape(3, 4)[:, :3], seq.calibration.K)
    np.testing.assert_allclose(calib["Tr"].reshape(3, 4), seq.calibration.T_cam_lidar[:3], atol=1e-12)
    np.testing.assert_array_equal(np.loadtxt(sd / "times.txt"), seq.timestamps)
    cam = read_kitti(root / "poses" / "00.txt").poses
    T_wc = seq.gt_poses @ seq.calibration.T_body_cam
    np.testing.assert_allclose(cam, invert(T_wc[0]) @ T_wc, atol=1e-9)
    np.testing.assert_allclose(cam[0], np.eye(4), atol=1e-12)
    # sidecars beside the data
    gt = read_tum(root / "groundtruth.txt")
    np.testing.assert_allclose(gt.poses, seq.gt_poses, atol=1e-8)
    assert gt.frame == "body"
    lid = read_tum(root / "groundtruth_lidar.txt")
    T_wl = seq.gt_poses @ seq.calibration.T_body_lidar
    np.testing.assert_allclose(lid.poses, invert(T_wl[0]) @ T_wl, atol=1e-8)
    doc = yaml.safe_load((root / "calib.yaml").read_text())
    assert doc["sequence"]["missing"] == {"lidar": [DROP], "camera": [DROP]}
    np.testing.assert_allclose(doc["calibration"]["T_body_lidar"], seq.calibration.T_body_lidar)
    assert json.loads((root / "degradations.json").read_text()) == seq.degradations


def test_kitti_export_reads_back_with_our_reader(tmp_path):
    seq = _street_sequence()
    root = export_sequence(seq, tmp_path, format="kitti")
    if detect_format(root) != "kitti_odometry":
        pytest.skip("the KITTI odometry reader is not registered")
    back = load_sequence(root)
    assert len(back) == S and back.sensors == {"camera", "lidar"}
    assert back[DROP].points is None and np.array_equal(back[2].points, seq[2].points)
    assert np.array_equal(back[1].image, seq[1].image)
    np.testing.assert_array_equal(back.timestamps, seq.timestamps)
    np.testing.assert_allclose(back.calibration.T_cam_lidar, seq.calibration.T_cam_lidar, atol=1e-12)
    T_wl = seq.gt_poses @ seq.calibration.T_body_lidar  # the reader's body frame is the LiDAR frame
    np.testing.assert_allclose(back.gt_poses, invert(T_wl[0]) @ T_wl, atol=1e-9)


def test_kiss_icp_reads_and_tracks_the_export(tmp_path):
    kitti = pytest.importorskip("kiss_icp.datasets.kitti")
    from kiss_icp.config import KISSConfig
    from kiss_icp.kiss_icp import KissICP

    seq = _street_sequence()
    write_kitti_odometry(seq, tmp_path)
    ds = kitti.KITTIOdometryDataset(tmp_path, "00")
    assert len(ds) == S and len(ds.get_frames_timestamps()) == S
    # KISS converts the camera poses back to the LiDAR frame with Tr: must equal our LiDAR ground truth
    T_wl = seq.gt_poses @ seq.calibration.T_body_lidar
    np.testing.assert_allclose(ds.gt_poses, invert(T_wl[0]) @ T_wl, atol=2e-5)
    cfg = KISSConfig()
    cfg.data.max_range, cfg.mapping.voxel_size = 40.0, 0.5
    odom = KissICP(cfg)
    est = []
    for i in range(S):
        scan, stamps = ds[i]
        assert scan.shape[0] == (0 if i == DROP else len(seq[i].points))
        odom.register_frame(scan, stamps)
        est.append(odom.last_pose.copy())
    err = np.linalg.norm(np.array(est)[:, :3, 3] - ds.gt_poses[:, :3, 3], axis=1)
    assert err.max() < 0.06, err  # 8.4 m driven, one scan dropped, KITTI 0.205° scan correction applied (measured 2.7 cm)


def test_zarr_export_with_sidecars(tmp_path):
    seq = _street_sequence(with_gt=False)  # poses only per frame: sidecars read them from the log
    out = export_sequence(seq, tmp_path, format="zarr")
    assert (out / "log.zarr" / "zarr.json").is_file() and detect_format(out) == "zarr"
    back = load_sequence(out)
    assert len(back) == S and back[DROP].points is None
    assert np.array_equal(back[3].points, seq[3].points)
    gt = read_tum(out / "groundtruth.txt")
    np.testing.assert_allclose(gt.poses, np.stack([seq[i].T_world_body for i in range(S)]), atol=1e-8)
    np.testing.assert_array_equal(gt.t, seq.timestamps)
    doc = yaml.safe_load((out / "calib.yaml").read_text())
    assert doc["sequence"]["missing"]["lidar"] == [DROP] and doc["sequence"]["n_frames"] == S
    with pytest.raises(DataError, match="already exists"):
        export_sequence(seq, tmp_path, format="zarr")
    export_sequence(seq[:3], tmp_path, format="zarr", overwrite=True)
    assert len(load_sequence(out)) == 3


def test_sidecars_without_ground_truth_or_camera(tmp_path):
    seq = _street_sequence(with_gt=False, camera=False).with_metadata(degradations=[])
    files = write_sidecars(seq, tmp_path)
    assert [p.name for p in files] == ["calib.yaml"]
    assert yaml.safe_load((tmp_path / "calib.yaml").read_text())["calibration"]["K"] is None
    write_kitti_odometry(seq, tmp_path / "k")
    lines = (tmp_path / "k" / "sequences" / "00" / "calib.txt").read_text().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["Tr"]
    assert not (tmp_path / "k" / "sequences" / "00" / "image_2").exists()
    assert (tmp_path / "k" / "poses" / "00.txt").exists()  # poses came from the frames


def test_bad_requests(tmp_path):
    seq = _street_sequence()
    with pytest.raises(DataError, match="unknown export format 'ply'"):
        export_sequence(seq, tmp_path, format="ply")
    write_kitti_odometry(seq[:2], tmp_path)
    with pytest.raises(DataError, match="already exists"):
        write_kitti_odometry(seq, tmp_path)
    bad = Sequence(np.zeros(1), lambda i: Frame(0, 0.0, points=np.zeros((5, 3), np.float32)), sensors={"lidar"})
    with pytest.raises(DataError, match=r"frame 0: points have shape \[5, 3\]"):
        write_kitti_odometry(bad, tmp_path, overwrite=True)
    assert len(list((tmp_path / "sequences" / "00" / "velodyne").glob("*.bin"))) == 2  # old export intact


def test_export_refuses_to_mix_formats_in_one_folder(tmp_path):
    """A KITTI export's sidecars must not be silently replaced by a zarr export of another log."""
    from fuse4d.data.export import export_sequence
    from fuse4d.data.synthetic import synthesize
    from fuse4d.errors import DataError
    seq = synthesize(seed=1, frames=3)
    export_sequence(seq, tmp_path, format="kitti")
    before = (tmp_path / "groundtruth.txt").read_text()
    with pytest.raises(DataError, match="already holds a log in another format"):
        export_sequence(seq, tmp_path, format="zarr")
    assert (tmp_path / "groundtruth.txt").read_text() == before and not (tmp_path / "log.zarr").exists()
