"""The detection job: read a window of closures, run every detector, replace the window's findings.

Every run leaves a mark (``analysis_marks``: window, thresholds, the newest
``ingested_at`` and closure count it saw) in the transaction that writes its
findings; ``analysis.incremental`` starts the scheduler's next run from it.

The store is read once (read-only, short-lived) through Arrow into polars:
the window's closures that are not normal (the stuff of every pattern), the
closures of every kind per client and minute (the denominators, counted by
DuckDB in one parallel scan, so millions of normal closures never need to
be copied), hourly counts from before the window for the spike baseline,
and the distinct reasons seen before it for ``new_reason``.
Detection runs with the file closed; the findings are then written in one
transaction that first deletes the findings a previous run over the same
window produced, so re-running replaces and never duplicates. A finding's
id is a hash of its pattern, key and window: the same data gives the same ids.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl

from closewatch.analysis import detectors
from closewatch.analysis.errors import AnalysisError
from closewatch.analysis.templates import templates_of
from closewatch.analysis.thresholds import Thresholds, load_thresholds
from closewatch.durations import as_utc
from closewatch.store import Store, first_row, scalar

#: The columns of ``detections``, in table order.
DETECTION_COLUMNS = [
    "detection_id", "pattern", "key", "window_start", "window_end", "count", "severity",
    "explanation", "action", "evidence", "detected_at",
]

_ONE_US = timedelta(microseconds=1)

# Who a closure is about. A log file that names exactly one client is that client's log, so its
# lines without a client id (some formats name the client only on error lines) are that
# client's too; a log that names no client is one application's log, and its file stands in.
FILE_CLIENTS_SQL = """
file_clients AS (
    SELECT source_file, min(client_id) AS file_client
    FROM closures
    WHERE client_id IS NOT NULL
      AND source_file IN (SELECT DISTINCT source_file FROM closures WHERE client_id IS NULL)
    GROUP BY source_file
    HAVING count(DISTINCT client_id) = 1
)"""
CLIENT_KEY_SQL = "coalesce(c.client_id, f.file_client, '(no client id) ' || regexp_extract(c.source_file, '[^/\\\\]+$'))"

# Only closures that are not normal travel to polars: they are what the patterns are made of.
WINDOW_SQL = f"""
WITH {FILE_CLIENTS_SQL}
SELECT c.event_id,
       epoch_us(c.ts) AS ts_us,
       c.session_id,
       {CLIENT_KEY_SQL} AS client_id,
       coalesce(c.category, 'unknown') AS category,
       c.close_reason, c.chunk_ms, c.audio_rate_ratio, c.session_duration_s
