"""A store of many generated closures, as ingest would leave it, for the benchmarks that read one."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closewatch.analysis.catalog import classify, load_catalog
from closewatch.store import Store
from closewatch.generator.traffic import generate_closures_frame


def build_closures_store(store: Store, rows: int, seed: int) -> None:
    """Generate, classify and append ``rows`` closures (the pipeline's result, without parsing) as one batch."""
    clock = time.perf_counter()
    closures = classify(generate_closures_frame(rows, seed), load_catalog()).with_columns(
        event_id=pl.col("session_id"),  # unique, and as long as a real event id
        source_format=pl.lit("jsonl"),
        source_file=pl.lit("bench/closures.jsonl"),
        source_line=pl.int_range(pl.len(), dtype=pl.Int64) + 1,
        batch_id=pl.lit("bench"),
    )
    with store.transaction() as con:
        con.register("staged", closures.to_arrow())
        con.execute("INSERT INTO closures BY NAME SELECT *, now() AS ingested_at FROM staged")
        con.unregister("staged")
        con.execute("""INSERT INTO ingest_batches (batch_id, source_file, format, started_at, finished_at, accepted, status)
                       VALUES ('bench', 'bench/closures.jsonl', 'jsonl', now(), now(), ?, 'loaded')""", [rows])
    print(f"built {store.path} with {rows:,} closures in {time.perf_counter() - clock:.1f} s", flush=True)


#: One generated week is copied this many closures at a time; the rest of a large store is made in SQL.
WEEK_ROWS = 1_000_000


def ensure_store(path: Path, rows: int, seed: int = 0, detections: bool = True) -> Path:
    """A store of ``rows`` closures at ``path``: reused when one is there, else built beside it and renamed in.

    Building in a temporary file and renaming it means a killed build leaves
    nothing half-made at ``path``, and two benches building at once each
    finish with a whole store (the second rename wins, the same content).
    """
    path = Path(path)
    if path.exists():
        with Store(path).connect(read_only=True) as con:
            held = con.execute("SELECT count(*) FROM closures").fetchone()[0]
        print(f"reusing {path} ({held:,} closures)", flush=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    building = path.with_name(f".{path.name}.{os.getpid()}.building")
    building.unlink(missing_ok=True)
    try:
        build_weeks_store(Store(building, lock_timeout_s=60), rows, seed)
        if detections:
            from closewatch.analysis.detection import detect

            clock = time.perf_counter()
            run = detect(Store(building, lock_timeout_s=60))
            print(f"detectors: {run.findings.height:,} findings in {time.perf_counter() - clock:.1f} s", flush=True)
        os.replace(building, path)
    finally:
        building.unlink(missing_ok=True)
        Path(str(building) + ".wal").unlink(missing_ok=True)
    return path


def build_weeks_store(store: Store, rows: int, seed: int) -> None:
    """The generator's week (incidents and all, classified) once, then copied a week earlier at a time in SQL.

    Generating 10,000,000 closures in Python costs minutes and gigabytes; one
    week of at most WEEK_ROWS in polars, then ``INSERT ... SELECT`` with the
    times shifted by whole weeks, costs seconds: the newest week is the
    generator's, the older ones repeat its shape, like a service with steady
    traffic. Each week is its own batch, appended oldest first as ingest
    would, so the file's row groups are in time order.
    """
    clock = time.perf_counter()
    week = min(rows, WEEK_ROWS)
    closures = classify(generate_closures_frame(week, seed), load_catalog())
    weeks = -(-rows // week)
    with store.transaction() as con:
        con.register("generated", closures.to_arrow())
        con.execute("CREATE TEMP TABLE week AS SELECT *, row_number() OVER (ORDER BY ts) AS line FROM generated")
        con.unregister("generated")
        for back in range(weeks - 1, -1, -1):
            take = min(week, rows - (weeks - 1 - back) * week)
            batch = f"bench-week-{back}"
            con.execute(f"""
                INSERT INTO closures BY NAME
                SELECT session_id || '-w{back}' AS event_id, ts - INTERVAL {back * 7} DAY AS ts,
                       CASE WHEN {back} = 0 THEN session_id ELSE session_id || '-w{back}' END AS session_id,
                       close_code, close_reason, client_id, 'jsonl' AS source_format,
                       'bench/week-{back}.jsonl' AS source_file, line AS source_line, '{batch}' AS batch_id,
                       audio_duration_s, session_duration_s, category, severity, retry_safe, action,
                       chunk_ms, audio_rate_ratio, code_inferred, era, now() AS ingested_at
                FROM week WHERE line <= {take} ORDER BY ts
            """)
            con.execute("""INSERT INTO ingest_batches (batch_id, source_file, format, started_at, finished_at, lines_read, accepted, status)
                           VALUES (?, ?, 'jsonl', now(), now(), ?, ?, 'loaded')""", [batch, f"bench/week-{back}.jsonl", take, take])
        con.execute("DROP TABLE week")
    print(f"built {store.path.name} with {rows:,} closures ({weeks} weeks) in {time.perf_counter() - clock:.1f} s", flush=True)
