"""Shared fixtures: the real sample logs in ../shared/data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data; skips the calling test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"sample data not available: {p}")
    return p


@pytest.fixture
def shared_data() -> Path:
    """The ../shared/data folder (skips when absent)."""
    return shared_path()


@pytest.fixture
def shared():
    """Function ``shared("kitti_raw_2011_09_26", ...) -> Path`` that skips when the path is absent."""
    return shared_path
