"""Gather the LiDAR–camera inputs from a log: frames with both an image and a sweep,
spread over the log, deskewed to the image time, with their edge features."""

from __future__ import annotations

import numpy as np

from fuse4d.calib.features import lidar_edges, oriented_edges, scan_rows
from fuse4d.calib.lidar_camera import EdgeFrame
from fuse4d.calib.motion import LidarTrack, deskew_to_stamp
from fuse4d.data.types import Calibration, Frame, Sequence


def edge_frame(frame: Frame, calibration: Calibration, delta: tuple[np.ndarray, float] | None = None,
               max_points: int = 4000, point_mask: np.ndarray | None = None,
               pixel_mask: np.ndarray | None = None, sigma: float = 0.5) -> EdgeFrame:
    """:class:`EdgeFrame` of one frame.

    Args:
        frame: needs ``image`` and ``points``.
        calibration: LiDAR beams/FOV for scan rows (optional fields).
        delta: ``(T_prev_curr, dt)`` LiDAR motion for deskewing (None = no deskew).
        max_points: edge points kept (depth edges first, then intensity edges, nearest first).
        point_mask: ``[N]`` bool, True = drop the point (moving objects).
        pixel_mask: ``[H, W]`` bool, True = ignore the pixel (moving objects).
        sigma: Gaussian blur (px) before the image gradient (``CalibConfig.edge_sigma``).
    """
    pts = deskew_to_stamp(np.asarray(frame.points, np.float32), frame.point_time, delta)
    if point_mask is not None:
        pts = pts[~np.asarray(point_mask, bool)]
    rows = scan_rows(pts, calibration.lidar_beams, calibration.lidar_fov_deg)
    _, w, xyz, kind = lidar_edges(pts, rows)
    r = np.linalg.norm(xyz, axis=1)
    order = np.lexsort((r, -w))
    return EdgeFrame(xyz[order].astype(np.float32), w[order], oriented_edges(frame.image, sigma, mask=pixel_mask),
                     np.asarray(frame.image), pts[:, :3], frame.index, kind[order])


def pick_frames(seq: Sequence, count: int) -> list[int]:
    """Up to ``count`` sequence indices (0 = all) spread evenly over the log."""
    n = len(seq)
    if count <= 0 or count >= n:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, count + 2)[1:-1]})


def edge_frames(seq: Sequence, count: int, track: LidarTrack | None, max_points: int = 4000,
                dynamic: dict[int, tuple[np.ndarray | None, np.ndarray | None]] | None = None,
                sigma: float = 0.5) -> list[EdgeFrame]:
    """Edge frames at :func:`pick_frames` positions that hold both an image and a sweep.

    ``dynamic`` maps a sequence index to ``(point_mask, pixel_mask)`` of moving objects
    (e.g. a run's ``lidar/dynamic`` > 0.5), which are left out of both sides; ``sigma`` as
    :func:`edge_frame`.
    """
    out = []
    for i in pick_frames(seq, count):
        f = seq[i]
        if f.image is None or f.points is None or len(f.points) < 100:
            continue
        pm, xm = (dynamic or {}).get(i, (None, None))
        out.append(edge_frame(f, seq.calibration, track.delta(i) if track is not None else None, max_points, pm, xm,
                              sigma))
    return out
