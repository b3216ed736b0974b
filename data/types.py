"""Core data types: calibration, IMU samples, frames and lazy sequences.

Conventions (see DESIGN.md): metres, seconds (float64), radians, m/s², rad/s.
``T_a_b`` is a 4×4 float64 matrix mapping points from frame b to frame a.
Body frame = IMU frame (the LiDAR frame when a log has no IMU).
Images are uint8 RGB ``[H, W, 3]``; depth is float32 metres with 0 = no value.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from fuse4d.errors import DataError

SENSORS = ("camera", "lidar", "imu")


def _as_matrix(T: Any, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise DataError(None, f"{name} must be a 4x4 matrix, got shape {T.shape}")
    return T


@dataclass
class Calibration:
    """Sensor intrinsics, extrinsics and time offsets.

    Attributes:
        K: camera intrinsics ``[3, 3]`` (pixels), or None without a camera.
        image_size: ``(width, height)`` in pixels, or None.
        T_body_cam: camera → body ``[4, 4]``.
        T_body_lidar: LiDAR → body ``[4, 4]``.
        time_offsets: seconds added to each sensor's stamps to reach body
            (IMU) time, keys ``camera``, ``lidar``.
        lidar_beams / lidar_azimuth_steps: range-image size of the LiDAR when
            known (e.g. 64 × 2048 for KITTI's HDL-64E), else None.
        lidar_fov_deg: vertical field of view ``(down, up)`` in degrees.
        imu_noise: optional dict of IMU noise densities (``acc_noise``
            m/s²/√Hz, ``gyro_noise`` rad/s/√Hz, ``acc_walk``, ``gyro_walk``).
    """

    K: np.ndarray | None = None
    image_size: tuple[int, int] | None = None
    T_body_cam: np.ndarray = field(default_factory=lambda: np.eye(4))
    T_body_lidar: np.ndarray = field(default_factory=lambda: np.eye(4))
    time_offsets: dict[str, float] = field(default_factory=dict)
    lidar_beams: int | None = None
    lidar_azimuth_steps: int | None = None
    lidar_fov_deg: tuple[float, float] | None = None
    imu_noise: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.K is not None:
            self.K = np.asarray(self.K, dtype=np.float64)
            if self.K.shape != (3, 3):
                raise DataError(None, f"camera K must be 3x3, got shape {self.K.shape}")
        self.T_body_cam = _as_matrix(self.T_body_cam, "T_body_cam")
        self.T_body_lidar = _as_matrix(self.T_body_lidar, "T_body_lidar")
        if self.image_size is not None:
            self.image_size = (int(self.image_size[0]), int(self.image_size[1]))

    @property
    def T_cam_lidar(self) -> np.ndarray:
        """LiDAR → camera ``[4, 4]``."""
        return np.linalg.inv(self.T_body_cam) @ self.T_body_lidar

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python (YAML/JSON-safe) form."""
        return {
            "K": None if self.K is None else self.K.tolist(),
            "image_size": None if self.image_size is None else list(self.image_size),
            "T_body_cam": self.T_body_cam.tolist(),
            "T_body_lidar": self.T_body_lidar.tolist(),
            "time_offsets": dict(self.time_offsets),
            "lidar_beams": self.lidar_beams,
            "lidar_azimuth_steps": self.lidar_azimuth_steps,
            "lidar_fov_deg": None if self.lidar_fov_deg is None else list(self.lidar_fov_deg),
            "imu_noise": dict(self.imu_noise),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibration":
        """Inverse of :meth:`to_dict`."""
        fov = d.get("lidar_fov_deg")
        size = d.get("image_size")
        return cls(
            K=None if d.get("K") is None else np.asarray(d["K"], dtype=np.float64),
            image_size=None if size is None else (int(size[0]), int(size[1])),
            T_body_cam=np.asarray(d.get("T_body_cam", np.eye(4)), dtype=np.float64),
            T_body_lidar=np.asarray(d.get("T_body_lidar", np.eye(4)), dtype=np.float64),
            time_offsets={k: float(v) for k, v in (d.get("time_offsets") or {}).items()},
            lidar_beams=d.get("lidar_beams"),
            lidar_azimuth_steps=d.get("lidar_azimuth_steps"),
            lidar_fov_deg=None if fov is None else (float(fov[0]), float(fov[1])),
            imu_noise={k: float(v) for k, v in (d.get("imu_noise") or {}).items()},
        )


@dataclass
class ImuSamples:
    """A stream of IMU samples in the body frame.

    Attributes:
        t: ``[M]`` float64 seconds, strictly increasing.
        acc: ``[M, 3]`` specific force, m/s² (gravity included, as measured).
        gyro: ``[M, 3]`` angular rate, rad/s.
    """

    t: np.ndarray
    acc: np.ndarray
    gyro: np.ndarray

    def __post_init__(self) -> None:
        self.t = np.asarray(self.t, dtype=np.float64).reshape(-1)
        self.acc = np.asarray(self.acc, dtype=np.float64).reshape(-1, 3)
        self.gyro = np.asarray(self.gyro, dtype=np.float64).reshape(-1, 3)
        if not (len(self.t) == len(self.acc) == len(self.gyro)):
            raise DataError(None, f"IMU arrays differ in length: t {len(self.t)}, acc {len(self.acc)}, gyro {len(self.gyro)}")

    def __len__(self) -> int:
        return len(self.t)

    def validate(self, path: str | Path | None = None) -> "ImuSamples":
        """Check finiteness and strictly increasing time; raise DataError naming ``path``."""
        from fuse4d.data.validation import check_finite, check_monotonic
        check_finite(np.hstack([self.acc, self.gyro]), path, "IMU samples")
        check_monotonic(self.t, path, "IMU timestamps")
        return self

    def between(self, t0: float, t1: float) -> "ImuSamples":
        """Samples with ``t0 < t <= t1``."""
        m = (self.t > t0) & (self.t <= t1)
        return ImuSamples(self.t[m], self.acc[m], self.gyro[m])

    @classmethod
    def empty(cls) -> "ImuSamples":
        """A stream with no samples."""
        return cls(np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)))

    @property
    def rate_hz(self) -> float:
        """Median sample rate in Hz (0 with fewer than two samples)."""
        return 0.0 if len(self.t) < 2 else float(1.0 / np.median(np.diff(self.t)))


