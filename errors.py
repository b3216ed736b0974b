"""Errors raised by fuse4d with a message a user can act on."""

from __future__ import annotations

from pathlib import Path


class Fuse4dError(Exception):
    """Base class of every error fuse4d raises on purpose."""


class DataError(Fuse4dError, ValueError):
    """Bad or unreadable input data.

    The message always names the offending file (or folder) and the problem,
    e.g. ``DataError: velodyne/000003.bin: size 1234 bytes is not a multiple
    of 16 (float32 x, y, z, intensity)``.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class ConfigError(Fuse4dError, ValueError):
    """An invalid configuration value or file."""
