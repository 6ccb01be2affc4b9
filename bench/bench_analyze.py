"""Time `closewatch analyze` over many generated closures; print wall time, phases and peak memory.

The store is built once (generated closures, classified, appended in one
transaction; not timed) and can be kept with --db for later runs. Each run
is the real command in a subprocess, over the whole store, so the figures
include start-up, reading through Arrow, detection, writing the findings and
printing them. Peak memory is the child's maximum resident set size.

Then, on a copy of the store, ``--pieces`` rounds of the scheduler's analyze
after a small new file (2,000 closures newer than everything, as
bench_scheduler drops them): the incremental run (analysis.incremental) and
a full run over the same window in turn, each after its own new file, with
the CPU seconds (user + system, every thread) of each.

Usage: python bench/bench_analyze.py [--rows 10000000] [--seed 0] [--db PATH] [--runs 3] [--pieces 3] [--piece-offset 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closewatch import jobs
from closewatch.analysis.detection import detect
from closewatch.ingest.sources import expand_inputs
from closewatch.jobs.analysis import analyze, analyze_recent, recent_window_start
from closewatch.settings import Settings
from closewatch.store import Store
from bench.bench_scheduler import write_piece
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


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def incremental_against_full(path: Path, rounds: int, offset_s: float) -> None:
    """The scheduler's analyze after each new small file, incremental and full in turn, on a copy of the store.

    The files start ``offset_s`` after the newest stored closure, a minute apart.
    """
    with tempfile.TemporaryDirectory(prefix="closewatch-bench-") as tmp:
        copy = Path(tmp) / "pieces.duckdb"
        shutil.copy(path, copy)
        store, settings = Store(copy), Settings()
        origin = store.query("SELECT max(ts) AS t FROM closures").item() + timedelta(seconds=offset_s)

        def add_piece(number: int) -> None:
            start = origin + number * timedelta(seconds=61)
            jobs.ingest(store, expand_inputs([str(write_piece(Path(tmp), number, 2000, start))]))

        add_piece(0)
        analyze_recent(store, settings)  # leaves the mark the incremental runs start from
        spent: dict[str, list[float]] = {"incremental": [], "full": []}
        for number in range(2 * rounds):
            add_piece(number + 1)
            kind = "incremental" if number % 2 == 0 else "full"
            clock = cpu_seconds()
            if kind == "incremental":
                run = analyze_recent(store, settings)
            else:
                newest = store.query("SELECT max(ts) AS t FROM closures").item()
                run = analyze(store, settings, since=recent_window_start(newest, settings.scheduler.analyze_window_s))
            spent[kind].append(cpu_seconds() - clock)
            assert run is not None
            print(f"piece {number + 1}: {kind} ({run.mode}) {spent[kind][-1]:.2f} CPU-s, {run.closures:,} closures read, "
                  f"window from {run.since:%Y-%m-%d %H:%M}, load {os.getloadavg()[0]:.1f}", flush=True)
        incremental, full = statistics.median(spent["incremental"]), statistics.median(spent["full"])
        print(f"analyze after a 2,000-closure file: incremental {incremental:.2f} CPU-s, full {full:.2f} CPU-s (medians)")
        result("analyze/incremental-cpu", incremental, "cpu-s")
        result("analyze/full-window-cpu", full, "cpu-s")


def whole_store_runs(path: Path, closures: int, runs: int) -> None:
    """`closewatch analyze` over the whole store ``runs`` times, then once in-process for the phases."""
    times, peaks = [], []
    for number in range(1, runs + 1):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", type=Path, help="Keep the store here (built if missing, reused if present).")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pieces", type=int, default=3, help="rounds of incremental and full analyze after a new file (0: none)")
    parser.add_argument("--piece-offset", type=float, default=1.0,
                        help="seconds from the newest stored closure to the first new file (negative: inside the stored day)")
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

    if args.runs:
        whole_store_runs(path, closures, args.runs)
    if args.pieces:
        incremental_against_full(path, args.pieces, args.piece_offset)
    if folder is not None:
        folder.cleanup()


if __name__ == "__main__":
    main()
