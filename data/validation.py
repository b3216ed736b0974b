"""Checks on arrays read from files: finiteness and monotonic timestamps.

Each raises :class:`fuse4d.errors.DataError` naming the file and the first
offending row, never a bare numpy error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fuse4d.errors import DataError


def check_finite(a: np.ndarray, path: str | Path | None, what: str) -> np.ndarray:
    """Return ``a``; raise DataError naming ``path`` if it holds NaN or inf."""
    finite = np.isfinite(a)
    if not finite.all():
        n_bad = int(finite.size - np.count_nonzero(finite))
        raise DataError(path, f"{what} contain {n_bad} NaN/inf values")
    return a


def check_monotonic(t: np.ndarray, path: str | Path | None, what: str = "timestamps") -> np.ndarray:
    """Return ``t``; raise DataError when it has NaN, duplicates or goes backwards.

    The message names the first offending row (0-based) and both values.
    """
    t = np.asarray(t)
    if t.dtype.kind == "f":
        check_finite(t, path, what)
    if len(t) > 1:
        dt = np.diff(t)
        bad = np.flatnonzero(dt <= 0)
        if bad.size:
            i = int(bad[0])
            kind = "duplicate" if dt[i] == 0 else "non-monotonic"
            raise DataError(path, f"{kind} {what} at row {i + 1}: {t[i]} then {t[i + 1]}")
    return t
