"""The SQL page's reads: the schema beside the editor, and the user's own query."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from closewatch.dashboard.queries.shared import reader, reading
from closewatch.sandbox import Answer, Limits, run_query
from closewatch.store import Store


@reader(warm=lambda: ())
def schema(store: Store) -> pl.DataFrame:
    """Tables and views users can query, with their columns, for the SQL page's side panel."""
    with reading(store) as con:
        return con.execute("""
            SELECT c.table_name, t.table_type, c.column_name, c.data_type
            FROM information_schema.columns c
            JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
            WHERE c.table_schema = 'main' AND c.table_name <> 'schema_version'
            ORDER BY t.table_type, c.table_name, c.ordinal_position
        """).pl()


def user_query(store: Store, sql: str, limits: Limits, tick: Callable[[float], None] | None = None) -> Answer:
    """A user's SQL in the sandbox: a child process on a snapshot of the store, killed at the limits
    (closewatch/sandbox.py), so it never holds the store or this process. Never cached: users expect a fresh run."""
    return run_query(store, sql, limits, tick)
