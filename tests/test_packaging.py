"""Packaging: the root-as-package layout ships only ``fuse4d/`` (no top-level data/ or mapping/), with configs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contains_only_the_fuse4d_package(tmp_path):
    had_build = (REPO / "build").exists()
    try:
        _check_wheel(tmp_path)
    finally:
        if not had_build:  # setuptools builds in the source tree; leave it as we found it
            shutil.rmtree(REPO / "build", ignore_errors=True)


def _check_wheel(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("fuse4d-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops <= {"fuse4d", next(t for t in tops if t.endswith(".dist-info"))}, tops
    for required in ("fuse4d/__init__.py", "fuse4d/configs/default.yaml", "fuse4d/data/types.py",
                     "fuse4d/data/synthetic/__init__.py", "fuse4d/fusion/estimation/estimator.py", "fuse4d/cli.py"):
        assert required in names, required
    assert not any(n.startswith("fuse4d/tests/") or n.startswith("fuse4d/benchmarks/") for n in names)
    entry = [n for n in names if n.endswith("entry_points.txt")][0]
    assert "fuse4d = fuse4d.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
