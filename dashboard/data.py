"""What the dashboard's pages read, and the cache that keeps them fast.

Every reader here is a plain function of a ``Store`` and its arguments that
opens one short-lived read-only connection, runs the page's queries and
returns polars frames: the bench script calls the very same functions. Pages
call them through ``cached``, which keys the result on the database's data
token (``Store.latest_batch()``, plus the detections' own stamp for readers
that show detections), so a rerun after a widget change costs one tiny query
and a new upload is visible on the next rerun of any page.

DuckDB refuses a second connection to the same file with another
configuration (read-only vs read-write, the locked settings of user SQL) while
one is open *in the same process*. Streamlit runs every browser session in a
thread of one process, so ``DashboardStore`` takes one process-wide lock for
the life of each connection; the connections are short, so readers queue for
milliseconds, and other processes are handled by the store's file lock policy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import streamlit as st

from closewatch.analysis.catalog import CATEGORIES
from closewatch.settings import Settings, load_settings, resolve_db_path
from closewatch.store import Store

ERROR = "category <> 'normal'"  # the same definition as the client_error_rates view
#: Candidate timeline buckets, in seconds; the smallest that gives at most MAX_BARS bars wins.
BUCKETS_S = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
MAX_BARS = 150
EXPLORER_ROWS = 1000
TOP_N = 10
MIN_CLIENT_CLOSURES = 10  # a client needs this many closures to be ranked by error rate
AROUND = timedelta(minutes=15)  # the client's other events shown around one closure
SESSION_SPAN = timedelta(hours=6)  # sessions last at most 3 h; their closures are looked for within this of one
CACHE_TTL_S = 600  # a safety net: `closewatch reclassify` changes rows without a new batch
NO_CODE = "no code"

_LOCK = threading.RLock()


class DashboardStore(Store):
    """A Store whose connections in this process are taken one at a time (see the module doc)."""

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with _LOCK, super().connect(read_only=read_only) as con:
            yield con

    def user_query(self, sql: str, limit: int | None = None) -> pl.DataFrame:
        with _LOCK:
            return super().user_query(sql, limit)


_STORES: dict[tuple[str, float], DashboardStore] = {}


def get_settings() -> Settings:
    """The config file named by $CLOSEWATCH_CONFIG or ./closewatch.toml (defaults when absent)."""
    return load_settings(None)


def get_store() -> DashboardStore:
    """The store named by $CLOSEWATCH_DB (set by `closewatch dashboard --db`), one object per path."""
    settings = get_settings()
    path = resolve_db_path(None).resolve()
    key = (str(path), settings.lock_timeout_s)
    if key not in _STORES:
        _STORES[key] = DashboardStore(path, lock_timeout_s=settings.lock_timeout_s)
    return _STORES[key]


@contextmanager
def reading(store: Store) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection whose timestamps come back in UTC, whatever the machine's zone."""
    with store.connect(read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        yield con


# ---------------------------------------------------------------- caching

Reader = Callable[..., Any]
_READERS: dict[str, tuple[Reader, str]] = {}


def reader(token: str = "closures") -> Callable[[Reader], Reader]:
    """Register a reader for ``cached``; ``token`` names what invalidates it (closures or detections)."""

    def register(function: Reader) -> Reader:
        _READERS[function.__name__] = (function, token)
        return function

    return register


def data_token(store: Store, kind: str = "closures") -> str:
    """The cache key part that changes when the data a reader shows changes."""
    token = store.latest_batch()
    if kind == "detections":
        with reading(store) as con:
            stamp = con.execute("SELECT coalesce(max(detected_at)::VARCHAR, '') || ':' || count(*) FROM detections").fetchone()[0]
        token += "|" + stamp
    return token


@st.cache_data(max_entries=256, ttl=CACHE_TTL_S, show_spinner=False)
def _run_cached(name: str, path: str, token: str, args: tuple) -> Any:
    """The cached call; ``token`` is only part of the key, so a new batch makes a new entry."""
    store = next((known for (known_path, _), known in _STORES.items() if known_path == path), None)
    return _READERS[name][0](store or DashboardStore(path), *args)


def cached(function: Reader, *args: Any) -> Any:
    """``function(store, *args)``, cached on the store's path, its data token and the arguments."""
    store = get_store()
    name = function.__name__
    return _run_cached(name, str(store.path), data_token(store, _READERS[name][1]), args)


# ---------------------------------------------------------------- time


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


def _bucket_sql(bucket_s: int) -> str:
    """Integer arithmetic on epoch microseconds: date_trunc on TIMESTAMPTZ is ~10x slower (time zone rules)."""
    return f"(epoch_us(ts) // {bucket_s * 1_000_000})"


def _bucket_to_time(column: str, bucket_s: int) -> pl.Expr:
    return (pl.col(column) * (bucket_s * 1_000_000)).cast(pl.Datetime("us", "UTC")).alias(column)


def _range_sql(start: datetime | None, end: datetime | None, params: list) -> str:
    """A WHERE fragment for [start, end); missing bounds are left out so zone maps still prune."""
    parts = ["TRUE"]
    if start is not None:
        parts.append("ts >= ?")
        params.append(utc(start))
    if end is not None:
        parts.append("ts < ?")
        params.append(utc(end))
    return " AND ".join(parts)


# ---------------------------------------------------------------- status and span


@dataclass(frozen=True)
class Span:
    """What is loaded: the number of closures and the time they cover."""

    closures: int
    first: datetime | None
    last: datetime | None
    batches: int
    last_batch: datetime | None


@reader()
def span(store: Store) -> Span:
    """The whole span of the loaded data: the default time range of every page."""
    with reading(store) as con:
        closures, first, last = con.execute("SELECT count(*), min(ts), max(ts) FROM closures").fetchone()
        batches, last_batch = con.execute("SELECT count(*), max(finished_at) FROM ingest_batches").fetchone()
    return Span(closures, first, last, batches, last_batch)


# ---------------------------------------------------------------- overview


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
    categories: pl.DataFrame  # category, severity, closures, share
    timeline: pl.DataFrame  # bucket, category, severity, closures
    reasons: pl.DataFrame  # close_reason, category, severity, closures
    top_clients: pl.DataFrame  # client_id, closures, errors, error_rate

    @property
    def error_share(self) -> float:
        return self.errors / self.closures if self.closures else 0.0


@reader()
def overview(store: Store, start: datetime | None = None, end: datetime | None = None) -> Overview:
    """KPIs, timeline, top reasons and top clients for [start, end): four scans in one connection."""
    params: list = []
    where = _range_sql(start, end, params)
    with reading(store) as con:
        first, last, bucket_s, timeline = _bucketed_counts(con, where, params, "category, severity")
        clients = con.execute(f"""
            SELECT client_id, count(*) AS closures, count(*) FILTER (WHERE {ERROR}) AS errors
            FROM closures WHERE {where} GROUP BY client_id
        """, params).pl()
        reasons = con.execute(f"""
            SELECT close_reason, category, severity, count(*) AS closures
            FROM closures WHERE {where} AND {ERROR} GROUP BY ALL ORDER BY closures DESC LIMIT {TOP_N}
        """, params).pl()
    timeline = timeline.with_columns(_bucket_to_time("bucket", bucket_s))
    total = int(timeline["closures"].sum() or 0)
    categories = (
        timeline.group_by("category", "severity").agg(pl.col("closures").sum())
        .with_columns(share=pl.col("closures") / max(total, 1))
        .sort("closures", descending=True)
    )
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
        categories=categories, timeline=timeline, reasons=reasons, top_clients=top_clients,
    )


