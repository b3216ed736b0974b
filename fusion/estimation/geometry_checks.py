"""Checks on registration geometry: degeneracy of the ICP Hessian."""

from __future__ import annotations

import numpy as np


def degeneracy(hessian: np.ndarray, n_points: int, ratio: float = 0.02) -> bool:
    """True when a direction of ``hessian [6, 6]`` is poorly constrained.

    The translational and rotational blocks are checked separately: their
    smallest eigenvalue, per source point, must exceed ``ratio`` (for the
    rotational block, after dividing by the mean eigenvalue, since its scale
    grows with range²).

    Args:
        hessian: ICP information ``Σ w Jᵀ J`` (translation then rotation).
        n_points: number of source points used.
        ratio: threshold on the normalised smallest eigenvalue.
    """
    if n_points <= 0 or not np.isfinite(hessian).all() or not hessian.any():
        return True
    et = np.linalg.eigvalsh(hessian[:3, :3])
    er = np.linalg.eigvalsh(hessian[3:, 3:])
    return bool(et[0] / n_points < ratio or er[0] < ratio * er.mean())
