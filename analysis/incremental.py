"""Incremental detection: re-run only what the closures stored since the last run can change.

A detection run leaves a mark (``analysis_marks``): its window, its
thresholds, the newest ``ingested_at`` it saw and how many closures it saw.
The next run over the same open-ended window reads the closures stored
after that mark (the *new* closures, whatever their timestamps) and
recomputes, detector by detector, only the findings those closures can
change, with the same detector code as a full run, so the stored findings
end up row for row what a full run over the window would store
(``tests/analysis/test_incremental.py`` checks it on the generator's week
fed in batches, one of them late):

- **Per-client patterns** (repeated_violation, frequent_disconnects,
  concurrency_saturation, auth_failures, expiry_cost_leak): each client's
  findings come from its own closures and activity alone. Only the clients
  of the new closures are recomputed, from a *restart point*: the UTC day
  of the earliest new closure (the daily rules need whole days), moved one
  day back while one of those clients has pattern closures on both sides of
  it closer together than the longest episode gap (an episode would be cut
  there). A client's findings before the restart point are kept.
- **error_spike**: a category's spikes depend on its own counts only, and a
  bucket's baseline looks back, never forward. Only the categories of the
  new closures are recomputed, from the bucket of the earliest new closure
  (moved back to the start of a stored spike of those categories that
  reaches it, so an episode is never cut), with the counts before it read
  as history; a spike clipped at the old window end is recomputed too.
- **new_reason**: a template's finding depends on the template's closures
  and on whether it was seen before the window. Only the templates of the
  new closures are recomputed, over the whole window (a template seen before
  the window has no finding, so only never-seen templates cost a read).

A run analyses the whole window (``detection.detect``) and says why when
the mark cannot be trusted: no mark yet, another window or ``--until``,
other thresholds, a Parquet lake attached, closures removed or stored with
an older ``ingested_at`` than the mark (the closure count before the mark
changed), closures reclassified, new closures of more than MAX_CHANGED
clients or templates, a closure older than the store's first
(new_reason's learning period moves), a log file whose closures without a
client id now belong to another client, or another run wrote findings
meanwhile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl

from closewatch.analysis import detection, detectors
from closewatch.analysis.detection import (
    ACTIVITY_SQL, CLIENT_KEY_SQL, CLIENT_PATTERNS, FILE_CLIENTS_SQL, HISTORY_SQL, REASONS_BEFORE_SQL, WINDOW_SQL,
    DetectionRun, Mark, Thresholds, detect,
)
from closewatch.analysis.templates import template_expr, templates_of
from closewatch.analysis.thresholds import load_thresholds
from closewatch.durations import as_utc
from closewatch.store import Store, first_row

_ONE_US = timedelta(microseconds=1)
_DAY = timedelta(days=1)
_DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Beyond this many clients or templates changed, the lists that filter the reads cost more than a full run.
MAX_CHANGED = 2_000

# The closures stored after the mark, with their client key; `new_rows` is spliced into the queries below.
_NEW_ROWS = f"""
WITH {FILE_CLIENTS_SQL},
new_rows AS (
    SELECT {CLIENT_KEY_SQL} AS key, c.ts, coalesce(c.category, 'unknown') AS category, c.close_reason
    FROM closures AS c LEFT JOIN file_clients AS f USING (source_file)
    WHERE c.ingested_at > ? AND c.ts IS NOT NULL
)"""
# Log files with new closures whose closures without a client id had another key before the mark.
_MOVED_FILES_SQL = """
WITH per_file AS (
    SELECT source_file,
           count(*) FILTER (WHERE client_id IS NULL AND NOT new) AS old_blank,
           count(DISTINCT client_id) FILTER (WHERE NOT new) AS old_clients,
           min(client_id) FILTER (WHERE NOT new) AS old_client,
           count(DISTINCT client_id) AS clients, min(client_id) AS client
    FROM (SELECT source_file, client_id, coalesce(ingested_at > ?, false) AS new FROM closures
          WHERE source_file IN (SELECT DISTINCT source_file FROM closures WHERE ingested_at > ?))
    GROUP BY source_file
)
SELECT count(*) FROM per_file
WHERE old_blank > 0
  AND (CASE WHEN old_clients = 1 THEN old_client END) IS DISTINCT FROM (CASE WHEN clients = 1 THEN client END)
