"""One input, end to end: detect, parse, redact, enrich, stage, load.

Parsing and classification happen before the database is touched: each batch
of parsed events is written to a Parquet file in a private staging folder, so
memory stays bounded whatever the file's size. Only then is the store opened,
and the whole file is appended in one transaction with its duplicate check
(an anti-join on event_id), its rejects and its ``ingest_batches`` row: a file
loads whole or not at all, and the lock is held only for the append.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

import duckdb
import polars as pl

from closewatch.store import Store
from ingest.errors import IngestError
from ingest.formats import Format, ParseOptions, Parsed, detect_format, get_format
from ingest.lines import head_lines_of, iter_line_batches
from ingest.redact import redact_secrets
from ingest.sources import Input

#: Adds the classification columns (category, severity, ...) to parsed events.
Enrich = Callable[[pl.DataFrame], pl.DataFrame]
#: Called with the number of bytes read so far.
Progress = Callable[[int], None]

CLOSURE_COLUMNS = [
    "event_id", "ts", "session_id", "close_code", "close_reason", "client_id", "source_format",
    "source_file", "source_line", "batch_id", "audio_duration_s", "session_duration_s", "category",
    "severity", "retry_safe", "action", "chunk_ms", "audio_rate_ratio", "code_inferred", "era",
]
FIRST_REJECTS_SHOWN = 5


@dataclass
class FileResult:
    """What happened to one input; the CLI and the dashboard print it."""

    source: str
    format: str | None
    batch_id: str
    status: str = "loaded"  # loaded / no_events / unreadable
    lines_read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped: int = 0
    message: str = ""
    first_rejects: list[tuple[int, str]] = field(default_factory=list)


def ingest_input(
    source: Input,
    store: Store,
    enrich: Enrich,
    format_name: str | None = None,
    options: ParseOptions = ParseOptions(),
    progress: Progress | None = None,
) -> FileResult:
    """Load one input into the store; returns its counts."""
    started = datetime.now(timezone.utc)
    result = FileResult(source=source.name, format=None, batch_id=uuid.uuid4().hex)
    fmt = _choose_format(source, format_name)
    with tempfile.TemporaryDirectory(prefix="closewatch-stage-") as folder:
        staging = Path(folder)
        if fmt is None:
            result.status, result.message = "no_events", "no known log format recognised; see `closewatch formats` or pass --format"
            sha, parse_s = _sha256_of(source), 0.0
        else:
            result.format = fmt.name
            clock = time.perf_counter()
            try:
                sha = _stage(source, fmt, options, enrich, staging, result, progress)
            except (EOFError, OSError, zlib.error) as error:
                _discard_staging(staging, result)
                result.status = "unreadable"
                result.message = f"the file cannot be read to its end ({error}); check that it is complete and not corrupted"
                sha = ""
            parse_s = time.perf_counter() - clock
        clock = time.perf_counter()
        _load(store, staging, result, sha, started, parse_s, clock)
    return result


def _choose_format(source: Input, format_name: str | None) -> Format | None:
    if format_name:
        return get_format(format_name)
    try:
        with source.open() as stream:
            return detect_format(head_lines_of(stream))
    except (EOFError, OSError, zlib.error):
        return None  # unreadable from the start: recorded as no known format


def _stage(source: Input, fmt: Format, options: ParseOptions, enrich: Enrich, staging: Path,
           result: FileResult, progress: Progress | None) -> str:
    """Parse the input into staging Parquet files; returns the content's sha256."""
    with source.open() as stream:
        reader = _HashingReader(stream, progress)
        counted = _count_lines(iter_line_batches(reader), result)
        for number, parsed in enumerate(fmt.parse(counted, options)):
            _stage_batch(parsed, number, fmt, source, enrich, staging, result)
        reader.drain()
    if result.accepted == 0 and result.rejected == 0:
        result.status = "no_events"
        result.message = f"no session-close events found in {result.lines_read} lines; check the format with `closewatch formats` or pass --format"
    if result.accepted:
        _assign_event_ids(staging)
    return reader.hexdigest()


def _discard_staging(staging: Path, result: FileResult) -> None:
    """An input that fails half way loads nothing: drop what was staged and zero the counts."""
    for part in staging.glob("*.parquet"):
        part.unlink()
    result.accepted = result.rejected = result.skipped = 0
    result.first_rejects = []


def _count_lines(batches: Iterator[pl.DataFrame], result: FileResult) -> Iterator[pl.DataFrame]:
    for batch in batches:
        if batch.height:
            result.lines_read = int(batch["source_line"][-1])
        yield batch


