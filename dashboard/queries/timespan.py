"""The time axis every page shares: what span is loaded, a range as SQL, and timeline buckets.

Buckets are counted in SQL (integer arithmetic on epoch microseconds) and
only the per-bucket counts reach the page, never the rows behind a chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import polars as pl

from closewatch.dashboard.queries.shared import reader, reading
from closewatch.store import Store

#: Candidate timeline buckets, in seconds; the smallest that gives at most MAX_BARS bars wins.
BUCKETS_S = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
MAX_BARS = 150


def utc(moment: datetime | None) -> datetime | None:
    """Naive times (from the widgets) are UTC; aware ones are converted."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def choose_bucket(start: datetime | None, end: datetime | None) -> int:
    """The timeline bucket in seconds: the smallest that keeps the chart to MAX_BARS bars."""
    if start is None or end is None:
        return 3600
    seconds = max(1.0, (end - start).total_seconds())
    return next((b for b in BUCKETS_S if seconds / b <= MAX_BARS), BUCKETS_S[-1])


def bucket_sql(bucket_s: int) -> str:
    """Integer arithmetic on epoch microseconds: date_trunc on TIMESTAMPTZ is ~10x slower (time zone rules)."""
    return f"(epoch_us(ts) // {bucket_s * 1_000_000})"


def bucket_to_time(column: str, bucket_s: int) -> pl.Expr:
    """A bucket number from ``bucket_sql`` back to the UTC time its bar starts at."""
    return (pl.col(column) * (bucket_s * 1_000_000)).cast(pl.Datetime("us", "UTC")).alias(column)


def range_sql(start: datetime | None, end: datetime | None, params: list) -> str:
    """A WHERE fragment for [start, end); missing bounds are left out so zone maps still prune."""
    parts = ["TRUE"]
    if start is not None:
        parts.append("ts >= ?")
        params.append(utc(start))
    if end is not None:
        parts.append("ts < ?")
        params.append(utc(end))
    return " AND ".join(parts)


def bucketed_counts(con: duckdb.DuckDBPyConnection, where: str, params: list,
                    columns: str) -> tuple[datetime | None, datetime | None, int, pl.DataFrame]:
    """The range's first and last close, the bucket size fitted to that span, and closures per bucket and ``columns``."""
    first, last = con.execute(f"SELECT min(ts), max(ts) FROM closures WHERE {where}", params).fetchone()
    bucket_s = choose_bucket(first, last)
    frame = con.execute(f"""
        SELECT {bucket_sql(bucket_s)} AS bucket, {columns}, count(*) AS closures
        FROM closures WHERE {where} GROUP BY ALL ORDER BY bucket
    """, params).pl()
    return first, last, bucket_s, frame


@dataclass(frozen=True)
class Span:
    """What is loaded: the number of closures and the time they cover."""

    closures: int
    first: datetime | None
    last: datetime | None
    batches: int
    last_batch: datetime | None


@reader(warm=lambda: ())
def span(store: Store) -> Span:
    """The whole span of the loaded data: the default time range of every page."""
    with reading(store) as con:
        closures, first, last = con.execute("SELECT count(*), min(ts), max(ts) FROM closures").fetchone()
        batches, last_batch = con.execute("SELECT count(*), max(finished_at) FROM ingest_batches").fetchone()
    return Span(closures, first, last, batches, last_batch)
