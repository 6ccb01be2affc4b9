"""Time `closewatch analyze` over many generated closures; print wall time, phases and peak memory.

The store is built once (generated closures, classified, appended in one
transaction; not timed) and can be kept with --db for later runs. Each run
is the real command in a subprocess, over the whole store, so the figures
include start-up, reading through Arrow, detection, writing the findings and
printing them. Peak memory is the child's maximum resident set size.

Usage: python bench/bench_analyze.py [--rows 10000000] [--seed 0] [--db PATH] [--runs 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closewatch.analysis.detection import detect
from closewatch.store import Store
from bench.report import result
from bench.stores import build_closures_store


def build_store(path: Path, rows: int, seed: int) -> None:
    build_closures_store(Store(path), rows, seed)


def run_command(path: Path) -> tuple[float, float, str]:
    """One `closewatch analyze` run in a subprocess: wall seconds, its own peak RSS in MB, its summary line."""
    clock = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "closewatch.cli", "--db", str(path), "analyze", "--format", "csv"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    summary = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own usage, not the parent's image
    elapsed = time.perf_counter() - clock
    if status != 0:
        raise SystemExit(f"closewatch analyze failed: {summary.strip()}")
    return elapsed, usage.ru_maxrss / 1024, " ".join(summary.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", type=Path, help="Keep the store here (built if missing, reused if present).")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    folder = None
    path = args.db
    if path is None:
        folder = tempfile.TemporaryDirectory(prefix="closewatch-bench-")
        path = Path(folder.name) / "bench.duckdb"
    if not path.exists():
        # in a process of its own, so the 10M-row frames never sit in this one's memory
        builder = multiprocessing.get_context("spawn").Process(target=build_store, args=(path, args.rows, args.seed))
        builder.start()
        builder.join()
    closures = Store(path).query("SELECT count(*) AS n FROM closures").item()

    times, peaks = [], []
    for number in range(1, args.runs + 1):
        elapsed, peak, summary = run_command(path)
        times.append(elapsed)
        peaks.append(peak)
        print(f"run {number}: {elapsed:.2f} s, peak RSS {peak:,.0f} MB | {summary}", flush=True)
    peak_mb = max(peaks)

    run = detect(Store(path))  # in-process, for the phases
    print(
        f"\n{closures:,} closures, {run.findings.height:,} findings: closewatch analyze best {min(times):.2f} s, "
        f"median {sorted(times)[len(times) // 2]:.2f} s of {len(times)} runs; peak RSS {peak_mb:,.0f} MB\n"
        f"phases (in-process): read {run.read_s:.2f} s, detect {run.detect_s:.2f} s, write {run.write_s:.2f} s\n"
        f"findings by pattern: {dict(run.findings.group_by('pattern').len().sort('pattern').iter_rows())}"
    )
    result("analyze/wall", sorted(times)[len(times) // 2], "s", 10.0)
    result("analyze/peak-rss", peak_mb, "MB")
    if folder is not None:
        folder.cleanup()


if __name__ == "__main__":
    main()