"""


@dataclass(frozen=True)
class Plan:
    """What a run recomputes: the new closures' clients, categories and templates, and from when."""

    mark: Mark
    since: datetime
    until: datetime
    first: datetime
    new_closures: int
    seen: tuple[datetime | None, int, str]
    clients: list[str]
    client_from: datetime
    categories: list[str]
    spike_from: datetime
    templates: list[str]  # the new closures' templates never seen before the window: recomputed
    templates_all: list[str]  # every template of the new closures: their findings are replaced
    known_templates: set[str]  # the templates seen before the window


def detect_incremental(store: Store, since: datetime | None = None, thresholds: Thresholds | None = None) -> DetectionRun:
    """Bring the findings of [since, newest closure] up to date, recomputing only what new closures change.

    The result is what ``detect(store, since)`` would store; when the last
    run's mark does not allow it, this is that full run (``why_full`` says why).
    """
    thresholds = thresholds or load_thresholds()
    asked = None if since is None else as_utc(since)
    clock = time.perf_counter()
    inputs = None
    with store.connect(read_only=True) as con:
        planned = plan(con, store, asked, thresholds)
        if not isinstance(planned, str) and (planned.clients or planned.categories or planned.templates):
            inputs = read_changed(con, planned, thresholds)
    if isinstance(planned, str):
        return _full(store, asked, thresholds, planned)
    read_s = time.perf_counter() - clock
    clock = time.perf_counter()
    findings = _findings(inputs, planned, thresholds)
    detect_s = time.perf_counter() - clock
    clock = time.perf_counter()
    replaced = _store(store, planned, findings, thresholds)
    if replaced is None:
        return _full(store, asked, thresholds, "another detection run wrote findings meanwhile")
    analysed = 0 if inputs is None else int(inputs["activity"]["closures"].sum())
    return DetectionRun(since=planned.since, until=planned.until, closures=analysed, findings=findings, replaced=replaced,
                        read_s=read_s, detect_s=detect_s, write_s=time.perf_counter() - clock,
                        mode="incremental", new_closures=planned.new_closures)


def _full(store: Store, asked: datetime | None, thresholds: Thresholds, why: str) -> DetectionRun:
    return replace(detect(store, since=asked, thresholds=thresholds), why_full=why)


# ---------------------------------------------------------------- what changed


def plan(con: duckdb.DuckDBPyConnection, store: Store, asked: datetime | None, thresholds: Thresholds) -> Plan | str:
    """What the new closures change, or one sentence saying why the whole window must be analysed."""
    mark = detection.read_mark(con)
    why = _untrusted(mark, store, asked, thresholds)
    if why is not None or mark is None:
        return why or "no earlier detection run"
    first, last = first_row(con, "SELECT min(ts), max(ts) FROM closures")
    if first is None or as_utc(first) != mark.store_first:
        return "closures older than the store's first arrived (new_reason's learning period moved)"
    watermark = [mark.ingested_to or _EPOCH]  # a mark without one saw only closures without an ingest time
    ingested_to, rows_seen, changes = first_row(con, detection.WATERMARK_SQL)
    # the closures after the mark are the last row groups: their min/max let DuckDB skip the others
    before = int(rows_seen) - first_row(con, "SELECT count(*) FROM closures WHERE ingested_at > ?", watermark)[0]
    if before != mark.rows_seen:
        return "closures were removed, or stored with an ingest time before the last run's"
    if changes != mark.changes:
        return "closures were reclassified since the last run"
    if first_row(con, _MOVED_FILES_SQL, watermark * 2)[0]:
        return "a log file's closures without a client id now belong to another client"
    seen = (None if ingested_to is None else as_utc(ingested_to), int(rows_seen), str(changes))
    until = max(mark.until, as_utc(last) + _ONE_US)
    new = con.execute(f"{_NEW_ROWS} SELECT key, epoch_us(ts) AS ts_us, category, close_reason FROM new_rows", watermark).pl()
    clients, categories, templates, earliest = _changed(new)
    if max(len(clients), len(templates)) > MAX_CHANGED:
        return f"the new closures touch more than {MAX_CHANGED:,} clients or reason templates"
    known = _known_templates(con, mark, new)
    if until > mark.until:  # a spike clipped at the old end reaches further now
        clipped = con.execute("SELECT DISTINCT key FROM detections WHERE pattern = 'error_spike' AND window_start >= ? "
                              "AND window_end >= ?", [mark.since, mark.until]).fetchall()
        categories = sorted({*categories, *(key for (key,) in clipped)})
    return Plan(
        mark=mark, since=mark.since, until=until, first=as_utc(first), new_closures=int(rows_seen) - int(before), seen=seen,
        clients=clients, client_from=_client_restart(con, mark.since, earliest, clients, thresholds) if clients else until,
        categories=categories,
        spike_from=_spike_restart(con, mark, earliest, categories, thresholds) if categories else until,
        templates=sorted(set(templates) - known), templates_all=templates, known_templates=known,
    )


