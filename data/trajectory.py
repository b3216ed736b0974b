"""Trajectory files: TUM, KITTI and EuRoC (ASL CSV), read and written.

A :class:`Trajectory` is ``t [S]`` float64 seconds plus ``poses [S, 4, 4]``
(``T_world_x`` of whatever frame x the file describes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fuse4d.errors import DataError
from fuse4d.fileio import atomic_write_text
from fuse4d.geometry import make_T, matrix_to_quat, pose_from_tq


@dataclass
class Trajectory:
    """Timestamped poses.

    Attributes:
        t: ``[S]`` float64 seconds (for KITTI files without times: 0, 1, 2, ...).
        poses: ``[S, 4, 4]`` float64 ``T_world_x``.
        frame: name of frame x (``body``, ``lidar``, ``camera``), informational.
    """

    t: np.ndarray
    poses: np.ndarray
    frame: str = "body"

    def __post_init__(self) -> None:
        self.t = np.asarray(self.t, dtype=np.float64).reshape(-1)
        self.poses = np.asarray(self.poses, dtype=np.float64).reshape(-1, 4, 4)
        if len(self.t) != len(self.poses):
            raise DataError(None, f"trajectory has {len(self.t)} stamps but {len(self.poses)} poses")

    def __len__(self) -> int:
        return len(self.t)

    @property
    def positions(self) -> np.ndarray:
        """``[S, 3]`` positions in metres."""
        return self.poses[:, :3, 3]

    @property
    def path_length(self) -> float:
        """Total distance travelled in metres."""
        return float(np.linalg.norm(np.diff(self.positions, axis=0), axis=1).sum()) if len(self) > 1 else 0.0


def _text_lines(path: Path):
    """The file's lines; DataError for a binary (non-UTF-8) file."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(path, f"not a text trajectory file (binary data at byte {e.start})") from None


def _check_times(t: np.ndarray, path: Path) -> np.ndarray:
    """Rows to keep: stamps must not go backwards (a shuffled file would be paired wrongly).

    A repeated stamp (VIO systems write a keyframe twice; evo's own test data has
    one) is kept, as evo keeps it, with a warning naming the first; a stamp lower
    than the previous one is a DataError.
    """
    dt = np.diff(t)
    back = np.flatnonzero(dt < 0)
    if back.size:
        i = int(back[0])
        raise DataError(path, f"timestamps go backwards at pose {i + 1}: {t[i]} then {t[i + 1]} "
                              "(the file must be sorted by time)")
    dup = np.flatnonzero(dt == 0)
    if dup.size:
        import logging
        logging.getLogger(__name__).warning("%s: %d repeated timestamp(s), first at pose %d (kept, as evo keeps them)",
                                            path, int(dup.size), int(dup[0]) + 1)
    return np.ones(len(t), bool)


def _quaternions(q_xyzw: np.ndarray, path: Path) -> np.ndarray:
    """Unit-normalise ``[S, 4]``; DataError naming the first zero quaternion."""
    norm = np.linalg.norm(q_xyzw, axis=1)
    bad = np.flatnonzero(norm < 1e-9)
    if bad.size:
        raise DataError(path, f"pose {int(bad[0])}: zero quaternion (qx qy qz qw all 0) is not a rotation")
    return q_xyzw / norm[:, None]


def _load_table(path: Path, min_cols: int, delimiter: str | None = None) -> np.ndarray:
    if not path.is_file():
        raise DataError(path, "trajectory file not found")
    rows = []
    for lineno, line in enumerate(_text_lines(path), 1):
        s = line.strip()
        if not s or s.startswith("#") or s[0].isalpha():
            continue
        parts = s.replace(",", " ").split() if delimiter is None else s.split(delimiter)
        try:
            vals = [float(x) for x in parts]
        except ValueError:
            raise DataError(path, f"line {lineno}: not numeric: {s[:80]!r}") from None
        if len(vals) < min_cols:
            raise DataError(path, f"line {lineno}: expected at least {min_cols} columns, got {len(vals)}")
        rows.append(vals[:min_cols])
    if not rows:
        raise DataError(path, "no poses in file")
    arr = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise DataError(path, "NaN or inf values in trajectory")
    return arr


