"""What the fusion model predicts for one window of frames: the type the model,
the pipeline, dynamics and mapping meet through.

Produced by ``fuse4d.fusion.predict`` (the model's inference wrapper); every
array is numpy, at the resolution of the input frames (the model resizes
internally and resamples its outputs back), in the conventions of DESIGN.md.
A field is None when the window has no sensor that could give it (no camera →
no dense per-pixel outputs; no LiDAR → no per-point outputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: gate columns, in the order of the store's ``gates [S, 3]``
GATE_MODALITIES = ("rgb", "lidar", "imu")


@dataclass
class WindowPrediction:
    """Model outputs for a window of S frames.

    Attributes:
        indices: ``[S]`` int64 positions of the frames in the sequence.
        depth: ``[S, H, W]`` float32 metres in the camera view, 0 = none (None without camera).
        depth_conf: ``[S, H, W]`` float32 confidence (> 0, larger = surer), or None.
        semantics: ``[S, H, W]`` uint8 class ids of ``data/classes.py``, or None.
        dynamic: ``[S, H, W]`` float32 probability of moving, or None.
        point_semantics: per frame ``[N_i]`` uint8 class per LiDAR point, in the
            frame's point order (None without LiDAR).
        point_dynamic: per frame ``[N_i]`` float32 probability of moving, or None.
        T_prev_cur: ``[S, 4, 4]`` float64 relative motion of the body frame from the
            previous frame to this one (``T_{body,i-1}^{-1} T_{body,i}``); row 0 links
            to the previous window's last frame when the recurrent state was given,
            else it is NaN.
        pose_cov: ``[S, 6, 6]`` float64 covariance of ``T_prev_cur`` (translation m²
            first, then rotation rad², in the body frame of frame i-1); NaN where
            ``T_prev_cur`` is NaN.
        gates: ``[S, 3]`` float32 modality weights in [0, 1] for rgb, lidar, imu
            (NaN = modality absent in that frame).
        attn_tokens: ``[L, S, P, D]`` float32 image-patch tokens after the global
            attention layers the model exposes (VGGT4D cues), or None without camera.
        patch_grid: ``(h, w)`` image patches per frame (``h * w == P``), or None.
        descriptors: ``[S, h_d, w_d, C]`` float16 L2-normalised dense matching
            descriptors on a coarse grid over the image, or None.
        extras: free-form diagnostics (timings, model name, ...).
    """

    indices: np.ndarray
    T_prev_cur: np.ndarray
    pose_cov: np.ndarray
    gates: np.ndarray
    depth: np.ndarray | None = None
    depth_conf: np.ndarray | None = None
    semantics: np.ndarray | None = None
    dynamic: np.ndarray | None = None
    point_semantics: list[np.ndarray] | None = None
    point_dynamic: list[np.ndarray] | None = None
    attn_tokens: np.ndarray | None = None
    patch_grid: tuple[int, int] | None = None
    descriptors: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)
