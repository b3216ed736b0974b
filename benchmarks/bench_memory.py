"""Peak memory of ``fuse4d run`` on a short and a long synthetic log: does it stream?

Goal (issue 10): peak RSS of a 1,000-frame log within 1.5x that of a 100-frame log.
The long log is synthesised once (``fuse4d synth --frames N``, slow: keep it with
``--work``) and the short run reads the first frames of the same log
(``fuse4d run --frames``), so both runs see the same world. Each run is a fresh
subprocess; its peak RSS is the child's ``ru_maxrss`` from ``os.wait4``.

    python benchmarks/bench_memory.py                          # 100 vs 1000 frames, default run
    python benchmarks/bench_memory.py --frames-long 300 --no-model --config fast   # scaled down

Prints peak RSS (MiB), wall time and frames/s per run, and the ratio long/short.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

GOAL_RATIO = 1.5


def _fuse4d() -> list[str]:
    return [sys.executable, "-m", "fuse4d"]


def _rss_mib(pid: int) -> float:
    """Current resident set size (MiB) of process ``pid``, or NaN once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmRSS")) / 1024.0
    except (OSError, StopIteration):
        return float("nan")


def run_measured(cmd: list[str], env: dict | None = None, every: float = 60.0) -> tuple[int, float, float]:
    """Run ``cmd``; return (exit code, peak RSS in MiB of that process, wall seconds).

    While it runs, prints its current and highest sampled RSS every ``every`` seconds, so a
    long run that is cut short still shows whether its memory levels off.
    """
    import tempfile
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        high, last = 0.0, t0
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            rss = _rss_mib(p.pid)
            high = max(high, rss) if rss == rss else high
            if time.perf_counter() - last >= every:
                last = time.perf_counter()
                print(f"    {last - t0:7.0f} s  RSS {rss:7.1f} MiB  highest so far {high:7.1f} MiB", flush=True)
            time.sleep(0.5)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            out.seek(0)
            sys.stderr.write(out.read().decode(errors="replace")[-3000:])
    return p.returncode, usage.ru_maxrss / 1024.0, wall  # ru_maxrss is KiB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames-short", type=int, default=100)
    ap.add_argument("--frames-long", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="synthetic world seed (0: a test seed)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/fuse4d_bench_memory"),
                    help="folder for the log (kept and reused) and the runs")
    ap.add_argument("--no-model", action="store_true", help="geometric path (no fusion network)")
    ap.add_argument("--config", default=None, help="preset or YAML passed to fuse4d run (e.g. fast)")
    args = ap.parse_args(argv)
    if not 2 <= args.frames_short < args.frames_long:
        ap.error("need 2 <= --frames-short < --frames-long")

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    log = args.work / f"log_seed{args.seed}_{args.frames_long}"
    if not (log / "log.zarr").exists():
        print(f"synthesising {args.frames_long} frames into {log} (once) ...", flush=True)
        rc, rss, wall = run_measured([*_fuse4d(), "synth", "--seed", str(args.seed), "--frames",
                                      str(args.frames_long), "--out", str(log), "--overwrite"], env)
        if rc != 0:
            print("synth failed", file=sys.stderr)
            return 1
        print(f"  synth: {wall:.0f} s, peak RSS {rss:.0f} MiB", flush=True)

    rows = []
    for n in (args.frames_short, args.frames_long):
        cmd = [*_fuse4d(), "run", str(log), "--out", str(args.work / f"run_{n}"), "--frames", str(n), "--overwrite"]
        if args.no_model:
            cmd.append("--no-model")
        if args.config:
            cmd += ["--config", args.config]
        rc, rss, wall = run_measured(cmd, env)
        if rc != 0:
            print(f"fuse4d run on {n} frames failed (exit {rc})", file=sys.stderr)
            return 1
        rows.append((n, rss, wall))
        print(f"{n:6d} frames  peak RSS {rss:8.1f} MiB  {wall:8.1f} s  {n / wall:6.2f} frames/s", flush=True)
    (n0, r0, _), (n1, r1, _) = rows
    ratio = r1 / r0
    verdict = "ok" if ratio <= GOAL_RATIO else "OVER GOAL"
    print(f"peak RSS ratio {n1}/{n0} frames: {ratio:.2f} (goal <= {GOAL_RATIO}) {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
