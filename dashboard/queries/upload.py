"""The Upload page's reads: the files loaded last."""

from __future__ import annotations

import polars as pl

from closewatch.dashboard.queries.shared import reader, reading
from closewatch.store import Store


@reader(warm=lambda: ())
def recent_batches(store: Store, limit: int = 20) -> pl.DataFrame:
    """The last loaded files, newest first, for the Upload page."""
    with reading(store) as con:
        return con.execute(f"""
            SELECT finished_at, source_file, format, accepted, duplicates, rejected, skipped, status, message
            FROM ingest_batches ORDER BY finished_at DESC LIMIT {int(limit)}
        """).pl()