@dataclass
class Frame:
    """One time step of a log; every sensor and every ground-truth layer is optional.

    Attributes:
        index: position in the sequence.
        timestamp: seconds (body/IMU clock).
        image: ``[H, W, 3]`` uint8 RGB.
        depth: ``[H, W]`` float32 metres in the camera view, 0 = no value.
        points: ``[N, 4]`` float32 x, y, z (LiDAR frame, metres) + intensity.
        point_time: ``[N]`` float32 seconds relative to ``timestamp`` (per-point
            capture time, for deskewing), or None.
        imu: IMU samples since the previous frame (``t_prev < t <= timestamp``).
        T_world_body: ground-truth ``[4, 4]`` pose, or None.
        semantics: ground-truth ``[H, W]`` uint8 class ids (``data/classes.py``).
        dynamic_mask: ground-truth ``[H, W]`` bool, True = moving.
        point_semantics / point_dynamic / point_instance: ground-truth ``[N]``
            per-point labels (uint8 / bool / int32, -1 = no instance).
        boxes: ground-truth objects, a dict of arrays (``id [K]``, ``center [K,3]``,
            ``size [K,3]``, ``yaw [K]``, ``velocity [K,3]``, ``cls [K]``) in the world frame.
        flags: notes about this frame, e.g. ``{"no_timestamp", "no_pose"}``.
    """

    index: int
    timestamp: float
    image: np.ndarray | None = None
    depth: np.ndarray | None = None
    points: np.ndarray | None = None
    point_time: np.ndarray | None = None
    imu: ImuSamples | None = None
    T_world_body: np.ndarray | None = None
    semantics: np.ndarray | None = None
    dynamic_mask: np.ndarray | None = None
    point_semantics: np.ndarray | None = None
    point_dynamic: np.ndarray | None = None
    point_instance: np.ndarray | None = None
    boxes: dict[str, np.ndarray] | None = None
    flags: set[str] = field(default_factory=set)

    @property
    def sensors(self) -> set[str]:
        """Sensors present in this frame (subset of ``camera``, ``lidar``, ``imu``)."""
        s = set()
        if self.image is not None:
            s.add("camera")
        if self.points is not None:
            s.add("lidar")
        if self.imu is not None and len(self.imu):
            s.add("imu")
        return s


FrameLoader = Callable[[int], Frame]