def _stage_batch(parsed: Parsed, number: int, fmt: Format, source: Input, enrich: Enrich,
                 staging: Path, result: FileResult) -> None:
    result.skipped += parsed.skipped
    if parsed.rejects.height:
        rejects = parsed.rejects.with_columns(raw=redact_secrets(pl.col("raw")), reason=redact_secrets(pl.col("reason")))
        rejects.write_parquet(staging / f"rejects-{number:06d}.parquet")
        result.rejected += rejects.height
        room = FIRST_REJECTS_SHOWN - len(result.first_rejects)
        result.first_rejects += [(line, reason) for line, reason in rejects.select("source_line", "reason").head(room).iter_rows()]
    if parsed.events.height:
        events = _prepare(parsed.events, fmt.name, source.name, result.batch_id)
        enrich(events).write_parquet(staging / f"events-{number:06d}.parquet")
        result.accepted += events.height


def _prepare(events: pl.DataFrame, format_name: str, source_name: str, batch_id: str) -> pl.DataFrame:
    """Redact, then fix the event's identity before classification can change anything."""
    texts = ["close_reason", "client_id", "session_id"]
    events = events.with_columns(redact_secrets(pl.col(name)) for name in texts)
    identity = pl.concat_str(
        [
            pl.col("ts").dt.epoch("us").cast(pl.String).fill_null(""),
            *(pl.col(name).cast(pl.String).fill_null("") for name in ["session_id", "close_code", "close_reason", "client_id"]),
        ],
        separator="\x1f",
    )
    return events.with_columns(
        identity=identity,
        source_format=pl.lit(format_name),
        source_file=pl.lit(source_name),
        batch_id=pl.lit(batch_id),
    )


def _assign_event_ids(staging: Path) -> None:
    """event_id = hash of identity and its occurrence number in the file (or the log's own id).

    Computed over the whole file, outside the store's lock, with DuckDB so it
    spills to disk rather than running out of memory on huge files.
    """
    parts = str(staging / "events-*.parquet")
    with duckdb.connect(config={"temp_directory": str(staging / "spill")}) as con:
        con.execute(f"""
            COPY (
                SELECT * EXCLUDE (identity, event_id, occurrence),
                       coalesce(event_id, md5(identity || '#' || occurrence::VARCHAR)) AS event_id
                FROM (
                    SELECT *, row_number() OVER (PARTITION BY identity ORDER BY source_line) - 1 AS occurrence
                    FROM read_parquet('{parts}')
                )
            ) TO '{staging / "final.parquet"}' (FORMAT parquet)
        """)


def _load(store: Store, staging: Path, result: FileResult, sha: str, started: datetime,
          parse_s: float, clock: float) -> None:
    """Append the staged file in one transaction: events (deduplicated), rejects, batch row."""
    final = staging / "final.parquet"
    reject_parts = sorted(staging.glob("rejects-*.parquet"))
    with store.transaction() as con:
        if final.exists():
            columns = ", ".join(CLOSURE_COLUMNS)
            inserted = con.execute(f"""
                INSERT INTO closures ({columns}, ingested_at)
                SELECT {columns}, now() FROM (
                    SELECT * FROM read_parquet('{final}')
                    QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY source_line) = 1
                ) AS staged
                WHERE NOT EXISTS (SELECT 1 FROM closures c WHERE c.event_id = staged.event_id)
            """).fetchone()[0]
            result.duplicates = result.accepted - inserted
            result.accepted = inserted
        if reject_parts:
            con.execute(
                "INSERT INTO rejects SELECT ?, ?, source_line, raw, reason FROM read_parquet(?)",
                [result.batch_id, result.source, [str(p) for p in reject_parts]],
            )
        con.execute(
            "INSERT INTO ingest_batches VALUES (?, ?, ?, ?, ?, now(), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [result.batch_id, result.source, sha, result.format, started, result.lines_read, result.accepted,
             result.duplicates, result.rejected, result.skipped, result.status, parse_s,
             time.perf_counter() - clock, result.message],
        )


def _sha256_of(source: Input) -> str:
    try:
        with source.open() as stream:
            reader = _HashingReader(stream, None)
            reader.drain()
    except (EOFError, OSError, zlib.error):
        return ""
    return reader.hexdigest()


class _HashingReader:
    """A read-through stream that hashes what passes and reports progress."""

    def __init__(self, stream: BinaryIO, progress: Progress | None):
        self._stream = stream
        self._hash = hashlib.sha256()
        self._progress = progress
        self._done = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._hash.update(data)
        self._done += len(data)
        if self._progress and data:
            self._progress(self._done)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def check_format_name(name: str | None) -> None:
    """Fail before any work if --format names no known format."""
    if name is not None:
        get_format(name)


__all__ = ["FileResult", "Enrich", "ingest_input", "check_format_name", "IngestError"]
