"""The SQL sandbox's costs and bounds: snapshot copy, query latency, a runaway query, a writer beside it.

Prints: the store's size and how long a snapshot copy holds it (read-only);
the latency of a small query with a fresh snapshot and with a cached one
(child process start included); when a runaway query
(``count(*) FROM range(1e12)``, timeout ``--timeout``) was stopped; and how
long a writer's transaction took while a runaway query was running.

Usage: python bench/bench_sql.py [--rows 1000000] [--timeout 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stores import build_closures_store
from closewatch.sandbox import Limits, QueryRefused, refresh_snapshot, run_query
from closewatch.store import Store

RUNAWAY = "SELECT count(*) FROM range(1000000000000::BIGINT)"


def timed(action) -> float:
    clock = time.perf_counter()
    action()
    return time.perf_counter() - clock


def touch(store: Store, number: int) -> None:
    with store.transaction(lake=False) as con:
        con.execute("INSERT INTO data_changes VALUES (now(), 'bench', ?)", [number])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.duckdb", lock_timeout_s=60)
        build_closures_store(store, args.rows, 0)
        size_mb = store.path.stat().st_size / 1e6
        copy_s = timed(lambda: refresh_snapshot(store))
        print(f"store {size_mb:,.0f} MB ({args.rows:,} closures): a snapshot copy took {copy_s:.2f} s (the store is held read-only meanwhile)")
        touch(store, 0)
        fresh = timed(lambda: run_query(store, "SELECT count(*) FROM closures"))
        cached = timed(lambda: run_query(store, "SELECT count(*) FROM closures"))
        print(f"small query: {fresh:.2f} s with a new snapshot, {cached:.2f} s on the cached one (child start included)")

        stopped: list[float] = []

        def runaway() -> None:
            clock = time.perf_counter()
            try:
                run_query(store, RUNAWAY, Limits(timeout_s=args.timeout))
            except QueryRefused:
                stopped.append(time.perf_counter() - clock)

        thread = threading.Thread(target=runaway)
        thread.start()
        time.sleep(min(2.0, args.timeout / 2))
        writes = [timed(lambda n=n: touch(store, n)) for n in range(1, 6)]
        thread.join()
        print(f"runaway query stopped after {stopped[0]:.1f} s (timeout {args.timeout:g} s)" if stopped else "runaway query NOT stopped")
        print(f"a writer beside it: {len(writes)} transactions, slowest {max(writes) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
