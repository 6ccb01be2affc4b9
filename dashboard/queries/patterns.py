"""The Patterns page's reads: one finding with its evidence and its window (the list is ``findings``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from closewatch.analysis.catalog import CATEGORIES
from closewatch.dashboard.queries.shared import CLOSURE_ROW_COLUMNS, reader, reading
from closewatch.dashboard.queries.timespan import bucket_sql, bucket_to_time, choose_bucket
from closewatch.store import Store


@dataclass
class Finding:
    """One detection with its evidence and the closures of its key around its window."""

    detection: dict[str, Any] | None
    matched_by: str = ""  # which column the key was found in (client_id, session_id, category) or ""
    series: pl.DataFrame = field(default_factory=pl.DataFrame)  # bucket, in_window, closures, evidence
    evidence: pl.DataFrame = field(default_factory=pl.DataFrame)
    bucket_s: int = 60
    chart_start: datetime | None = None
    chart_end: datetime | None = None


@reader("detections")
def finding(store: Store, detection_id: str, evidence_rows: int = 200) -> Finding:
    """A detection, its evidence rows, and a per-bucket count of its key's closures around the window."""
    with reading(store) as con:
        found = con.execute("SELECT * FROM detections WHERE detection_id = ?", [detection_id]).pl()
        if found.height == 0:
            return Finding(None)
        detection = found.row(0, named=True)
        start, end = detection["window_start"], detection["window_end"]
        pad = max(end - start, timedelta(minutes=30))
        chart_start, chart_end = start - pad, end + pad
        bucket_s = choose_bucket(chart_start, chart_end)
        matched_by = _key_column(con, detection["key"], chart_start, chart_end)
        key_filter = f"{matched_by} = ?" if matched_by else "TRUE"
        key_params = [detection["key"]] if matched_by else []
        series = con.execute(f"""
            SELECT {bucket_sql(bucket_s)} AS bucket, count(*) AS closures,
                   count(*) FILTER (WHERE list_contains(?::VARCHAR[], event_id)) AS evidence
            FROM closures WHERE ts >= ? AND ts < ? AND {key_filter}
            GROUP BY ALL ORDER BY bucket
        """, [detection["evidence"] or [], chart_start, chart_end, *key_params]).pl()
        evidence = con.execute(f"""
            SELECT {CLOSURE_ROW_COLUMNS} FROM closures
            WHERE ts >= ? AND ts < ? AND event_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY ts LIMIT {int(evidence_rows)}
        """, [chart_start, chart_end, detection["evidence"] or []]).pl()
    return Finding(detection, matched_by, series.with_columns(bucket_to_time("bucket", bucket_s)),
                   evidence, bucket_s, chart_start, chart_end)


def _key_column(con: duckdb.DuckDBPyConnection, key: str | None, start: datetime, end: datetime) -> str:
    """Which column a detection's key names: the client, the session or the category."""
    if not key:
        return ""
    if key in CATEGORIES:
        return "category"
    for column in ("client_id", "session_id"):
        hit = con.execute(f"SELECT 1 FROM closures WHERE {column} = ? AND ts >= ? AND ts < ? LIMIT 1", [key, start, end]).fetchone()
        if hit:
            return column
    return ""
