"""Orchestration: sequence → model → estimation → dynamics → maps → store.

``Pipeline`` owns the order of the stages and the run folder layout; it holds
no algorithm of its own. Three passes over the frames:

1. windows of ``run.window`` frames: the fusion model (when a checkpoint is
   available and ``run.use_model``) predicts depth, semantics, dynamics, gates
   and relative poses; each frame is also stepped through the estimator, and
   the model's relative poses become pose-graph factors;
2. the estimator's pose graph gives the metric trajectory;
3. frame by frame with the final poses: dynamics (LiDAR moving-object
   segmentation, tracks) then mapping (static points only).

A run folder holds:

- ``trajectory.txt``   TUM, metric, body frame (LiDAR frame for logs without IMU)
- ``groundtruth.txt``  TUM, same frame, when the input has ground-truth poses
- ``degradations.json`` degraded frame spans of the input, when it has any
- ``config.yaml``      the resolved config
- ``run.zarr``         the run store (poses, model outputs, gates, maps, ...)
- ``trajectory.png``   top view of estimate vs ground truth
"""

from __future__ import annotations

import importlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import yaml

from fuse4d import __version__
from fuse4d.config import PipelineConfig
from fuse4d.data.types import Sequence
from fuse4d.errors import DataError
from fuse4d.fileio import atomic_write_text
from fuse4d.outputs import load_state, read_prediction, save_state, write_prediction
from fuse4d.progress import frame_bar
from fuse4d.result import Result
from fuse4d.runplots import plot_maps, plot_model_outputs

log = logging.getLogger(__name__)

#: a LiDAR gap longer than this (s) gets a drift warning in the run summary
LONG_GAP_S = 5.0


