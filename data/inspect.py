"""Summaries of a log: sensors, rates, duration, ground truth, problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fuse4d.data.types import Sequence


@dataclass
class LogSummary:
    """What ``fuse4d info`` prints.

    Attributes:
        name / format / source: identification.
        frames: number of frames; duration_s: last - first timestamp.
        frame_rate_hz: median frame rate; imu_rate_hz: median IMU rate (0 = no IMU).
        sensors: sensors the log declares.
        ground_truth: ground-truth layers present.
        image_size: (W, H) or None; points_per_scan: (min, median, max) or None.
        frames_missing: per sensor, how many read frames lack it.
        degradations: degraded spans from the metadata.
        problems: accepted-but-odd things (from the reader and found while reading).
        frames_read: how many frames were actually read (0 with ``quick``).
    """

    name: str
    format: str
    source: str
    frames: int
    duration_s: float
    frame_rate_hz: float
    imu_rate_hz: float
    sensors: list[str]
    ground_truth: list[str]
    image_size: tuple[int, int] | None = None
    points_per_scan: tuple[int, int, int] | None = None
    frames_missing: dict[str, int] = field(default_factory=dict)
    degradations: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    frames_read: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        from dataclasses import asdict
        return asdict(self)


_FRAME_LAYERS = {
    "depth": "depth", "semantics": "semantics", "dynamic_mask": "dynamic_mask",
    "point_semantics": "point_semantics", "point_dynamic": "point_dynamic",
    "point_instance": "point_instance", "boxes": "boxes", "T_world_body": "poses",
}


def summarize(seq: Sequence, quick: bool = False, progress: bool = False) -> LogSummary:
    """Summarise ``seq``; unless ``quick``, read every frame (so bad files raise DataError).

    Raises:
        DataError: a frame's file is bad (raised by the reader while loading).
    """
    ts = seq.timestamps
    dt = np.diff(ts)
    gt = set(seq.metadata.get("ground_truth", []))
    if seq.has_ground_truth_poses:
        gt.add("poses")
    if seq.gt_maps:
        gt.update(f"map:{k}" for k in seq.gt_maps if k not in gt)
    s = LogSummary(
        name=seq.name, format=str(seq.metadata.get("format", "?")), source=str(seq.metadata.get("source", seq.path)),
        frames=len(seq), duration_s=float(ts[-1] - ts[0]) if len(ts) > 1 else 0.0,
        frame_rate_hz=float(1.0 / np.median(dt)) if len(dt) and np.median(dt) > 0 else 0.0,
        imu_rate_hz=seq.imu.rate_hz if seq.imu is not None else 0.0,
        sensors=sorted(seq.sensors), ground_truth=[], degradations=seq.degradations,
        problems=list(seq.metadata.get("problems", [])),
    )
    if seq.calibration.image_size is not None:
        s.image_size = tuple(seq.calibration.image_size)
    if not quick:
        counts: list[int] = []
        missing = {k: 0 for k in seq.sensors if k != "imu"}
        iterator = range(len(seq))
        if progress:
            from tqdm import tqdm
            iterator = tqdm(iterator, desc="reading frames", unit="frame")
        for i in iterator:
            f = seq[i]
            if "camera" in missing and f.image is None:
                missing["camera"] += 1
            if "lidar" in missing and f.points is None:
                missing["lidar"] += 1
            if f.points is not None:
                counts.append(len(f.points))
            if f.image is not None and s.image_size is None:
                s.image_size = (f.image.shape[1], f.image.shape[0])
            for attr, layer in _FRAME_LAYERS.items():
                if getattr(f, attr) is not None:
                    gt.add(layer)
            s.frames_read += 1
        if counts:
            c = np.asarray(counts)
            s.points_per_scan = (int(c.min()), int(np.median(c)), int(c.max()))
        s.frames_missing = {k: v for k, v in missing.items() if v}
        for k, v in s.frames_missing.items():
            s.problems.append(f"{v} of {len(seq)} frames have no {k} data")
    if len(dt) and (dt <= 0).any():
        s.problems.append("frame timestamps are not strictly increasing")
    s.ground_truth = sorted(g for g in gt if not (g.startswith("map:") and g[4:] in gt))
    return s


def format_summary(s: LogSummary) -> str:
    """Human-readable multi-line text of a :class:`LogSummary`."""
    lines = [
        f"log        {s.name}  ({s.format})",
        f"source     {s.source}",
        f"frames     {s.frames}  over {s.duration_s:.2f} s  ({s.frame_rate_hz:.2f} Hz)",
        f"sensors    {', '.join(s.sensors) or 'none'}",
    ]
    if s.image_size:
        lines.append(f"camera     {s.image_size[0]} x {s.image_size[1]} px")
    if s.points_per_scan:
        lines.append(f"lidar      {s.points_per_scan[0]} / {s.points_per_scan[1]} / {s.points_per_scan[2]} points per scan (min / median / max)")
    if s.imu_rate_hz:
        lines.append(f"imu        {s.imu_rate_hz:.1f} Hz")
    lines.append(f"truth      {', '.join(s.ground_truth) or 'none'}")
    for d in s.degradations:
        lines.append(f"degraded   {d['name']}: frames {d['start']}–{d['stop'] - 1}")
    lines.append(f"read       {s.frames_read} of {s.frames} frames" + ("" if s.frames_read else " (--quick)"))
    for p in s.problems:
        lines.append(f"problem    {p}")
    return "\n".join(lines)
