"""Loop closure: place recognition (Scan Context + trajectory radius search) verified by ICP.

Each keyframe keeps a Scan Context descriptor (max height over a polar
ring × sector grid, Kim & Kim 2018) and its downsampled sweep. A new keyframe
is compared with old keyframes that are either near on the estimated
trajectory or similar in descriptor (the best column shift gives a yaw
guess); the best candidates are verified by coarse-to-fine ICP against a
submap around the old keyframe. Accepted closures carry the relative pose
and the registration information for the pose graph.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fuse4d.fusion.estimation.lie import so3_exp
from fuse4d.fusion.estimation.registration import register_to_map
from fuse4d.fusion.estimation.voxel_map import VoxelMap, voxel_downsample
from fuse4d.geometry import invert, make_T

log = logging.getLogger(__name__)


def scan_context(points: np.ndarray, rings: int = 20, sectors: int = 60, max_range: float = 60.0,
                 z_offset: float = 2.0) -> np.ndarray:
    """Scan Context of a sweep ``points [N, 3]`` (sensor frame, z up): ``[rings, sectors]`` max height (m), 0 = empty."""
    xyz = np.asarray(points)[:, :3]
    r = np.hypot(xyz[:, 0], xyz[:, 1])
    ok = r < max_range
    ring = np.minimum((r[ok] / max_range * rings).astype(np.int64), rings - 1)
    ang = np.arctan2(xyz[ok, 1], xyz[ok, 0]) + np.pi
    sector = np.minimum((ang / (2 * np.pi) * sectors).astype(np.int64), sectors - 1)
    desc = np.zeros(rings * sectors)
    np.maximum.at(desc, ring * sectors + sector, np.maximum(xyz[ok, 2] + z_offset, 0.0))
    return desc.reshape(rings, sectors)


def scan_context_distance(query: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-shift cosine distance between ``query [R, S]`` and ``candidates [K, R, S]``.

    Returns:
        ``distance [K]`` in [0, 1] (0 = identical) and the best ``shift [K]`` (sectors)
        such that rolling the candidate by ``shift`` matches the query.
    """
    R, S = query.shape
    idx = (np.arange(S)[None, :] - np.arange(S)[:, None]) % S  # [shift, S]
    rolled = candidates[:, :, idx]  # [K, R, shift, S]
    rolled = np.moveaxis(rolled, 2, 1)  # [K, shift, R, S]
    num = np.einsum("rs,kjrs->kjr", query, rolled)
    den = np.linalg.norm(query, axis=1)[None, None, :] * np.linalg.norm(rolled, axis=3)
    valid = den > 0
    sim = np.where(valid, num / np.where(valid, den, 1.0), 0.0).sum(-1) / np.maximum(valid.sum(-1), 1)
    best = sim.argmax(1)
    return 1.0 - sim[np.arange(len(sim)), best], best


@dataclass
class LoopClosure:
    """A verified loop: keyframe ``j`` (new) seen from keyframe ``i`` (old).

    Attributes:
        i, j: keyframe ids.  T_i_j: ``[4, 4]`` relative sensor pose.
        information: ``[6, 6]`` (translation, rotation) in ``j``'s frame.
        fitness: inlier fraction of the verification ICP.  rmse: its residual (m).
    """

    i: int
    j: int
    T_i_j: np.ndarray
    information: np.ndarray
    fitness: float
    rmse: float


