"""Ingest speed and memory against DuckDB's own JSON reader, in the same run.

Generates N canonical JSON-lines closures (default 2,000,000), then times, each
in a fresh subprocess with its own fresh database file:
  1. `closewatch ingest FILE` (parse, redact, classify, dedupe, load), and
  2. DuckDB's `CREATE TABLE t AS SELECT * FROM read_json(FILE)` (the baseline).
Prints events/s, the ratio ours/raw and each process's peak RSS (from wait4).

    python bench/bench_ingest.py                 # 2,000,000 lines
    python bench/bench_ingest.py --lines 10000000 # ~2 GB, for the memory bound
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import result

REASONS = [
    (1000, ""),
    (1006, "connection lost"),
    (3008, "Session Expired: Maximum session duration exceeded"),
    (3007, "Input duration violation: 1200 ms. Expected between 50 and 1000 ms"),
    (3009, "Unauthorized Connection: Too many concurrent sessions"),
    (3005, "Session Cancelled: An error occurred"),
    (4008, "session expired"),
    (1008, "Unauthorized Connection: Missing Authorization header"),
]
WEIGHTS = [0.80, 0.08, 0.04, 0.03, 0.02, 0.01, 0.01, 0.01]


def write_closures(path: Path, lines: int, seed: int = 7) -> None:
    """Canonical closures as JSON lines, written in chunks so memory stays small."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-11-01T00:00:00", "ms")
    with open(path, "wb") as handle:
        for offset in range(0, lines, 1_000_000):
            n = min(1_000_000, lines - offset)
            pick = rng.choice(len(REASONS), size=n, p=WEIGHTS)
            frame = pl.DataFrame({
                "ts": (start + np.sort(rng.integers(0, 30 * 86_400_000, n)).astype("timedelta64[ms]")).astype(str),
                "session_id": [_session_id(high, low) for high, low in rng.integers(0, 2**63, (n, 2))],
                "close_code": [REASONS[i][0] for i in pick],
                "close_reason": [REASONS[i][1] for i in pick],
                "client_id": [f"client-{x}" for x in rng.integers(0, 200, n)],
            }).with_columns(pl.col("ts") + "Z")
            frame.write_ndjson(handle)


def _session_id(high: int, low: int) -> str:
    """A session id as the API writes it, a dashed UUID: 32 bare hex characters would be an API key's
    shape, which redaction masks, so every stored session id would be the same cheap text."""
    text = f"{high:016x}{low:016x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def run_measured(argv: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """Run a command; return (seconds, peak RSS in MB, CPU seconds) of that process alone.

    CPU seconds (user + system, all threads) are what to compare on a shared machine,
    where other work stretches the wall time of both processes unevenly.
    """
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{argv[:3]} failed with status {status}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


RAW_SCRIPT = "import duckdb, sys; duckdb.connect(sys.argv[1]).execute(\"CREATE TABLE t AS SELECT * FROM read_json(?)\", [sys.argv[2]])"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--keep", type=Path, help="Folder to keep the generated file in (default: a temporary one).")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="closewatch-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"closures-{args.lines}.jsonl"
    if not data.exists():
        clock = time.perf_counter()
        write_closures(data, args.lines)
        print(f"generated {args.lines:,} lines ({data.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - clock:.1f} s")
    ours_db, raw_db = folder / "ours.duckdb", folder / "raw.duckdb"
    for db in (ours_db, raw_db):
        db.unlink(missing_ok=True)
    raw_s, raw_mb, raw_cpu = run_measured([sys.executable, "-c", RAW_SCRIPT, str(raw_db), str(data)])
    ours_s, ours_mb, ours_cpu = run_measured([sys.executable, "-m", "closewatch.cli", "--db", str(ours_db), "ingest", str(data)])
    print(f"duckdb read_json : {raw_s:7.2f} s  {args.lines / raw_s:12,.0f} events/s  peak RSS {raw_mb:7.0f} MB  CPU {raw_cpu:6.1f} s")
    print(f"closewatch ingest: {ours_s:7.2f} s  {args.lines / ours_s:12,.0f} events/s  peak RSS {ours_mb:7.0f} MB  CPU {ours_cpu:6.1f} s")
    size = f"{args.lines / 1e6:g}M-jsonl"
    result(f"ingest/{size}/duckdb-read-json", raw_s, "s")
    result(f"ingest/{size}/closewatch", ours_s, "s")
    result(f"ingest/{size}/events-per-s", args.lines / ours_s, "lines/s")
    result(f"ingest/{size}/ratio", ours_s / raw_s, "x", 1.5)
    result(f"ingest/{size}/cpu-ratio", ours_cpu / raw_cpu, "x")
    result(f"ingest/{size}/peak-rss", ours_mb, "MB", 1536 if data.stat().st_size >= 2e9 else None)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; other load on the machine makes these figures noisy")


if __name__ == "__main__":
    main()
