"""Time what each dashboard page reads, over many generated closures; print milliseconds per page.

The store is built once (generated closures, classified, appended in one
transaction, then the detectors run; not timed) and can be kept with --db.
Each page is timed as the app runs it on a cold cache: the data token
(`Store.latest_batch()`), the sidebar's span and the page's own readers from
dashboard/queries/, each opening its own short-lived read-only connection.
"warm" is a rerun with the results cached (what a widget change or another
user costs): the token query and cache lookups only. Target: cold <= 500 ms
per page. The machine is shared, so figures are noisy: best and median of
--runs are printed.

Usage: python bench/bench_dashboard.py [--rows 10000000] [--seed 0] [--db PATH] [--runs 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closewatch.analysis.catalog import catalog_table, load_catalog
from closewatch.analysis.detection import detect
from closewatch.sandbox import Limits
from closewatch.dashboard.queries import alerts, explorer, findings, overview, patterns, reference, shared, sql, timespan, upload
from bench.report import result
from bench.stores import build_closures_store

TARGET_MS = 500


def build_store(path: Path, rows: int, seed: int) -> None:
    """The generated closures (bench/stores.py), then the detectors, so the Patterns page has findings."""
    store = shared.DashboardStore(path)
    build_closures_store(store, rows, seed)
    clock = time.perf_counter()
    run = detect(store)
    print(f"detectors: {run.findings.height:,} findings in {time.perf_counter() - clock:.1f} s", flush=True)


def pages(store: shared.DashboardStore) -> dict[str, Callable[[], object]]:
    """Each page's reads, as the page makes them on a cold cache (plus the token and sidebar every rerun pays)."""
    span = timespan.span(store)
    day = (span.last - timedelta(days=1), span.last)
    some_event, some_ts = store.query("SELECT event_id, ts FROM closures WHERE category = 'input_duration_violation' LIMIT 1").row(0)
    some_client = store.query("SELECT client_id FROM closures GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").item()
    first_detection = store.query("SELECT detection_id FROM detections ORDER BY count DESC LIMIT 1")
    detection_id = first_detection.item() if first_detection.height else ""

    def common() -> None:
        shared.data_token(store)
        timespan.span(store)

    def page(*reads: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            common()
            for read in reads:
                read()
        return run

    return {
        "Overview (whole span)": page(lambda: overview.overview(store, None, None)),
        "Overview (last day)": page(lambda: overview.overview(store, *day)),
        "Upload": page(lambda: upload.recent_batches(store)),
        "Explorer (no filter)": page(lambda: explorer.explorer_choices(store), lambda: explorer.explorer_rows(store, explorer.Filters())),
        "Explorer (client + text + closure detail)": page(
            lambda: explorer.explorer_choices(store),
            lambda: explorer.explorer_rows(store, explorer.Filters(clients=(some_client,), text="violation")),
            lambda: explorer.closure_detail(store, some_event, some_ts),  # a clicked row carries its time
        ),
        "Patterns (list + one detection)": page(
            lambda: shared.data_token(store, "detections"), lambda: findings.detections(store, timedelta(days=7)),
            lambda: patterns.finding(store, detection_id) if detection_id else None,
        ),
        "Alerts (live part)": page(lambda: alerts.alert_data(store)),
        "Alerts (backtest backdrop)": page(lambda: alerts.timeline(store, None, None)),
        "SQL (schema + closures per category)": page(
            lambda: sql.schema(store),
            lambda: sql.user_query(store, "SELECT category, severity, count(*) FROM closures GROUP BY ALL", Limits()),
        ),
        "Reference": page(lambda: catalog_table(load_catalog()), lambda: reference.category_counts(store)),
    }


def time_ms(run: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        clock = time.perf_counter()
        run()
        times.append((time.perf_counter() - clock) * 1000)
    return times


def warm_ms(store: shared.DashboardStore, runs: int) -> list[float]:
    """A cached rerun of the Overview: the token query plus cache hits (no Streamlit server needed)."""
    shared.get_store = lambda: store  # the cached path resolves the store itself; point it at the bench store
    shared.cached(timespan.span)
    shared.cached(overview.overview, None, None)
    return time_ms(lambda: (shared.cached(timespan.span), shared.cached(overview.overview, None, None)), runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", type=Path, help="Keep the store here (built if missing, reused if present).")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("streamlit").setLevel(logging.ERROR)

    folder = None
    path = args.db
    if path is None:
        folder = tempfile.TemporaryDirectory(prefix="closewatch-bench-")
        path = Path(folder.name) / "bench.duckdb"
    if not path.exists():
        build_store(path, args.rows, args.seed)
    store = shared.DashboardStore(path)
    closures = store.query("SELECT count(*) FROM closures").item()
    detections = store.query("SELECT count(*) FROM detections").item()
    print(f"\n{closures:,} closures, {detections:,} detections; cold = no cache, as a page's first view "
          f"(best / median of {args.runs} runs, ms):\n")
    width = 44
    print(f"{'page':<{width}} {'best':>8} {'median':>8}  target {TARGET_MS} ms")
    worst = 0.0
    for name, run in pages(store).items():
        run()  # warm the OS page cache and DuckDB's buffer, as a running dashboard has
        times = time_ms(run, args.runs)
        worst = max(worst, statistics.median(times))
        flag = "ok" if statistics.median(times) <= TARGET_MS else "SLOW"
        print(f"{name:<{width}} {min(times):>8.0f} {statistics.median(times):>8.0f}  {flag}", flush=True)
    warm = warm_ms(store, args.runs)
    print(f"{'Overview, cached rerun (token + cache hits)':<{width}} {min(warm):>8.0f} {statistics.median(warm):>8.0f}")
    print(f"\nslowest page median: {worst:.0f} ms (2 shared cores: expect noise)")
    result("dashboard-queries/slowest-page/cold", worst, "ms", TARGET_MS)
    result("dashboard-queries/overview/cached-rerun", statistics.median(warm), "ms")
    if folder is not None:
        folder.cleanup()


if __name__ == "__main__":
    main()
