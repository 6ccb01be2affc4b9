"""The Explorer page's reads: the filter pickers' choices, the matching closures, one closure in context."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from closewatch.dashboard.queries.shared import CLOSURE_ROW_COLUMNS, reader, reading
from closewatch.dashboard.queries.timespan import range_sql, utc
from closewatch.store import Store

#: The newest closures the page lists as a plain table (its first view), and in the sortable grid (on request).
EXPLORER_ROWS = 100
GRID_ROWS = 1000
AROUND = timedelta(minutes=15)  # the client's other events shown around one closure
SESSION_SPAN = timedelta(hours=6)  # sessions last at most 3 h; their closures are looked for within this of one
NO_CODE = "no code"
SHOWN = "category IS DISTINCT FROM 'normal'"  # what the default view shows


@dataclass(frozen=True)
class Filters:
    """The Explorer's filters; empty means "any"."""

    start: datetime | None = None
    end: datetime | None = None
    codes: tuple[str, ...] = ()  # close codes as text, NO_CODE for closures without one
    categories: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()
    session: str = ""
    text: str = ""
    normal: bool = False  # show normal closures too (hidden by default unless the category filter names them)

    @property
    def hides_normal(self) -> bool:
        return not self.normal and "normal" not in self.categories

    def where(self, with_normal: bool | None = None) -> tuple[str, list]:
        """The filters as one SQL condition and its parameters (``with_normal`` overrides ``hides_normal``)."""
        params: list = []
        parts = [range_sql(self.start, self.end, params)]
        if self.codes:
            numbers = [int(code) for code in self.codes if code != NO_CODE]
            either = ["close_code IN (SELECT unnest(?::INTEGER[]))"]
            params.append(numbers)
            if NO_CODE in self.codes:
                either.append("close_code IS NULL")
            parts.append("(" + " OR ".join(either) + ")")
        for column, values in (("category", self.categories), ("severity", self.severities), ("client_id", self.clients)):
            if values:
                parts.append(f"{column} IN (SELECT unnest(?::VARCHAR[]))")
                params.append(list(values))
        if self.session.strip():
            parts.append("starts_with(session_id, ?)")
            params.append(self.session.strip())
        if self.text.strip():
            parts.append("contains(lower(close_reason), lower(?))")
            params.append(self.text.strip())
        keep_normal = not self.hides_normal if with_normal is None else with_normal
        if not keep_normal:
            parts.append(SHOWN)
        return " AND ".join(parts), params


@dataclass(frozen=True)
class Choices:
    """The values the Explorer's pickers offer."""

    codes: list[str]
    clients: list[str]


@reader(warm=lambda: ())
def explorer_choices(store: Store) -> Choices:
    """Distinct close codes and clients in the data, for the filter pickers."""
    with reading(store) as con:
        codes = con.execute("SELECT DISTINCT close_code FROM closures ORDER BY close_code NULLS LAST").fetchall()
        clients = con.execute("SELECT DISTINCT client_id FROM closures WHERE client_id IS NOT NULL ORDER BY 1 LIMIT 20000").fetchall()
    return Choices([NO_CODE if code is None else str(code) for (code,) in codes], [client for (client,) in clients])


@dataclass
class Rows:
    """What the Explorer's table shows: how many match, how many normal closures are hidden, the newest rows."""

    total: int
    hidden_normal: int
    rows: pl.DataFrame


@reader(warm=lambda: (Filters(),))
def explorer_rows(store: Store, filters: Filters, limit: int = EXPLORER_ROWS) -> Rows:
    """How many closures match (and how many normal ones the default hides), and the newest ``limit`` of them."""
    every, every_params = filters.where(with_normal=True)
    where, params = filters.where()
    with reading(store) as con:
        every_count, normal = con.execute(f"""
            SELECT count(*), count(*) FILTER (WHERE category = 'normal') FROM closures WHERE {every}
        """, every_params).fetchone()  # one count and one equality: cheaper than two filtered counts
        rows = con.execute(f"SELECT {CLOSURE_ROW_COLUMNS} FROM closures WHERE {where} ORDER BY ts DESC LIMIT {int(limit)}", params).pl()
    if filters.hides_normal:
        return Rows(every_count - normal, normal, rows)
    return Rows(every_count, 0, rows)


@dataclass
class Detail:
    """One closure and the events around it."""

    closure: dict[str, Any] | None
    session: pl.DataFrame = field(default_factory=pl.DataFrame)  # the other closures of its session
    client: pl.DataFrame = field(default_factory=pl.DataFrame)  # its client's closures within AROUND


@reader()
def closure_detail(store: Store, event_id: str, at: datetime | None = None) -> Detail:
    """One closure by event id, with its session's and its client's events around it.

    ``at`` (the closure's time, known when a row was clicked) lets DuckDB skip
    every row group outside that moment; the session's other closures are
    looked for within SESSION_SPAN of it, since a session lasts at most 3 hours.
    Without ``at`` the lookup scans the event ids (a deep link by id alone).
    """
    with reading(store) as con:
        if at is not None:
            found = con.execute("SELECT * FROM closures WHERE ts = ? AND event_id = ?", [utc(at), event_id]).pl()
        else:
            found = con.execute("SELECT * FROM closures WHERE event_id = ?", [event_id]).pl()
        if found.height == 0:
            return Detail(None)
        closure = found.row(0, named=True)
        ts = closure["ts"]
        session = pl.DataFrame()
        if closure["session_id"]:
            near = "AND ts BETWEEN ? AND ?" if ts is not None else ""
            session = con.execute(
                f"SELECT {CLOSURE_ROW_COLUMNS} FROM closures WHERE session_id = ? {near} ORDER BY ts LIMIT 200",
                [closure["session_id"], *([ts - SESSION_SPAN, ts + SESSION_SPAN] if ts is not None else [])],
            ).pl()
        client = con.execute(
            f"""SELECT {CLOSURE_ROW_COLUMNS} FROM closures
                WHERE client_id IS NOT DISTINCT FROM ? AND ts BETWEEN ? AND ? ORDER BY ts LIMIT 200""",
            [closure["client_id"], ts - AROUND, ts + AROUND],
        ).pl() if ts is not None else pl.DataFrame()
    return Detail(closure, session, client)