FROM closures AS c LEFT JOIN file_clients AS f USING (source_file)
WHERE c.ts >= ? AND c.ts < ? AND c.category IS DISTINCT FROM 'normal'
"""
# Normal closures only matter as denominators: closures per client and minute, counted in one scan.
ACTIVITY_SQL = f"""
WITH {FILE_CLIENTS_SQL},
counted AS (
    SELECT client_id, source_file, (epoch_us(ts) // 60000000) * 60000000 AS minute_us, count(*) AS n
    FROM closures
    WHERE ts >= ? AND ts < ?
    GROUP BY ALL
)
SELECT {CLIENT_KEY_SQL} AS key, c.minute_us, sum(c.n) AS closures
FROM counted AS c LEFT JOIN file_clients AS f USING (source_file)
GROUP BY ALL
"""
# A NULL category counts as unknown here as in the window, so the baseline and the window agree.
HISTORY_SQL = """
SELECT coalesce(category, 'unknown') AS category, (epoch_us(ts) // ?) * ? AS bucket_us, count(*) AS n
FROM closures
WHERE ts >= ? AND ts < ? AND category IS DISTINCT FROM 'normal'
GROUP BY ALL
"""
# The watermark of a run: the newest ingest time, how many closures, and the stamp of reclassifications.
WATERMARK_SQL = """
SELECT max(ingested_at), count(*),
       (SELECT coalesce(max(changed_at)::VARCHAR, '') || ':' || count(*)::VARCHAR FROM data_changes)
FROM closures
"""
REASONS_BEFORE_SQL = """
SELECT DISTINCT close_reason FROM closures
WHERE ts < ? AND category IS DISTINCT FROM 'normal' AND close_reason IS NOT NULL
"""


@dataclass(frozen=True)
class DetectionRun:
    """What one run did: its window, how much it read, what it found and replaced."""

    since: datetime
    until: datetime
    closures: int
    findings: pl.DataFrame  # the stored rows, DETECTION_COLUMNS
    replaced: int
    read_s: float
    detect_s: float
    write_s: float
    #: "full": every detector over the whole window; "incremental": only what the new closures can change
    #: (analysis.incremental).
    mode: str = "full"
    new_closures: int | None = None  # closures stored since the last run (incremental runs)
    why_full: str | None = None  # why an incremental run analysed the whole window instead


@dataclass(frozen=True)
class Mark:
    """What a detection run saw (the ``analysis_marks`` row): the next run starts from here."""

    run_id: str
    since_asked: datetime | None
    since: datetime
    until: datetime
    open_ended: bool
    thresholds: str
    store_first: datetime
    ingested_to: datetime | None
    rows_seen: int
    changes: str
    known_templates: list[str] | None  # the reason templates before ``since`` (None: more than MAX_KNOWN_TEMPLATES)


@dataclass(frozen=True)
class Inputs:
    """Everything the detectors read, already in polars (timestamps naive UTC)."""

    closures: pl.DataFrame  # the window's closures that are not normal (DETECTOR_CLOSURE_SCHEMA)
    activity: pl.DataFrame  # closures of every category per client and minute (ACTIVITY_COLUMNS)
    history: pl.DataFrame  # category, bucket, n: spike counts before the window
    reasons_before: pl.DataFrame  # close_reason: distinct reasons seen before the window
    since: datetime
    until: datetime
    store_first: datetime
    grid: tuple[datetime, datetime]
    seen: tuple[datetime | None, int, str]  # max(ingested_at), closures, data_changes stamp: the run's watermark


# ---------------------------------------------------------------- the job


def detect(store: Store, since: datetime | None = None, until: datetime | None = None,
           thresholds: Thresholds | None = None) -> DetectionRun:
    """Run every detector over [since, until) and store the findings, replacing the window's old ones.

    Without ``since``/``until`` the window is everything the store holds.
    Times are timezone-aware (naive ones are taken as UTC).
    """
    thresholds = thresholds or load_thresholds()
    clock = time.perf_counter()
    asked = _utc(since)
    since = widen_to_stored_findings(store, asked)
    inputs = read_inputs(store, since, until, thresholds)
    read_s = time.perf_counter() - clock
    clock = time.perf_counter()
    findings = with_ids(run_detectors(inputs, thresholds), datetime.now(UTC))
    detect_s = time.perf_counter() - clock
    clock = time.perf_counter()
    ingested_to, rows_seen, changes = inputs.seen
    mark = Mark(run_id=new_run_id(), since_asked=asked, since=inputs.since, until=inputs.until, open_ended=until is None,
                thresholds=thresholds.fingerprint(), store_first=as_utc(inputs.store_first),
                ingested_to=ingested_to, rows_seen=rows_seen, changes=changes,
                known_templates=known_templates(inputs.reasons_before))
    replaced = store_findings(store, findings, inputs.since, inputs.until, mark)
    return DetectionRun(
        since=inputs.since, until=inputs.until, closures=int(inputs.activity["closures"].sum()), findings=findings,
        replaced=replaced, read_s=read_s, detect_s=detect_s, write_s=time.perf_counter() - clock,
    )


def widen_to_stored_findings(store: Store, since: datetime | None) -> datetime | None:
    """Start the window where a stored finding that straddles ``since`` starts.

    Findings are replaced only when they lie inside the run's window; a
    finding that began before ``since`` and runs past it would otherwise
    survive beside its recomputed, clipped twin. Reading from its start lets
    the run recompute it whole and replace it.
    """
    if since is None:
        return None
    with store.connect(read_only=True) as con:
        earliest = scalar(con, "SELECT min(window_start) FROM detections WHERE window_start < ? AND window_end >= ?", [since, since])
    return min(since, as_utc(earliest)) if earliest is not None else since


def read_inputs(store: Store, since_option: datetime | None, until_option: datetime | None, thresholds: Thresholds) -> Inputs:
    """Read the window's closures and the history the baselines need, in one short read-only connection."""
    since_option, until_option = _utc(since_option), _utc(until_option)
    if since_option is not None and until_option is not None and since_option >= until_option:
        raise AnalysisError(f"--since {since_option:%Y-%m-%d %H:%M:%S} is not before --until {until_option:%Y-%m-%d %H:%M:%S}; swap or widen them.")
    interval_us = int(thresholds["error_spike"].interval / _ONE_US)
    lookback = spike_lookback(thresholds)
    with store.connect(read_only=True) as con:
        stored_first, stored_last = first_row(con, "SELECT min(ts), max(ts) FROM closures")
        if stored_first is None:
            raise AnalysisError("The store holds no closures yet; ingest logs first (closewatch ingest PATH).")
        first, last = as_utc(stored_first), as_utc(stored_last)
        if since_option is not None and until_option is None and since_option > last:
            raise AnalysisError(
                f"--since {since_option:%Y-%m-%d %H:%M:%S} is after the last stored closure ({last:%Y-%m-%d %H:%M:%S} UTC); "
                "pick an earlier time or ingest newer logs."
            )
        since = since_option or first
        until = until_option or last + _ONE_US
        if since >= until:
            raise AnalysisError(
                f"--until {until:%Y-%m-%d %H:%M:%S} is before the first stored closure ({first:%Y-%m-%d %H:%M:%S} UTC); "
                "pick a later time."
            )
        closures = con.execute(WINDOW_SQL, [since, until]).pl()
        activity = con.execute(ACTIVITY_SQL, [since, until]).pl()
        history = con.execute(HISTORY_SQL, [interval_us, interval_us, max(first, since - lookback), since]).pl()
        reasons_before = con.execute(REASONS_BEFORE_SQL, [since]).pl()
        ingested_to, rows_seen, changes = first_row(con, WATERMARK_SQL)
    return Inputs(closures_frame(closures), activity_frame(activity), history_frame(history),
                  reasons_before.select(pl.col("close_reason").cast(pl.String)),
                  since, until, _naive(first), spike_grid(first, since, until, thresholds),
                  (_utc(ingested_to), int(rows_seen), str(changes)))


def spike_lookback(thresholds: Thresholds) -> timedelta:
    """How far before the window error_spike's baseline reads counts."""
    spike = thresholds["error_spike"]
    return max(spike.baseline_days * timedelta(days=1), spike.fallback_intervals * spike.interval) + spike.interval


def spike_grid(first: datetime, since: datetime, until: datetime, thresholds: Thresholds) -> tuple[datetime, datetime]:
    """The first and last spike bucket of a window: its look-back (never before the store's first closure) to its end."""
    interval = thresholds["error_spike"].interval
    grid_start = max(_naive(first), _naive(since) - spike_lookback(thresholds))
    bucket = lambda moment: detectors.bucket_of(pl.lit(moment, dtype=pl.Datetime("us")), interval)
    return pl.select(bucket(grid_start).alias("a"), bucket(_naive(until) - _ONE_US).alias("b")).row(0)


def closures_frame(raw: pl.DataFrame) -> pl.DataFrame:
    """A window query's rows as DETECTOR_CLOSURE_SCHEMA (naive UTC)."""
    return raw.select(
        pl.col("event_id").cast(pl.String), pl.from_epoch("ts_us", time_unit="us").alias("ts"),
        *(pl.col(name).cast(dtype) for name, dtype in detectors.DETECTOR_CLOSURE_SCHEMA.items() if name not in ("event_id", "ts")),
    )


def activity_frame(raw: pl.DataFrame) -> pl.DataFrame:
    return raw.select(
        pl.col("key").cast(pl.String), pl.from_epoch("minute_us", time_unit="us").alias("minute"), pl.col("closures").cast(pl.UInt32)
    )


def history_frame(raw: pl.DataFrame) -> pl.DataFrame:
    return raw.select(
        pl.col("category").cast(pl.String), pl.from_epoch("bucket_us", time_unit="us").alias("bucket"), pl.col("n").cast(pl.UInt32)
    )


def run_detectors(inputs: Inputs, thresholds: Thresholds) -> pl.DataFrame:
    """Every detector's findings over the window, clipped to it (FINDING_SCHEMA)."""
    lazy = inputs.closures.lazy()
    results = [
        client_findings(lazy, inputs.activity.lazy(), thresholds),
        spike_findings(lazy, inputs.history.lazy(), inputs.grid, thresholds),
        reason_findings(lazy, inputs.reasons_before.lazy(), inputs.store_first, thresholds),
    ]
    return clipped(pl.concat(results), inputs.since, inputs.until)


#: The patterns found per client, each client's from its own closures and activity alone.
CLIENT_PATTERNS = ("repeated_violation", "frequent_disconnects", "concurrency_saturation", "auth_failures", "expiry_cost_leak")


def client_findings(closures: pl.LazyFrame, activity: pl.LazyFrame, thresholds: Thresholds) -> pl.DataFrame:
    """The per-client patterns (CLIENT_PATTERNS).

    Each client's findings come from its own closures and activity alone, so
    an incremental run recomputes only the clients of new closures, from a
    UTC midnight where no episode of theirs is cut (analysis.incremental).
    """
    limit = thresholds["general"].evidence_limit
    return pl.concat([
        detectors.repeated_violation(closures, activity, thresholds["repeated_violation"], limit),
        detectors.frequent_disconnects(closures, activity, thresholds["frequent_disconnects"], limit),
        detectors.concurrency_saturation(closures, activity, thresholds["concurrency_saturation"], limit),
        detectors.auth_failures(closures, activity, thresholds["auth_failures"], limit),
        detectors.expiry_cost_leak(closures, activity, thresholds["expiry_cost_leak"], limit),
    ])


def spike_findings(closures: pl.LazyFrame, history: pl.LazyFrame, grid: tuple[datetime, datetime], thresholds: Thresholds) -> pl.DataFrame:
    """error_spike, per category.

    A category's spikes depend on its own counts only and a baseline looks
    back, never forward: an incremental run recomputes the categories of new
    closures from the earliest new closure's bucket, earlier counts as history.
    """
    return detectors.error_spike(closures, history, grid, thresholds["error_spike"], thresholds["general"].evidence_limit)


def reason_findings(closures: pl.LazyFrame, reasons_before: pl.LazyFrame, store_first: datetime, thresholds: Thresholds) -> pl.DataFrame:
    """new_reason, per reason template.

    A template's finding needs all its closures in the window: an incremental
    run recomputes the templates of new closures over the whole window, and
    reads only those never seen before the window (the others cannot be new).
    """
    learned_at = store_first + thresholds["new_reason"].learning
    return detectors.new_reason(closures, reasons_before, learned_at, thresholds["new_reason"], thresholds["general"].evidence_limit)


def clipped(findings: pl.DataFrame, since: datetime, until: datetime) -> pl.DataFrame:
    """Findings clipped to the analysed window."""
    return findings.with_columns(
        window_start=pl.col("window_start").clip(lower_bound=_naive(since)),
        window_end=pl.col("window_end").clip(upper_bound=_naive(until)),
    )


def with_ids(findings: pl.DataFrame, detected_at: datetime) -> pl.DataFrame:
    """Add the deterministic detection_id and detected_at; timestamps become UTC-aware for the store."""
    ids = [
        detection_id(pattern, key, start, end)
        for pattern, key, start, end in findings.select("pattern", "key", "window_start", "window_end").iter_rows()
    ]
    return findings.with_columns(
        detection_id=pl.Series(ids, dtype=pl.String),
        detected_at=pl.lit(detected_at).dt.convert_time_zone("UTC"),
        window_start=pl.col("window_start").dt.replace_time_zone("UTC"),
        window_end=pl.col("window_end").dt.replace_time_zone("UTC"),
    ).select(DETECTION_COLUMNS)


def detection_id(pattern: str, key: str, start: datetime, end: datetime) -> str:
    """md5 of pattern, key and window (in UTC): the same finding always gets the same id."""
    identity = "\x1f".join([pattern, key, _naive(start).isoformat(), _naive(end).isoformat()])
    return hashlib.md5(identity.encode("utf-8")).hexdigest()


def store_findings(store: Store, findings: pl.DataFrame, since: datetime, until: datetime, mark: Mark | None = None) -> int:
    """Replace the findings of [since, until) with these, in one transaction; returns how many were removed.

    A finding belongs to a window when its own window lies inside it: that
    is every finding a run over the window can produce, so nothing stale
    survives a re-run and nothing outside the window is touched. The run's
    mark is written in the same transaction, so it always describes the
    findings stored.
    """
    with store.transaction() as con:
        removed = scalar(con, "DELETE FROM detections WHERE window_start >= ? AND window_end <= ?", [since, until])
        insert_findings(con, findings)
        if mark is not None:
            write_mark(con, mark)
    return removed


def insert_findings(con: duckdb.DuckDBPyConnection, findings: pl.DataFrame) -> None:
    if findings.height:
        con.register("new_findings", findings.to_arrow())
        try:
            columns = ", ".join(DETECTION_COLUMNS)
            con.execute(f"INSERT OR REPLACE INTO detections ({columns}) SELECT {columns} FROM new_findings")
        finally:
            con.unregister("new_findings")


# ---------------------------------------------------------------- the mark


_MARK_COLUMNS = ["run_id", "since_asked", "since", "until", "open_ended", "thresholds", "store_first",
                 "ingested_to", "rows_seen", "changes", "known_templates"]

#: A mark keeps the templates seen before its window up to this many; beyond, the next run lists them again.
MAX_KNOWN_TEMPLATES = 10_000


def known_templates(reasons_before: pl.DataFrame) -> list[str] | None:
    """The templates of the reasons before the window, sorted, or None when there are too many to keep in a mark."""
    templates = templates_of(reasons_before)["template"].drop_nulls().unique().sort().to_list()
    return templates if len(templates) <= MAX_KNOWN_TEMPLATES else None


def new_run_id() -> str:
    return uuid.uuid4().hex


def read_mark(con: duckdb.DuckDBPyConnection) -> Mark | None:
    """The last detection run's mark, or None before the first run."""
    row = con.execute(f"SELECT {', '.join(_MARK_COLUMNS)} FROM analysis_marks WHERE mark = 'detections'").fetchone()
    if row is None:
        return None
    values = dict(zip(_MARK_COLUMNS, row, strict=True))
    for name in ("since_asked", "since", "until", "store_first", "ingested_to"):
        values[name] = _utc(values[name])
    return Mark(**values)


def write_mark(con: duckdb.DuckDBPyConnection, mark: Mark) -> None:
    values = [getattr(mark, name) for name in _MARK_COLUMNS]
    values[-1] = None if mark.known_templates is None else list(mark.known_templates)
    con.execute("DELETE FROM analysis_marks WHERE mark = 'detections'")
    con.execute(f"INSERT INTO analysis_marks (mark, {', '.join(_MARK_COLUMNS)}, updated_at) "
                f"VALUES ('detections', {', '.join('?' for _ in _MARK_COLUMNS)}, now())", values)


# ---------------------------------------------------------------- times


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)


def _naive(moment: datetime) -> datetime:
    """UTC wall time without a zone: the detectors work on naive UTC timestamps."""
    return as_utc(moment).replace(tzinfo=None)
