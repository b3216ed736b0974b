"""Body of ``fuse4d calib``: read a log, calibrate it, write calib.yaml, the PNG and the report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from fuse4d.calib.config import CalibConfig


def _config(path: Path | None) -> CalibConfig:
    if path is None:
        return CalibConfig()
    import yaml
    from fuse4d.errors import ConfigError
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    doc = yaml.safe_load(p.read_text()) or {}
    return CalibConfig.from_dict(doc.get("calib", doc) if isinstance(doc, dict) else {})


def _truth_path(input: Path) -> Path | None:
    for d in (input, input.parent):
        p = Path(d) / "calib_true.yaml"
        if p.is_file():
            return p
    return None


def run_calib(input: Path, out: Path | None, config: Path | None, as_json: bool,
              echo: Callable[[str], Any] = print, **options: Any) -> dict[str, Any]:
    """Calibrate the log at ``input``; write ``out`` (calib.yaml) and ``out``'s ``.png``; print the report.

    Returns:
        the report dict (errors against ``calib_true.yaml`` when it sits beside the log).
    """
    from fuse4d.calib.calibrate import calibrate_sequence
    from fuse4d.calib.io import read_calibration, write_calibration
    from fuse4d.data.registry import load_sequence
    cfg = _config(config)
    seq = load_sequence(input, **options)
    tp = _truth_path(Path(input))
    truth = read_calibration(tp) if tp is not None else None
    res = calibrate_sequence(seq, cfg, truth)
    rep = res.report
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_calibration(out, res.calibration, rep)
        rep["written"] = str(out)
        if res.extrinsic is not None and res.frames:
            from fuse4d.calib.plots import plot_before_after
            f = max(res.frames, key=lambda fr: len(fr.points))
            png = plot_before_after(f.image, f.all_points, seq.calibration.K, res.extrinsic.T_init,
                                    res.calibration.T_cam_lidar,
                                    out.with_suffix(".png"), titles=(f"before (frame {f.index})", "after"))
            rep["plot"] = str(png)
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rep.items()}
    if as_json:
        echo(json.dumps(clean, default=float))
    else:
        for k, v in clean.items():
            if k.startswith("T_") or k == "notes":
                continue
            echo(f"{k:32s} {v:.4g}" if isinstance(v, float) else f"{k:32s} {v}")
        for n in rep["notes"]:
            echo(f"note: {n}")
    return clean
