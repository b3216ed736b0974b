"""Export a :class:`Sequence` as a fuse4d zarr log or a KITTI-odometry folder, with sidecars.

``export_sequence(seq, DIR, format)`` writes either

- ``zarr``:  ``DIR/log.zarr`` (see :mod:`fuse4d.data.zarr_log`), or
- ``kitti``: ``DIR/sequences/00/{velodyne/000000.bin, image_2/000000.png,
  calib.txt, times.txt}`` and ``DIR/poses/00.txt``,

plus the sidecars in ``DIR``: ``groundtruth.txt`` (TUM, body frame),
``groundtruth_lidar.txt`` (TUM, LiDAR frame re-based so its first pose is the
identity), ``calib.yaml`` and ``degradations.json``. ``load_sequence(DIR)``
reads either layout back.

KITTI choices:
- our single camera is camera 2 and also camera 0: ``P0 = P1 = P2 = P3 =
  K [I | 0]`` (zero baselines) and ``Tr = T_cam_lidar``; ``P*`` lines are
  left out for a log without a camera.
- per-point ground truth (``point_semantics``, ``point_dynamic``, ``point_instance``)
  becomes SemanticKITTI ``labels/NNNNNN.label`` (:mod:`fuse4d.data.semantickitti`).
- a frame without LiDAR gets an empty (0-byte) ``.bin``, so scans, poses and
  times stay one line per frame; KISS-ICP 1.3 keeps its motion prediction on
  an empty scan. ``calib.yaml`` lists those frames under ``missing``.
- a frame without an image gets a black PNG of the log's image size (KITTI
  tools expect one image per index); ``calib.yaml`` lists it under
  ``missing``. A log with no image at all gets no ``image_2/``.
- ``times.txt`` holds the log's own timestamps (seconds, not re-based), so it
  matches ``groundtruth.txt``.
- ``poses/00.txt`` is the camera trajectory ``inv(T_world_cam_0) @
  T_world_cam_i`` (``T_world_cam = T_world_body @ T_body_cam``) re-based on the
  first frame with a pose; frames without one are rows of ``nan``. A log with
  no ground truth gets no pose file (KISS-ICP then needs a sequence id >= 11).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from fuse4d.data.trajectory import write_kitti, write_tum
from fuse4d.data.types import Sequence
from fuse4d.data.zarr_log import LOG_NAME, jsonable, swap_into_place, write_sequence
from fuse4d.errors import DataError
from fuse4d.fileio import atomic_write_text
from fuse4d.geometry import invert

log = logging.getLogger(__name__)
FORMATS = ("zarr", "kitti", "kitti-raw", "rosbag", "ros2", "mcap")


def _rebase(poses: np.ndarray) -> np.ndarray:
    """``inv(T_0) @ T_i`` for ``[S, 4, 4]`` poses, with T_0 the first finite pose (NaN rows stay NaN)."""
    ok = np.isfinite(poses.reshape(len(poses), -1)).all(axis=1)
    if not ok.any():
        return poses.copy()
    return invert(poses[np.flatnonzero(ok)[0]]) @ poses


def _calib_txt(seq: Sequence) -> str:
    c = seq.calibration
    lines = []
    if c.K is not None:
        P = np.hstack([c.K, np.zeros((3, 1))])
        lines += [f"P{i}: " + " ".join(f"{v:.12e}" for v in P.reshape(-1)) for i in range(4)]
    lines.append("Tr: " + " ".join(f"{v:.12e}" for v in c.T_cam_lidar[:3, :4].reshape(-1)))
    return "\n".join(lines) + "\n"


def write_kitti_odometry(seq: Sequence, out_dir: str | Path, sequence: str = "00", progress: bool = False,
                         overwrite: bool = False) -> Path:
    """Write ``seq`` in the KITTI odometry layout under ``out_dir`` (see the module notes).

    Velodyne scans are float32 ``[N, 4]`` x, y, z, intensity in the LiDAR frame;
    images are RGB PNGs. The sequence folder is written under a temporary name
    and renamed into place when complete.

    Returns:
        ``out_dir`` (the root holding ``sequences/`` and ``poses/``).
    Raises:
        DataError: the sequence folder exists and ``overwrite`` is False, or a
            frame's points are not ``[N, >=4]``.
    """
    out = Path(out_dir).expanduser()
    _export_kitti(seq, out, sequence, progress, overwrite)
    return out


def _export_kitti(seq: Sequence, out: Path, sequence: str, progress: bool,
                  overwrite: bool) -> tuple[np.ndarray, dict[str, list[int]]]:
    seq_dir = out / "sequences" / sequence
    if seq_dir.exists() and not overwrite:
        raise DataError(seq_dir, "already exists; pass overwrite=True to replace it")
    tmp = seq_dir.with_name(f".{sequence}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "velodyne").mkdir(parents=True)
    try:
        poses, missing = _write_kitti_frames(seq, tmp, progress)
        atomic_write_text(tmp / "calib.txt", _calib_txt(seq))
        atomic_write_text(tmp / "times.txt", "".join(f"{t:.9f}\n" for t in seq.timestamps))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_into_place(tmp, seq_dir)
    pose_file = out / "poses" / f"{sequence}.txt"
    if np.isfinite(poses).any():
        pose_file.parent.mkdir(exist_ok=True)
        write_kitti(pose_file, _rebase(poses @ seq.calibration.T_body_cam))
    else:
        pose_file.unlink(missing_ok=True)
        log.warning("%s: no ground-truth poses, so no %s (KISS-ICP needs a sequence id >= 11)", seq_dir, pose_file)
    if missing["lidar"]:
        log.warning("%s: %d frames without LiDAR written as empty scans", seq_dir, len(missing["lidar"]))
    return poses, missing


def _write_kitti_frames(seq: Sequence, folder: Path, progress: bool) -> tuple[np.ndarray, dict[str, list[int]]]:
    """Scans and images into ``folder``; returns body poses ``[S, 4, 4]`` (NaN unknown) and missing frames."""
    poses = np.full((len(seq), 4, 4), np.nan) if seq.gt_poses is None else seq.gt_poses.copy()
    missing: dict[str, list[int]] = {"lidar": [], "camera": []}
    shape, timed = None, False
    frames = enumerate(seq)
    if progress:
        from tqdm import tqdm
        frames = tqdm(frames, total=len(seq), desc="export kitti", unit="frame")
    for i, f in frames:
        if f.T_world_body is not None:
            poses[i] = f.T_world_body
        if f.points is None:
            missing["lidar"].append(i)
            (folder / "velodyne" / f"{i:06d}.bin").write_bytes(b"")
        else:
            pts = np.asarray(f.points)
            if pts.ndim != 2 or pts.shape[1] < 4:
                raise DataError(seq.path, f"frame {i}: points have shape {list(pts.shape)}, expected [N, 4]")
            np.ascontiguousarray(pts[:, :4], dtype=np.float32).tofile(folder / "velodyne" / f"{i:06d}.bin")
            if not timed and f.point_time is not None and len(pts) >= 10:  # KITTI scans carry no per-point time
                from fuse4d.fusion.estimation.deskew import fit_timing
                atomic_write_text(folder / "lidar_timing.json", json.dumps(fit_timing(pts, f.point_time)) + "\n")
                timed = True
            if f.point_semantics is not None:  # SemanticKITTI labels/NNNNNN.label
                from fuse4d.data.semantickitti import encode, write_label
                (folder / "labels").mkdir(exist_ok=True)
                write_label(folder / "labels" / f"{i:06d}.label",
                            encode(f.point_semantics, f.point_dynamic, f.point_instance))
        if f.image is None:
            missing["camera"].append(i)
        else:
            shape = np.shape(f.image)
            (folder / "image_2").mkdir(exist_ok=True)
            Image.fromarray(np.asarray(f.image, dtype=np.uint8)).save(folder / "image_2" / f"{i:06d}.png")
    if shape is not None and missing["camera"]:
        buf = io.BytesIO()
        Image.fromarray(np.zeros(shape, np.uint8)).save(buf, format="PNG")
        for i in missing["camera"]:
            (folder / "image_2" / f"{i:06d}.png").write_bytes(buf.getvalue())
    return poses, missing


def write_sidecars(seq: Sequence, out_dir: str | Path, poses: np.ndarray | None = None,
                   missing: dict[str, list[int]] | None = None) -> list[Path]:
    """Write ``groundtruth.txt``, ``groundtruth_lidar.txt``, ``calib.yaml``, ``degradations.json``.

    Args:
        seq: the sequence.
        out_dir: folder to write into (created if needed).
        poses: ``[S, 4, 4]`` ``T_world_body`` (NaN rows unknown); defaults to
            ``seq.gt_poses``. No trajectory files are written without poses.
        missing: frame indices without ``camera``/``lidar``, recorded in calib.yaml.
    Returns:
        the files written.
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    poses = seq.gt_poses if poses is None else np.asarray(poses, dtype=np.float64)
    written = []
    if poses is not None and np.isfinite(poses).any():
        t = seq.timestamps
        write_tum(out / "groundtruth.txt", t, poses, frame="body", comment="(T_world_body, metres)")
        lidar = _rebase(poses @ seq.calibration.T_body_lidar)
        write_tum(out / "groundtruth_lidar.txt", t, lidar, frame="lidar",
                  comment="(T_lidar0_lidar: re-based so the first LiDAR pose is the identity)")
        written += [out / "groundtruth.txt", out / "groundtruth_lidar.txt"]
    t = seq.timestamps
    summary = {"name": seq.name, "n_frames": len(seq), "sensors": sorted(seq.sensors),
               "t_start": float(t[0]) if len(t) else None, "t_end": float(t[-1]) if len(t) else None,
               "metadata": jsonable(seq.metadata)}
    if missing is not None:
        summary["missing"] = jsonable(missing)
    doc = {"calibration": seq.calibration.to_dict(), "sequence": summary}
    atomic_write_text(out / "calib.yaml", yaml.safe_dump(doc, sort_keys=False))
    written.append(out / "calib.yaml")
    if seq.degradations:
        atomic_write_text(out / "degradations.json", json.dumps(jsonable(seq.degradations), indent=1) + "\n")
        written.append(out / "degradations.json")
    return written