def _untrusted(mark: Mark | None, store: Store, asked: datetime | None, thresholds: Thresholds) -> str | None:
    """Why the last run's findings cannot be built on, from its mark alone; None when they can."""
    if mark is None:
        return "no earlier detection run"
    if store.lake is not None:
        return "a Parquet lake is attached (its rows carry no ingest time of their own)"
    if not mark.open_ended:
        return "the last run had an end time (--until)"
    if mark.since_asked != asked:
        return "the window's start moved"
    if mark.thresholds != thresholds.fingerprint():
        return "the thresholds changed"
    return None


def _changed(new: pl.DataFrame) -> tuple[list[str], list[str], list[str], datetime | None]:
    """The clients, categories and reason templates of the new closures, and the earliest one's time.

    Every client of the new closures counts, normal ones too: they change the client's share of failures.
    """
    if new.is_empty():
        return [], [], [], None
    earliest = _EPOCH + int(new["ts_us"].min()) * _ONE_US  # type: ignore[arg-type]
    abnormal = new.filter(pl.col("category") != "normal")
    clients = sorted(new["key"].unique().to_list())
    categories = sorted(abnormal["category"].unique().to_list())
    reasons = abnormal.select("close_reason").drop_nulls().unique()
    templates = sorted(reasons.select(template=template_expr(pl.col("close_reason"))).drop_nulls().unique()["template"].to_list())
    return clients, categories, templates, earliest


def _client_restart(con: duckdb.DuckDBPyConnection, since: datetime, earliest: datetime | None,
                    clients: list[str], thresholds: Thresholds) -> datetime:
    """Where the per-client patterns of ``clients`` are recomputed from (see the module's docstring)."""
    if earliest is None:
        return since
    gap, categories = _episode_reach(thresholds)
    restart = _day_of(earliest)
    if restart <= since or gap >= _DAY:
        return since
    crossed = _crossed_days(con, clients, categories, gap, max(since, restart - gap), restart + gap)
    if restart not in crossed:
        return restart
    crossed = _crossed_days(con, clients, categories, gap, since, restart + gap)
    while restart > since and restart in crossed:
        restart -= _DAY
    return max(restart, since)


def _episode_reach(thresholds: Thresholds) -> tuple[timedelta, list[str]]:
    """The longest gap that still joins two closures of a client into one finding, and the categories that count."""
    violation, disconnects = thresholds["repeated_violation"], thresholds["frequent_disconnects"]
    concurrency, auth = thresholds["concurrency_saturation"], thresholds["auth_failures"]
    gap = max(
        violation.window, violation.merge_gap,
        disconnects.window, disconnects.merge_gap, disconnects.loop_max_gap,
        concurrency.merge_gap + timedelta(minutes=1),  # saturated minutes merge_gap apart: closures up to a minute more
        auth.window, auth.merge_gap,
    )
    categories = sorted({*violation.categories, *disconnects.categories, "concurrency_limit", "auth_failed", "account_issue"})
    return gap, categories


