"""README's Python examples run as written (in a scratch folder)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        scope: dict = {}
        exec(compile(code, str(README), "exec"), scope)
    result = scope.get("result")
    assert result is not None and (tmp_path / "run" / "trajectory.txt").is_file()
    assert result.metrics["ate_rmse_m"] < 0.5 and result.store_path == Path("run") / "run.zarr"