def read_tum(path: str | Path) -> Trajectory:
    """Read a TUM file (``t tx ty tz qx qy qz qw`` per line, ``#`` comments)."""
    path = Path(path)
    a = _load_table(path, 8)
    frame = "body"
    head = (_text_lines(path) or [""])[0]
    if head.startswith("#") and "frame:" in head:
        frame = head.split("frame:")[1].split()[0].strip(",;")
    a = a[_check_times(a[:, 0], path)]
    return Trajectory(a[:, 0], pose_from_tq(a[:, 1:4], _quaternions(a[:, 4:8], path)), frame)


def read_kitti(path: str | Path, times: str | Path | np.ndarray | None = None) -> Trajectory:
    """Read a KITTI pose file (12 numbers a line, row-major 3×4), with optional ``times.txt``."""
    path = Path(path)
    a = _load_table(path, 12)
    T = np.tile(np.eye(4), (len(a), 1, 1))
    T[:, :3, :4] = a.reshape(-1, 3, 4)
    if times is None:
        t = np.arange(len(a), dtype=np.float64)
    elif isinstance(times, np.ndarray):
        t = times
    else:
        t = _load_table(Path(times), 1)[:, 0]
    if len(t) != len(T):
        raise DataError(path, f"{len(T)} poses but {len(t)} timestamps")
    keep = _check_times(t, Path(times) if isinstance(times, (str, Path)) else path)
    return Trajectory(t[keep], T[keep])


def read_euroc(path: str | Path) -> Trajectory:
    """Read an EuRoC ASL CSV (``t[ns], px, py, pz, qw, qx, qy, qz, ...``)."""
    path = Path(path)
    a = _load_table(path, 8)
    a = a[_check_times(a[:, 0], path)]
    q_xyzw = _quaternions(a[:, [5, 6, 7, 4]], path)
    return Trajectory(a[:, 0] * 1e-9, pose_from_tq(a[:, 1:4], q_xyzw))


def guess_format(path: str | Path) -> str:
    """``tum``, ``kitti`` or ``euroc`` from the file's first data line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "trajectory file not found")
    for line in _text_lines(path):
        s = line.strip()
        if not s or s.startswith("#") or s[0].isalpha():
            continue
        n = len(s.replace(",", " ").split())
        if "," in s and n >= 8:
            return "euroc"
        if n == 12:
            return "kitti"
        if n == 8:
            return "tum"
        raise DataError(path, f"cannot tell the trajectory format from a line of {n} columns (TUM has 8, KITTI 12, EuRoC CSV ≥ 8 with commas)")
    raise DataError(path, "no poses in file")


def read_trajectory(path: str | Path, format: str | None = None) -> Trajectory:
    """Read a trajectory file in TUM, KITTI or EuRoC format (guessed when ``format`` is None)."""
    fmt = format or guess_format(path)
    readers = {"tum": read_tum, "kitti": read_kitti, "euroc": read_euroc}
    if fmt not in readers:
        raise DataError(path, f"unknown trajectory format {fmt!r}; use tum, kitti or euroc")
    return readers[fmt](path)


def write_tum(path: str | Path, t: np.ndarray, poses: np.ndarray, frame: str = "body", comment: str = "") -> None:
    """Write ``t [S]`` seconds and ``poses [S, 4, 4]`` as TUM, atomically.

    The first line is a comment naming the frame (``# fuse4d trajectory frame: body``).
    Rows with non-finite poses are skipped.
    """
    poses = np.asarray(poses, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    poses = poses.reshape(-1, 4, 4)
    ok = np.isfinite(poses.reshape(len(poses), 16)).all(axis=1)
    q = matrix_to_quat(poses[ok, :3, :3]) if ok.any() else np.zeros((0, 4))
    lines = [f"# fuse4d trajectory frame: {frame}" + (f" {comment}" if comment else ""),
             "# timestamp tx ty tz qx qy qz qw"]
    for ti, T, qi in zip(t[ok], poses[ok], q):
        p = T[:3, 3]
        lines.append(f"{ti:.9f} {p[0]:.9f} {p[1]:.9f} {p[2]:.9f} {qi[0]:.9f} {qi[1]:.9f} {qi[2]:.9f} {qi[3]:.9f}")
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


def write_kitti(path: str | Path, poses: np.ndarray) -> None:
    """Write ``poses [S, 4, 4]`` as a KITTI pose file (3×4 row-major per line), atomically."""
    poses = np.asarray(poses, dtype=np.float64)
    lines = [" ".join(f"{v:.12e}" for v in T[:3, :4].reshape(-1)) for T in poses]
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


__all__ = ["Trajectory", "read_tum", "read_kitti", "read_euroc", "read_trajectory", "guess_format",
           "write_tum", "write_kitti", "make_T"]
