"""The model's inference wrapper: a window of frames in, a :class:`WindowPrediction` out.

    pred = Predictor.from_checkpoint()              # the shipped checkpoint
    wp, state = pred.predict(seq[0:8])              # then pred.predict(seq[8:16], state=state)

Images are resized to the model resolution (see ``fusion/inputs.py``) and outputs are
resampled back to the input pixels; relative poses come back in the body frame.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fuse4d.data.prediction import WindowPrediction
from fuse4d.errors import DataError
from fuse4d.fusion.config import ModelConfig
from fuse4d.fusion.inputs import T_body_ref, camera_points, window_inputs
from fuse4d.fusion.sparse_depth import lidar_depth_image, refine_with_lidar
from fuse4d.fusion.model import FusionModel

#: logit adjustment of the pixel classes (Menon et al., ICLR 2021): ``logit − τ·log prior`` with the
#: training pool's class frequencies undoes the bias of cross-entropy towards frequent classes.
#: τ = 0.5 chosen on val seeds 1/11/21 (pixel mIoU with LiDAR 0.582 → 0.598; τ = 1 gave 0.550).
#: Applied only when the window has depth input (LiDAR or a depth camera): camera-only it lost
#: 0.007 on val. LiDAR point classes are left alone (τ = 0.5 changed them by −0.001).
LOGIT_ADJUST_TAU = 0.5

#: the checkpoint that ships inside the package
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "tiny.pt"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file (``torch.load(weights_only=True)``) and check its keys.

    Raises:
        DataError: the file is missing, unreadable, corrupt or not a fuse4d model checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "model checkpoint not found")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # torch raises many types for corrupt files
        raise DataError(path, f"cannot read model checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(ck, dict) or "model" not in ck or "model_config" not in ck:
        raise DataError(path, "not a fuse4d model checkpoint (expected keys 'model' and 'model_config')")
    return ck


def build_model(ck: dict[str, Any], path: str | Path | None = None) -> FusionModel:
    """The :class:`FusionModel` of a loaded checkpoint; DataError when the weights do not fit."""
    try:
        model = FusionModel(ModelConfig.from_dict(ck["model_config"]))
        model.load_state_dict(ck["model"])
    except Exception as e:
        raise DataError(path, f"checkpoint does not fit this version of the model ({str(e).splitlines()[0][:160]})") from None
    return model.eval()


def _adjoint(T: np.ndarray) -> np.ndarray:
    """``[6, 6]`` adjoint of ``T [4, 4]`` for (translation, rotation) ordered twists."""
    R, t = T[:3, :3], T[:3, 3]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    A = np.zeros((6, 6))
    A[:3, :3], A[:3, 3:], A[3:, 3:] = R, tx @ R, R
    return A


def _se3(t: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``[S, 4, 4]`` from translations ``[S, 3]`` and axis-angle rotations ``[S, 3]``."""
    from scipy.spatial.transform import Rotation
    T = np.tile(np.eye(4), (len(t), 1, 1))
    T[:, :3, :3] = Rotation.from_rotvec(r).as_matrix()
    T[:, :3, 3] = t
    return T


def ground_constrained_labels(logits: np.ndarray, ground: np.ndarray) -> np.ndarray:
    """Point classes ``[N]`` uint8 from class scores ``[N, C]``, where a geometric ground mask
    ``[N]`` (bool) decides ground vs. not: ground points take the best-scoring ground class
    (``data.classes.GROUND``), others the best of the remaining labelled classes. The range view
    is coarse far out, where the model alone mixes up the road with walls and terrain."""
    from fuse4d.data.classes import GROUND
    C = logits.shape[1]
    is_ground = np.zeros(C, bool)
    is_ground[[c for c in GROUND if c < C]] = True
    allowed = np.where(np.asarray(ground, bool)[:, None], is_ground[None], ~is_ground[None])
    allowed[:, 0] = False                                 # never "unlabeled"
    return np.where(allowed, logits, -np.inf).argmax(1).astype(np.uint8)


