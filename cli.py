"""The ``fuse4d`` command. Heavy imports live inside each command body so
``fuse4d --help`` stays fast; every command only builds a config and calls
the same public API a Python user calls."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    name="fuse4d",
    help="Multimodal sensor-fusion 4D mapping: metric poses, maps and moving objects from camera + LiDAR + IMU logs.\n\n"
         "Examples:\n\n"
         "  fuse4d demo                                   # synthesise a log, map it, evaluate, plot\n\n"
         "  fuse4d synth --seed 1 --frames 200 --out world/   # write the built-in synthetic world\n\n"
         "  fuse4d info world/ --plot frame.png           # check a log and plot one frame\n\n"
         "  fuse4d run world/ --out run/ && fuse4d eval run/",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(err: Exception, code: int = 2) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _guarded(fn):
    """Run ``fn``; turn fuse4d's own errors and file-system faults into one line and exit code 2."""
    from fuse4d.errors import Fuse4dError
    try:
        return fn()
    except Fuse4dError as e:
        _fail(e)
    except OSError as e:  # disk full, read-only folder, ...: name the file, no traceback
        where = e.filename or "output"
        _fail(f"{where}: {e.strerror or e}")


def _tty() -> bool:
    """Progress bars (with frames/s) only on a terminal; logs stay quiet."""
    return sys.stderr.isatty()


def _version(value: bool) -> None:
    if value:
        from fuse4d import __version__
        typer.echo(f"fuse4d {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Multimodal sensor-fusion 4D mapping."""


def _log_path(path: Path, log: Optional[str]) -> Path:
    """``path/log`` when a log of a multi-log folder is picked with ``--log``."""
    if log is None:
        return path
    from fuse4d.errors import DataError
    picked = path / log
    if not picked.exists():
        names = sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
        raise DataError(path, f"no log {log!r} here; logs: {', '.join(names[:20]) or 'none'}")
    return picked


_PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def _check_plot(path: Optional[Path], option: str = "--plot") -> None:
    from fuse4d.errors import ConfigError
    if path is not None and path.suffix.lower() not in _PLOT_SUFFIXES:
        what = f"extension {path.suffix!r}" if path.suffix else "no extension"
        raise ConfigError(f"{option} {path}: {what}; use one of {', '.join(_PLOT_SUFFIXES)}")


def _reader_options(drive, lidar_topic, imu_topic, camera_topic, gt_topic) -> dict:
    """The reader options the user gave (only those: readers that take none are not disturbed)."""
    given = {"drive": drive, "lidar_topic": lidar_topic, "imu_topic": imu_topic, "camera_topic": camera_topic,
             "gt_topic": gt_topic}
    return {k: v for k, v in given.items() if v is not None}


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    seed: Optional[int] = typer.Option(None, help="random seed (the world is deterministic from it; default 0)"),
    split: Optional[str] = typer.Option(None, help="pick the seed from a dataset split: train, val or test (seed % 10: 0 test, 1 val, else train)"),
    index: int = typer.Option(0, help="with --split: take the split's INDEX-th seed (0-based)"),
    frames: int = typer.Option(200, help="number of frames (10 Hz)"),
    scenario: str = typer.Option("default", help="default, dense_traffic, camera_dark, lidar_dropout, imu_burst, degraded"),
    format: str = typer.Option("zarr", "--format", "-f", help="zarr (fuse4d log), kitti (KITTI odometry layout), kitti-raw (KITTI raw drive, OXTS at 10 Hz), rosbag (ROS 1 .bag), ros2 (ROS 2 sqlite3), mcap (ROS 2 MCAP)"),
    overwrite: bool = typer.Option(False, help="replace an existing log at OUT"),
    calib_error: Optional[str] = typer.Option(None, "--calib-error", help="write calib.yaml off by a seeded error, e.g. rot_deg=2,trans_m=0.1,time_ms=20 (truth in calib_true.yaml)"),
) -> None:
    """Write the built-in synthetic multi-sensor world with full ground truth."""
    def go():
        from fuse4d.data.export import export_sequence
        from fuse4d.data.synthetic import SCENARIOS, synthesize
        from fuse4d.errors import ConfigError
        if scenario not in SCENARIOS:
            raise ConfigError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
        from fuse4d.data.export import FORMATS
        if format not in FORMATS:
            raise ConfigError(f"unknown format {format!r}; choose {', '.join(FORMATS)}")
        if frames < 2:
            raise ConfigError(f"--frames must be at least 2, got {frames}")
        if split is not None and seed is not None:
            raise ConfigError("give --seed or --split/--index, not both")
        if index < 0:
            raise ConfigError(f"--index must be >= 0, got {index}")
        from fuse4d.data.synthetic import seeds_of, split_of
        world_seed = seeds_of(split, index + 1)[index] if split is not None else (0 if seed is None else seed)
        if world_seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {world_seed}")
        seq = synthesize(seed=world_seed, frames=frames, scenario=scenario)
        truth = None
        if calib_error:
            from fuse4d.calib.io import parse_error_spec, with_calibration_error
            seq, truth = with_calibration_error(seq, seed=world_seed, **parse_error_spec(calib_error))
        path = export_sequence(seq, out, format=format, progress=_tty(), overwrite=overwrite)
        if truth is not None:
            from fuse4d.calib.io import TRUE_NAME, write_calibration
            write_calibration(Path(path) / TRUE_NAME, truth)
        typer.echo(f"wrote {len(seq)} frames ({scenario}, seed {world_seed}, split {split_of(world_seed)}) "
                   f"as {format} to {path}")
    _guarded(go)


