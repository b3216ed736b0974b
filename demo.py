"""``fuse4d demo``: the whole job on the built-in synthetic world.

Synthesise a log with full ground truth, write it as a fuse4d zarr log, read
it back, check it, run the pipeline, evaluate against ground truth and plot.
Each capability joins this as it lands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def run_demo(out: str | Path, frames: int = 200, seed: int = 0, scenario: str = "default",
             echo: Callable[[str], None] = print) -> dict:
    """Run the demo into ``out``; returns the evaluation metrics (flat dict, units in keys)."""
    from fuse4d.config import load_config
    from fuse4d.data.export import export_sequence
    from fuse4d.data.inspect import format_summary, summarize
    from fuse4d.data.registry import load_sequence
    from fuse4d.data.synthetic import synthesize
    from fuse4d.evaluation import format_table
    from fuse4d.pipeline import Pipeline
    from fuse4d.plots import plot_frame

    out = Path(out)
    echo(f"[1/4] synthesising {frames} frames of the '{scenario}' world (seed {seed})")
    seq = synthesize(seed=seed, frames=frames, scenario=scenario)
    log_path = export_sequence(seq, out / "log", format="zarr", progress=True, overwrite=True)
    echo(f"[2/4] reading it back from {log_path}")
    seq = load_sequence(log_path)
    echo(format_summary(summarize(seq, progress=True)))
    frame_png = plot_frame(seq[min(len(seq) - 1, 10)], seq.calibration, out / "frame.png")
    pipeline = Pipeline(load_config())
    how = "fusion model + back-end" if pipeline.predictor() is not None else "geometric path: no model checkpoint"
    echo(f"[3/4] running the pipeline ({how})")
    result = pipeline.run(seq, out / "run", progress=True, overwrite=True)
    echo(result.summary())
    echo("[4/4] evaluation against ground truth")
    echo(format_table(result.metrics))
    plots = [frame_png] + [p for p in sorted((out / "run").glob("*.png"))]
    echo("plots: " + ", ".join(str(p) for p in plots))
    return result.metrics
