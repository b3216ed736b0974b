"""Fuzz every reader with hypothesis: a mutated, truncated, emptied or deleted file
of a small valid log gives a DataError (a ``Fuse4dError``), never another exception.

Each reader gets a small valid template log, built on the fly (hand-made frames
written by fuse4d's own writers, or real sample files from ../shared/data,
hard-linked into a temporary folder; never copied into the repo). Every example
hard-links the template into a fresh folder, replaces one file with a mutated
copy, opens it with ``load_sequence`` and reads every frame, the IMU and the
ground truth.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fuse4d import load_sequence
from fuse4d.data.trajectory import read_trajectory
from fuse4d.data.types import Calibration, Frame, ImuSamples, Sequence
from fuse4d.errors import Fuse4dError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
S, H, W = 4, 12, 16
CALIB = "P2: 700 0 600 40 0 700 180 0 0 0 1 0\nTr: 0 -1 0 0 0 0 -1 -0.1 1 0 0 -0.3\n"

#: mutations of one file: (name, bytes -> bytes | None); None deletes the file
#: examples per reader; FUSE4D_FUZZ_EXAMPLES=500 explores more (and draws new examples each run)
EXAMPLES = int(os.environ.get("FUSE4D_FUZZ_EXAMPLES", "0")) or 12
DERANDOMIZE = "FUSE4D_FUZZ_EXAMPLES" not in os.environ
OPS = ("truncate", "flip", "empty", "delete", "garbage", "append", "zero_run")


def _handmade() -> Sequence:
    """A tiny camera + LiDAR + IMU log with ground truth."""
    rng = np.random.default_rng(0)
    t = 5.0 + 0.1 * np.arange(S)
    gt = np.stack([np.eye(4) for _ in range(S)])
    gt[:, 0, 3] = np.arange(S)
    frames = []
    for i in range(S):
        f = Frame(index=i, timestamp=float(t[i]), T_world_body=gt[i])
        f.image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        f.points = rng.normal(0, 5, (40, 4)).astype(np.float32)
        f.point_time = np.linspace(0, 0.09, 40, dtype=np.float32)
        frames.append(f)
    ti = np.linspace(4.95, t[-1], 40)
    imu = ImuSamples(ti, rng.normal(0, 0.1, (40, 3)) + [0, 0, 9.81], rng.normal(0, 0.01, (40, 3)))
    calib = Calibration(K=np.array([[20.0, 0, W / 2], [0, 20, H / 2], [0, 0, 1]]), image_size=(W, H))
    return Sequence(t, lambda i: frames[i], calib, {"camera", "lidar", "imu"}, imu, gt, {"source": "fuzz"},
                    name="fuzz")


def _png(path: Path, a: np.ndarray) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def _link_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, copy_function=os.link)


# -- templates: name -> builder(root) -> path to give load_sequence ------------------------------
def _zarr(root: Path) -> Path:
    from fuse4d.data.export import export_sequence
    return export_sequence(_handmade(), root / "log", format="zarr")


def _kitti_odometry(root: Path) -> Path:
    seq = root / "sequences" / "00"
    (seq / "velodyne").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(3):
        rng.normal(size=(30, 4)).astype(np.float32).tofile(seq / "velodyne" / f"{i:06d}.bin")
        _png(seq / "image_2" / f"{i:06d}.png", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    (seq / "calib.txt").write_text(CALIB)
    (seq / "times.txt").write_text("".join(f"{0.1 * i:.6e}\n" for i in range(3)))
    (root / "poses").mkdir()
    (root / "poses" / "00.txt").write_text("".join(f"1 0 0 {i} 0 1 0 0 0 0 1 0\n" for i in range(3)))
    return root


def _tum(root: Path) -> Path:
    rng = np.random.default_rng(2)
    rgb, depth, gt = [], [], []
    for i in range(3):
        t = 100.0 + 0.1 * i
        _png(root / "rgb" / f"{t:.6f}.png", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        _png(root / "depth" / f"{t:.6f}.png", rng.integers(500, 20000, (H, W), dtype=np.uint16))
        rgb.append(f"{t:.6f} rgb/{t:.6f}.png\n")
        depth.append(f"{t + 0.001:.6f} depth/{t:.6f}.png\n")
        gt.append(f"{t:.4f} {0.1 * i} 0 0 0 0 0 1\n")
    (root / "rgb.txt").write_text("# color images\n" + "".join(rgb))
    (root / "depth.txt").write_text("# depth maps\n" + "".join(depth))
    (root / "groundtruth.txt").write_text("# timestamp tx ty tz qx qy qz qw\n" + "".join(gt))
    return root


def _scan_folder(root: Path) -> Path:
    rng = np.random.default_rng(3)
    root.mkdir()
    for i in range(3):
        p = rng.normal(size=(20, 3)).astype(np.float32)
        head = ("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
                f"WIDTH {len(p)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(p)}\nDATA ascii\n")
        (root / f"{1000 + i}.{i}00000.pcd").write_text(head + "".join(f"{a} {b} {c}\n" for a, b, c in p))
    return root


def _bag(fmt: str):
    def build(root: Path) -> Path:
        from fuse4d.data.export import export_sequence
        return export_sequence(_handmade(), root / "bag", format=fmt)
    return build


def _shared(*parts: str, keep=None):
    def build(root: Path) -> Path:
        src = SHARED.joinpath(*parts)
        if not src.exists():
            pytest.skip(f"sample data not available: {src}")
        _link_tree(src, root / src.name)
        return root / src.name
    return build


def _kitti_raw(root: Path) -> Path:
    day = SHARED / "kitti_raw_2011_09_26" / "2011_09_26"
    if not day.exists():
        pytest.skip(f"sample data not available: {day}")
    (root / "2011_09_26").mkdir(parents=True)
    for p in day.glob("calib_*.txt"):
        os.link(p, root / "2011_09_26" / p.name)
    _link_tree(day / "2011_09_26_drive_0001_sync", root / "2011_09_26" / "2011_09_26_drive_0001_sync")
    return root / "2011_09_26" / "2011_09_26_drive_0001_sync"


TEMPLATES = {
    "zarr": _zarr,
    "kitti_odometry": _kitti_odometry,
    "kitti_raw": _kitti_raw,
    "tum": _tum,
    "euroc": _shared("euroc_kimera_vio_tests", "tests", "data", "MicroEurocDataset"),
    "av2": _shared("av2_sensor_val_2sweeps", "tests", "unit", "test_data", "sensor", "val",
                   "7fab2350-7eaf-3b7e-a39d-6937a4c1bede"),
    "sevenscenes": _shared("sevenscenes_tsdf_fusion_python", "data"),
    "scan_folder": _scan_folder,
    "rosbag": _bag("rosbag"),
    "mcap": _bag("mcap"),
}


def _exercise(path: Path) -> None:
    """Open ``path`` and read everything a run reads."""
    seq = load_sequence(path)
    for i in range(len(seq)):
        seq[i]
    _ = seq.imu, seq.gt_poses, seq.calibration


def _mutate(data: bytes, op: str, a: int, b: int, junk: bytes) -> bytes | None:
    n = len(data)
    i, j = (a % (n + 1), b % (n + 1)) if n else (0, 0)
    if op == "truncate":
        return data[:i]
    if op == "flip":
        if not n:
            return junk
        arr = bytearray(data)
        for k in range(i, min(n, i + 1 + len(junk))):
            arr[k] ^= 0xFF if not junk else junk[(k - i) % len(junk)] | 1
        return bytes(arr)
    if op == "empty":
        return b""
    if op == "delete":
        return None
    if op == "garbage":
        return data[:i] + junk + data[j:]
    if op == "append":
        return data + junk
    return data[:i] + b"\x00" * max(1, j - i) + data[i + max(1, j - i):]  # zero_run


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """``name -> (folder, path to open, files)``, built lazily (a missing sample skips only its reader)."""
    cache = {}

    def get(name: str):
        if name not in cache:
            root = tmp_path_factory.mktemp(name)
            path = TEMPLATES[name](root / "t")
            _exercise(path)  # the template itself is a valid log
            files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
            cache[name] = (root, path.relative_to(root), files)
        return cache[name]
    return get


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_only_data_errors_escape(name, templates):
    root, rel, files = templates(name)
    # small files first so they are drawn as often as the large scans/images
    files = sorted(files, key=lambda f: ((root / f).stat().st_size > 4096, str(f)))

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE, phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(k=st.integers(0, len(files) - 1), op=st.sampled_from(OPS), a=st.integers(0, 1 << 20),
           b=st.integers(0, 1 << 20), junk=st.binary(min_size=0, max_size=24))
    def fuzz(k, op, a, b, junk):
        with tempfile.TemporaryDirectory(prefix="fuse4d-fuzz-") as d:
            work = Path(d) / "w"
            _link_tree(root, work)
            target = work / files[k]
            data = target.read_bytes()
            target.unlink()  # break the hard link before writing
            new = _mutate(data, op, a, b, junk)
            if new is not None:
                target.write_bytes(new)
            try:
                _exercise(work / rel)
            except Fuse4dError:
                pass
            except Exception as e:  # anything else is a reader bug
                bugs.append(f"{op} of {files[k]} raised {type(e).__name__}: {str(e)[:200]}")
    bugs: list[str] = []
    fuzz()
    assert not bugs, f"{name}: " + "\n".join(sorted(set(bugs)))


def test_trajectory_files_only_data_errors(tmp_path):
    """TUM / KITTI / EuRoC trajectory files, mutated: read_trajectory raises only DataError."""
    src = SHARED / "evo_trajectories" / "test" / "data"
    if not src.exists():
        pytest.skip(f"sample data not available: {src}")
    samples = {}
    for name in ("fr2_desk_ORB.txt", "KITTI_00_ORB.txt", "V102.txt"):
        lines = (src / name).read_bytes().splitlines(keepends=True)
        samples[name] = b"".join(lines[:40])  # a head of each: same format, fast

    @settings(max_examples=3 * EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE, phases=[Phase.generate],
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(name=st.sampled_from(sorted(samples)), op=st.sampled_from([o for o in OPS if o != "delete"]),
           a=st.integers(0, 1 << 16), b=st.integers(0, 1 << 16), junk=st.binary(max_size=24))
    def fuzz(name, op, a, b, junk):
        path = tmp_path / name
        path.write_bytes(_mutate(samples[name], op, a, b, junk))
        try:
            read_trajectory(path)
        except Fuse4dError:
            pass
        except Exception as e:
            bugs.append(f"{op} of {name} raised {type(e).__name__}: {str(e)[:200]}")
    bugs: list[str] = []
    fuzz()
    assert not bugs, "\n".join(sorted(set(bugs)))
