"""The IMU mount's yaw from horizontal accelerations (LiDAR odometry velocities vs the accelerometer).

Hand-eye on rotations cannot see the mount's rotation about the axis the vehicle turns
about (a planar drive turns about the vertical only). Horizontal accelerations can:
braking, speeding up and the centripetal force of a turn are measured by the
accelerometer in the IMU frame and appear in the LiDAR odometry as velocity changes in
the odometry frame, and the two agree only with the right yaw of the mount.

Model, per segment of consecutive LiDAR frames: the mean velocity of the IMU origin over
``[t_{k-1}, t_{k+1}]`` from the odometry positions equals ``v_0`` plus the mean over the
same span of ``V(t) = ∫ R_wl(s) R_bl^T Exp(-ψ u)(f(s) - b_a) ds + g t``, with ``f`` the specific
force, ``R_wl`` the odometry rotation (interpolated), ``u`` the (near-vertical) body axis
the hand-eye leaves undetermined, ``b_a`` the accelerometer bias and ``g`` the gravity in
the odometry frame. Linear in ``(ψ, b_a, g, v_0 per segment)`` to first order in ψ: one
least-squares solve (relinearised twice); the std is a bootstrap over segments.
The mount's tilts are not estimated here: in a level drive a tilt looks like an
accelerometer bias.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from fuse4d.calib.lie import np_so3_exp
from fuse4d.data.types import ImuSamples


@dataclass
class YawEstimate:
    """Rotation ``psi`` (rad) of the mount about the body axis ``axis [3]``, to apply as
    ``R_body_lidar ← Exp(psi·axis) R_body_lidar``, with its bootstrap ``std`` (rad)."""

    psi: float
    std: float
    axis: np.ndarray
    n_segments: int
    excitation: float
    notes: list[str] = field(default_factory=list)


def _cumtrapz(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Running trapezoid integral of ``y [M, ...]`` over ``t [M]`` (starts at 0)."""
    dt = np.diff(t).reshape((-1,) + (1,) * (y.ndim - 1))
    return np.concatenate([np.zeros((1,) + y.shape[1:]), np.cumsum(0.5 * (y[1:] + y[:-1]) * dt, axis=0)])


def _runs(index: np.ndarray, length: int) -> list[np.ndarray]:
    """Positions into ``index`` split into segments of up to ``length`` consecutive frames (≥ 5)."""
    cut = np.flatnonzero(np.diff(index) != 1) + 1
    out = []
    for run in np.split(np.arange(len(index)), cut):
        n = max(1, int(round(len(run) / length)))
        out += [s for s in np.array_split(run, n) if len(s) >= 5]
    return out


def _design(t, T_odom_lidar, imu: ImuSamples, R_bl, t_bl, offset_s, axis, segments, half=1):
    """Rows ``A [R, 7 + 3S]``, ``y [R]`` and segment id ``[R]`` of the linear model at ``R_bl``."""
    s = imu.t - offset_s  # IMU samples on the LiDAR clock
    keep = (s >= t[0] - 0.05) & (s <= t[-1] + 0.05)
    s, f = s[keep], imu.acc[keep]
    R_wl = Rotation.from_matrix(T_odom_lidar[:, :3, :3])
    R_ws = Slerp(t, R_wl)(np.clip(s, t[0], t[-1])).as_matrix() @ R_bl.T  # [M, 3, 3] body in odometry frame
    fw = np.einsum("mij,mj->mi", R_ws, f)
    dpsi = -np.einsum("mij,mj->mi", R_ws, np.cross(axis, f))
    # the IMU origin's positions: p_l + R_wl (-R_bl^T t_bl)
    p = T_odom_lidar[:, :3, 3] + np.einsum("kij,j->ki", T_odom_lidar[:, :3, :3], -R_bl.T @ t_bl)
    # double integrals (the mean over a window is a difference of them) of each term
    cols = [fw[:, :, None], dpsi[:, :, None], -R_ws, np.broadcast_to(np.eye(3), R_ws.shape)]
    V = _cumtrapz(s, np.concatenate(cols, axis=2))  # [M, 3, 1 + 1 + 3 + 3]
    A2 = _cumtrapz(s, V)

    def mean_over(k0, k1):
        a0 = np.stack([np.stack([np.interp(t[k0], s, A2[:, i, j]) for j in range(A2.shape[2])], -1)
                       for i in range(3)], 1)
        a1 = np.stack([np.stack([np.interp(t[k1], s, A2[:, i, j]) for j in range(A2.shape[2])], -1)
                       for i in range(3)], 1)
        return (a1 - a0) / (t[k1] - t[k0])[:, None, None]

    S = len(segments)
    rows, ys, seg = [], [], []
    for j, sg in enumerate(segments):
        k = sg[half:-half]
        u = (p[k + half] - p[k - half]) / (t[k + half] - t[k - half])[:, None]
        m = mean_over(k - half, k + half)  # [n, 3, 8]
        A = np.zeros((len(k), 3, 7 + 3 * S))
        A[:, :, 0] = m[:, :, 1]
        A[:, :, 1:7] = m[:, :, 2:8]
        A[:, :, 7 + 3 * j: 10 + 3 * j] = np.eye(3)
        rows.append(A.reshape(-1, 7 + 3 * S)), ys.append((u - m[:, :, 0]).reshape(-1))
        seg.append(np.full(3 * len(k), j))
    return np.concatenate(rows), np.concatenate(ys), np.concatenate(seg)


