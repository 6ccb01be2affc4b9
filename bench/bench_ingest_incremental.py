"""Incremental ingest: a small new file into a large store, against the same file into an empty store.

Builds (once, kept at --db) a store of --stored closures, then times, each as
a fresh ``closewatch ingest`` subprocess (start-up included), the median of
--runs:
  * a --lines JSON-lines file into a fresh, empty store, and
  * a file of the same size into the large store; every run's file has other
    sessions (so each adds all its lines), timestamped within the store's
    last hour, so the duplicate check has stored rows of the same period to compare.
Prints both times and their ratio (issue 16's target: at most 1.1, and under 1 s in all).

    python bench/bench_ingest_incremental.py --db ~/.cache/closewatch-bench/store-10M-ingest.duckdb
    python bench/bench_ingest_incremental.py --stored 2000000 --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_ingest import REASONS, WEIGHTS
from bench.report import result

RATIO_TARGET = 1.1
SECONDS_TARGET = 1.0


def write_file(path: Path, lines: int, last, seed: int) -> None:
    """``lines`` canonical closures within the hour before ``last``, with sessions of their own (by seed)."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(REASONS), size=lines, p=WEIGHTS)
    offsets = np.sort(rng.integers(0, 3_600_000_000, lines))
    start = last - timedelta(hours=1)
    pl.DataFrame({
        "ts": [(start + timedelta(microseconds=int(x))).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for x in offsets],
        "session_id": [f"bench-{seed}-{i:08d}" for i in range(lines)],
        "close_code": [REASONS[i][0] for i in pick],
        "close_reason": [REASONS[i][1] for i in pick],
        "client_id": [f"client-{x}" for x in rng.integers(0, 200, lines)],
    }).write_ndjson(path)


def ingest_seconds(db: Path, data: Path) -> float:
    clock = time.perf_counter()
    subprocess.run([sys.executable, "-m", "closewatch.cli", "--db", str(db), "ingest", str(data)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, help="the large store, built there if missing (default: a temporary one)")
    parser.add_argument("--stored", type=int, default=10_000_000, help="closures in the large store when it is built")
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        big = args.db or folder / "big.duckdb"
        if not big.exists():
            from bench.stores import build_closures_store
            from closewatch.store import Store

            big.parent.mkdir(parents=True, exist_ok=True)
            build_closures_store(Store(big, lock_timeout_s=120), args.stored, seed=11)
        import duckdb

        with duckdb.connect(str(big), read_only=True) as con:
            stored, last = con.execute("SELECT count(*), max(ts) FROM closures").fetchone()  # type: ignore[misc]
        print(f"large store: {stored:,} closures, the newest at {last}")
        empty, into_big = [], []
        for run in range(args.runs + 1):  # the first run of each only warms caches
            data = folder / f"new-{run}.jsonl"
            write_file(data, args.lines, last, seed=1000 + run)
            fresh = folder / f"empty-{run}.duckdb"
            seconds_empty = ingest_seconds(fresh, data)
            seconds_big = ingest_seconds(big, data)
            fresh.unlink()
            if run:
                empty.append(seconds_empty)
                into_big.append(seconds_big)
        empty_s, big_s = statistics.median(empty), statistics.median(into_big)
        result(f"ingest-incremental/{args.lines // 1000}k-into-empty", empty_s, "s", SECONDS_TARGET)
        result(f"ingest-incremental/{args.lines // 1000}k-into-{stored // 1_000_000}M", big_s, "s", SECONDS_TARGET)
        result("ingest-incremental/ratio", big_s / empty_s, "x", RATIO_TARGET)
    print("each time is a whole `closewatch ingest` process (start-up included); machine load makes these figures noisy")


if __name__ == "__main__":
    main()