def _crossed_days(con: duckdb.DuckDBPyConnection, clients: list[str], categories: list[str], gap: timedelta,
                  start: datetime, end: datetime) -> set[datetime]:
    """UTC midnights in [start, end) that some client of ``clients`` has pattern closures at most ``gap`` apart across."""
    gap_us = int(gap / _ONE_US)
    rows = con.execute(f"""
        WITH {FILE_CLIENTS_SQL},
        pattern_rows AS (
            SELECT {CLIENT_KEY_SQL} AS key, epoch_us(c.ts) AS t
            FROM closures AS c LEFT JOIN file_clients AS f USING (source_file)
            WHERE c.ts >= ? AND c.ts < ? AND list_contains(?::VARCHAR[], coalesce(c.category, 'unknown'))
        ),
        pairs AS (
            SELECT t, lead(t) OVER (PARTITION BY key ORDER BY t) AS next
            FROM pattern_rows WHERE list_contains(?::VARCHAR[], key)
        )
        SELECT DISTINCT next // {_DAY_US} * {_DAY_US} AS day_us FROM pairs
        WHERE next IS NOT NULL AND next - t <= {gap_us} AND next // {_DAY_US} > t // {_DAY_US}
    """, [start, end, categories, clients]).fetchall()
    return {_EPOCH + day_us * _ONE_US for (day_us,) in rows}


def _spike_restart(con: duckdb.DuckDBPyConnection, mark: Mark, earliest: datetime | None,
                   categories: list[str], thresholds: Thresholds) -> datetime:
    """Where error_spike is recomputed from for ``categories``: no stored spike of theirs is cut there."""
    if earliest is None:
        return mark.since
    interval = thresholds["error_spike"].interval
    restart = min(_bucket(earliest, interval), _bucket(mark.until - _ONE_US, interval))
    while restart > mark.since:
        start = con.execute(
            "SELECT min(window_start) FROM detections WHERE pattern = 'error_spike' AND list_contains(?::VARCHAR[], key) "
            "AND window_start >= ? AND window_start < ? AND window_end >= ?",
            [categories, mark.since, restart, restart],
        ).fetchone()
        if start is None or start[0] is None:
            break
        restart = as_utc(start[0])
    return max(restart, mark.since)


def _known_templates(con: duckdb.DuckDBPyConnection, mark: Mark, new: pl.DataFrame) -> set[str]:
    """The reason templates seen before the window: the mark's, with those of new closures before the window.

    Listing every reason before the window costs a scan of the store; the
    mark keeps their templates, which only new closures before the window
    can add to.
    """
    if mark.known_templates is None:
        before = con.execute(REASONS_BEFORE_SQL, [mark.since]).pl().select(pl.col("close_reason").cast(pl.String))
        return set(templates_of(before)["template"].drop_nulls().to_list())
    early = new.filter((pl.col("ts_us") < int((mark.since - _EPOCH) / _ONE_US)) & (pl.col("category") != "normal"))
    return set(mark.known_templates) | set(templates_of(early.select("close_reason"))["template"].drop_nulls().to_list())


def _day_of(moment: datetime) -> datetime:
    return as_utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)


