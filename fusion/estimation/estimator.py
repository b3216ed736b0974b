"""The estimation stage: a Sequence in, a metric trajectory out (no network needed).

``Estimator`` is the stage object (``step(frame)`` per frame, ``finish()`` at
the end); :func:`estimate_trajectory` runs it over a whole sequence. Input
checks live here: a log with neither LiDAR nor IMU is refused unless it has a
camera, in which case it is accepted and flagged as needing the fusion model.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np

from fuse4d.data.types import Calibration, Frame, ImuSamples, Sequence
from fuse4d.errors import DataError
from fuse4d.fusion.estimation.backend import optimise, refine_window
from fuse4d.fusion.estimation.config import EstimationConfig
from fuse4d.fusion.estimation.frontend import FrameRecord, Frontend
from fuse4d.fusion.estimation.imu import ImuNoise, check_imu, with_sampling_noise
from fuse4d.fusion.estimation.imu_startup import dead_reckon, imu_startup
from fuse4d.fusion.estimation.network_backend import solve_network
from fuse4d.fusion.estimation.lie import so3_exp
from fuse4d.fusion.estimation.result import EstimationResult
from fuse4d.geometry import invert, make_T

log = logging.getLogger(__name__)


class Estimator:
    """LiDAR-inertial estimation stage.

    Args:
        config: settings (defaults when None).
        calibration: sensor calibration (``T_body_lidar``, ``imu_noise``).
        sensors: sensors the log has (``camera``, ``lidar``, ``imu``).
        imu: the whole IMU stream when known (else taken from each frame's samples).
        path: the log's path, for error messages.
        lidar_timing: azimuth timing model of a spinning LiDAR whose sweeps carry no per-point
            times (``seq.metadata["lidar_timing"]``, see :func:`~fuse4d.fusion.estimation.deskew.azimuth_time`);
            with it such sweeps are deskewed too.
        depth_sensor: the log's ``Frame.depth`` comes from a real depth camera
            (``seq.metadata["depth_sensor"]``): without LiDAR, frames are posed by RGB-D
            odometry (:mod:`~fuse4d.fusion.estimation.rgbd_odometry`), fused with the IMU
            and network factors when present. Otherwise depth is ground truth and never used.
        lidar_deskewed: the log's sweeps are already motion-compensated (``seq.metadata["lidar_deskewed"]``,
            e.g. Argoverse 2): their point times are ignored, so the motion is not removed twice.

    Raises:
        DataError: neither LiDAR nor IMU nor camera; bad IMU stream (NaN, non-monotonic time).
    """

    def __init__(self, config: EstimationConfig | None = None, calibration: Calibration | None = None,
                 sensors: set[str] | frozenset[str] = frozenset({"lidar"}), imu: ImuSamples | None = None,
                 path=None, lidar_timing: dict | None = None, depth_sensor: bool = False,
                 lidar_deskewed: bool = False):
        self.config = config or EstimationConfig()
        calib = calibration or Calibration()
        sensors = set(sensors)
        self.rgbd = None
        if depth_sensor and "lidar" not in sensors and calib.K is not None:
            from fuse4d.fusion.estimation.rgbd_odometry import RgbdOdometry
            self.rgbd = RgbdOdometry(calib.K, calib.T_body_cam if "imu" in sensors else None)
        self.depth_factors: list = []
        self.predicted_depth_factors: list = []  # depth odometry on the model's depth (add_depth_factor)
        self.depth_scale = None  # its visual-inertial scale fit, when there is an IMU
        if not sensors & {"lidar", "imu"} and self.rgbd is None:
            if "camera" not in sensors:
                raise DataError(path, "sequence has neither LiDAR nor IMU (nor a camera): nothing to estimate poses from")
            warnings.warn(f"{path or 'sequence'}: camera-only log; poses need the fusion model "
                          "(add_network_factor); without factors status 'needs_model', poses NaN", stacklevel=2)
        self.needs_model = not sensors & {"lidar", "imu"}
        self.has_imu = "imu" in sensors
        self.has_lidar = "lidar" in sensors
        imu = check_imu(imu, path)
        self.frame = "body" if self.has_imu or self.needs_model else "lidar"  # camera-only: body = camera
        X = calib.T_body_lidar if self.has_imu else np.eye(4)
        # without gravity, a LiDAR-frame world takes the body's axes at the start (level on level ground):
        # the LiDAR's own mounting tilt would otherwise tilt every map of the run
        self._R_body_lidar = np.asarray(calib.T_body_lidar, float)[:3, :3].copy()
        self.imu_noise = with_sampling_noise(imu, ImuNoise.from_dict(calib.imu_noise))  # 10 Hz OXTS: wider
        self.frontend = Frontend(self.config, X, imu, use_imu=self.has_imu and self.config.use_imu,
                                 lidar_timing=lidar_timing, lidar_deskewed=lidar_deskewed)
        self.t: list[float] = []
        self._tic = time.perf_counter()

    def step(self, frame: Frame) -> FrameRecord | None:
        """Track one frame (None for a log without LiDAR: its poses are solved in :meth:`finish`).

        Raises:
            DataError: timestamps not increasing or bad IMU samples in the frame.
        """
        if not self.has_lidar:  # poses come at finish() from the IMU and/or network factors
            if self.t and not frame.timestamp > self.t[-1]:
                raise DataError(None, f"frame {frame.index}: timestamp {frame.timestamp:.6f} s is not after the "
                                      f"previous frame's {self.t[-1]:.6f} s")
            if self.frontend.use_imu:
                self.frontend._append_imu(frame)
            if self.rgbd is not None:
                tic = time.perf_counter()
                self.depth_factors += self.rgbd.step(len(self.t), frame)
                self.frontend.timings["rgbd_odometry"] = self.frontend.timings.get("rgbd_odometry", 0.0) + \
                    time.perf_counter() - tic
            self.t.append(float(frame.timestamp))
            return None
        rec = self.frontend.step(frame)
        if self.config.mode == "window" and "keyframe" in rec.flags:
            tic = time.perf_counter()
            refine_window(self.frontend, self.imu_noise, self.config.window_size)
            self.frontend.timings["window"] = self.frontend.timings.get("window", 0.0) + time.perf_counter() - tic
        self.t.append(rec.t)
        return rec

    def add_network_factor(self, i: int, j: int, T_i_j: np.ndarray, covariance: np.ndarray) -> None:
        """Add a relative pose predicted by the fusion model between stepped frames ``i`` and ``j``.

        With LiDAR the factor is one more pose-graph edge. Without LiDAR the factors are the
        motion source: a camera-only log chains them into a metric trajectory (every frame
        a factor reaches becomes a node), a camera+IMU log joins them with IMU preintegration
        (gravity, velocity and biases estimated from both). Factors may be added at any time
        before :meth:`finish`, after or between :meth:`step` calls.

        Args:
            i, j: positions of the frames in stepping order (0 = first frame stepped).
            T_i_j: ``[4, 4]`` pose of frame j in frame i, in the output frame (``self.frame``:
                the body = IMU frame with an IMU, the camera for a camera-only log).
            covariance: ``[6, 6]`` (translation m², rotation rad², in frame j's axes) of the prediction.

        Raises:
            ValueError: a frame not stepped yet, ``i == j``, bad shapes, or a covariance that is not
                symmetric positive definite.
        """
        T_i_j, covariance = np.asarray(T_i_j, float), np.asarray(covariance, float)
        if T_i_j.shape != (4, 4) or covariance.shape != (6, 6):
            raise ValueError(f"need T_i_j [4, 4] and covariance [6, 6], got {T_i_j.shape} and {covariance.shape}")
        if not (0 <= i < len(self.t) and 0 <= j < len(self.t)) or i == j:
            raise ValueError(f"network factor between frames {i} and {j}: both must be stepped and distinct "
                             f"({len(self.t)} frames so far)")
        if not np.isfinite(T_i_j).all() or not np.isfinite(covariance).all() \
                or np.linalg.eigvalsh(0.5 * (covariance + covariance.T)).min() <= 0:
            raise ValueError(f"network factor {i}-{j}: pose and covariance must be finite, covariance positive definite")
        self.frontend.network.append((int(i), int(j), T_i_j, covariance))

    def add_depth_factor(self, i: int, j: int, T_i_j: np.ndarray, covariance: np.ndarray) -> None:
        """Add a relative pose from depth odometry on the fusion model's predicted depth
        (:mod:`~fuse4d.fusion.estimation.depth_odometry`); arguments as :meth:`add_network_factor`.

        With LiDAR it is one more edge across a step the LiDAR did not register. Without LiDAR it
        takes the place of the model's own factor on its step (``network_factors: gaps``), and with
        an IMU its translations are rescaled step by step by the visual-inertial scale track
        (:func:`~fuse4d.fusion.estimation.visual_scale.imu_scale_track`; the predicted depth's scale is
        only approximately metric and varies with the scene), and the steps it finds inconsistent with
        the IMU are dropped (the model's own factor bridges them).
        """
        self.add_network_factor(i, j, T_i_j, covariance)
        if not self.has_lidar:
            self.predicted_depth_factors.append(self.frontend.network.pop())

    def finish(self) -> EstimationResult:
        """Optimise the keyframe graph and return the trajectory of every frame stepped so far.

        Raises:
            ValueError: no frame was stepped.
        """
        if not self.t:
            raise ValueError("no frames were given to the estimator")
        t = np.asarray(self.t)
        S = len(t)
        if not self.has_lidar and (self.frontend.network or self.depth_factors or self.predicted_depth_factors):
            return self._finish_network(t)
        if not self.has_lidar and self.frontend.use_imu and self.frontend.imu is not None:
            return self._finish_imu_only(t)
        if self.needs_model:
            return EstimationResult(t, np.full((S, 4, 4), np.nan), self.frame, ["needs_model"] * S,
                                    [set() for _ in range(S)], needs_model=True)
        fe, cfg = self.frontend, self.config
        tic = time.perf_counter()
        out = optimise(fe, self.imu_noise, cfg.graph_iterations, cfg.max_graph_nodes, cfg.network_factors)
        timings = dict(fe.timings)
        timings.update(fe.lo.timings)
        timings["pose_graph"] = time.perf_counter() - tic
        T_world_odom = self._world_alignment(out.T[0], fe.gravity)
        if fe.gravity is None and self.frame == "lidar":
            T_world_odom = make_T(self._R_body_lidar, np.zeros(3)) @ T_world_odom
        T = T_world_odom @ out.T
        R_wo = T_world_odom[:3, :3]
        vel = None if out.velocities is None else out.velocities @ R_wo.T
        recs = fe.records
        loops = []
        db_to_pos = {v: k for k, v in fe.kf_lidar.items()}
        for n in out.loops_used:
            lc = fe.loops[n]
            loops.append({"i": recs[db_to_pos[lc.i]].index, "j": recs[db_to_pos[lc.j]].index,
                          "fitness": lc.fitness, "rmse": lc.rmse})
            recs[db_to_pos[lc.j]].flags.add("loop")
        info = dict(out.info)
        if fe.gravity is not None:
            info["gravity_odom"] = fe.gravity.tolist()
        timings["total"] = time.perf_counter() - self._tic
        return EstimationResult(
            t, T, self.frame, [r.status for r in recs], [set(r.flags) for r in recs], _gaps(recs), loops,
            np.array([r.fitness for r in recs]), vel, out.biases, fe.X.copy(), False, timings, info)

    def _finish_network(self, t: np.ndarray) -> EstimationResult:
        """Logs without LiDAR: the trajectory from network factors (and the IMU when used)."""
        fe, cfg = self.frontend, self.config
        tic = time.perf_counter()
        use_imu = fe.use_imu and fe.imu is not None
        net, pred = fe.network, self.predicted_depth_factors
        if use_imu and pred:  # the predicted depth's scale, step by step, from the IMU; failed steps dropped
            from fuse4d.fusion.estimation.visual_scale import imu_scale_track
            self.depth_scale = imu_scale_track(t, {j: T for i, j, T, _ in pred if j == i + 1}, fe.imu, cfg.gravity,
                                               self.imu_noise, fe._imu_covers)
            pred = [(i, j, _scaled(T, self.depth_scale.at(j)), C) for i, j, T, C in pred
                    if j not in self.depth_scale.outliers]
        if cfg.network_factors == "gaps" and (self.depth_factors or pred):   # depth odometry registered these steps
            covered = {(i, j) for i, j, _, _ in self.depth_factors + pred}
            net = [f for f in net if (f[0], f[1]) not in covered]
        sol = solve_network(t, net + self.depth_factors + pred, fe.imu if use_imu else None, fe._imu_covers if use_imu else None,
                            self.imu_noise, cfg.gravity, max(2.0 * cfg.imu_init_time, 2.0),
                            max(cfg.graph_iterations, 20))
        first = int(np.flatnonzero(sol.reached)[0])
        T_world_odom = self._world_alignment(sol.T[first], sol.gravity)
        T = T_world_odom @ sol.T
        vel = None if sol.velocities is None else sol.velocities @ T_world_odom[:3, :3].T
        depth = np.zeros(len(t), bool)
        for i, j, _, _ in self.depth_factors:
            depth[[i, j]] = True
        status = ["rgbd" if d else "network" if n else "imu_only" if r else "needs_model"
                  for d, n, r in zip(depth, sol.networked, sol.reached)]
        recs = fe.records if len(fe.records) == len(t) else None
        flags = [set(recs[k].flags) if recs else set() for k in range(len(t))]
        timings = dict(fe.timings)
        timings["pose_graph"] = time.perf_counter() - tic
        timings["total"] = time.perf_counter() - self._tic
        info = dict(sol.info, network_factors=len(fe.network), rgbd_factors=len(self.depth_factors),
                    depth_odometry_factors=len(self.predicted_depth_factors))
        if self.depth_scale is not None:
            info["depth_scale"] = {"scale": self.depth_scale.scale, "std": self.depth_scale.std,
                                   "steps": len(self.depth_scale.steps), "outliers": len(self.depth_scale.outliers)}
        if sol.gravity is not None:
            info["gravity_odom"] = sol.gravity.tolist()
        return EstimationResult(t, T, self.frame, status, flags, _gaps_of(status, t), [], None, vel, sol.biases,
                                np.eye(4), False, timings, info)

    def _finish_imu_only(self, t: np.ndarray) -> EstimationResult:
        """IMU-only logs: start-up (rest detection, levelling, biases) and dead reckoning of every frame."""
        imu, cfg = self.frontend.imu, self.config
        tic = time.perf_counter()
        start = imu_startup(imu, max(float(imu.t[0]), float(t[0]) - 5.0), cfg.gravity, cfg.imu_init_time)
        T, v, b = dead_reckon(imu, t, start, cfg.gravity)
        T_world_odom = invert(T[0]) @ T[0]  # identity: the dead-reckoning frame is already gravity-aligned
        T_world_odom[:3, 3] = -T[0, :3, 3]
        S = len(t)
        status = ["imu_only"] * S
        info = {"rest_start_s": start.t_stop - start.t_start, "at_rest": start.at_rest,
                "gravity_odom": [0.0, 0.0, -cfg.gravity]}
        timings = {"dead_reckoning": time.perf_counter() - tic, "total": time.perf_counter() - self._tic}
        return EstimationResult(t, T_world_odom @ T, self.frame, status, [set() for _ in range(S)],
                                _gaps_of(status, t), [], None, v, b, np.eye(4), False, timings, info)

    def _world_alignment(self, T_odom_body0: np.ndarray, gravity: np.ndarray | None) -> np.ndarray:
        """``T_world_odom``: origin at the first body pose; z up (gravity) and yaw 0 when gravity is known."""
        if gravity is None:
            return invert(T_odom_body0)
        up = -gravity / np.linalg.norm(gravity)
        axis = np.cross(up, [0.0, 0.0, 1.0])
        ang = np.arctan2(np.linalg.norm(axis), up[2])
        R = so3_exp(axis / max(np.linalg.norm(axis), 1e-12) * ang)
        Rb = R @ T_odom_body0[:3, :3]
        yaw = np.arctan2(Rb[1, 0], Rb[0, 0])
        R = so3_exp(np.array([0.0, 0.0, -yaw])) @ R
        return make_T(R, -R @ T_odom_body0[:3, 3])


def _scaled(T: np.ndarray, s: float) -> np.ndarray:
    """``T [4, 4]`` with its translation multiplied by ``s``."""
    T = T.copy()
    T[:3, 3] *= s
    return T


def _gaps(recs: list[FrameRecord]) -> list[dict]:
    """Spans of frames without an accepted LiDAR registration."""
    return _gaps_of([r.status for r in recs], [r.t for r in recs], [r.index for r in recs])


def _gaps_of(status: list[str], t, index=None) -> list[dict]:
    """Spans of frames whose status is neither ``ok`` (LiDAR) nor ``network`` (fusion-model factor)."""
    index = list(range(len(status))) if index is None else index
    gaps, start = [], None
    for k, s in enumerate(list(status) + [None]):
        bad = s is not None and s not in ("ok", "network", "rgbd")
        if bad and start is None:
            start = k
        elif not bad and start is not None:
            carried = set(status[start:k])
            gaps.append({"start": index[start], "stop": index[k - 1] + 1, "t_start": float(t[start]),
                         "t_stop": float(t[k - 1]), "carried_by": "imu" if carried == {"imu_only"} else
                         "constant_velocity" if carried == {"extrapolated"} else
                         "nothing" if carried == {"needs_model"} else "mixed"})
            start = None
    return gaps


def check_sequence(seq: Sequence) -> None:
    """Refuse logs the estimator cannot use.

    Raises:
        DataError: neither LiDAR, IMU nor camera; a bad IMU stream (NaN, non-monotonic time).
    """
    if not seq.sensors & {"lidar", "imu", "camera"}:
        raise DataError(seq.path, "sequence has neither LiDAR nor IMU (nor a camera): nothing to estimate poses from")
    check_imu(seq.imu, seq.path)


def estimate_trajectory(seq: Sequence, config: EstimationConfig | None = None,
                        progress: bool = False) -> EstimationResult:
    """Metric trajectory of ``seq`` from LiDAR and IMU (no network).

    Args:
        seq: the log (frames are loaded one at a time).
        config: estimation settings (defaults when None).
        progress: show a tqdm progress bar.

    Returns:
        :class:`EstimationResult` with ``T_world_body [S, 4, 4]`` (body = IMU frame, or
        the LiDAR frame for logs without IMU), per-frame status, gaps and loops.

    Raises:
        DataError: neither LiDAR nor IMU (and no camera), a non-monotonic IMU or frame
            clock, NaN IMU samples.
    """
    check_sequence(seq)
    est = Estimator(config, seq.calibration, seq.sensors, seq.imu, seq.path, seq.metadata.get("lidar_timing"),
                    bool(seq.metadata.get("depth_sensor", False)), bool(seq.metadata.get("lidar_deskewed", False)))
    frames = range(len(seq))
    if progress:
        from tqdm import tqdm
        frames = tqdm(frames, desc=f"estimating {seq.name}", unit="frame")
    for i in frames:
        est.step(seq[i])
    return est.finish()
