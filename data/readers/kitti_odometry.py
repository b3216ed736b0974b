"""KITTI odometry reader (``"kitti_odometry"``): ``sequences/XX/{velodyne,image_2,calib.txt,times.txt}``.

Body frame = LiDAR (Velodyne) frame, since the odometry benchmark has no IMU:
``T_body_lidar = I`` and ``T_body_cam = inv(Tr) @ inv(T_cam2_cam0)``, where
``T_cam2_cam0`` is the pure translation ``inv(K2) @ P2[:, 3]`` of the
rectified left colour camera (exact; ``P2[0, 3] / P2[0, 0]`` is its x part).
Ground truth (``poses/XX.txt`` beside ``sequences/``, or ``sequences/XX/poses.txt``)
gives cam0 poses; they become ``T_world_body_i = inv(Tr) @ P_i @ Tr``, so frame 0 is
the identity. Files the reader does not know (e.g. fuse4d's ``groundtruth.txt``,
``calib.yaml`` sidecars) are ignored. A zero-byte ``.bin`` means "no scan in this
frame" (``points=None``, flag ``no_lidar``). SemanticKITTI ``labels/NNNNNN.label``, when
present, become ``point_semantics`` / ``point_dynamic`` (classes 252–259) / ``point_instance``
(see :mod:`fuse4d.data.semantickitti`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fuse4d.data.readers import _common
from fuse4d.data.readers._poses import check_rotations
from fuse4d.data.registry import register_reader
from fuse4d.data.semantickitti import decode, read_label
from fuse4d.data.types import Calibration, Frame, Sequence
from fuse4d.errors import DataError
from fuse4d.geometry import invert, make_T

NAME = "kitti_odometry"
_DATA_DIRS = ("velodyne", "image_2")


def _is_sequence_dir(p: Path) -> bool:
    return p.is_dir() and any((p / d).is_dir() for d in _DATA_DIRS) and (
        (p / "calib.txt").is_file() or (p / "times.txt").is_file())


def _sequence_dirs(p: Path) -> list[Path]:
    seqs = p / "sequences" if (p / "sequences").is_dir() else p
    return sorted(c for c in seqs.iterdir() if _is_sequence_dir(c)) if seqs.is_dir() else []


def detect(path: Path) -> bool:
    """True for a KITTI odometry root (holding ``sequences/``), a ``sequences/`` folder, or one sequence folder."""
    return _is_sequence_dir(path) or bool(_sequence_dirs(path))


def _resolve(path: Path, sequence: str | None) -> Path:
    names = None if sequence is None else {str(sequence), str(sequence).zfill(2)}
    if _is_sequence_dir(path):
        if names is not None and path.name not in names:
            raise DataError(path, f"is sequence {path.name!r}, not {sequence!r}")
        return path
    seqs = _sequence_dirs(path)
    if names is not None:
        for s in seqs:
            if s.name in names:
                return s
        raise DataError(path, f"no sequence {sequence!r}; found {[s.name for s in seqs]}")
    if len(seqs) == 1:
        return seqs[0]
    if not seqs:
        raise DataError(path, "no KITTI odometry sequence folder (velodyne/ or image_2/ with calib.txt)")
    raise DataError(path, f"holds several sequences {[s.name for s in seqs]}; pass sequence=...")


def _calibration(seq_dir: Path, has_camera: bool) -> tuple[Calibration, np.ndarray]:
    path = seq_dir / "calib.txt"
    calib = _common.parse_kitti_calib(path)
    key = "Tr_velo_to_cam" if "Tr" not in calib and "Tr_velo_to_cam" in calib else "Tr"
    M = _common.calib_matrix(calib, key, (3, 4), path)
    Tr = _common.rigid(M[:, :3], M[:, 3], path)
    T_body_cam = invert(Tr)
    K = None
    if has_camera:
        P2 = _common.calib_matrix(calib, "P2", (3, 4), path)
        K = P2[:, :3].copy()
        T_cam2_cam0 = make_T(np.eye(3), np.linalg.solve(K, P2[:, 3]))
        T_body_cam = invert(Tr) @ invert(T_cam2_cam0)
    cal = Calibration(K=K, T_body_cam=T_body_cam, T_body_lidar=np.eye(4),
                      lidar_beams=64, lidar_azimuth_steps=2048, lidar_fov_deg=(-24.9, 2.0))
    return cal, Tr


def _listed(folder: Path, suffixes: tuple[str, ...], n: int | None) -> list[Path] | None:
    """Files ``000000.<ext>`` … of ``folder`` (None if absent); every listed index must exist."""
    if not folder.is_dir():
        return None
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in suffixes)
    if n is None:
        n = len(files)
    by_stem = {f.stem: f for f in files}
    out = []
    for i in range(n):
        f = by_stem.get(f"{i:06d}")
        if f is None:
            raise DataError(folder / f"{i:06d}{suffixes[0]}", "file listed (frame index) but missing")
        out.append(f)
    return out


def load(path: Path, sequence: str | None = None) -> Sequence:
    """Open one KITTI odometry sequence lazily.

    Args:
        path: root with ``sequences/``, the ``sequences/`` folder, or a sequence folder.
        sequence: sequence name (``"00"``) when the path holds several.

    Raises:
        DataError: missing ``calib.txt``, bad ``times.txt``/poses, missing or odd-sized scans.
    """
    path = Path(path)
    seq_dir = _resolve(path, sequence)
    problems: list[str] = []
    times_path = seq_dir / "times.txt"
    n = None
    if times_path.is_file():
        t = _common.read_numbers(times_path)[:, 0]
        _common.check_monotonic(t, times_path)
        n = len(t)
    scans = _listed(seq_dir / "velodyne", (".bin",), n)
    labels = _listed(seq_dir / "labels", (".label",), n if n is not None else (len(scans) if scans else None))
    images = _listed(seq_dir / "image_2", (".png", ".jpg"), n)
    if n is None:
        n = max(len(scans or ()), len(images or ()))
        t = np.arange(n) * 0.1
        problems.append(f"{times_path.name} missing: timestamps are index × 0.1 s")
    if n == 0:
        raise DataError(seq_dir, "sequence has no frames")
    if times_path.is_file():  # more scans/images than stamps: times.txt is short, not the poses file long
        for sub, ext in (("velodyne", ".bin"), ("image_2", ".png")):
            k = len(list((seq_dir / sub).glob(f"*{ext}"))) if (seq_dir / sub).is_dir() else 0
            if k > n:
                raise DataError(times_path, f"has {n} timestamps but {sub}/ holds {k} files")
    sizes = np.array([_common.check_scan_size(f) for f in scans]) if scans else None
    cal, Tr = _calibration(seq_dir, images is not None)
    if images:
        cal.image_size = _common.image_size(images[0])
    gt, gt_file = None, None
    for cand in (seq_dir.parent.parent / "poses" / f"{seq_dir.name}.txt", seq_dir / "poses.txt"):
        if cand.is_file():
            gt_file = cand
            rows = _common.read_numbers(cand, 12)
            if len(rows) != n:
                raise DataError(cand, f"has {len(rows)} poses but the sequence has {n} frames")
            P = np.tile(np.eye(4), (n, 1, 1))
            P[:, :3, :] = rows[:, :12].reshape(n, 3, 4)
            check_rotations(P, cand)
            gt = invert(Tr) @ P @ Tr
            break
    sensors = {s for s, present in (("lidar", scans), ("camera", images)) if present}
    no_timestamp = not times_path.is_file()

    def loader(i: int) -> Frame:
        flags = {"no_timestamp"} if no_timestamp else set()
        points = None
        if scans is not None:
            if sizes[i] == 0:
                flags.add("no_lidar")
            else:
                points = _common.read_scan(scans[i])
        sem = dyn = inst = None
        if labels is not None and points is not None:
            sem, dyn, inst = decode(read_label(labels[i], len(points)))
        image = _common.read_rgb(images[i], cal.image_size) if images is not None else None
        if gt is None:
            flags.add("no_pose")
        return Frame(index=i, timestamp=float(t[i]), image=image, points=points,
                     T_world_body=_common.pose_or_none(gt, i), flags=flags,
                     point_semantics=sem, point_dynamic=dyn, point_instance=inst)

    layers = (["poses"] if gt is not None else []) + (["point_semantics", "point_dynamic", "point_instance"]
                                                      if labels is not None else [])
    meta = _common.base_metadata(NAME, seq_dir, layers, problems,
                                 sequence=seq_dir.name, world_frame="LiDAR frame of frame 0",
                                 gt_file=None if gt_file is None else str(gt_file),
                                 lidar_timing=_common.lidar_timing(seq_dir))
    return Sequence(t, loader, cal, sensors, None, gt, meta, name=f"kitti/{seq_dir.name}", path=seq_dir)


register_reader(NAME, detect, load, priority=5,
                description="KITTI odometry: sequences/XX/{velodyne,image_2,calib.txt,times.txt} + poses/XX.txt")
