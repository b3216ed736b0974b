"""Reader registry: ``load_sequence(path)`` guesses the log format from the path.

Each reader module in ``data/readers/`` calls :func:`register_reader` with a
``detect(path) -> bool`` and a ``load(path, **options) -> Sequence``. Readers
are tried in order of ``priority`` (higher first).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fuse4d.data.types import Sequence
from fuse4d.errors import DataError

#: reader modules imported on first use (each registers itself)
READER_MODULES = (
    "fuse4d.data.zarr_log",
    "fuse4d.data.readers.kitti_odometry",
    "fuse4d.data.readers.kitti_raw",
    "fuse4d.data.readers.tum_rgbd",
    "fuse4d.data.readers.euroc",
    "fuse4d.data.readers.av2",
    "fuse4d.data.readers.sevenscenes",
    "fuse4d.data.readers.slambook_rgbd",
    "fuse4d.data.readers.rosbag",
    "fuse4d.data.readers.scan_folder",
)


@dataclass(frozen=True)
class Reader:
    """A registered log format."""

    name: str
    detect: Callable[[Path], bool]
    load: Callable[..., Sequence]
    priority: int = 0
    description: str = ""


_READERS: dict[str, Reader] = {}
_loaded = False


def register_reader(name: str, detect: Callable[[Path], bool], load: Callable[..., Sequence],
                    priority: int = 0, description: str = "") -> None:
    """Register a log format under ``name`` (replacing any reader of that name)."""
    _READERS[name] = Reader(name, detect, load, priority, description)


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    for mod in READER_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a reader not written yet must not break the others
            if e.name != mod:
                raise
    _loaded = True


def readers() -> list[Reader]:
    """All registered readers, highest priority first."""
    _ensure_loaded()
    return sorted(_READERS.values(), key=lambda r: -r.priority)


def detect_format(path: str | Path) -> str:
    """Name of the reader that recognises ``path``; raises DataError when none does."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(p, "no such file or directory")
    for r in readers():
        if r.detect(p):
            return r.name
    if p.is_dir():  # a folder of logs (Argoverse 2 val/, a folder of EuRoC sequences): list them
        logs = _logs_inside(p)
        if len(logs) == 1:
            return detect_format(p / logs[0])
        if logs:
            shown = ", ".join(logs[:10]) + (f", ... ({len(logs)} in all)" if len(logs) > 10 else "")
            raise DataError(p, f"holds {len(logs)} logs ({shown}); pick one with --log NAME")
    names = ", ".join(r.name for r in readers())
    raise DataError(p, f"unknown log layout: no reader recognises it (known formats: {names})")


def _logs_inside(p: Path) -> list[str]:
    """Names of the sub-folders of ``p`` that a reader recognises."""
    return sorted(c.name for c in p.iterdir() if c.is_dir() and any(r.detect(c) for r in readers()))


def resolve_log(path: str | Path) -> Path:
    """``path``, or its only sub-folder holding a log when ``path`` itself is no log (a download's wrapper folder)."""
    p = Path(path).expanduser()
    if p.is_dir() and not any(r.detect(p) for r in readers()):
        logs = _logs_inside(p)
        if len(logs) == 1:
            return p / logs[0]
    return p


def load_sequence(path: str | Path, format: str | None = None, calib: Any = None, **options: Any) -> Sequence:
    """Open a log as a lazy :class:`Sequence`.

    Args:
        path: a log folder or file (KITTI odometry/raw, TUM RGB-D, EuRoC, AV2,
            7-Scenes, or a fuse4d zarr log).
        format: reader name to skip auto-detection (see :func:`readers`).
        calib: a ``calib.yaml`` path or a :class:`Calibration` that replaces the log's own
            (``fuse4d calib`` writes one); a changed time offset re-stamps the IMU stream.
        **options: passed to the reader (e.g. ``sequence="00"`` for KITTI odometry).

    Raises:
        DataError: the path is missing, its layout is unknown, or a file is bad.
    """
    _ensure_loaded()
    p = resolve_log(path)
    name = format or detect_format(p)
    if name not in _READERS:
        raise DataError(p, f"unknown format {name!r}; known: {', '.join(sorted(_READERS))}")
    import inspect
    params = inspect.signature(_READERS[name].load).parameters
    bad = [k for k in options if k not in params and not any(v.kind == v.VAR_KEYWORD for v in params.values())]
    if bad:
        raise DataError(p, f"a {name} log takes no option {bad[0]!r} (options: "
                           f"{', '.join(k for k in params if k != 'path') or 'none'})")
    seq = _READERS[name].load(p, **options)
    if calib is not None:
        from fuse4d.calib.io import apply_calibration, read_calibration
        from fuse4d.data.types import Calibration
        seq = apply_calibration(seq, calib if isinstance(calib, Calibration) else read_calibration(calib))
    return seq