# ---------------------------------------------------------------- explorer


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

    def where(self) -> tuple[str, list]:
        """The filters as one SQL condition and its parameters."""
        params: list = []
        parts = [_range_sql(self.start, self.end, params)]
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
        return " AND ".join(parts), params


EXPLORER_COLUMNS = "ts, client_id, session_id, close_code, close_reason, category, severity, retry_safe, action, event_id"


@dataclass(frozen=True)
class Choices:
    """The values the Explorer's pickers offer."""

    codes: list[str]
    clients: list[str]


@reader()
def explorer_choices(store: Store) -> Choices:
    """Distinct close codes and clients in the data, for the filter pickers."""
    with reading(store) as con:
        codes = con.execute("SELECT DISTINCT close_code FROM closures ORDER BY close_code NULLS LAST").fetchall()
        clients = con.execute("SELECT DISTINCT client_id FROM closures WHERE client_id IS NOT NULL ORDER BY 1 LIMIT 20000").fetchall()
    return Choices([NO_CODE if code is None else str(code) for (code,) in codes], [client for (client,) in clients])


@reader()
def explorer_rows(store: Store, filters: Filters, limit: int = EXPLORER_ROWS) -> tuple[int, pl.DataFrame]:
    """How many closures match, and the newest ``limit`` of them."""
    where, params = filters.where()
    with reading(store) as con:
        total = con.execute(f"SELECT count(*) FROM closures WHERE {where}", params).fetchone()[0]
        rows = con.execute(f"SELECT {EXPLORER_COLUMNS} FROM closures WHERE {where} ORDER BY ts DESC LIMIT {int(limit)}", params).pl()
    return total, rows


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
                f"SELECT {EXPLORER_COLUMNS} FROM closures WHERE session_id = ? {near} ORDER BY ts LIMIT 200",
                [closure["session_id"], *([ts - SESSION_SPAN, ts + SESSION_SPAN] if ts is not None else [])],
            ).pl()
        client = con.execute(
            f"""SELECT {EXPLORER_COLUMNS} FROM closures
                WHERE client_id IS NOT DISTINCT FROM ? AND ts BETWEEN ? AND ? ORDER BY ts LIMIT 200""",
            [closure["client_id"], ts - AROUND, ts + AROUND],
        ).pl() if ts is not None else pl.DataFrame()
    return Detail(closure, session, client)