class LoopDetector:
    """Keyframe database with place recognition and ICP verification.

    Args:
        voxel_size: submap voxel size for verification (m).
        search_radius: trajectory-radius candidates within this distance (m) …
        drift_fraction: … plus this fraction of the path length between the two keyframes; a verified
            loop whose correction of the odometry exceeds this fraction of the path (+1 m), or
            0.02°/m of path (+1°) in rotation, is rejected as implausible drift.
        min_separation: path length (m) that must separate two keyframes to form a loop.
        sc_threshold: Scan Context distance below which a keyframe is a candidate.
        min_fitness / max_rmse: verification acceptance (fraction, m).
        submap_frames: keyframes on each side of the old one merged into its submap.
    """

    def __init__(self, voxel_size: float = 1.0, search_radius: float = 10.0, drift_fraction: float = 0.05,
                 min_separation: float = 40.0, sc_threshold: float = 0.25, min_fitness: float = 0.6,
                 max_rmse: float = 0.35, submap_frames: int = 3, point_sigma: float = 0.1):
        self.voxel_size, self.search_radius, self.drift_fraction = voxel_size, search_radius, drift_fraction
        self.min_separation, self.sc_threshold = min_separation, sc_threshold
        self.min_fitness, self.max_rmse, self.submap_frames = min_fitness, max_rmse, submap_frames
        self.point_sigma = point_sigma
        #: drift bound on a loop's correction (see :meth:`correction`)
        self.min_drift_m, self.min_drift_deg, self.rotation_drift_deg_per_m = 1.0, 1.0, 0.02
        self.points: list[np.ndarray | None] = []  # None: pruned (its place is held by an older keyframe)
        self.descriptors: list[np.ndarray] = []
        self.ring_keys: list[np.ndarray] = []  # [rings] occupied fraction per ring
        self.ring_key_candidates = 10
        self.poses: list[np.ndarray] = []
        self.path: list[float] = []

    def add(self, points: np.ndarray, T_world_sensor: np.ndarray) -> int:
        """Store a keyframe sweep ``[N, 3]`` (sensor frame) and its estimated pose ``[4, 4]``; returns its id."""
        T = np.asarray(T_world_sensor, float)
        step = 0.0 if not self.poses else float(np.linalg.norm(T[:3, 3] - self.poses[-1][:3, 3]))
        self.path.append((self.path[-1] if self.path else 0.0) + step)
        # kept at the verification resolution only: memory per keyframe stays small on long logs
        self.points.append(voxel_downsample(np.asarray(points, np.float32)[:, :3], 0.5 * self.voxel_size))
        self.descriptors.append(scan_context(points))
        self.ring_keys.append((self.descriptors[-1] > 0).mean(1))
        self.poses.append(T)
        return len(self.poses) - 1

    def replace_points(self, k: int, points: np.ndarray) -> None:
        """Replace keyframe ``k``'s sweep ``[N, 3]`` (sensor frame), e.g. once it could be deskewed."""
        self.points[k] = voxel_downsample(np.asarray(points, np.float32)[:, :3], 0.5 * self.voxel_size)
        self.descriptors[k] = scan_context(points)
        self.ring_keys[k] = (self.descriptors[k] > 0).mean(1)

    def prune(self, k: int, T_map_odom: np.ndarray, radius: float, max_angle_deg: float = 30.0) -> bool:
        """Drop keyframe ``k``'s sweep when an older stored keyframe holds the same place.

        Positions are compared after mapping ``k``'s pose by ``T_map_odom [4, 4]`` (the drift
        correction of the latest verified loop), so a revisit is recognised after long drift.
        With the sweeps of revisited places dropped, the store grows with the area mapped,
        not with the length of the log. Returns True when pruned.
        """
        Tk = np.asarray(T_map_odom, float) @ self.poses[k]
        old = [i for i in range(k) if self.points[i] is not None
               and self.path[k] - self.path[i] > self.min_separation]  # an earlier pass, not this one
        if not old:
            return False
        P = np.stack([self.poses[i] for i in old])
        near = np.linalg.norm(P[:, :3, 3] - Tk[:3, 3], axis=1) < radius
        cos = (np.einsum("kab,ab->k", P[:, :3, :3], Tk[:3, :3]) - 1.0) / 2.0  # trace(R_iᵀ R_k)
        if (near & (cos > np.cos(np.radians(max_angle_deg)))).any():
            self.points[k] = None
            return True
        return False

    def update_poses(self, poses: np.ndarray) -> None:
        """Replace the stored keyframe poses ``[K, 4, 4]`` (after an optimisation)."""
        self.poses = [np.asarray(p, float) for p in poses]

    def candidates(self, j: int, max_candidates: int = 2) -> list[tuple[int, np.ndarray]]:
        """Old keyframes that may see the same place as ``j``, with an initial guess ``T_i_j``."""
        path = np.asarray(self.path)
        old = np.flatnonzero(path[j] - path[: j + 1] > self.min_separation)
        old = old[[self.points[i] is not None for i in old]]
        if len(old) == 0:
            return []
        P = np.stack([self.poses[i][:3, 3] for i in old])
        Tj = self.poses[j]
        d = np.linalg.norm(P - Tj[:3, 3], axis=1)
        near = d < self.search_radius + self.drift_fraction * (path[j] - path[old])
        out: list[tuple[int, np.ndarray]] = []
        for k in np.argsort(d)[: max_candidates]:
            if near[k]:
                out.append((int(old[k]), invert(self.poses[old[k]]) @ Tj))
        # Scan Context's ring key (rotation-invariant occupancy per ring) preselects a few keyframes, so the
        # column-shift search costs the same however long the log: time per frame stays flat
        keys = np.asarray(self.ring_keys)
        pre = old[np.argsort(np.linalg.norm(keys[old] - keys[j], axis=1))[: self.ring_key_candidates]]
        dist, shift = scan_context_distance(self.descriptors[j], np.stack([self.descriptors[i] for i in pre]))
        sectors = self.descriptors[j].shape[1]
        for k in np.argsort(dist)[: max_candidates]:
            if dist[k] < self.sc_threshold and int(pre[k]) not in [c[0] for c in out]:
                yaw = -2 * np.pi * shift[k] / sectors
                out.append((int(pre[k]), make_T(so3_exp(np.array([0.0, 0.0, yaw])), np.zeros(3))))
        return out

    def _submap(self, i: int) -> VoxelMap:
        vm = VoxelMap(self.voxel_size, max_points_per_voxel=20, max_distance=1e9)
        Ti_inv = invert(self.poses[i])
        for k in range(max(0, i - self.submap_frames), min(len(self.poses), i + self.submap_frames + 1)):
            if self.points[k] is None:
                continue
            T = Ti_inv @ self.poses[k]
            vm.add(self.points[k].astype(np.float64) @ T[:3, :3].T + T[:3, 3])
        return vm

    def verify(self, i: int, j: int, T_guess: np.ndarray) -> LoopClosure | None:
        """Register keyframe ``j`` against the submap of ``i`` from ``T_guess [4, 4]``; None when rejected."""
        vm = self._submap(i)
        src = voxel_downsample(self.points[j].astype(np.float64), self.voxel_size)
        T = T_guess
        res = None
        for thr in (6.0, 3.0, 1.5, 0.75):
            res = register_to_map(src, vm, T, thr, thr / 3.0, point_to_plane=True, max_iterations=30,
                                  point_weight=0.0)
            T = res.T
        if res is None or res.fitness < self.min_fitness or res.rmse > self.max_rmse:
            log.debug("loop %d-%d rejected: fitness %.2f rmse %.2f", i, j, res.fitness, res.rmse)
            return None
        dt, dr, (max_t, max_r) = self.correction(i, j, T)
        if dt > max_t or dr > max_r:  # more than odometry can have drifted over the path between them
            log.debug("loop %d-%d rejected: correction %.2f m %.2f deg exceeds the drift bound %.2f m %.2f deg",
                      i, j, dt, np.degrees(dr), max_t, np.degrees(max_r))
            return None
        # Hessian is for a left perturbation in i's frame; express it in j's frame (pose-graph residual frame)
        Ad = _adjoint(T)
        info = Ad.T @ res.hessian @ Ad / self.point_sigma ** 2
        return LoopClosure(i, j, T, info, res.fitness, res.rmse)

    def correction(self, i: int, j: int, T_i_j: np.ndarray) -> tuple[float, float, tuple[float, float]]:
        """How far a loop ``T_i_j [4, 4]`` moves ``j`` from its odometry pose relative to ``i``, and the bound.

        Returns:
            translation (m) and rotation (rad) of the correction, and the most odometry can
            plausibly have drifted over the path between the keyframes: ``(max_m, max_rad)``
            = (``drift_fraction`` × path + ``min_drift_m``, ``rotation_drift_deg_per_m`` × path
            + ``min_drift_deg``).
        """
        E = invert(invert(self.poses[i]) @ self.poses[j]) @ np.asarray(T_i_j, float)
        path = abs(self.path[j] - self.path[i])
        angle = float(np.arccos(np.clip((np.trace(E[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)))
        bound = (self.drift_fraction * path + self.min_drift_m,
                 np.radians(self.rotation_drift_deg_per_m * path + self.min_drift_deg))
        return float(np.linalg.norm(E[:3, 3])), angle, bound

    def detect(self, j: int) -> LoopClosure | None:
        """Best verified loop for keyframe ``j`` (highest fitness), or None."""
        best = None
        for i, guess in self.candidates(j):
            lc = self.verify(i, j, guess)
            if lc is not None and (best is None or lc.fitness > best.fitness):
                best = lc
        return best


def _adjoint(T: np.ndarray) -> np.ndarray:
    """SE(3) adjoint ``[6, 6]`` for (translation, rotation) tangent order."""
    R, t = T[:3, :3], T[:3, 3]
    Ad = np.zeros((6, 6))
    Ad[:3, :3] = R
    Ad[3:, 3:] = R
    Ad[:3, 3:] = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]]) @ R
    return Ad
