"""What an unreadable frame does to a run (``run.on_error``): stop cleanly, or skip it and go on.

Readers raise :class:`~fuse4d.errors.DataError` naming the file when a frame is
bad (truncated or corrupt scan, NaN/inf points, an image of the wrong size,
...). :func:`guard_frames` wraps a sequence's loader so that error also names
the frame, and under ``skip`` replaces the frame by an empty one (timestamp
only, flag ``unreadable``): the stages treat it as a frame whose sensors all
dropped out, and the run records it.
"""

from __future__ import annotations

import logging

from fuse4d.data.types import Frame, Sequence
from fuse4d.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def guard_frames(seq: Sequence, on_error: str = "stop") -> tuple[Sequence, list[tuple[int, str]]]:
    """A view of ``seq`` whose bad frames stop the run (``stop``) or read as empty (``skip``).

    Returns:
        ``(view, skipped)``; ``skipped`` fills while frames load with
        ``(frame index in the full log, error message)``, one entry per frame.
    Raises:
        ConfigError: ``on_error`` is not ``stop`` or ``skip``.
    """
    if on_error not in ("stop", "skip"):
        raise ConfigError(f"on_error must be stop or skip, got {on_error!r}")
    inner, ts = seq._loader, seq._timestamps
    skipped: list[tuple[int, str]] = []
    seen: set[int] = set()

    def load(i: int) -> Frame:
        try:
            return inner(i)
        except DataError as e:
            msg = e.problem if e.path is None else f"{e.path}: {e.problem}"
            if on_error == "stop":
                raise DataError(e.path, f"frame {i}: {e.problem}") from None
            if i not in seen:
                seen.add(i)
                skipped.append((i, msg))
                log.warning("frame %d skipped: %s", i, msg)
            return Frame(index=i, timestamp=float(ts[i]), flags={"unreadable"})

    view = Sequence(ts, load, seq.calibration, seq.sensors, seq.imu, seq._gt_poses, seq.metadata, seq.name,
                    seq.path, seq.gt_maps, _indices=seq.indices)
    return view, skipped