def _log_index(log_path: Path, n: int) -> tuple[np.ndarray | None, dict[str, list[int]]]:
    """Body poses ``[S, 4, 4]`` (NaN unknown) and frames missing camera/LiDAR of a zarr log, from its masks."""
    import zarr

    root = zarr.open_group(zarr.storage.LocalStore(log_path, read_only=True), mode="r")

    def present(layer: str) -> np.ndarray:
        return root[f"frames/{layer}/present"][...] if f"frames/{layer}" in root else np.zeros(n, bool)

    missing = {"lidar": np.flatnonzero(~present("points")).tolist(),
               "camera": np.flatnonzero(~present("image")).tolist()}
    if "frames/T_world_body" not in root:
        return None, missing
    poses = root["frames/T_world_body/data"][...].astype(np.float64)
    poses[~present("T_world_body")] = np.nan
    return poses, missing


def export_sequence(seq: Sequence, out_dir: str | Path, format: str = "zarr", progress: bool = False,
                    overwrite: bool = False) -> Path:
    """Write ``seq`` as ``format`` (``zarr``, ``kitti``, ``kitti-raw``, or a ROS bag: ``rosbag``, ``ros2``, ``mcap``) plus sidecars into ``out_dir``.

    Returns:
        ``out_dir``, the path to give :func:`fuse4d.data.registry.load_sequence`.
    Raises:
        DataError: unknown format, or the output exists and ``overwrite`` is False.
    """
    out = Path(out_dir).expanduser()
    if format not in FORMATS:
        raise DataError(out, f"unknown export format {format!r}; use one of {', '.join(FORMATS)}")
    if format in ("rosbag", "ros2", "mcap"):  # a bag beside the sidecars (see fuse4d.data.rosbag_writer)
        from fuse4d.data.rosbag_writer import write_bag
        write_bag(seq, out, format, progress=progress, overwrite=overwrite)
        write_sidecars(seq, out)
        return out
    if format == "kitti-raw":  # a KITTI raw day folder beside the sidecars (see fuse4d.data.export_kitti_raw)
        from fuse4d.data.export_kitti_raw import write_kitti_raw
        write_kitti_raw(seq, out, progress=progress, overwrite=overwrite)
        write_sidecars(seq, out)
        return out
    other = {"zarr": [out / "sequences", out / "poses"], "kitti": [out / LOG_NAME]}[format]
    if not overwrite and any(p.exists() for p in other):
        raise DataError(out, f"already holds a log in another format ({', '.join(p.name for p in other if p.exists())}); "
                             "writing here would replace its ground-truth sidecars: pick another folder or pass overwrite")
    if format == "zarr":
        path = write_sequence(seq, out / LOG_NAME, progress=progress, overwrite=overwrite)
        log_poses, missing = _log_index(path, len(seq))
        write_sidecars(seq, out, seq.gt_poses if seq.gt_poses is not None else log_poses, missing)
    else:
        poses, missing = _export_kitti(seq, out, "00", progress, overwrite)
        write_sidecars(seq, out, poses, missing)
    return out