# ---------------------------------------------------------------- patterns

DETECTION_COLUMNS = "detection_id, pattern, key, severity, count, window_start, window_end, explanation, action, detected_at, len(evidence) AS evidence_events"


@reader("detections")
def detections(store: Store) -> pl.DataFrame:
    """Every stored detection, newest window first (the table is small: findings, not events)."""
    with reading(store) as con:
        return con.execute(f"""
            SELECT {DETECTION_COLUMNS} FROM detections
            ORDER BY window_start DESC, CASE severity WHEN 'critical' THEN 0 WHEN 'error' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END, pattern, key
        """).pl()


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
            SELECT {_bucket_sql(bucket_s)} AS bucket, count(*) AS closures,
                   count(*) FILTER (WHERE list_contains(?::VARCHAR[], event_id)) AS evidence
            FROM closures WHERE ts >= ? AND ts < ? AND {key_filter}
            GROUP BY ALL ORDER BY bucket
        """, [detection["evidence"] or [], chart_start, chart_end, *key_params]).pl()
        evidence = con.execute(f"""
            SELECT {EXPLORER_COLUMNS} FROM closures
            WHERE ts >= ? AND ts < ? AND event_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY ts LIMIT {int(evidence_rows)}
        """, [chart_start, chart_end, detection["evidence"] or []]).pl()
    return Finding(detection, matched_by, series.with_columns(_bucket_to_time("bucket", bucket_s)),
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


# ---------------------------------------------------------------- SQL and reference


@reader()
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


@reader()
def category_counts(store: Store) -> pl.DataFrame:
    """Closures per category, for the Reference page's guides."""
    with reading(store) as con:
        return con.execute("SELECT category, count(*) AS closures FROM closures GROUP BY category").pl()


@reader()
def recent_batches(store: Store, limit: int = 20) -> pl.DataFrame:
    """The last loaded files, newest first, for the Upload page."""
    with reading(store) as con:
        return con.execute(f"""
            SELECT finished_at, source_file, format, accepted, duplicates, rejected, skipped, status, message
            FROM ingest_batches ORDER BY finished_at DESC LIMIT {int(limit)}
        """).pl()


def user_query(store: Store, sql: str, limit: int) -> pl.DataFrame:
    """A user's SQL through the store's locked-down connection (never cached: users expect a fresh run)."""
    return store.user_query(sql, limit=limit)


# ---------------------------------------------------------------- alerts

ALERT_TABLES = ("alert_state", "alert_events", "alert_silences", "job_runs")


@dataclass
class AlertData:
    """The alert tables as the Alerts page shows them; ``available`` is False on a database without them."""

    available: bool
    states: pl.DataFrame = field(default_factory=pl.DataFrame)
    history: pl.DataFrame = field(default_factory=pl.DataFrame)
    silences: pl.DataFrame = field(default_factory=pl.DataFrame)
    health: pl.DataFrame = field(default_factory=pl.DataFrame)
    outbox: pl.DataFrame = field(default_factory=pl.DataFrame)