def _stage(module: str, name: str):
    """A stage class if its capability has landed (``fuse4d.mapping.MapBuilder``), else None."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            return None
        raise


class Pipeline:
    """The whole job on one sequence: ``Pipeline(config).run(seq, out_dir)``.

    Args:
        config: the resolved config (defaults when None).
        predictor: a ready :class:`fuse4d.fusion.predict.Predictor` to use instead of
            loading ``config.run.checkpoint`` (e.g. one model shared by many runs).
    """

    def __init__(self, config: PipelineConfig | None = None, predictor=None):
        from fuse4d.config import load_config
        self.config = config or load_config()
        self._predictor = predictor

    def select(self, seq: Sequence) -> Sequence:
        """Apply ``config.data`` (start/stop/step) and ``config.run.sensors`` to ``seq``."""
        from fuse4d.data.select import parse_sensors, with_sensors
        d = self.config.data
        seq = seq[d.start:d.stop:d.step]
        return with_sensors(seq, parse_sensors(getattr(self.config.run, "sensors", None)))

    def predictor(self):
        """The fusion model's predictor, or None on the geometric path.

        None when ``run.use_model`` is False, or when no checkpoint is given and
        none ships with this install. Raises DataError for a given checkpoint
        that cannot be loaded.
        """
        if not self.config.run.use_model:
            return None
        if self._predictor is None:
            Predictor = _stage("fuse4d.fusion.predict", "Predictor")
            ckpt = self.config.run.checkpoint
            if Predictor is None:
                if ckpt:
                    raise DataError(ckpt, "this fuse4d has no fusion model code to load a checkpoint with")
                return None
            try:
                self._predictor = Predictor.from_checkpoint(ckpt or None, precision=getattr(self.config.run, "precision", "fp32"))
            except DataError as e:
                if ckpt:
                    raise
                log.warning("no usable fusion-model checkpoint ships with this install (%s): geometric path", e)
                return None
        return self._predictor

    def run(self, seq: Sequence, out_dir: str | Path, progress: bool = False, overwrite: bool = False) -> Result:
        """Run every available stage on ``seq`` and write the run folder ``out_dir``.

        The run folder is checked first (:func:`fuse4d.rundir.open_run_folder`): an
        unfinished run of the same input and config resumes; a finished one is
        replaced only with ``overwrite``, and then only once the new run is
        complete. ``config.run.on_error`` decides whether an unreadable frame
        stops the run (store left readable, resumable) or is skipped and recorded.

        Raises:
            DataError: the input cannot give poses (no LiDAR, no IMU, no camera), a
                frame is unreadable under ``on_error=stop``, or ``out_dir`` may not be
                written (a file, read-only, foreign files, a run that needs ``overwrite``).
        """
        from fuse4d.faults import guard_frames
        from fuse4d.rundir import open_run_folder

        if not isinstance(seq, Sequence):  # a path: any log format load_sequence reads
            from fuse4d.data.registry import load_sequence
            seq = load_sequence(seq)
        seq = self.select(seq)
        if len(seq) < 2:
            raise DataError(seq.path, f"needs at least 2 frames, got {len(seq)}")
        predictor = self.predictor()
        seq, skipped = guard_frames(seq, self.config.run.on_error)
        folder = open_run_folder(out_dir, str(seq.metadata.get("source", seq.path)), self.config.to_dict(), overwrite)
        try:
            result = self._run_into(seq, folder, predictor, progress)
            if skipped:
                result.flags.append(f"{len(skipped)} unreadable frame(s) skipped (--on-error skip): "
                                    + "; ".join(f"frame {k}: {msg}" for k, msg in skipped[:3]))
                result.store().update_meta(skipped_frames=[{"frame": k, "error": m} for k, m in skipped])
            result.store().finish()  # status done: only now is the run complete
        except BaseException:
            folder.abort()  # an --overwrite run built beside the old one is dropped; in place, it stays resumable
            raise
        folder.commit()
        result.out_dir = folder.final
        return result

    def _run_into(self, seq: Sequence, folder, predictor, progress: bool) -> Result:
        """The three passes into ``folder.work``, resuming its store when ``folder.resume``."""
        from fuse4d.data.cache import with_frame_cache
        from fuse4d.store import RunStore

        out = folder.work
        cfg_dict = self.config.to_dict()
        if folder.resume:
            store = RunStore.open(folder.store_path)
        else:
            store = RunStore.create(folder.store_path, config=cfg_dict, source=str(seq.metadata.get("source", seq.path)),
                                    n_frames=len(seq), window=self.config.run.window)
        atomic_write_text(out / "config.yaml", yaml.safe_dump({"fuse4d": __version__, **cfg_dict}, sort_keys=False))
        # the log's own path (evaluation reads ground truth from it; a synthetic source re-renders the world)
        source_path = None if seq.path is None else str(Path(seq.path).resolve())
        store.update_meta(sensors=sorted(seq.sensors), model=_name(predictor), source_path=source_path)

        seq = with_frame_cache(seq, maxsize=2 * self.config.run.window)
        est = self._estimate(seq, predictor, store, progress)
        store.write_frames("poses", 0, est.T_world_body)
        store.write_frames("timestamps", 0, est.t)
        store.update_meta(estimation=est.summary(), loops=est.loops)
        T_world_body = est.T_world_body
        if est.frame == "lidar":
            T_world_body = T_world_body @ np.linalg.inv(seq.calibration.T_body_lidar)
        self._dynamics_and_maps(seq, T_world_body, store, progress)
        store.mark_done(len(seq))
        return self._finish(seq, est, store, out, predictor)

    # -- pass 1 + 2: model windows and estimation ---------------------------------------------
    def estimate(self, seq: Sequence, progress: bool = False):
        """Poses only (passes 1 and 2, nothing written): ``seq`` after :meth:`select` → the
        estimator's result (``T_world_body [S, 4, 4]`` metres, per-frame status), with the
        fusion model's pose factors when :meth:`predictor` gives a model."""
        return self._estimate(self.select(seq), self.predictor(), None, progress)

    def _estimate(self, seq: Sequence, predictor, store, progress: bool):
        from fuse4d.fusion.estimation.config import EstimationConfig
        from fuse4d.fusion.estimation.depth_odometry import for_sequence as depth_odometry_for, window_factors
        from fuse4d.fusion.estimation.estimator import Estimator, check_sequence

        check_sequence(seq)
        with warnings.catch_warnings():
            if predictor is not None:  # the model's pose factors are what a camera-only log needs
                warnings.filterwarnings("ignore", message=".*camera-only log; poses need the fusion model")
            est = Estimator(EstimationConfig.from_dict(self.config.estimation), seq.calibration, seq.sensors,
                            seq.imu, seq.path, lidar_timing=seq.metadata.get("lidar_timing"),
                            depth_sensor=bool(seq.metadata.get("depth_sensor", False)),
                            lidar_deskewed=bool(seq.metadata.get("lidar_deskewed", False)))
        T_out_body = np.eye(4) if est.frame == "body" else np.linalg.inv(seq.calibration.T_body_lidar)
        bar = frame_bar(progress, len(seq), f"{'model + ' if predictor else ''}estimating {seq.name}")
        T_out_lidar = T_out_body @ seq.calibration.T_body_lidar
        state, pos, last = None, 0, None
        depth_odo = None if predictor is None else depth_odometry_for(seq)
        # the model's point classes follow a geometric ground mask, in the odometry's level frame
        seg = _stage("fuse4d.mapping.ground", "segment_ground") if predictor is not None else None
        for window in seq.windows(self.config.run.window):
            # the LiDAR odometry runs first: its sweep motion moves the points to the camera's stamp
            frames = [window[k] for k in range(len(window))]
            recs = [est.step(f) for f in frames]
            ground = None if seg is None else [None if f.points is None else seg(f.points[:, :3] @ (
                seq.calibration.T_body_lidar if r is None else r.T @ T_out_lidar)[:3, :3].T) for f, r in zip(frames, recs)]
            motions = None
            if predictor is not None and any(r is not None for r in recs):
                from fuse4d.fusion.inputs import lidar_motions
                T = np.stack([r.T @ T_out_lidar if r is not None else np.full((4, 4), np.nan) for r in [last] + recs])
                t = np.array([np.nan if r is None else r.t for r in [last] + recs])
                motions = lidar_motions(T, t)[1:] if last is not None else lidar_motions(T[1:], t[1:])
                last = recs[-1]
            wp = None
            if predictor is not None and store is not None and pos + len(window) <= store.frames_done:
                wp = read_prediction(store, pos, pos + len(window))     # resumed: a committed window
                state = load_state(store, pos + len(window))
            elif predictor is not None and store is None:               # poses only (estimate())
                wp, state = predictor.predict(window, state=state, motions=motions, ground=ground)
            elif predictor is not None:
                wp, state = predictor.predict(window, state=state, motions=motions, ground=ground)
                write_prediction(store, pos, wp)
                save_state(store, state, pos + len(window))
                store.mark_done(pos + len(window))  # write, then mark done: a kill resumes after this window
            for k in range(len(window)):
                A = np.kron(np.eye(2), T_out_body[:3, :3])  # rotate translation and rotation blocks into the output frame
                # geometric translation from the model's metric depth: each step the LiDAR did not register
                for i, j, T, C in [] if depth_odo is None else window_factors(
                        depth_odo, frames[k], wp, k, pos + k, recs[k] is None or recs[k].status != "ok"):
                    est.add_depth_factor(i, j, T_out_body @ T @ np.linalg.inv(T_out_body), A @ C @ A.T)
                if wp is not None and pos + k > 0 and np.isfinite(wp.T_prev_cur[k]).all():
                    T = T_out_body @ wp.T_prev_cur[k] @ np.linalg.inv(T_out_body)
                    est.add_network_factor(pos + k - 1, pos + k, T, A @ wp.pose_cov[k] @ A.T)
                bar.update(1)
            pos += len(window)
        bar.close()
        return est.finish()

    # -- pass 3: dynamics and maps, with the final poses --------------------------------------
    def _dynamics_and_maps(self, seq: Sequence, T_world_body: np.ndarray, store, progress: bool) -> None:
        Dynamics = _stage("fuse4d.dynamics", "DynamicsStage")
        Maps = _stage("fuse4d.mapping", "MapBuilder")
        if Dynamics is None and Maps is None:
            return
        if store.meta.get("pass3_done"):  # resumed after pass 3 was complete: its outputs are in the store
            _swap_staged(store)
            return
        dyn = None if Dynamics is None else Dynamics.for_sequence(seq, getattr(self.config, "dynamics", None))
        maps = None if Maps is None else Maps.for_sequence(seq, getattr(self.config, "mapping", None))
        lidar = store.root["lidar"] if "lidar" in store else None  # the model's per-point outputs (read lazily)
        model_sem = store.read_points("semantics") if lidar is not None and "semantics" in lidar else None
        model_dyn = store.read_points("dynamic") if lidar is not None and "dynamic" in lidar else None
        depth = store.root["frames/depth"] if "frames/depth" in store else None
        pixel_dyn = store.root["frames/dynamic"] if "frames/dynamic" in store else None
        win, wp = self.config.run.window, None
        # static points take their occupancy voxel's class once the map has seen the road ahead
        relabel = None if maps is None or model_sem is None else _stage("fuse4d.mapping.relabel", "MapLabels")(maps.occupancy)
        bar = frame_bar(progress, len(seq), "dynamics and maps")
        for i in range(len(seq)):
            T = T_world_body[i]
            frame = seq[i]
            n = 0 if frame.points is None else len(frame.points)
            p_dyn = None if model_dyn is None or i >= len(model_dyn) else model_dyn[i]
            ground = px = None
            if np.isfinite(T).all():
                if dyn is not None:
                    row = {} if p_dyn is None else {"point_dynamic": p_dyn}
                    if depth is not None and frame.image is not None:
                        if i % win == 0 or wp is None:
                            wp = read_prediction(store, i - i % win, min(i - i % win + win, len(seq)))
                        row.update(window=wp, position=i % win)
                    r = dyn.add_frame(frame, T, row)
                    if r.get("point_dynamic") is not None:
                        p_dyn = np.asarray(r["point_dynamic"], np.float32)
                    for t_k, p_k in r.get("revised", []):  # the backward pass revised earlier scans
                        k = int(np.argmin(np.abs(np.asarray(seq.timestamps) - t_k)))
                        store.write_points("dynamic" + _STAGED, k, [np.asarray(p_k, np.float32)])
                    if r.get("pixel_dynamic") is not None:
                        px = np.asarray(r["pixel_dynamic"], np.float32)
                if maps is not None:
                    sem = None if model_sem is None or i >= len(model_sem) else model_sem[i]
                    d = None if depth is None else np.asarray(depth[i])
                    r = maps.add_frame(frame, T, sem, p_dyn, d)
                    if r and r.get("ground") is not None:
                        ground = np.asarray(r["ground"], np.uint8)
            if dyn is not None and i % win == win - 1:
                dyn.flush_cues(store)  # camera cue masks go to the store as they come
            if dyn is not None and depth is not None and (px is not None or pixel_dyn is not None):
                px = np.asarray(pixel_dyn[i], np.float32) if px is None else px  # the model's where not refined
                store.write_frames("frames/dynamic" + _STAGED, i, px[None])
            # every frame gets its values (NaN / 0 when unknown), so the shared lidar/offsets stay complete
            if dyn is not None and "lidar" in seq.sensors:
                store.write_points("dynamic" + _STAGED, i, [_values(p_dyn, n, np.float32, np.nan)])
            if maps is not None and "lidar" in seq.sensors:
                store.write_points("ground", i, [_values(ground, n, np.uint8, 0)])
            if relabel is not None:
                sem = _values(None if i >= len(model_sem) else model_sem[i], n, np.uint8, 0)
                pw = relabel.world_points(seq, T_world_body, i, frame)  # deskewed: thin poles stay thin over scans
                for j, lab in relabel.add(i, pw, sem, None if p_dyn is None else p_dyn > 0.5,
                                          None if ground is None else ground > 0,
                                          None if n == 0 else np.linalg.norm(frame.points[:, :3], axis=1)):
                    store.write_points("semantics" + _STAGED, j, [lab])
            bar.update(1)
        for j, lab in [] if relabel is None else relabel.flush():
            store.write_points("semantics" + _STAGED, j, [lab])
        bar.close()
        for stage in (dyn, maps):
            if stage is not None:
                stage.finish()
                stage.write(store)
        store.update_meta(pass3_done=True)  # a kill from here on resumes without re-running this pass
        _swap_staged(store)

    # -- run folder -------------------------------------------------------------------------------
    def _finish(self, seq: Sequence, est, store, out: Path, predictor) -> Result:
        from fuse4d.data.trajectory import write_tum

        est.write_tum(out / "trajectory.txt")
        gt = seq.gt_poses
        if gt is not None and seq.has_ground_truth_poses:
            gt_frame = gt
            if est.frame == "lidar" and "imu" in seq.metadata.get("sensors_all", seq.sensors):
                gt_frame = gt @ seq.calibration.T_body_lidar
            # re-base: the estimate starts at the first ground-truth pose of its frame
            write_tum(out / "groundtruth.txt", seq.timestamps, gt_frame, frame=est.frame, comment="(ground truth)")
        first, ts = int(seq.indices[0]), seq.timestamps
        spans = []
        for d in seq.degradations:
            a, b = max(0, d["start"] - first), min(len(seq), d["stop"] - first)
            if b > a:  # frame span in this run, plus the same span in seconds (exact for evaluation)
                spans.append(dict(d, start=a, stop=b, t_start=float(ts[a]), t_stop=float(ts[b - 1])))
        if spans:
            atomic_write_text(out / "degradations.json", json.dumps(spans, indent=1))

        flags = []
        if predictor is not None:
            flags.append(f"fusion model {_name(predictor)}: depth, semantics, dynamics, gates and pose factors")
        if est.needs_model:
            flags.append("needs_model: no LiDAR or IMU, camera-only poses need the fusion model")
        if est.loops:
            flags.append(f"{len(est.loops)} loop closure(s) verified and added to the pose graph")
        for g in est.gaps:
            dur = float(g.get("t_stop", 0.0) - g.get("t_start", 0.0))
            note = f"LiDAR gap frames {g['start']}–{g['stop'] - 1} ({dur:.1f} s) carried by {g.get('carried_by', '?')}"
            if dur > LONG_GAP_S:
                note += f"; over {LONG_GAP_S:.0f} s without LiDAR the drift grows without bound: treat these poses as rough"
            flags.append(note)
        gates = store.read("gates") if predictor is not None else None
        result = Result(out, est.t, est.T_world_body, est.frame, status=list(est.status), flags=flags,
                        gaps=[(int(g["start"]), int(g["stop"])) for g in est.gaps], gates=gates,
                        model=_name(predictor))
        if (out / "groundtruth.txt").exists() and np.isfinite(est.T_world_body[:, 0, 0]).sum() >= 2:
            from fuse4d.evaluation import evaluate_run
            try:
                result.metrics = evaluate_run(out)
            except DataError as e:
                log.warning("evaluation skipped: %s", e)
        if self.config.run.write_plots:
            from fuse4d.plots import plot_trajectories
            ref = None if gt is None else gt[:, :3, 3]
            plot_trajectories(out / "trajectory.png", est.T_world_body[:, :3, 3], ref,
                              title=f"{seq.name}: estimate vs ground truth", gaps=result.gaps,
                              loops=[(int(lc["i"]), int(lc["j"])) for lc in est.loops])
            if predictor is not None:
                plot_model_outputs(seq, store, out, spans)
            if "maps" in store:
                try:
                    plot_maps(seq, store, out, est.T_world_body)
                except Exception as e:  # a figure never costs a finished run
                    log.warning("maps.png skipped: %s: %s", type(e).__name__, e)
        return result

def _values(a: np.ndarray | None, n: int, dtype, fill) -> np.ndarray:
    """``a`` as ``[n]`` of ``dtype``, or ``n`` fill values when there is none."""
    return np.full(n, fill, dtype) if a is None or len(a) != n else np.asarray(a, dtype)


#: suffix of pass 3's arrays while it runs: the model's ``lidar/dynamic``, ``lidar/semantics`` and ``frames/dynamic`` stay
#: intact until the pass is complete, so a pass 3 re-run after a kill reads the model's values, not its own
_STAGED = ".pass3"


def _swap_staged(store) -> None:
    """Move pass 3's staged ``lidar/dynamic``, ``lidar/semantics`` and ``frames/dynamic`` over the
    model's (each a folder rename)."""
    from fuse4d.data.zarr_log import swap_into_place
    for name in ("lidar/dynamic", "lidar/semantics", "frames/dynamic"):
        if (store.path / (name + _STAGED)).is_dir():
            swap_into_place(store.path / (name + _STAGED), store.path / name)


def _name(predictor) -> str | None:
    if predictor is None:
        return None
    return str(getattr(predictor, "name", None) or type(predictor).__name__)