def _solve(A, y, w, bias_prior):
    """Weighted least squares with a ridge ``bias_prior`` (weight per m/s²) on the bias."""
    sw = np.sqrt(w)
    Ar, yr = A * sw[:, None], y * sw
    P = np.zeros((3, A.shape[1]))
    P[:, 1:4] = bias_prior * np.eye(3)
    return np.linalg.lstsq(np.r_[Ar, P], np.r_[yr, np.zeros(3)], rcond=None)[0]


def estimate_yaw(t: np.ndarray, T_odom_lidar: np.ndarray, imu: ImuSamples, R_body_lidar: np.ndarray,
                 t_body_lidar: np.ndarray, offset_s: float, axis: np.ndarray, segment_frames: int = 20,
                 bias_prior: float = 0.1, draws: int = 50, index: np.ndarray | None = None,
                 seed: int = 0, half: int = 1) -> YawEstimate:
    """Rotation of the mount about body ``axis [3]`` from horizontal accelerations.

    Args:
        t: ``[K]`` LiDAR frame stamps (s); T_odom_lidar: ``[K, 4, 4]`` odometry poses.
        imu: the IMU stream (body frame, its own clock: IMU time = LiDAR time + ``offset_s``).
        R_body_lidar: ``[3, 3]`` current rotation; t_body_lidar: ``[3]`` LiDAR position in the body (m).
        axis: ``[3]`` unit body axis to solve about (the hand-eye's undetermined one).
        segment_frames: frames per segment (each has its own start velocity).
        bias_prior: weight (per m/s² of bias, in m/s of velocity residual) of a zero-bias prior
            (it only settles the bias along gravity, which a level drive cannot tell from g; a
            strong one forced the synthetic 0.03 m/s² bias into the yaw: 0.7 deg off on true motion).
        draws: bootstrap draws over segments for the std.
        index: ``[K]`` frame indices (gaps split segments); None = consecutive.
        seed: bootstrap generator seed; half: the velocities are means over ``2·half`` frame intervals.

    Returns a :class:`YawEstimate`; ``std`` is inf when fewer than 4 segments exist.
    """
    t = np.asarray(t, np.float64)
    T = np.asarray(T_odom_lidar, np.float64)
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    segs = _runs(np.arange(len(t)) if index is None else np.asarray(index), segment_frames)
    if len(segs) < 4:
        return YawEstimate(0.0, np.inf, axis, len(segs), 0.0, ["too few LiDAR frames for the yaw from accelerations"])
    psi, R = 0.0, np.asarray(R_body_lidar, np.float64)
    for _ in range(3):  # relinearise about the current yaw
        Rc = np_so3_exp(psi * axis) @ R
        A, y, seg = _design(t, T, imu, Rc, np.asarray(t_body_lidar, np.float64), offset_s, axis, segs, half)
        x = _solve(A, y, np.ones(len(y)), bias_prior)
        psi += float(x[0])
        if abs(x[0]) < 1e-7:
            break
    Rc = np_so3_exp(psi * axis) @ R
    A, y, seg = _design(t, T, imu, Rc, np.asarray(t_body_lidar, np.float64), offset_s, axis, segs, half)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(draws):
        counts = np.bincount(rng.integers(0, len(segs), len(segs)), minlength=len(segs)).astype(np.float64)
        boot.append(_solve(A, y, counts[seg], bias_prior)[0])
    excitation = float(np.linalg.norm(A[:, 0]) / np.sqrt(len(A)))
    return YawEstimate(psi, float(np.std(boot, ddof=1)), axis, len(segs), excitation)