class Sequence:
    """A lazy, indexable log of frames.

    Frames are produced on demand by ``loader(i)``; slicing returns a view that
    shares the loader. The whole IMU stream (if any) lives on the sequence, and
    each frame's ``imu`` is filled with the samples since the previous frame.

    Args:
        timestamps: ``[S]`` float64 seconds of each frame.
        loader: ``loader(i) -> Frame`` for ``0 <= i < S`` (index into the full log).
        calibration: sensor calibration.
        sensors: which of ``camera``, ``lidar``, ``imu`` the log has.
        imu: the full IMU stream, or None.
        gt_poses: ``[S, 4, 4]`` ground-truth ``T_world_body`` when known cheaply
            (NaN-filled rows for frames without one), or None.
        metadata: free-form dict (``source``, ``format``, ``degradations`` as a
            list of ``{"name", "start", "stop"}`` frame spans, ``ground_truth``
            as a list of available layers, ...).
        name: short human-readable name.
        path: where it was read from, if anywhere.
        gt_maps: ground truth of the static world, when the source has it:
            ``{"occupancy": {"labels": [X, Y, Z] uint8 class ids (0 = free/unknown),
            "origin": [3] m (corner of voxel 0), "resolution": m},
            "elevation": {"height": [X, Y] float32 m (NaN = unknown),
            "semantics": [X, Y] uint8, "origin": [2] m, "resolution": m}}``.
    """

    def __init__(
        self,
        timestamps: np.ndarray,
        loader: FrameLoader,
        calibration: Calibration | None = None,
        sensors: set[str] | frozenset[str] | None = None,
        imu: ImuSamples | None = None,
        gt_poses: np.ndarray | None = None,
        metadata: dict[str, Any] | None = None,
        name: str = "sequence",
        path: str | Path | None = None,
        gt_maps: dict[str, Any] | None = None,
        _indices: np.ndarray | None = None,
    ):
        self._timestamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        self._loader = loader
        self.calibration = calibration or Calibration()
        self.sensors = frozenset(sensors or ())
        unknown = self.sensors - set(SENSORS)
        if unknown:
            raise DataError(path, f"unknown sensors {sorted(unknown)}; expected a subset of {SENSORS}")
        self.imu = imu
        self._gt_poses = None if gt_poses is None else np.asarray(gt_poses, dtype=np.float64)
        self.metadata = dict(metadata or {})
        self.name = name
        self.path = None if path is None else Path(path)
        self.gt_maps = gt_maps
        self._indices = np.arange(len(self._timestamps)) if _indices is None else _indices

    # -- container protocol ---------------------------------------------
    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, key: int | slice) -> "Frame | Sequence":
        if isinstance(key, slice):
            return self._view(self._indices[key])
        if isinstance(key, (int, np.integer)):
            n = len(self)
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"frame {key} out of range for a sequence of {n} frames")
            return self._load(int(self._indices[i]))
        raise TypeError(f"Sequence indices must be int or slice, not {type(key).__name__}")

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"Sequence(name={self.name!r}, frames={len(self)}, sensors={sorted(self.sensors)})"

    def _view(self, indices: np.ndarray) -> "Sequence":
        return Sequence(self._timestamps, self._loader, self.calibration, self.sensors, self.imu,
                        self._gt_poses, self.metadata, self.name, self.path, self.gt_maps,
                        _indices=np.asarray(indices))

    def _load(self, full_index: int) -> Frame:
        frame = self._loader(full_index)
        if frame.imu is None and self.imu is not None:
            t_prev = self._timestamps[full_index - 1] if full_index > 0 else -np.inf
            frame.imu = self.imu.between(t_prev, self._timestamps[full_index])
        return frame

    # -- properties ------------------------------------------------------
    @property
    def timestamps(self) -> np.ndarray:
        """``[S]`` float64 seconds of the frames in this view."""
        return self._timestamps[self._indices]

    @property
    def indices(self) -> np.ndarray:
        """``[S]`` indices of this view's frames in the full log."""
        return self._indices.copy()

    @property
    def gt_poses(self) -> np.ndarray | None:
        """``[S, 4, 4]`` ground-truth ``T_world_body`` (NaN where unknown), or None."""
        return None if self._gt_poses is None else self._gt_poses[self._indices]

    @property
    def has_ground_truth_poses(self) -> bool:
        """True when at least two frames have a ground-truth pose."""
        gt = self.gt_poses
        return gt is not None and int(np.isfinite(gt[:, 0, 0]).sum()) >= 2

    @property
    def degradations(self) -> list[dict[str, Any]]:
        """Degraded spans ``{"name", "start", "stop"}`` (frame indices, stop exclusive)."""
        return list(self.metadata.get("degradations", []))

    def windows(self, size: int, stride: int | None = None) -> Iterator["Sequence"]:
        """Yield views of ``size`` consecutive frames every ``stride`` frames.

        The last window is shortened to end at the last frame, so every frame
        is covered. Raises ValueError for ``size < 1`` or ``stride < 1``.
        """
        stride = size if stride is None else stride
        if size < 1 or stride < 1:
            raise ValueError(f"window size and stride must be >= 1, got {size}, {stride}")
        n = len(self)
        start = 0
        while start < n:
            yield self[start:min(start + size, n)]
            if start + size >= n:
                break
            start += stride

    def with_metadata(self, **updates: Any) -> "Sequence":
        """A view of this sequence with ``metadata`` updated."""
        view = self._view(self._indices)
        view.metadata = {**self.metadata, **updates}
        return view


def replace_frame(frame: Frame, **changes: Any) -> Frame:
    """A copy of ``frame`` with the given fields replaced."""
    return replace(frame, **changes)
