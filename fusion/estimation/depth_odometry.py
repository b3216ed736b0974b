"""Depth odometry: metric relative poses from the fusion model's predicted depth and the camera images.

The fusion model's pose head gives rotation (from the gyro when there is one) but does not learn
translation from the sensors. Its dense depth is metric, though, so each frame is registered to
the previous one by direct photometric alignment (Open3D's colour-term RGB-D odometry,
Steinbrücker et al.): the current frame's pixels, lifted with the *predicted* depth, are warped
into the previous image until intensities agree. Translation then comes from geometry, with the
depth's scale. Pixels that cannot be trusted are dropped first: beyond ``max_depth`` (sky and far
facades, where depth is poorest), likely moving (the model's dynamic probability), unlabelled
(sky), and on depth edges (a depth jump to a neighbour > ``edge_jump`` of the depth: the model
blurs across edges).

Each registration is checked: the photometric residual must drop below that of its initial
guess, and the motion must stay plausible; otherwise the next initial guess (constant velocity)
is tried. Results become relative-pose factors in the body frame with a covariance from
:func:`step_sigmas` (errors against ground truth measured on training seeds, as a function of
the step's length), for the same pose graph as the model's own factors.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from fuse4d.data.classes import UNLABELED
from fuse4d.geometry import invert

log = logging.getLogger(__name__)

#: per-axis translation sigma² = _A_T + _B_T · |t|² (camera axes x right, y down, z forward), m² and
#: unitless, fitted to per-step errors against ground truth on training seeds 2, 3, 5
_A_T = np.array([0.03, 0.02, 0.04]) ** 2
_B_T = np.array([0.03, 0.02, 0.10]) ** 2
#: rotation sigma (rad) per step
_SIGMA_R = np.radians(0.3)
#: a registration whose residual exceeds this multiple of the recent median tries the other initial guesses
_RETRY = 1.2
#: sigmas grow with the residual ratio to this power
_INFLATE = 2.0


def step_sigmas(t_cam: np.ndarray, residual_ratio: float = 1.0) -> tuple[np.ndarray, float]:
    """Standard deviations of one registration: translation ``[3]`` (m, camera axes) and rotation (rad).

    Args:
        t_cam: ``[3]`` the registered translation (m) between the two frames, camera axes.
        residual_ratio: the registration's photometric residual over the median of recent ones; above
            1 the alignment is worse than usual (a failed registration leaves a high residual) and the
            sigmas grow with its square.
    """
    d2 = float(np.dot(t_cam, t_cam))
    f = max(1.0, float(residual_ratio)) ** _INFLATE
    return np.sqrt(_A_T + _B_T * d2) * f, _SIGMA_R * f


def usable_depth(depth: np.ndarray, dynamic: np.ndarray | None = None, semantics: np.ndarray | None = None,
                 max_depth: float = 40.0, min_depth: float = 0.5, dynamic_max: float = 0.5,
                 edge_jump: float = 0.1) -> np.ndarray:
    """Predicted depth with untrustworthy pixels set to 0.

    Args:
        depth: ``[H, W]`` metres (0 = none).
        dynamic: ``[H, W]`` probability of moving, or None.
        semantics: ``[H, W]`` class ids (unlabelled = sky), or None.
        max_depth, min_depth: kept range (m).
        dynamic_max: pixels more likely moving than this are dropped.
        edge_jump: pixels whose 3×3 neighbourhood spans more than this fraction of their depth are dropped.

    Returns:
        ``[H, W]`` float32 metres, 0 = dropped.
    """
    d = np.asarray(depth, np.float32).copy()
    bad = ~np.isfinite(d) | (d < min_depth) | (d > max_depth)
    if edge_jump > 0:  # on the depth as predicted: dropped pixels are no edges
        raw = np.where(np.isfinite(d), d, 0.0)
        bad |= ndimage.maximum_filter(raw, 3) - ndimage.minimum_filter(raw, 3) > edge_jump * raw
    if dynamic is not None:
        bad |= np.asarray(dynamic) > dynamic_max
    if semantics is not None:
        bad |= np.asarray(semantics) == UNLABELED
    d[bad] = 0.0
    return d


class DepthOdometry:
    """Frame-to-frame photometric registration on predicted depth, producing relative-pose factors.

    Args:
        K: ``[3, 3]`` intrinsics of the images given to :meth:`step` (pixels).
        T_body_cam: ``[4, 4]`` camera → body; factors are expressed for body poses.
        max_depth: predicted depths beyond this (m) are not used.
        max_step: a registered translation longer than this (m per frame) is rejected.
    """

    def __init__(self, K: np.ndarray, T_body_cam: np.ndarray | None = None, max_depth: float = 40.0,
                 max_step: float = 5.0):
        import open3d as o3d
        self.o3d = o3d
        self.K = np.asarray(K, float)
        self.X = np.eye(4) if T_body_cam is None else np.asarray(T_body_cam, float)
        self.max_depth, self.max_step = float(max_depth), float(max_step)
        self.option = o3d.pipelines.odometry.OdometryOption(o3d.utility.IntVector([20, 10, 5]), 0.5, 0.5, max_depth)
        self.jacobian = o3d.pipelines.odometry.RGBDOdometryJacobianFromColorTerm()
        self.prev: tuple[int, object, np.ndarray, np.ndarray] | None = None  # position, RGBDImage, gray, depth
        self.last_step: np.ndarray | None = None  # T_prev_cur (camera) of the last accepted registration
        self.registered = self.rejected = 0
        self.residuals: list[float] = []

    def step(self, position: int, image: np.ndarray, depth: np.ndarray, dynamic: np.ndarray | None = None,
             semantics: np.ndarray | None = None, guess: np.ndarray | None = None,
             register: bool = True) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
        """Keep frame ``position`` and, when ``register``, register it to the previous frame.

        Args:
            position: stepping position of the frame (consecutive calls: consecutive positions).
            image: ``[H, W, 3]`` uint8 RGB. depth: ``[H, W]`` predicted metres (same size).
            dynamic, semantics: the model's ``[H, W]`` moving probability and classes, or None.
            guess: ``[4, 4]`` initial ``T_prev_cur`` of the body (e.g. the model's, with the gyro's
                rotation), or None (constant velocity).
            register: False only keeps the frame (a step another odometry already registered).

        Returns:
            ``[(i, j, T_i_j [4, 4] body, covariance [6, 6])]``: one factor, or none (first frame,
            no previous frame at ``position - 1``, rejected registration, ``register`` False).
        """
        d = usable_depth(depth, dynamic, semantics, self.max_depth)
        gray = _gray(image)
        o3d = self.o3d
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(image, np.uint8)), o3d.geometry.Image(d), depth_scale=1.0,
            depth_trunc=self.max_depth, convert_rgb_to_intensity=True)
        prev, self.prev = self.prev, (position, rgbd, gray, d)
        if prev is None or prev[0] != position - 1:
            self.last_step = None
            return []
        if not register:
            self.last_step = None if guess is None else invert(self.X) @ guess @ self.X
            return []
        guesses = []
        if guess is not None and np.isfinite(guess).all():
            guesses.append(invert(self.X) @ np.asarray(guess, float) @ self.X)
        if self.last_step is not None:
            guesses.append(self.last_step)
        guesses.append(np.eye(4))
        h, w = d.shape
        intr = o3d.camera.PinholeCameraIntrinsic(w, h, self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2])
        ref = float(np.median(self.residuals[-20:])) if self.residuals else None
        best = None
        for g in guesses:
            ok, T, _ = o3d.pipelines.odometry.compute_rgbd_odometry(rgbd, prev[1], intr, g, self.jacobian,
                                                                    self.option)
            if not ok or not np.isfinite(T).all() or np.linalg.norm(T[:3, 3]) > self.max_step:
                continue
            r, r0 = photometric_residual(gray, d, prev[2], self.K, T), photometric_residual(gray, d, prev[2], self.K, g)
            if r < r0 and (best is None or r < best[0]):
                best = (r, T)
            if best is not None and (ref is None or best[0] <= _RETRY * ref):
                break  # converged to an alignment as good as usual: no need to try the other guesses
        if best is None:
            self.rejected += 1
            self.last_step = None
            log.debug("depth odometry %d -> %d rejected", position - 1, position)
            return []
        r, T = best
        self.registered += 1
        self.residuals.append(r)
        self.last_step = T
        st, sr = step_sigmas(T[:3, 3], r / (ref or r))
        R = self.X[:3, :3]  # camera-axes sigmas → body-axes covariance
        cov = np.zeros((6, 6))
        cov[:3, :3] = R @ np.diag(st ** 2) @ R.T
        cov[3:, 3:] = np.eye(3) * sr ** 2
        return [(position - 1, position, self.X @ T @ invert(self.X), cov)]


def _gray(image: np.ndarray) -> np.ndarray:
    """``[H, W]`` float32 intensity in [0, 1] of an RGB uint8 image."""
    im = np.asarray(image, np.float32) / 255.0
    return im @ np.array([0.299, 0.587, 0.114], np.float32)


def photometric_residual(gray_cur: np.ndarray, depth_cur: np.ndarray, gray_prev: np.ndarray, K: np.ndarray,
                         T_prev_cur: np.ndarray) -> float:
    """Median absolute intensity difference of ``cur``'s pixels with depth warped into ``prev`` (nearest pixel).

    Args:
        gray_cur, gray_prev: ``[H, W]`` intensities. depth_cur: ``[H, W]`` metres (0 = unused).
        K: ``[3, 3]`` intrinsics. T_prev_cur: ``[4, 4]`` camera motion.

    Returns:
        the residual (intensity units), ``inf`` when fewer than 5 % of the pixels land in ``prev``.
    """
    v, u = np.nonzero(depth_cur > 0)
    if len(u) == 0:
        return float("inf")
    z = depth_cur[v, u]
    P = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z])
    Q = T_prev_cur[:3, :3] @ P + T_prev_cur[:3, 3:]
    front = Q[2] > 0.1
    uu = np.round(K[0, 0] * Q[0] / np.where(front, Q[2], 1) + K[0, 2]).astype(np.int64)
    vv = np.round(K[1, 1] * Q[1] / np.where(front, Q[2], 1) + K[1, 2]).astype(np.int64)
    h, w = gray_prev.shape
    inside = front & (uu >= 0) & (uu < w) & (vv >= 0) & (vv < h)
    if inside.sum() < 0.05 * depth_cur.size:
        return float("inf")
    return float(np.median(np.abs(gray_prev[vv[inside], uu[inside]] - gray_cur[v[inside], u[inside]])))


def for_sequence(seq) -> DepthOdometry | None:
    """A :class:`DepthOdometry` for a log with a camera whose depth the model predicts, else None.

    A log whose ``Frame.depth`` is a real sensor (``seq.metadata["depth_sensor"]``) has its own
    RGB-D odometry (:mod:`~fuse4d.fusion.estimation.rgbd_odometry`) and gets None here.
    """
    calib = seq.calibration
    if "camera" not in seq.sensors or calib.K is None or seq.metadata.get("depth_sensor"):
        return None
    return DepthOdometry(calib.K, calib.T_body_cam)


def window_factors(odo: DepthOdometry, frame, wp, k: int, position: int, register: bool):
    """Depth-odometry factors of frame ``k`` of a model window (:meth:`DepthOdometry.step` on its prediction).

    Args:
        odo: the log's depth odometry. frame: the :class:`~fuse4d.data.types.Frame`.
        wp: the window's :class:`~fuse4d.data.prediction.WindowPrediction` (None: nothing).
        k: the frame's row in ``wp``. position: its stepping position in the log.
        register: register it (False: a step another odometry registered; the frame is only kept).

    Returns:
        the factors ``(i, j, T_i_j [4, 4] body, covariance [6, 6])`` (possibly none).
    """
    if wp is None or wp.depth is None or frame.image is None:
        return []
    guess = wp.T_prev_cur[k] if np.isfinite(wp.T_prev_cur[k]).all() else None
    depth = wp.extras.get("depth_network", wp.depth)      # before the stixel correction (fusion/predict.py)
    return odo.step(position, frame.image, depth[k],
                    None if wp.dynamic is None else wp.dynamic[k],
                    None if wp.semantics is None else wp.semantics[k], guess, register)
