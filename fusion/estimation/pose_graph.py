"""Pose graph over body states, solved with pypose Levenberg-Marquardt.

Nodes are keyframe poses ``T_world_body`` (pypose ``SE3``), plus velocities
(m/s, world) and IMU biases (gyro rad/s, accelerometer m/s²) when the log has
an IMU. Factors:

* relative pose ``T_i_j`` with a 6×6 information (translation, rotation):
  LiDAR odometry (weighted by its registration Hessian), loop closures and
  network pose predictions (their predicted covariance), each kind with its
  own robust kernel;
* IMU preintegration between consecutive states (Forster et al.'s residual,
  whitened by the preintegration covariance) and the bias random walk;
* priors on poses and biases (fixing the gauge).

pypose's LM builds a dense Jacobian, so keep graphs to a few hundred nodes
(the estimator optimises keyframes only).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pypose as pp
import torch
from torch import nn

from fuse4d.fusion.estimation.imu import GRAVITY, Preintegration, gravity_vector

log = logging.getLogger(__name__)

#: default robust kernel (name, scale on the whitened residual) per relative-factor kind
#: (``imu_lidar``: IMU factors between two LiDAR-registered states, where the LiDAR holds the poses and a
#: burst of IMU noise or a bias jump is an outlier to reject, not a motion to follow; sparse solver only)
DEFAULT_KERNELS = {"lidar": ("huber", 3.0), "loop": ("huber", 10.0), "network": ("huber", 3.0), "prior": (None, 0.0),
                   "bias_prior": (None, 0.0), "velocity_prior": (None, 0.0), "imu": ("huber", 5.0),
                   "imu_lidar": ("cauchy", 3.0)}


def sqrt_information(information: np.ndarray) -> np.ndarray:
    """Upper factor ``U [.., n, n]`` with ``Uᵀ U = information`` (regularised to be positive definite)."""
    info = 0.5 * (information + np.swapaxes(information, -1, -2))
    n = info.shape[-1]
    scale = np.maximum(np.abs(np.diagonal(info, axis1=-2, axis2=-1)).max(-1), 1e-12)
    L = np.linalg.cholesky(info + 1e-9 * scale[..., None, None] * np.eye(n))
    return np.swapaxes(L, -1, -2)


def _kernel(name: str | None, scale: float):
    if name is None:
        return None
    if name == "huber":
        return pp.optim.kernel.Huber(delta=scale)
    if name == "cauchy":
        return pp.optim.kernel.Cauchy(delta=scale)
    raise ValueError(f"unknown robust kernel {name!r} (use 'huber', 'cauchy' or None)")


@dataclass
class GraphSolution:
    """Optimised states: ``poses [N, 4, 4]``, ``velocities [N, 3]`` and ``biases [N, 6]`` (None without IMU)."""

    poses: np.ndarray
    velocities: np.ndarray | None
    biases: np.ndarray | None
    cost_initial: float
    cost_final: float
    iterations: int


class _GraphModel(nn.Module):
    def __init__(self, graph: "PoseGraph"):
        super().__init__()
        f64 = torch.float64
        self.T = pp.Parameter(pp.mat2SE3(torch.from_numpy(graph.poses), check=False))
        self.with_imu = graph.velocities is not None
        if self.with_imu:
            self.v = nn.Parameter(torch.from_numpy(graph.velocities.copy()))
            self.b = nn.Parameter(torch.from_numpy(graph.biases.copy()))
        self.groups = []
        for kind in sorted({f[4] for f in graph.relative}):
            rows = [f for f in graph.relative if f[4] == kind]
            self.groups.append((kind, torch.tensor([f[0] for f in rows]), torch.tensor([f[1] for f in rows]),
                                pp.mat2SE3(torch.from_numpy(np.stack([f[2] for f in rows])), check=False),
                                torch.from_numpy(np.stack([f[3] for f in rows]))))
        self.priors = graph.priors
        if self.priors:
            self.prior_idx = torch.tensor([p[0] for p in self.priors])
            self.prior_T = pp.mat2SE3(torch.from_numpy(np.stack([p[1] for p in self.priors])), check=False)
            self.prior_U = torch.from_numpy(np.stack([p[2] for p in self.priors]))
        self.imu = graph.imu
        if self.imu:
            I = [f[0] for f in self.imu]
            J = [f[1] for f in self.imu]
            pre = [f[2] for f in self.imu]
            self.imu_i, self.imu_j = torch.tensor(I), torch.tensor(J)
            dR = np.tile(np.eye(4), (len(pre), 1, 1))
            dR[:, :3, :3] = np.stack([p.dR for p in pre])
            self.dR_se3 = pp.mat2SE3(torch.from_numpy(dR), check=False)
            self.dv = torch.from_numpy(np.stack([p.dv for p in pre]))
            self.dp = torch.from_numpy(np.stack([p.dp for p in pre]))
            self.Jb = torch.from_numpy(np.stack([p.J for p in pre]))
            self.b_lin = torch.from_numpy(np.stack([np.concatenate([p.bg, p.ba]) for p in pre]))
            self.dt = torch.tensor([p.dt for p in pre], dtype=f64)[:, None]
            self.U_imu = torch.from_numpy(np.stack([f[3] for f in self.imu]))
            self.U_walk = torch.from_numpy(np.stack([f[4] for f in self.imu]))
            self.g = torch.from_numpy(gravity_vector(graph.gravity))
        if graph.bias_priors:
            self.bp_idx = torch.tensor([p[0] for p in graph.bias_priors])
            self.bp_mean = torch.from_numpy(np.stack([p[1] for p in graph.bias_priors]))
            self.bp_w = torch.from_numpy(np.stack([p[2] for p in graph.bias_priors]))
        self.bias_priors = graph.bias_priors
        self.velocity_priors = graph.velocity_priors
        if self.velocity_priors:
            self.vp_idx = torch.tensor([p[0] for p in self.velocity_priors])
            self.vp_mean = torch.from_numpy(np.stack([p[1] for p in self.velocity_priors]))
            self.vp_w = torch.from_numpy(np.stack([p[2] for p in self.velocity_priors]))

    def forward(self, _input=None):
        out = []
        for _, i, j, Z, U in self.groups:
            r = (Z.Inv() * self.T[i].Inv() * self.T[j]).Log().tensor()
            out.append(torch.einsum("kab,kb->ka", U, r))
        if self.priors:
            r = (self.prior_T.Inv() * self.T[self.prior_idx]).Log().tensor()
            out.append(torch.einsum("kab,kb->ka", self.prior_U, r))
        if self.imu:
            out.append(self._imu_residuals())
        if self.bias_priors:
            out.append((self.b[self.bp_idx] - self.bp_mean) * self.bp_w)
        if self.velocity_priors:
            out.append((self.v[self.vp_idx] - self.vp_mean) * self.vp_w)
        return tuple(out)

    def _imu_residuals(self) -> torch.Tensor:
        # Only group operations (Inv, Mul, Act, Log) touch the SE3 states: pypose's Jacobians of those are
        # taken in the tangent space, which is what LM's update T ← Exp(δ) T expects (slicing the
        # storage with .rotation()/.translation() would not be).
        i, j, dt, g = self.imu_i, self.imu_j, self.dt, self.g
        Ti_inv, Tj = self.T[i].Inv(), self.T[j]
        vi, vj = self.v[i], self.v[j]
        corr = torch.einsum("kab,kb->ka", self.Jb, self.b[i] - self.b_lin)
        zero = torch.zeros_like(vi)
        rR = (self.dR_se3.Inv() * Ti_inv * Tj).Log().tensor()[:, 3:] - corr[:, :3]
        rv = Ti_inv.Act(vj - vi - g * dt) - Ti_inv.Act(zero) - (self.dv + corr[:, 3:6])
        rp = Ti_inv.Act(Tj.Act(zero) - vi * dt - 0.5 * g * dt * dt) - (self.dp + corr[:, 6:9])
        r9 = torch.einsum("kab,kb->ka", self.U_imu, torch.cat([rR, rv, rp], -1))
        rb = (self.b[j] - self.b[i]) * self.U_walk
        return torch.cat([r9, rb], -1)

    def kinds(self) -> list[str]:
        k = [g[0] for g in self.groups]
        if self.priors:
            k.append("prior")
        if self.imu:
            k.append("imu")
        if self.bias_priors:
            k.append("bias_prior")
        if self.velocity_priors:
            k.append("velocity_prior")
        return k


class PoseGraph:
    """Factor graph over N body states (see module doc).

    Args:
        poses: ``[N, 4, 4]`` initial ``T_world_body``.
        velocities: ``[N, 3]`` initial world velocities (m/s), or None for a pose-only graph.
        biases: ``[N, 6]`` initial (gyro rad/s, accelerometer m/s²) biases; zeros by default with velocities.
        gravity: magnitude (m/s², world z up) or the gravity vector ``[3]`` in the graph's frame.
    """

    def __init__(self, poses: np.ndarray, velocities: np.ndarray | None = None, biases: np.ndarray | None = None,
                 gravity: float | np.ndarray = GRAVITY):
        self.poses = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4).copy()
        self.velocities = None if velocities is None else np.asarray(velocities, dtype=np.float64).reshape(-1, 3).copy()
        if self.velocities is not None and biases is None:
            biases = np.zeros((len(self.poses), 6))
        self.biases = None if biases is None else np.asarray(biases, dtype=np.float64).reshape(-1, 6).copy()
        self.gravity = gravity_vector(gravity)
        self.relative: list[tuple] = []
        self.priors: list[tuple] = []
        self.imu: list[tuple] = []
        self.bias_priors: list[tuple] = []
        self.velocity_priors: list[tuple] = []

    def __len__(self) -> int:
        return len(self.poses)

    def _check(self, *idx: int) -> None:
        for i in idx:
            if not 0 <= i < len(self):
                raise IndexError(f"node {i} out of range for a graph of {len(self)} nodes")

    def add_prior(self, i: int, T_world_body: np.ndarray, information: np.ndarray) -> None:
        """Prior on node ``i``'s pose ``[4, 4]`` with ``information [6, 6]`` (translation, rotation)."""
        self._check(i)
        self.priors.append((i, np.asarray(T_world_body, float), sqrt_information(np.asarray(information, float))))

    def add_relative(self, i: int, j: int, T_i_j: np.ndarray, information: np.ndarray, kind: str = "lidar") -> None:
        """Relative-pose factor ``T_i_j [4, 4]`` (pose of j in i's frame) with ``information [6, 6]``.

        ``kind`` picks the robust kernel: ``lidar``, ``loop``, ``network`` (or any name → Huber 3).
        """
        self._check(i, j)
        self.relative.append((i, j, np.asarray(T_i_j, float), sqrt_information(np.asarray(information, float)), kind))

    def add_network_factor(self, i: int, j: int, T_i_j: np.ndarray, covariance: np.ndarray) -> None:
        """A relative pose predicted by the fusion model, with its ``covariance [6, 6]`` (m², rad²)."""
        self.add_relative(i, j, T_i_j, np.linalg.inv(np.asarray(covariance, float)), kind="network")

    def add_imu(self, i: int, j: int, preint: Preintegration, gyro_walk: float, acc_walk: float,
                kind: str = "imu") -> None:
        """IMU preintegration factor between nodes ``i`` and ``j`` plus the bias random walk.

        ``kind`` picks the robust kernel (``imu``, or ``imu_lidar`` between two LiDAR-registered states);
        the ``pypose`` solver applies the ``imu`` kernel to every kind.

        Raises:
            ValueError: the graph has no velocity/bias states.
        """
        if self.velocities is None:
            raise ValueError("IMU factors need a graph built with velocities")
        self._check(i, j)
        cov = preint.cov + 1e-12 * np.eye(9)
        walk = np.sqrt(np.r_[[gyro_walk ** 2 * preint.dt] * 3, [acc_walk ** 2 * preint.dt] * 3])
        self.imu.append((i, j, preint, sqrt_information(np.linalg.inv(cov)), 1.0 / np.maximum(walk, 1e-12), kind))

    def add_bias_prior(self, i: int, bias: np.ndarray, sigma: np.ndarray) -> None:
        """Gaussian prior on node ``i``'s biases ``[6]`` with standard deviations ``sigma [6]``."""
        self._check(i)
        self.bias_priors.append((i, np.asarray(bias, float), 1.0 / np.asarray(sigma, float)))

    def add_velocity_prior(self, i: int, velocity: np.ndarray, sigma: float) -> None:
        """Gaussian prior on node ``i``'s velocity ``[3]`` (m/s) with standard deviation ``sigma`` (m/s).

        Raises:
            ValueError: the graph has no velocity states.
        """
        if self.velocities is None:
            raise ValueError("velocity priors need a graph built with velocities")
        self._check(i)
        self.velocity_priors.append((i, np.asarray(velocity, float), np.full(3, 1.0 / sigma)))

    def cost(self) -> float:
        """Current sum of squared whitened residuals (no robust kernel)."""
        with torch.no_grad():
            return float(sum(r.square().sum() for r in _GraphModel(self)()))

    def optimize(self, max_iterations: int = 15, tolerance: float = 1e-3,
                 kernels: dict[str, tuple[str | None, float]] | None = None,
                 solver: str = "sparse") -> GraphSolution:
        """Run Levenberg-Marquardt; update and return the states.

        Args:
            max_iterations: LM steps at most.
            tolerance: stop when the relative cost decrease is below this.
            kernels: per-kind robust kernel overrides, e.g. ``{"loop": ("cauchy", 1.0)}``.
            solver: ``sparse`` (scipy sparse normal equations, linear in the node count; see
                :mod:`~fuse4d.fusion.estimation.sparse_graph`) or ``pypose`` (dense Jacobian,
                a few hundred nodes at most).

        Raises:
            ValueError: the graph has no factor, or an unknown solver.
        """
        if not (self.relative or self.priors or self.imu or self.bias_priors or self.velocity_priors):
            raise ValueError("pose graph has no factors")
        table = {**DEFAULT_KERNELS, **(kernels or {})}
        if solver == "sparse":
            from fuse4d.fusion.estimation.sparse_graph import SparseSolver
            s = SparseSolver(self, table)
            c0 = s.plain_cost()
            _, _, it = s.solve(max_iterations, tolerance)
            return GraphSolution(self.poses, self.velocities, self.biases, c0, s.plain_cost(), it)
        if solver != "pypose":
            raise ValueError(f"unknown pose-graph solver {solver!r} (use 'sparse' or 'pypose')")
        model = _GraphModel(self)
        ks = [_kernel(*table.get(k, ("huber", 3.0))) for k in model.kinds()]
        with torch.no_grad():
            cost0 = float(sum(r.square().sum() for r in model()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = pp.optim.LM(model, strategy=pp.optim.strategy.TrustRegion(radius=1e4), kernel=ks, vectorize=True)
            prev, it = None, 0
            for it in range(1, max_iterations + 1):
                loss = float(opt.step(input=None))
                if prev is not None and abs(prev - loss) <= tolerance * max(prev, 1e-12):
                    break
                prev = loss
        with torch.no_grad():
            cost1 = float(sum(r.square().sum() for r in model()))
            self.poses = model.T.matrix().numpy().copy()
            if model.with_imu:
                self.velocities = model.v.numpy().copy()
                self.biases = model.b.numpy().copy()
        log.debug("pose graph: %d nodes, cost %.3g -> %.3g in %d LM steps", len(self), cost0, cost1, it)
        return GraphSolution(self.poses, self.velocities, self.biases, cost0, cost1, it)
