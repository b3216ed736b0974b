"""RGB-D odometry: relative camera poses from a depth camera and its image, without the fusion model.

Each frame of a log whose depth comes from a real sensor (``seq.metadata["depth_sensor"]``)
is registered to the previous frame — and to the one before it, which ties
the chain over a longer baseline — with Open3D's hybrid RGB-D odometry
(photometric + depth residuals, Steinbrücker et al. / Park et al.). The results
become relative-pose factors (body frame, with a covariance) of the same pose
graph as the fusion model's predictions, so an IMU, when the log has one, is
fused the same way (:mod:`network_backend`).
"""

from __future__ import annotations

import logging

import numpy as np

from fuse4d.data.types import Frame
from fuse4d.geometry import invert

log = logging.getLogger(__name__)

#: relative-pose standard deviations assumed for one RGB-D registration (m, rad)
SIGMA_T, SIGMA_R = 0.005, np.radians(0.3)


class RgbdOdometry:
    """Frame-to-frame RGB-D registration producing relative-pose factors.

    Args:
        K: ``[3, 3]`` camera intrinsics (pixels).
        T_body_cam: ``[4, 4]`` camera → body (factors are expressed for body poses).
        max_depth: depths beyond this (m) are ignored.
        skip: also register frame k to frames k-2 … k-skip (0 = consecutive frames only).
    """

    def __init__(self, K: np.ndarray, T_body_cam: np.ndarray | None = None, max_depth: float = 4.0, skip: int = 1):
        import open3d as o3d
        self.o3d = o3d
        self.K = np.asarray(K, float)
        self.X = np.eye(4) if T_body_cam is None else np.asarray(T_body_cam, float)
        self.max_depth, self.skip = float(max_depth), int(skip)
        self.recent: list[tuple[int, tuple]] = []  # (position, (RGBDImage, cache))
        self.option = o3d.pipelines.odometry.OdometryOption(depth_diff_max=0.07, depth_min=0.1, depth_max=max_depth)
        self.jacobian = o3d.pipelines.odometry.RGBDOdometryJacobianFromHybridTerm()
        self.failures = 0
        self.global_searches = 0
        o3d.utility.random.seed(0)  # RANSAC of the global search: the same poses on every run
        self.min_fitness = 0.6
        self.steps: dict[int, np.ndarray] = {}  # position → T_(position-1)_position (camera), recent only

    def _rgbd(self, frame: Frame):
        o3d = self.o3d
        depth = np.ascontiguousarray(frame.depth, dtype=np.float32)
        color = np.ascontiguousarray(frame.image if frame.image is not None else
                                     np.repeat((np.clip(depth / self.max_depth, 0, 1) * 255).astype(np.uint8)[..., None],
                                               3, -1))
        return o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(color), o3d.geometry.Image(depth), depth_scale=1.0, depth_trunc=self.max_depth,
            convert_rgb_to_intensity=True)

    def step(self, position: int, frame: Frame) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
        """Register ``frame`` (stepping position ``position``) to the recent frames.

        Returns:
            factors ``(i, j, T_i_j [4, 4] body, covariance [6, 6])`` for each successful registration
            (none for the first frame, or a frame without depth).
        """
        if frame.depth is None:
            return []
        h, w = np.shape(frame.depth)
        intr = self.o3d.camera.PinholeCameraIntrinsic(w, h, self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2])
        cur = (self._rgbd(frame), {})  # the image pair, and a cache of its point cloud and FPFH
        out, guess = [], np.eye(4)  # guess: T_prev_cur (camera) from the steps found so far
        for m, (pos, prev) in enumerate(reversed(self.recent)):
            if m > self.skip:
                break
            if m:
                older = self.steps.get(self.recent[len(self.recent) - m][0])  # T_pos_(pos+1)
                if older is None:
                    break
                guess = older @ guess
            ok, T_prev_cur = self._register(cur, prev, intr, guess)
            if not ok:
                self.failures += 1
                log.debug("RGB-D odometry %d -> %d failed", pos, position)
                continue  # the older frame may still be reached (the guess stays the chained one)
            if m == 0:
                self.steps[position] = T_prev_cur
            guess = T_prev_cur
            cov = np.diag([SIGMA_T ** 2] * 3 + [SIGMA_R ** 2] * 3) * (position - pos)
            out.append((pos, position, self.X @ T_prev_cur @ invert(self.X), cov))
        self.recent.append((position, cur))
        self.recent = self.recent[-(self.skip + 1):]
        self.steps = {k: v for k, v in self.steps.items() if k > position - self.skip - 2}
        return out

    # -- one registration: RGB-D odometry, checked on the depth points; a global search when it fails --------
    def _points(self, item, intr):
        o3d = self.o3d
        rgbd, cache = item
        if "cloud" not in cache:
            pc = o3d.geometry.PointCloud.create_from_rgbd_image(rgbd, intr).voxel_down_sample(0.03)
            pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=0.1, max_nn=30))
            cache["cloud"] = pc
        return cache["cloud"]

    def _fpfh(self, item, intr):
        pc, cache = self._points(item, intr), item[1]
        if "fpfh" not in cache:
            reg = self.o3d.pipelines.registration
            cache["fpfh"] = reg.compute_fpfh_feature(pc, self.o3d.geometry.KDTreeSearchParamHybrid(radius=0.25,
                                                                                                    max_nn=100))
        return pc, cache["fpfh"]

    def _fitness(self, cur, prev, intr, T: np.ndarray) -> float:
        reg = self.o3d.pipelines.registration
        return reg.evaluate_registration(self._points(cur, intr), self._points(prev, intr), 0.05, T).fitness

    def _register(self, cur, prev, intr, guess: np.ndarray) -> tuple[bool, np.ndarray]:
        """``T_prev_cur`` (camera) by hybrid RGB-D odometry from ``guess``; when its depth points do not
        overlap (fitness < ``min_fitness``: a large motion between frames), from an FPFH + RANSAC global
        registration of the depth points refined by point-to-plane ICP instead."""
        odo = self.o3d.pipelines.odometry
        ok, T, _ = odo.compute_rgbd_odometry(cur[0], prev[0], intr, guess, self.jacobian, self.option)
        ok = ok and np.isfinite(T).all()
        fit = self._fitness(cur, prev, intr, T) if ok else 0.0
        if fit >= self.min_fitness:
            return True, T
        self.global_searches += 1
        reg = self.o3d.pipelines.registration
        (pc, fc), (pp, fp) = self._fpfh(cur, intr), self._fpfh(prev, intr)
        glob = reg.registration_ransac_based_on_feature_matching(
            pc, pp, fc, fp, True, 0.075, reg.TransformationEstimationPointToPoint(False), 3,
            [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9), reg.CorrespondenceCheckerBasedOnDistance(0.075)],
            reg.RANSACConvergenceCriteria(100000, 0.999))
        T2 = glob.transformation
        for thr in (0.1, 0.05, 0.025):
            T2 = reg.registration_icp(pc, pp, thr, T2, reg.TransformationEstimationPointToPlane()).transformation
        ok2, T3, _ = odo.compute_rgbd_odometry(cur[0], prev[0], intr, T2, self.jacobian, self.option)
        best = max([(fit, T)] + [(self._fitness(cur, prev, intr, T2), T2)]
                   + ([(self._fitness(cur, prev, intr, T3), T3)] if ok2 and np.isfinite(T3).all() else []),
                   key=lambda x: x[0])
        log.debug("RGB-D odometry: global search, fitness %.2f -> %.2f", fit, best[0])
        return best[0] >= 0.3, best[1]