def _bucket(moment: datetime, interval: timedelta) -> datetime:
    step = int(interval / _ONE_US)
    return _EPOCH + ((as_utc(moment) - _EPOCH) // _ONE_US // step * step) * _ONE_US


# ---------------------------------------------------------------- reading and detecting


def read_changed(con: duckdb.DuckDBPyConnection, planned: Plan, thresholds: Thresholds) -> dict[str, pl.DataFrame]:
    """The closures and counts the changed findings are made of, each part from its own restart point."""
    since, until = planned.since, planned.until
    keyed = f"SELECT * FROM ({WINDOW_SQL}) WHERE list_contains(?::VARCHAR[], client_id)"
    clients = con.execute(keyed, [planned.client_from, until, planned.clients]).pl()
    activity = con.execute(f"SELECT * FROM ({ACTIVITY_SQL}) WHERE list_contains(?::VARCHAR[], key)",
                           [planned.client_from, until, planned.clients]).pl()
    spikes = con.execute(f"SELECT * FROM ({WINDOW_SQL}) WHERE list_contains(?::VARCHAR[], category)",
                         [planned.spike_from, until, planned.categories]).pl()
    interval_us = int(thresholds["error_spike"].interval / _ONE_US)
    history_from = max(planned.first, since - detection.spike_lookback(thresholds))
    history = con.execute(f"SELECT * FROM ({HISTORY_SQL}) WHERE list_contains(?::VARCHAR[], category)",
                          [interval_us, interval_us, history_from, planned.spike_from, planned.categories]).pl()
    reasons = _template_rows(con, planned)
    return {
        "clients": detection.closures_frame(clients), "activity": detection.activity_frame(activity),
        "spikes": detection.closures_frame(spikes), "history": detection.history_frame(history),
        "reasons": detection.closures_frame(reasons),
    }


def _template_rows(con: duckdb.DuckDBPyConnection, planned: Plan) -> pl.DataFrame:
    """The window's closures whose reason has one of the never-seen templates."""
    # a template can have thousands of reasons (ids masked): a semi-join, not a list search per row
    query = f"SELECT * FROM ({WINDOW_SQL}) WHERE close_reason IN (SELECT unnest(?::VARCHAR[]))"
    if not planned.templates:
        return con.execute(query, [planned.since, planned.since, []]).pl()  # no rows, the columns
    distinct = con.execute(
        "SELECT DISTINCT close_reason FROM closures WHERE ts >= ? AND ts < ? AND category IS DISTINCT FROM 'normal' "
        "AND close_reason IS NOT NULL", [planned.since, planned.until],
    ).pl()
    wanted = distinct.filter(template_expr(pl.col("close_reason").cast(pl.String)).is_in(planned.templates))
    return con.execute(query, [planned.since, planned.until, wanted["close_reason"].to_list()]).pl()


def _findings(inputs: dict[str, pl.DataFrame] | None, planned: Plan, thresholds: Thresholds) -> pl.DataFrame:
    """The changed findings, with their ids, as ``detect`` would store them."""
    empty = detectors.empty_findings()
    if inputs is None:
        found = empty
    else:
        grid = detection.spike_grid(planned.first, planned.since, planned.until, thresholds)
        found = pl.concat([
            detection.client_findings(inputs["clients"].lazy(), inputs["activity"].lazy(), thresholds) if planned.clients else empty,
            detection.spike_findings(inputs["spikes"].lazy(), inputs["history"].lazy(), grid, thresholds)
            if planned.categories else empty,
            # the rows are those of templates never seen before the window: no earlier reason can rule one out
            detection.reason_findings(inputs["reasons"].lazy(), pl.LazyFrame({"close_reason": []}, schema={"close_reason": pl.String}),
                                      planned.first.replace(tzinfo=None), thresholds) if planned.templates else empty,
        ])
    return detection.with_ids(detection.clipped(found, planned.since, planned.until), datetime.now(UTC))


def _store(store: Store, planned: Plan, findings: pl.DataFrame, thresholds: Thresholds) -> int | None:
    """Replace the changed findings and move the mark, in one transaction; None if another run moved the mark first."""
    mark = planned.mark
    ingested_to, rows_seen, changes = planned.seen
    moved = Mark(run_id=detection.new_run_id(), since_asked=mark.since_asked, since=mark.since, until=planned.until,
                 open_ended=True, thresholds=mark.thresholds, store_first=mark.store_first,
                 ingested_to=ingested_to, rows_seen=rows_seen, changes=changes,
                 known_templates=sorted(planned.known_templates) if len(planned.known_templates) <= detection.MAX_KNOWN_TEMPLATES else None)
    with store.transaction() as con:
        current = detection.read_mark(con)
        if current is None or current.run_id != mark.run_id:
            return None
        removed = first_row(con, """
            DELETE FROM detections
            WHERE window_end <= ? AND (
                   (list_contains(?::VARCHAR[], pattern) AND list_contains(?::VARCHAR[], key) AND window_start >= ?)
                OR (pattern = 'error_spike' AND list_contains(?::VARCHAR[], key) AND window_start >= ?)
                OR (pattern = 'new_reason' AND list_contains(?::VARCHAR[], key) AND window_start >= ?))
        """, [planned.until, list(CLIENT_PATTERNS), planned.clients, planned.client_from,
              planned.categories, planned.spike_from, planned.templates_all, planned.since])[0]
        detection.insert_findings(con, findings)
        detection.write_mark(con, moved)
    return int(removed)
