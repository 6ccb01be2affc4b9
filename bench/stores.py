"""A store of many generated closures, as ingest would leave it, for the benchmarks that read one."""

from __future__ import annotations

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
