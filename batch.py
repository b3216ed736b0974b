"""Many logs as one Dask distributed job: ``fuse4d batch LOG... --out DIR``.

Each log is one task that runs exactly what ``fuse4d run LOG --out DIR/<log name>``
runs (same :class:`~fuse4d.pipeline.Pipeline`, same run-folder layout, same
resume and overwrite rules). A ``LocalCluster`` is started when no scheduler
address is given; ``scheduler="tcp://host:8786"`` sends the same tasks to a
running cluster (its workers need fuse4d installed and the logs and ``DIR`` on
a shared file system). A log that fails is reported with its error in the
summary and the others go on.

Example:
    >>> from fuse4d.batch import run_batch
    >>> rows = run_batch(["logs/a", "logs/b"], "runs/", workers=2)   # doctest: +SKIP
    >>> print(format_summary(rows))                                   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

from fuse4d.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: summary columns (CSV header), in order
COLUMNS = ("log", "status", "frames", "time_s", "ate_rmse_m", "out", "error")


def log_name(path: str | Path) -> str:
    """The run folder name of a log: its folder name without a ``.zarr`` suffix."""
    p = Path(path).expanduser()
    name = p.name if p.name else p.resolve().name
    return name[:-5] if name.endswith(".zarr") and name != ".zarr" else name


#: the fusion model of this worker process, keyed by (checkpoint, precision): loaded once per worker, not per log
_PREDICTORS: dict[tuple, Any] = {}


def _worker_predictor(cfg):
    """This process's predictor for ``cfg`` (None on the geometric path, or when no checkpoint loads:
    the pipeline then decides, as for a single run)."""
    if not cfg.run.use_model:
        return None
    key = (cfg.run.checkpoint, getattr(cfg.run, "precision", "fp32"))
    if key not in _PREDICTORS:
        from fuse4d.pipeline import Pipeline
        try:
            _PREDICTORS[key] = Pipeline(cfg).predictor()
        except DataError:
            return None  # the run itself reports the checkpoint error for its log
    return _PREDICTORS[key]


def run_one(log_path: str, out_dir: str, config: dict[str, Any], overwrite: bool = False,
            options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one log into ``out_dir`` (a Dask task; also usable alone). Never raises.

    Args:
        log_path: the log (any format :func:`fuse4d.load_sequence` reads).
        out_dir: its run folder.
        config: a resolved config as a plain dict (``PipelineConfig.to_dict()``).
        options: reader options (``drive=...``).
    Returns:
        a summary row (see :data:`COLUMNS`): ``status`` is ``ok`` or ``failed``.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    row: dict[str, Any] = {"log": log_name(log_path), "status": "failed", "frames": 0, "time_s": math.nan,
                           "ate_rmse_m": math.nan, "out": str(out_dir), "error": ""}
    try:
        from fuse4d.config import config_from_dict
        from fuse4d.data.registry import load_sequence
        from fuse4d.pipeline import Pipeline
        cfg = config_from_dict(config, "batch config")
        seq = load_sequence(log_path, **(options or {}))
        result = Pipeline(cfg, predictor=_worker_predictor(cfg)).run(seq, out_dir, overwrite=overwrite)
        row.update(status="ok", frames=len(result.t), ate_rmse_m=float(result.metrics.get("ate_rmse_m", math.nan)))
    except (DataError, ConfigError, OSError) as e:
        row["error"] = str(e) if not isinstance(e, OSError) else f"{e.filename or log_path}: {e.strerror or e}"
    except Exception as e:  # a bug in one log's run must not take the batch down; keep its type
        log.debug("%s failed", log_path, exc_info=True)
        row["error"] = f"{log_path}: {type(e).__name__}: {e}"
    row["time_s"] = round(time.perf_counter() - t0, 3)
    return row


def _client(scheduler: str | None, workers: int):
    from dask.distributed import Client, LocalCluster
    if scheduler:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, TimeoutError) as e:
            raise DataError(None, f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return Client(cluster), cluster


def run_batch(logs: list[str | Path], out: str | Path, config=None, scheduler: str | None = None,
              workers: int = 2, overwrite: bool = False, options: dict[str, Any] | None = None,
              echo: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run every log into ``out/<log name>/`` on a Dask cluster; write ``out/summary.csv``.

    Args:
        logs: log paths; their names (:func:`log_name`) must differ.
        out: the batch folder.
        config: a :class:`~fuse4d.config.PipelineConfig` (defaults when None).
        scheduler: a Dask scheduler address, or None for a ``LocalCluster`` of ``workers`` processes.
        echo: called with one line per finished log.
    Returns:
        summary rows in the order of ``logs``.
    Raises:
        ConfigError: no logs, duplicate log names, ``workers < 1``.
        DataError: the scheduler cannot be reached, or ``out`` cannot hold the summary.
    """
    from fuse4d.config import load_config
    if not logs:
        raise ConfigError("batch: give at least one log")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    names = [log_name(p) for p in logs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"batch: several logs are named {dup[0]!r}; each log needs its own run folder name")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise DataError(out, "is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    cfg = (config or load_config()).to_dict()

    client, cluster = _client(scheduler, workers)
    rows: dict[str, dict[str, Any]] = {}
    try:
        from dask.distributed import as_completed
        futures = {client.submit(run_one, str(Path(p).expanduser()), str(out / n), cfg, overwrite, options,
                                 key=f"fuse4d-run-{n}-{time.time_ns()}", pure=False): n
                   for p, n in zip(logs, names)}
        for fut in as_completed(futures):
            n = futures[fut]
            try:
                row = fut.result()
            except Exception as e:  # the worker died (killed, out of memory)
                row = {"log": n, "status": "failed", "frames": 0, "time_s": math.nan, "ate_rmse_m": math.nan,
                       "out": str(out / n), "error": f"worker lost: {type(e).__name__}: {e}"}
            rows[n] = row
            if echo:
                echo(f"{row['status']:6s} {n}" + (f"  {row['error']}" if row["error"] else
                                                  f"  {row['frames']} frames in {row['time_s']:.1f} s"))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    ordered = [rows[n] for n in names]
    write_summary(ordered, out / "summary.csv")
    return ordered


def write_summary(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """The summary rows as CSV (:data:`COLUMNS`; NaN written empty), atomically."""
    from fuse4d.fileio import atomic_write_text
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(r.get(k), float) and math.isnan(r[k]) else r.get(k, "")) for k in COLUMNS})
    return atomic_write_text(path, buf.getvalue())


def format_summary(rows: list[dict[str, Any]]) -> str:
    """The summary as an aligned text table (log, status, frames, time, ATE)."""
    head = ("log", "status", "frames", "time_s", "ate_rmse_m")
    body = [(r["log"], r["status"], str(r["frames"]), f"{r['time_s']:.1f}",
             "-" if math.isnan(r["ate_rmse_m"]) else f"{r['ate_rmse_m']:.4f}") for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    ok = sum(r["status"] == "ok" for r in rows)
    lines.append(f"{ok} of {len(rows)} logs ok")
    return "\n".join(lines)