@app.command()
def info(
    path: Path = typer.Argument(..., help="a log folder or file"),
    quick: bool = typer.Option(False, help="do not read every frame"),
    plot: Optional[Path] = typer.Option(None, help="write a PNG of one frame (image, depth, semantics, LiDAR BEV)"),
    frame: int = typer.Option(0, help="which frame --plot draws"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of text"),
    log: Optional[str] = typer.Option(None, "--log", help="pick one log of a folder holding several (AV2 val/, ...)"),
    drive: Optional[str] = typer.Option(None, "--drive", help="pick one drive of a KITTI raw date folder"),
    lidar_topic: Optional[str] = typer.Option(None, help="ROS bag: the PointCloud2 topic (when it has several)"),
    imu_topic: Optional[str] = typer.Option(None, help="ROS bag: the Imu topic (when it has several)"),
    camera_topic: Optional[str] = typer.Option(None, help="ROS bag: the Image/CompressedImage topic (when it has several)"),
    gt_topic: Optional[str] = typer.Option(None, help="ROS bag: an Odometry/PoseStamped topic to use as ground truth"),
) -> None:
    """Read a log, print a summary (sensors, rates, duration, ground truth, problems).

    Exits non-zero with the DataError message when a file is bad."""
    def go():
        from fuse4d.data.inspect import format_summary, summarize
        from fuse4d.data.registry import load_sequence
        _check_plot(plot)
        seq = load_sequence(_log_path(path, log), **_reader_options(drive, lidar_topic, imu_topic, camera_topic, gt_topic))
        s = summarize(seq, quick=quick, progress=not quick and not as_json and sys.stderr.isatty())
        typer.echo(json.dumps(s.to_dict(), indent=2, default=str) if as_json else format_summary(s))
        if plot is not None:
            from fuse4d.plots import plot_frame
            if not 0 <= frame < len(seq):
                from fuse4d.errors import ConfigError
                raise ConfigError(f"--frame {frame} out of range (log has {len(seq)} frames)")
            out = plot_frame(seq[frame], seq.calibration, plot)
            if not as_json:
                typer.echo(f"plot       {out}")
    _guarded(go)


@app.command("eval")
def eval_(
    run_dir: Optional[Path] = typer.Argument(None, help="a run folder written by `fuse4d run`"),
    est: Optional[Path] = typer.Option(None, help="estimated trajectory file (TUM, KITTI or EuRoC)"),
    ref: Optional[Path] = typer.Option(None, help="reference trajectory file (TUM, KITTI or EuRoC)"),
    align: str = typer.Option("se3", help="se3, sim3 or none"),
    as_json: bool = typer.Option(False, "--json", help="print one flat JSON object"),
) -> None:
    """Print every metric a run and its ground truth allow (ATE, RPE, KITTI drift, ...)."""
    def go():
        from fuse4d.errors import ConfigError
        if align not in ("se3", "sim3", "none"):
            raise ConfigError(f"--align must be se3, sim3 or none, got {align!r}")
        if (est is None) != (ref is None):
            raise ConfigError("give both --est and --ref, or a run folder")
        from fuse4d import evaluation
        if est is not None:
            m = evaluation.evaluate_files(est, ref, align=align)
        elif run_dir is not None:
            m = evaluation.evaluate_run(run_dir, align=align)
        else:
            raise ConfigError("give a run folder, or --est and --ref")
        if as_json:
            m = {k: (None if isinstance(v, float) and v != v else v) for k, v in m.items()}  # NaN → null (strict JSON)
        typer.echo(json.dumps(m) if as_json else evaluation.format_table(m))
    _guarded(go)


@app.command()
def run(
    input: Path = typer.Argument(..., help="a log folder (any supported format) or fuse4d zarr log"),
    out: Path = typer.Option(..., "--out", "-o", help="run folder (trajectory.txt, run.zarr, plots)"),
    no_model: bool = typer.Option(False, "--no-model", help="geometric-only path (no fusion network)"),
    checkpoint: Optional[Path] = typer.Option(None, help="fusion-model checkpoint (default: the one shipped)"),
    sensors: Optional[str] = typer.Option(None, help="use only these sensors of the log, e.g. camera,imu"),
    config: Optional[str] = typer.Option(None, help="preset (default, kitti, tum, euroc, fast, accurate) or YAML file"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override one key, e.g. --set estimation.voxel_size=0.5 (repeatable)"),
    frames: Optional[int] = typer.Option(None, help="use only the first N frames"),
    on_error: Optional[str] = typer.Option(None, "--on-error", help="a bad frame: stop (default; store stays readable) or skip (recorded)"),
    log: Optional[str] = typer.Option(None, "--log", help="pick one log of a folder holding several (AV2 val/, ...)"),
    drive: Optional[str] = typer.Option(None, "--drive", help="pick one drive of a KITTI raw date folder"),
    lidar_topic: Optional[str] = typer.Option(None, help="ROS bag: the PointCloud2 topic (when it has several)"),
    imu_topic: Optional[str] = typer.Option(None, help="ROS bag: the Imu topic (when it has several)"),
    camera_topic: Optional[str] = typer.Option(None, help="ROS bag: the Image/CompressedImage topic (when it has several)"),
    gt_topic: Optional[str] = typer.Option(None, help="ROS bag: an Odometry/PoseStamped topic to use as ground truth"),
    calib: Optional[Path] = typer.Option(None, "--calib", help="calib.yaml (from `fuse4d calib`) replacing the log's calibration"),
    overwrite: bool = typer.Option(False, help="replace a finished run at OUT (the old one stays until the new one is complete)"),
    precision: Optional[str] = typer.Option(None, help="fusion network precision: fp32 (default), bf16 or int8 (dynamic quantisation)"),
) -> None:
    """Estimate metric poses (and every map that exists) for a log.

    Resumable: run the same command again after a crash or kill and it goes on
    from the last committed window. A finished run is replaced only with --overwrite."""
    def go():
        from fuse4d.config import load_config
        from fuse4d.data.registry import load_sequence
        from fuse4d.data.select import parse_sensors
        from fuse4d.pipeline import Pipeline
        overrides = {"run": {"use_model": not no_model}}
        if checkpoint is not None:
            overrides["run"]["checkpoint"] = str(checkpoint)
        if sensors is not None:
            overrides["run"]["sensors"] = ",".join(sorted(parse_sensors(sensors) or ()))
        if frames is not None:
            overrides["data"] = {"stop": frames}
        if on_error is not None:
            overrides["run"]["on_error"] = on_error
        if precision is not None:
            overrides["run"]["precision"] = precision
        cfg = load_config(config, sets=set_ or (), **overrides)
        seq = load_sequence(_log_path(input, log), calib=calib,
                            **_reader_options(drive, lidar_topic, imu_topic, camera_topic, gt_topic))
        result = Pipeline(cfg).run(seq, out, progress=_tty(), overwrite=overwrite)
        typer.echo(result.summary())
    _guarded(go)


@app.command()
def train(
    out: Path = typer.Option(..., "--out", "-o", help="run folder (model.pt, last.pt, train_log.jsonl, loss_curve.png)"),
    config: Optional[Path] = typer.Option(None, help="training YAML (sections model, train), e.g. configs/tiny_model.yaml"),
    steps: Optional[int] = typer.Option(None, help="override train.steps"),
    data: Optional[Path] = typer.Option(None, "--data", help="adapt to this unlabelled log instead (self-supervised)"),
    from_: Optional[Path] = typer.Option(None, "--from", help="with --data: checkpoint to adapt (default: the shipped one)"),
    frames: Optional[str] = typer.Option(None, help="with --data: frames a:b of the log (its last 2 are held out)"),
    drive: Optional[str] = typer.Option(None, help="with --data: KITTI raw drive when the folder holds several"),
    distill_from: Optional[Path] = typer.Option(None, "--distill-from", help="train a smaller student (--config, e.g. configs/student.yaml) on this teacher checkpoint's outputs"),
) -> None:
    """Train the fusion model on synthetic training seeds; resumes from OUT/last.pt.

    With --data, fine-tune a checkpoint on an unlabelled log, self-supervised (fusion/adapt.py)."""
    def go():
        if data is not None:
            from fuse4d.fusion.adapt import main as adapt_main
            adapt_main(data, from_, out, frames=frames, steps=steps, echo=typer.echo, **({"drive": drive} if drive else {}))
            return
        from fuse4d.fusion.train import main as train_main
        path = train_main(config, out, steps=steps, echo=typer.echo, distill_from=distill_from)
        typer.echo(f"weights: {path}")
    _guarded(go)


@app.command()
def demo(
    out: Path = typer.Option(Path("fuse4d_demo"), "--out", "-o", help="folder for the log, the run and the plots"),
    frames: int = typer.Option(200, help="frames to synthesise (10 Hz; 200 drive the loop once)"),
    seed: int = typer.Option(0, help="random seed of the synthetic world"),
) -> None:
    """Synthesise a log, read it back, run the pipeline, evaluate against ground truth, plot."""
    def go():
        from fuse4d.demo import run_demo
        run_demo(out, frames=frames, seed=seed, echo=typer.echo)
    _guarded(go)


@app.command()
def batch(
    logs: list[Path] = typer.Argument(..., help="log folders (any supported format)"),
    out: Path = typer.Option(..., "--out", "-o", help="batch folder: one run folder per log, plus summary.csv"),
    scheduler: Optional[str] = typer.Option(None, help="Dask scheduler address (default: a LocalCluster)"),
    workers: int = typer.Option(2, help="LocalCluster worker processes"),
    no_model: bool = typer.Option(False, "--no-model", help="geometric-only path (no fusion network)"),
    config: Optional[str] = typer.Option(None, help="preset (default, kitti, tum, euroc, fast, accurate) or YAML file"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override one key, e.g. --set run.window=8 (repeatable)"),
    frames: Optional[int] = typer.Option(None, help="use only the first N frames of each log"),
    on_error: Optional[str] = typer.Option(None, "--on-error", help="a bad frame: stop (that log fails) or skip"),
    overwrite: bool = typer.Option(False, help="replace finished runs"),
) -> None:
    """Run many logs as one Dask job, each into OUT/<log name>/ as `fuse4d run` lays it out.

    A failing log is reported and the others go on; a summary (frames, time, ATE, status)
    is printed and written to OUT/summary.csv. Exits 2 when any log failed."""
    def go():
        from fuse4d.batch import format_summary, run_batch
        from fuse4d.config import load_config
        overrides = {"run": {"use_model": not no_model}}
        if frames is not None:
            overrides["data"] = {"stop": frames}
        if on_error is not None:
            overrides["run"]["on_error"] = on_error
        cfg = load_config(config, sets=set_ or (), **overrides)
        rows = run_batch(logs, out, cfg, scheduler=scheduler, workers=workers, overwrite=overwrite,
                         echo=lambda line: typer.echo(line, err=True))
        typer.echo(format_summary(rows))
        typer.echo(f"summary    {out / 'summary.csv'}")
        if any(r["status"] != "ok" for r in rows):
            raise typer.Exit(2)
    _guarded(go)


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="a run folder written by `fuse4d run` (or its run.zarr)"),
    what: str = typer.Option(..., "--what", help="occupancy, elevation, mesh, points or tracks"),
    out: Path = typer.Option(..., "--out", "-o", help="file: occupancy .npz/.ply, elevation .npz/.png, "
                                                      "mesh .ply/.obj, points .ply/.pcd, tracks .csv"),
) -> None:
    """Export a map or the object tracks of a run, in the run's world frame."""
    def go():
        from fuse4d.mapping.export import export as export_run
        typer.echo(f"wrote {what} to {export_run(run_dir, what, out)}")
    _guarded(go)


@app.command()
def view(
    run_dir: Path = typer.Argument(..., help="a run folder written by `fuse4d run` (or its run.zarr)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file (default: RUN/report.html)"),
    metrics: bool = typer.Option(True, "--metrics/--no-metrics", help="evaluate against ground truth (re-reads the source log)"),
) -> None:
    """Write a self-contained HTML report of a run: trajectory and its error, maps, frames, gates, notes."""
    def go():
        from fuse4d.view import write_report
        typer.echo(f"wrote {write_report(run_dir, out, with_metrics=metrics)}")
    _guarded(go)


@app.command()
def calib(
    input: Path = typer.Argument(..., help="a log folder (any supported format); its calibration is the start"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the refined calibration here (calib.yaml) and a before/after PNG beside it"),
    config: Optional[Path] = typer.Option(None, help="YAML with a `calib:` section (CalibConfig)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object (values, stds, flags, errors vs calib_true.yaml)"),
    drive: Optional[str] = typer.Option(None, "--drive", help="pick one drive of a KITTI raw date folder"),
) -> None:
    """Refine LiDAR-camera extrinsics, IMU-LiDAR rotation and time offset from the log itself (JAX)."""
    def go():
        from fuse4d.calib.cli import run_calib
        run_calib(input, out, config, as_json, typer.echo, **({"drive": drive} if drive else {}))
    _guarded(go)


model_app = typer.Typer(help="The fusion model for deployment: ONNX export.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("export")
def model_export(
    onnx: Path = typer.Option(..., "--onnx", help="write the graph (dynamic window size) here"),
    int8: bool = typer.Option(False, "--int8", help="int8 convolutions (onnxruntime static quantisation, calibrated on synthetic training frames)"),
    checkpoint: Optional[Path] = typer.Option(None, help="fusion-model checkpoint (default: the one shipped)"),
    sensors: str = typer.Option("camera,lidar,imu", help="the graph's sensor set: camera,lidar,imu or camera,imu"),
) -> None:
    """Export the fusion model's trunk and heads as ONNX (needs the onnx extra)."""
    def go():
        from fuse4d.fusion.onnx_export import export_onnx
        from fuse4d.fusion.predict import Predictor
        typer.echo(f"wrote {export_onnx(Predictor.from_checkpoint(checkpoint).model, onnx, int8=int8, sensors=sensors)}")
    _guarded(go)


def main() -> None:
    """Entry point of the ``fuse4d`` console script."""
    app()


if __name__ == "__main__":
    main()
