"""The Overview page's reads: KPIs, the timeline, categories, top reasons and top clients for one time range.

An *error* here is a closure of severity warning or above: going away (1001)
and expired sessions are ends an on-call engineer need not act on, even
though they are not ``normal``. Everything is counted in SQL; the page gets
per-bucket and per-group counts, never the rows behind them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from closewatch.dashboard.queries.shared import reader, reading
from closewatch.dashboard.queries.timespan import bucket_to_time, bucketed_counts, range_sql
from closewatch.store import Store
from closewatch.summary_views import IS_ERROR
from closewatch.vocabulary import ERROR_SEVERITIES, SEVERITIES

TOP_N = 10
MIN_CLIENT_CLOSURES = 10  # a client needs this many closures to be ranked by error rate


@dataclass
class Overview:
    """Everything the Overview page shows for one time range."""

    start: datetime | None
    end: datetime | None
    bucket_s: int
    closures: int
    errors: int
    clients: int
    clients_affected: int
    categories: pl.DataFrame  # category, closures, errors, share, severities: one row per category
    timeline: pl.DataFrame  # bucket, category, severity, closures
    reasons: pl.DataFrame  # close_code, close_reason, category, severity, closures
    top_clients: pl.DataFrame  # client_id, closures, errors, error_rate

    @property
    def error_share(self) -> float:
        return self.errors / self.closures if self.closures else 0.0

    @property
    def top_category(self) -> tuple[str, int] | None:
        """The category with the most errors, and how many; None when there are none."""
        ranked = self.categories.filter(pl.col("errors") > 0).sort(["errors", "category"], descending=[True, False])
        return (ranked["category"][0], int(ranked["errors"][0])) if ranked.height else None


@reader(warm=lambda: (None, None))
def overview(store: Store, start: datetime | None = None, end: datetime | None = None) -> Overview:
    """KPIs, timeline, top reasons and top clients for [start, end): four scans in one connection."""
    params: list = []
    where = range_sql(start, end, params)
    with reading(store) as con:
        first, last, bucket_s, timeline = bucketed_counts(con, where, params, "category, severity")
        clients = con.execute(f"""
            SELECT client_id, count(*) AS closures, count(*) FILTER (WHERE {IS_ERROR}) AS errors
            FROM closures WHERE {where} GROUP BY client_id
        """, params).pl()
        reasons = con.execute(f"""
            SELECT close_code, close_reason, category, severity, count(*) AS closures
            FROM closures WHERE {where} AND {IS_ERROR} GROUP BY ALL ORDER BY closures DESC, close_code LIMIT {TOP_N}
        """, params).pl()
    timeline = timeline.with_columns(bucket_to_time("bucket", bucket_s))
    total = int(timeline["closures"].sum() or 0)
    top_clients = (
        clients.filter(pl.col("closures") >= MIN_CLIENT_CLOSURES, pl.col("errors") > 0)
        .with_columns(error_rate=pl.col("errors") / pl.col("closures"))
        .sort(["error_rate", "errors"], descending=True)
        .head(TOP_N)
    )
    return Overview(
        start=first, end=last, bucket_s=bucket_s, closures=total,
        errors=int(clients["errors"].sum() or 0), clients=clients.height,
        clients_affected=clients.filter(pl.col("errors") > 0).height,
        categories=per_category(timeline, total), timeline=timeline, reasons=reasons, top_clients=top_clients,
    )


def per_category(timeline: pl.DataFrame, total: int) -> pl.DataFrame:
    """One row per category (as the Reference page counts them): closures, errors, share, the severities seen."""
    rank = {name: index for index, name in enumerate(SEVERITIES)}
    return (
        timeline.group_by("category", "severity").agg(pl.col("closures").sum())
        .sort(pl.col("severity").replace_strict(rank, default=len(rank)))
        .group_by("category", maintain_order=True)
        .agg(pl.col("closures").sum(),
             pl.col("closures").filter(pl.col("severity").is_in(ERROR_SEVERITIES)).sum().alias("errors"),
             pl.col("severity").alias("severities"))
        .with_columns(share=pl.col("closures") / max(total, 1), severities=pl.col("severities").list.join(", "))
        .sort(["closures", "category"], descending=[True, False])
    )