class Predictor:
    """Runs a :class:`FusionModel` on windows of a :class:`~fuse4d.data.types.Sequence`.

    A depth camera (``metadata["depth_sensor"]``, RGB-D logs) enters through the LiDAR-view
    encoder (depth in the camera view, the input it was trained on; the shipped checkpoint
    never saw a depth camera) unless the window also has LiDAR; its gate is reported in
    ``extras["gate_depth"]`` and the LiDAR column of ``gates`` stays NaN. The output depth of
    such a window is the camera's own depth where it measured one and the model's in its
    holes (``extras["depth_from_sensor"]``): indoor RGB-D is outside what the shipped model
    was trained on (on 7-Scenes its own depth is 2.4× too far, gate 0.46).

    Args:
        model: the network (eval mode); name: shown in ``extras``; threads: torch CPU
        threads (None = leave torch's setting).
        class_prior: ``[classes]`` training frequency of each pixel class (a checkpoint's
            ``meta["class_prior_pixels"]``); None = no logit adjustment.
        depth_scale_camera: factor on camera-only depth (a checkpoint's ``meta["depth_scale_camera"]``,
            the median ground truth / prediction on its training pool, ``fusion/train.py``); None = 1.

    ``stixels`` (default True): camera-only windows (no LiDAR or depth camera) get their depth
    corrected by the stixel world (:func:`~fuse4d.fusion.stixels.stixel_depth`: upright things
    stand on the ground plane); held-out camera-only AbsRel 0.368 → 0.297 (seeds 0/1/10/11/20),
    and → 0.271 with tiny.pt's ``depth_scale_camera`` (0.957) applied first.
    The depth before the stixels stays in ``extras["depth_network"]`` for the depth odometry:
    its photometric alignment did worse on the piecewise stixel depth (camera+IMU ATE on train
    seed 2: 0.17 % → 0.44 %), and it is left unscaled.
    """

    def __init__(self, model: FusionModel, name: str = "fusion", threads: int | None = None,
                 precision: str = "fp32", class_prior=None, depth_scale_camera: float | None = None):
        if precision != "fp32":   # bf16 autocast / int8 dynamic quantisation (fusion/quantize.py)
            from fuse4d.fusion.quantize import apply_precision
            model = apply_precision(model, precision)
        self.precision = precision
        self.stixels = True
        self.depth_scale_camera = float(depth_scale_camera) if depth_scale_camera else 1.0
        self.sem_adjust = None
        if class_prior is not None and len(class_prior) == model.cfg.classes:
            f = np.asarray(class_prior, np.float64)
            adj = np.where(f > 0, LOGIT_ADJUST_TAU * np.log(np.maximum(f, 1e-12)), 0.0)
            self.sem_adjust = torch.as_tensor(adj, dtype=torch.float32)[None, :, None, None]
        self.model = model.eval()
        self.cfg = model.cfg
        self.name = name
        if threads:
            torch.set_num_threads(threads)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, threads: int | None = None,
                        precision: str = "fp32") -> "Predictor":
        """Load a checkpoint (None = the shipped one) to run at ``precision`` (fp32, bf16,
        int8). Raises DataError naming the file."""
        path = SHIPPED_CHECKPOINT if path is None else Path(path)
        ck = load_checkpoint(path)
        name = path.name if precision == "fp32" else f"{path.name}:{precision}"
        meta = ck.get("meta") or {}
        return cls(build_model(ck, path), name=name, threads=threads, precision=precision,
                   class_prior=meta.get("class_prior_pixels"), depth_scale_camera=meta.get("depth_scale_camera"))

    @classmethod
    def untrained(cls, cfg: ModelConfig | None = None, seed: int = 0) -> "Predictor":
        """A randomly initialised model (for wiring and tests)."""
        torch.manual_seed(seed)
        return cls(FusionModel(cfg or ModelConfig()), name="untrained")

    @torch.no_grad()
    def predict(self, window, sensors: set[str] | None = None, state: dict | None = None,
                motions: list | None = None, ground: list | None = None) -> tuple[WindowPrediction, dict]:
        """Predict one window.

        Args:
            window: a Sequence view of S frames.
            sensors: subset of camera, lidar, imu to use (None = all the log has).
            state: the recurrent state returned for the previous window (None = log start).
            motions: per frame, the LiDAR's ``(T_prev_cur [4, 4], dt s)`` over the sweep, or None
                (:func:`~fuse4d.fusion.inputs.lidar_motions` of the LiDAR odometry): points are moved
                to the camera's stamp before they are projected into it. None = as captured.
            ground: per frame, ``[N_i]`` bool geometric ground mask of its LiDAR points (or None):
                a ground point takes the best of the ground classes (road, sidewalk, terrain), any
                other point the best of the rest (:func:`ground_constrained_labels`).

        Returns:
            the :class:`WindowPrediction` and the state for the next window.

        Raises:
            DataError: the window has none of the requested sensors.
        """
        t0 = time.perf_counter()
        frames = list(window)
        calib = window.calibration
        used = set(window.sensors) if sensors is None else set(sensors) & set(window.sensors)
        inputs, aux = window_inputs(frames, calib, self.cfg, used,
                                    bool(window.metadata.get("depth_sensor", False)), motions=motions,
                                    timing=window.metadata.get("lidar_timing"))
        if not any(k for k in inputs if not k.endswith("_valid")):
            raise DataError(getattr(window, "path", None),
                            f"window {window.indices[:1]}… has none of the sensors {sorted(used)}")
        routed = "depth_view" in inputs and "lidar_view" not in inputs and "range" not in inputs
        if routed:      # see the class docstring: a depth camera uses the trained LiDAR-view encoder
            inputs["lidar_view"] = inputs.pop("depth_view")
            inputs["lidar_view_valid"] = inputs.pop("depth_view_valid")
        if state is not None and state.get("ref") != aux["ref"]:
            state = None          # the sensor set changed: the state no longer fits
        aux["depth_input"] = "lidar_view" in inputs or "range" in inputs
        t1 = time.perf_counter()
        out = self.model(inputs, None if state is None else state["model"], attn=True)
        t2 = time.perf_counter()
        if routed:
            g = out["gates"]
            out["gates"] = torch.cat([g[..., :1], torch.full_like(g[..., 1:2], float("nan")), g[..., 2:3], g[..., 1:2]], -1)
        wp = self._to_prediction(window, frames, out, aux, state is not None, calib, ground)
        if routed and wp.depth is not None:
            for i, f in enumerate(frames):
                if f.depth is not None and f.depth.shape == wp.depth[i].shape:
                    measured = np.isfinite(f.depth) & (f.depth > 0)
                    wp.depth[i][measured] = f.depth[measured]
            wp.extras["depth_from_sensor"] = True
        wp.extras.update({"model": self.name, "ref_frame": aux["ref"], "sensors": sorted(used),
                          "time_inputs_s": t1 - t0, "time_model_s": t2 - t1,
                          "time_outputs_s": time.perf_counter() - t2})
        return wp, {"model": out["state"], "ref": aux["ref"]}

    def _to_prediction(self, window, frames, out, aux, has_state, calib, ground=None) -> WindowPrediction:
        S = len(frames)
        T_br = T_body_ref(calib, aux["ref"])
        T_ref = _se3(out["pose_t"][0].double().numpy(), out["pose_r"][0].double().numpy())
        T_body = T_br @ T_ref @ np.linalg.inv(T_br)
        A = _adjoint(T_br)
        cov_ref = np.exp(out["pose_logvar"][0].double().numpy())
        cov = np.einsum("ij,sjk,lk->sil", A, np.einsum("sj,jk->sjk", cov_ref, np.eye(6)), A)
        if not has_state:
            T_body[0], cov[0] = np.nan, np.nan
        gates = out["gates"][0].numpy().astype(np.float32)
        wp = WindowPrediction(indices=np.asarray(window.indices, np.int64), T_prev_cur=T_body, pose_cov=cov,
                              gates=gates[:, :3].copy())
        if not np.isnan(gates[:, 3]).all():
            wp.extras["gate_depth"] = gates[:, 3].copy()
        if "depth" in out:
            warp = aux["warp"]
            valid = np.array([f.image is not None for f in frames])
            wp.depth = self._unwarp(warp, out["depth"][0][:, None], 0.0, valid)[:, 0]
            if aux["point_rc"] and any(rc is not None for rc in aux["point_rc"]):
                self._refine_depth(wp, frames, aux, calib, gates[:, 1])
            wp.depth_conf = self._unwarp(warp, out["depth_conf"][0][:, None], 0.0, valid)[:, 0]
            logits = warp.unwarp(out["sem_logits"][0])
            if self.sem_adjust is not None and aux.get("depth_input"):
                logits = logits - self.sem_adjust.to(logits.dtype)
            sem = logits.numpy().argmax(1).astype(np.uint8)     # numpy: 5x torch's argmax over dim 1 (NCHW)
            sem[~valid] = 0
            wp.semantics = sem
            if not aux.get("depth_input"):
                self._camera_only_depth(wp, valid, calib.K)
            wp.dynamic = self._unwarp(warp, torch.sigmoid(out["dyn_logit"][0])[:, None], None, valid)[:, 0]
            wp.attn_tokens = torch.stack(out["attn_tokens"], 0)[:, 0].numpy().astype(np.float32)
            wp.patch_grid = self.cfg.patch_grid
            wp.descriptors = out["desc"][0].permute(0, 2, 3, 1).numpy().astype(np.float16)
        if "point_sem_logits" in out:
            sem_lab = out["point_sem_logits"][0].numpy().argmax(1).astype(np.uint8)       # [S, rows, cols]
            dyn = torch.sigmoid(out["point_dyn_logit"][0]).numpy().astype(np.float32)
            wp.point_semantics, wp.point_dynamic = [], []
            for i, f in enumerate(frames):
                rc = aux["point_rc"][i]
                n = 0 if f.points is None else len(f.points)
                if rc is None:
                    wp.point_semantics.append(np.zeros(n, np.uint8))
                    wp.point_dynamic.append(np.zeros(n, np.float32))
                elif ground is not None and ground[i] is not None and len(ground[i]) == n:
                    logits = out["point_sem_logits"][0, i][:, rc[0], rc[1]].T.numpy()      # [N, C]
                    wp.point_semantics.append(ground_constrained_labels(logits, ground[i]))
                    wp.point_dynamic.append(dyn[i][rc])
                else:
                    wp.point_semantics.append(sem_lab[i][rc])
                    wp.point_dynamic.append(dyn[i][rc])
        return wp

    def _camera_only_depth(self, wp: WindowPrediction, valid: np.ndarray, K: np.ndarray) -> None:
        """Camera-only depth ``[S, H, W]`` (in place): times the checkpoint's training-pool scale, then
        the stixel world (:func:`~fuse4d.fusion.stixels.stixel_depth`) on frames ``valid [S]``. The
        network's raw depth stays in ``extras["depth_network"]`` for the depth odometry. Scaling that
        too did better on train seeds 2/3 camera-only (ATE 1.22/1.83 % -> 0.67/1.60 %) but not on
        held-out ones (seeds 0/10/20: 0.87/2.98/1.70 % -> 0.97/2.07/3.05 %, Sim(3) scale
        0.974/0.910/0.974 -> 1.027/0.947/1.066), and worse with an IMU (0.17/0.88 -> 0.25/1.17 %)."""
        if not self.stixels and self.depth_scale_camera == 1.0:
            return
        wp.extras["depth_network"] = wp.depth.copy()
        wp.depth *= np.float32(self.depth_scale_camera)
        if self.stixels:
            from fuse4d.fusion.stixels import stixel_depth
            for i in np.flatnonzero(valid):
                wp.depth[i] = stixel_depth(wp.depth[i], wp.semantics[i], K)
            wp.extras["depth_stixels"] = True

    @staticmethod
    def _refine_depth(wp: WindowPrediction, frames, aux: dict, calib, lidar_gate: np.ndarray) -> None:
        """Correct each frame's depth (input resolution) by its LiDAR points, weighted by the LiDAR gate
        (:func:`~fuse4d.fusion.sparse_depth.refine_with_lidar`); points moved to the camera's stamp."""
        for i, f in enumerate(frames):
            if aux["point_rc"][i] is None or f.image is None:
                continue
            g = float(lidar_gate[i])
            pts = camera_points(f, aux["motions"][i] if aux.get("motions") else None, aux.get("timing"))
            L = lidar_depth_image(pts, calib.T_cam_lidar, calib.K, wp.depth[i].shape)
            wp.depth[i] = refine_with_lidar(wp.depth[i], L, g if np.isfinite(g) else 0.0)
        wp.extras["depth_lidar_refined"] = True

    @staticmethod
    def _unwarp(warp, x: torch.Tensor, fill, valid: np.ndarray) -> np.ndarray:
        y = warp.unwarp(x, fill).numpy().astype(np.float32)
        y[~valid] = 0.0
        return y