def alert_data(store: Store, now: datetime | None = None, history_rows: int = 200) -> AlertData:
    """Rule states, recent transitions, active silences, each job's last run; read-only, uncached (it auto-refreshes)."""
    now = now or datetime.now(UTC)
    with reading(store) as con:
        present = {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
        if not set(ALERT_TABLES) <= present:
            return AlertData(False)
        states = con.execute("""
            SELECT s.rule, s.group_key AS "group", s.state, s.value, s.pending_since, s.fired_at, s.resolved_at,
                   s.notified_at, s.updated_at, w.evaluated_to
            FROM alert_state s LEFT JOIN alert_watermarks w USING (rule)
            ORDER BY CASE s.state WHEN 'firing' THEN 0 WHEN 'pending' THEN 1 WHEN 'resolved' THEN 2 ELSE 3 END, s.rule, s.group_key
        """).pl()
        history = con.execute(f"""
            SELECT event_time, rule, group_key AS "group", from_state, to_state, value, severity
            FROM alert_events ORDER BY event_time DESC, rule, group_key LIMIT {int(history_rows)}
        """).pl()
        silences = con.execute("""
            SELECT silence_id, rule, coalesce(group_match, '(all groups)') AS "group", created_at, expires_at, comment, created_by
            FROM alert_silences WHERE ended_at IS NULL AND expires_at > ? ORDER BY created_at DESC
        """, [now]).pl()
        health = con.execute("""
            SELECT job,
                   arg_max(outcome, started_at) AS last_outcome,
                   max(started_at) AS last_started,
                   arg_max(finished_at, started_at) AS last_finished,
                   max(finished_at) FILTER (WHERE outcome = 'ok') AS last_ok,
                   arg_max(error, started_at) AS last_error,
                   count(*) FILTER (WHERE outcome = 'error') AS errors,
                   count(*) AS runs
            FROM job_runs GROUP BY job ORDER BY job
        """).pl()
        outbox = con.execute("""
            SELECT status, count(*) AS notifications, max(last_error) FILTER (WHERE status <> 'delivered') AS last_error
            FROM alert_outbox GROUP BY status ORDER BY status
        """).pl() if "alert_outbox" in present else pl.DataFrame()
    return AlertData(True, states, history, silences, health, outbox)


@reader()
def timeline(store: Store, start: datetime | None, end: datetime | None) -> tuple[int, pl.DataFrame]:
    """Closures per bucket and severity over [start, end): the backdrop a backtest is drawn on."""
    params: list = []
    where = _range_sql(start, end, params)
    with reading(store) as con:
        _, _, bucket_s, frame = _bucketed_counts(con, where, params, "severity")
    return bucket_s, frame.with_columns(_bucket_to_time("bucket", bucket_s))


def _bucketed_counts(con, where: str, params: list, columns: str) -> tuple[datetime | None, datetime | None, int, pl.DataFrame]:
    """The range's first and last close, the bucket size fitted to that span, and closures per bucket and ``columns``."""
    first, last = con.execute(f"SELECT min(ts), max(ts) FROM closures WHERE {where}", params).fetchone()
    bucket_s = choose_bucket(first, last)
    frame = con.execute(f"""
        SELECT {_bucket_sql(bucket_s)} AS bucket, {columns}, count(*) AS closures
        FROM closures WHERE {where} GROUP BY ALL ORDER BY bucket
    """, params).pl()
    return first, last, bucket_s, frame


def db_path_label(store: Store) -> str:
    """The database path as the sidebar shows it."""
    try:
        return str(Path(store.path).relative_to(Path.cwd()))
    except ValueError:
        return str(store.path)


@dataclass
class AlertConfig:
    """The rules file and the scheduler's intervals, resolved the way `closewatch alerts` and `scheduler` do."""

    rules_path: Path
    ruleset: Any  # alerts.rules.RuleSet
    intervals: dict[str, float]  # job -> seconds between runs
    engine: Any  # alerts.engine.EngineSettings


def alert_config() -> AlertConfig:
    """Load the rules (a broken file raises AlertError naming rule, line and field) and the job intervals."""
    from closewatch.alerts.engine import EngineSettings
    from closewatch.alerts.rules import load_rules, resolve_rules_path
    from closewatch.jobs.scheduler import SchedulerSettings

    settings = get_settings()
    origin = str(settings.path or "closewatch.toml")
    base = settings.path.parent if settings.path else None
    section = settings.section("alerts")
    engine = EngineSettings.from_section(section, origin)
    path = resolve_rules_path(None, section, base)
    scheduler = SchedulerSettings.from_section(settings.section("scheduler"), origin, base)
    return AlertConfig(path, load_rules(path, engine.step_s), _intervals(scheduler), engine)


def default_intervals() -> dict[str, float]:
    """The scheduler's built-in intervals, for when the config cannot be read."""
    from closewatch.jobs.scheduler import SchedulerSettings

    return _intervals(SchedulerSettings())


def _intervals(scheduler: Any) -> dict[str, float]:
    return {"ingest": scheduler.ingest_every_s, "analyze": scheduler.analyze_every_s,
            "evaluate": scheduler.evaluate_every_s, "deliver": scheduler.deliver_every_s}
