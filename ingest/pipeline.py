"""One input, end to end: detect, parse, stage, finalise, load.

1. Parse: the format's parser turns the input into events (EVENT_SCHEMA) and
   rejects, written batch by batch to Parquet files in a private staging
   folder, so memory stays bounded whatever the file's size.
2. Finalise (still outside the store): secrets are redacted, the distinct
   (code, reason) pairs are classified by ``enrich`` (polars, the catalog),
   and every event gets its deterministic event_id.
3. Load: only now is the store opened; the whole file is appended in one
   transaction with its duplicate check (an anti-join on event_id), its
   rejects and its ``ingest_batches`` row. A file loads whole or not at all,
   and the lock is held only for the append.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

import duckdb
import polars as pl
from closewatch.ingest.envelopes import choose_reader, with_reference_time
from closewatch.ingest.formats import Format, Parsed, ParseOptions, conform, get_format
from closewatch.ingest.lines import iter_line_batches
from closewatch.ingest.sources import Input

from closewatch.redaction import ANY_SECRET, MASK, redact_series, redact_then_cut
from closewatch.store import Store

#: Adds the classification columns (category, severity, ...) to a frame of
#: distinct (close_code, close_reason) pairs; may fill close_code where inferred.
Enrich = Callable[[pl.DataFrame], pl.DataFrame]
#: Called with the number of bytes read so far.
Progress = Callable[[int], None]

CLOSURE_COLUMNS = [
    "event_id", "ts", "session_id", "close_code", "close_reason", "client_id", "source_format",
    "source_file", "source_line", "batch_id", "audio_duration_s", "session_duration_s", "category",
    "severity", "retry_safe", "action", "chunk_ms", "audio_rate_ratio", "code_inferred", "era", "labels",
]
CLASSIFICATION_COLUMNS = ["category", "severity", "retry_safe", "action", "chunk_ms", "audio_rate_ratio", "code_inferred", "era"]
FIRST_REJECTS_SHOWN = 5
#: rejects.raw keeps this many characters of a line, cut after redaction so no key is kept in part.
REJECT_RAW_CHARS = 2048
STAGING_MEMORY_LIMIT = "1GB"
_UNREADABLE = (EOFError, OSError, zlib.error)


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
    sha256: str = ""
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
    with staged_input(source, enrich, format_name, options, progress) as staged:
        _load(store, staged.folder, staged.result, staged.sha256, staged.started, staged.parse_s)
    return staged.result


@dataclass
class Staged:
    """One input after steps 1 and 2, before any store: its counts and its staged Parquet files.

    ``closures`` (if it exists) has the final rows (CLOSURE_COLUMNS but the
    source_file, source_format and batch_id that ``result`` names, plus
    ``id_from_log``); ``rejects`` are (source_line, raw, reason) files.
    """

    result: FileResult
    folder: Path
    sha256: str
    started: datetime
    parse_s: float

    @property
    def closures(self) -> Path | None:
        final = self.folder / "final.parquet"
        return final if final.exists() else None

    @property
    def rejects(self) -> list[Path]:
        return sorted(self.folder.glob("rejects-*.parquet"))


@contextmanager
def staged_input(
    source: Input,
    enrich: Enrich,
    format_name: str | None = None,
    options: ParseOptions = ParseOptions(),
    progress: Progress | None = None,
) -> Iterator[Staged]:
    """Detect, parse, redact, classify and identify one input into a private folder, removed on exit.

    The local path loads the folder into the store; the Spark engine
    (``closewatch.jobs.spark``) writes it to the lake: one parser, one
    event id, whichever engine runs it.
    """
    started = datetime.now(timezone.utc)
    result = FileResult(source=source.name, format=None, batch_id=uuid.uuid4().hex)
    options = with_reference_time(options, source)
    fmt = _choose_format(source, format_name, options)
    with tempfile.TemporaryDirectory(prefix="closewatch-stage-") as folder:
        staging = Path(folder)
        clock = time.perf_counter()
        sha = _parse(source, fmt, options, staging, result, progress)
        if result.accepted:
            _finalise(staging, enrich, sha)
        yield Staged(result, staging, sha, started, time.perf_counter() - clock)


def check_format_name(name: str | None) -> None:
    """Fail before any work if --format names no known format."""
    if name is not None:
        get_format(name)


# -- 1. parse ----------------------------------------------------------------


def _choose_format(source: Input, format_name: str | None, options: ParseOptions) -> Format | None:
    """The input's format, behind its envelope if it has one (ingest.envelopes)."""
    try:
        return choose_reader(source, format_name, options)
    except _UNREADABLE:
        return None  # unreadable from the start: reported as no known format


def _parse(source: Input, fmt: Format | None, options: ParseOptions, staging: Path,
           result: FileResult, progress: Progress | None) -> str:
    """Stage the input's events and rejects; returns the content's sha256 ('' if unreadable)."""
    if fmt is None:
        result.status = "no_events"
        result.message = "no known log format recognised; see `closewatch formats` or pass --format"
        return _digest(source)[0]
    result.format = fmt.name
    try:
        if not (fmt.stage_file and source.path and _stage_fast(source, fmt, options, staging, result, progress)):
            return _stage_lines(source, fmt, options, staging, result, progress)
        return result.sha256
    except _UNREADABLE as error:
        _discard(staging, result)
        result.status = "unreadable"
        result.message = f"the file cannot be read to its end ({error}); check that it is complete and not corrupted"
        return ""
    finally:
        if result.status == "loaded" and result.accepted == 0 and result.rejected == 0:
            result.status = "no_events"
            result.message = f"no session-close events found in {result.lines_read:,} lines; check the format with `closewatch formats` or pass --format"


def _stage_fast(source: Input, fmt: Format, options: ParseOptions, staging: Path, result: FileResult,
                progress: Progress | None) -> bool:
    """A format's whole-file reader (DuckDB straight off the file), hashing in parallel.

    The reader may decline (returns None) when the file needs the line-by-line
    path, e.g. blank lines or unparseable records; nothing staged is kept then.
    Progress follows the hashing pass, the only one that reads in Python.
    """
    digest: list = []
    hasher = threading.Thread(target=lambda: digest.append(_digest(source, progress)))
    hasher.start()
    counts = fmt.stage_file(source.path, options, staging)
    hasher.join()
    if not digest:
        raise EOFError("the file could not be read")
    sha, lines = digest[0]
    if counts is None or counts.rows != lines:
        _discard(staging, result)
        return False
    result.sha256 = sha
    result.lines_read, result.accepted, result.skipped = lines, counts.events, counts.skipped
    if counts.rejects:
        _fill_reject_texts(source, staging, result)
    return True


def _stage_lines(source: Input, fmt: Format, options: ParseOptions, staging: Path,
                 result: FileResult, progress: Progress | None) -> str:
    with source.open() as stream:
        reader = _HashingReader(stream, progress)
        counted = _count_lines(iter_line_batches(reader), result)
        for number, parsed in enumerate(fmt.parse(counted, options)):
            _stage_batch(parsed, number, staging, result)
        reader.drain()
    return reader.hexdigest()


def _count_lines(batches: Iterator[pl.DataFrame], result: FileResult) -> Iterator[pl.DataFrame]:
    for batch in batches:
        if batch.height:
            result.lines_read = int(batch["source_line"][-1])
        yield batch


def _stage_batch(parsed: Parsed, number: int, staging: Path, result: FileResult) -> None:
    result.skipped += parsed.skipped
    if parsed.rejects.height:
        _stage_rejects(parsed.rejects, staging / f"rejects-{number:06d}.parquet", result)
    if parsed.events.height:
        conform(parsed.events).write_parquet(staging / f"events-{number:06d}.parquet", compression="lz4")
        result.accepted += parsed.events.height


def _stage_rejects(rejects: pl.DataFrame, path: Path, result: FileResult) -> None:
    rejects = rejects.with_columns(raw=redact_then_cut(rejects["raw"], REJECT_RAW_CHARS), reason=redact_series(rejects["reason"]))
    rejects.write_parquet(path)
    result.rejected += rejects.height
    room = FIRST_REJECTS_SHOWN - len(result.first_rejects)
    result.first_rejects += list(rejects.select("source_line", "reason").head(max(room, 0)).iter_rows())


def _fill_reject_texts(source: Input, staging: Path, result: FileResult) -> None:
    """The fast reader knows which lines it rejected but not their text: read just those lines."""
    path = staging / "unfilled-rejects.parquet"
    rejects = pl.read_parquet(path)
    wanted = set(rejects["source_line"].to_list())
    texts: dict[int, str] = {}
    with source.open() as stream:
        for number, line in enumerate(stream, start=1):
            if number in wanted:
                texts[number] = line.decode("utf-8", errors="replace").rstrip("\r\n")
    path.unlink()
    filled = rejects.with_columns(raw=pl.col("source_line").replace_strict(texts, default=None, return_dtype=pl.String))
    _stage_rejects(filled, staging / "rejects-fast.parquet", result)


def _discard(staging: Path, result: FileResult) -> None:
    """An input that fails half way loads nothing: drop what was staged and zero the counts."""
    for part in staging.glob("*.parquet"):
        part.unlink()
    result.accepted = result.rejected = result.skipped = 0
    result.first_rejects = []


# -- 2. finalise ---------------------------------------------------------------


def _finalise(staging: Path, enrich: Enrich, content_sha: str) -> None:
    """Redact, classify and identify every staged event into final.parquet.

    An event's identity is its time, session, code, reason and client. An
    event without a timestamp cannot be told from an identical close in
    another file, so its identity also names the content it came from:
    re-ingesting the same content still adds nothing, another file adds its own.

    Classification and redaction of reasons and clients run in polars on the
    distinct values (few, even in huge files) and are joined back in DuckDB,
    which also computes the event ids over the whole file and spills to disk
    rather than running out of memory.
    """
    with _staging_connection(staging) as con:
        con.execute(f"CREATE VIEW parts AS SELECT * FROM read_parquet('{staging / 'events-*.parquet'}')")
        pairs = con.execute("SELECT DISTINCT close_code, close_reason FROM parts").pl()
        clients = con.execute("SELECT DISTINCT client_id FROM parts WHERE client_id IS NOT NULL").pl()
        con.register("reasons", _classified_reasons(pairs, enrich).to_arrow())
        con.register("clients", clients.with_columns(redacted=redact_series(clients["client_id"])).to_arrow())
        con.execute(_FINAL_SQL.format(final=staging / "final.parquet", secret=ANY_SECRET.replace("'", "''"), mask=MASK,
                                      content=content_sha))


def _classified_reasons(pairs: pl.DataFrame, enrich: Enrich) -> pl.DataFrame:
    """(close_code, close_reason) as logged -> redacted reason, classification, inferred code."""
    redacted = pairs.with_columns(reason_redacted=redact_series(pairs["close_reason"]))
    classified = enrich(
        redacted.select(
            pl.col("close_code").cast(pl.Int32),
            pl.col("reason_redacted").alias("close_reason"),
            code_inferred=pl.lit(False),
        )
    )
    return pl.concat(
        [
            redacted.select(
                key_code=pl.col("close_code").cast(pl.Int32).fill_null(_NULL_CODE),
                key_reason=pl.col("close_reason").fill_null(_NULL_TEXT),
                reason_redacted="reason_redacted",
            ),
            classified.select(pl.col("close_code").alias("new_code"), *CLASSIFICATION_COLUMNS),
        ],
        how="horizontal",
    )


_NULL_CODE = -(2**31)
_NULL_TEXT = "\x1f"  # chr(31): never a whole reason text

_FINAL_SQL = f"""
COPY (
    WITH e AS (
        SELECT p.*,
               CASE WHEN regexp_matches(p.session_id, '{{secret}}') THEN '{{mask}}' ELSE p.session_id END AS session_clean,
               r.reason_redacted, r.new_code, {", ".join("r." + c for c in CLASSIFICATION_COLUMNS)},
               c.redacted AS client_clean
        FROM parts p
        JOIN reasons r ON coalesce(p.close_code, {_NULL_CODE}) = r.key_code AND coalesce(p.close_reason, chr(31)) = r.key_reason
        LEFT JOIN clients c ON p.client_id = c.client_id
    ), identified AS (
        SELECT *, concat_ws(chr(31), coalesce(epoch_us(ts)::VARCHAR, 'content:{{content}}'), coalesce(session_clean, ''),
                            coalesce(close_code::VARCHAR, ''), coalesce(reason_redacted, ''), coalesce(client_clean, '')) AS identity
        FROM e
    )
    SELECT coalesce(event_id, md5(identity || '#' || (row_number() OVER (PARTITION BY identity ORDER BY source_line) - 1)::VARCHAR)) AS event_id,
           ts, session_clean AS session_id, new_code AS close_code, reason_redacted AS close_reason, client_clean AS client_id,
           source_line, audio_duration_s, session_duration_s, {", ".join(CLASSIFICATION_COLUMNS)}, labels,
           event_id IS NOT NULL AS id_from_log
    FROM identified
) TO '{{final}}' (FORMAT parquet)
"""


def _staging_connection(staging: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB (not the store) that spills to the staging folder."""
    con = duckdb.connect(config={"temp_directory": str(staging / "spill"), "memory_limit": STAGING_MEMORY_LIMIT})
    con.execute("SET enable_progress_bar = false")
    return con


# -- 3. load -------------------------------------------------------------------


def _load(store: Store, staging: Path, result: FileResult, sha: str, started: datetime, parse_s: float) -> None:
    """Append the staged file in one transaction: events (deduplicated), rejects, batch row."""
    clock = time.perf_counter()
    final = staging / "final.parquet"
    reject_parts = [str(p) for p in sorted(staging.glob("rejects-*.parquet"))]
    with store.transaction(lake=False) as con:  # writes closures: the file's own table
        if final.exists():
            ids_from_log = con.execute(f"SELECT bool_or(id_from_log) FROM read_parquet('{final}')").fetchone()[0]
            dedupe = _DEDUPE_IDS_FROM_LOG if ids_from_log else ""
            inserted = con.execute(_INSERT_SQL.format(final=final, dedupe=dedupe), [result.source, result.format, result.batch_id]).fetchone()[0]
            result.duplicates = result.accepted - inserted
            result.accepted = inserted
        if reject_parts:
            con.execute("INSERT INTO rejects SELECT ?, ?, source_line, raw, reason FROM read_parquet(?)",
                        [result.batch_id, result.source, reject_parts])
        con.execute(
            "INSERT INTO ingest_batches VALUES (?, ?, ?, ?, ?, now(), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [result.batch_id, result.source, sha, result.format, started, result.lines_read, result.accepted,
             result.duplicates, result.rejected, result.skipped, result.status, parse_s,
             time.perf_counter() - clock, result.message],
        )


_INSERT_SQL = f"""
INSERT INTO closures ({", ".join(CLOSURE_COLUMNS)}, ingested_at)
SELECT {", ".join("$1" if c == "source_file" else "$2" if c == "source_format" else "$3" if c == "batch_id" else c for c in CLOSURE_COLUMNS)}, now()
FROM (
    SELECT * FROM read_parquet('{{final}}') {{dedupe}}
) AS staged
WHERE NOT EXISTS (SELECT 1 FROM closures c WHERE c.event_id = staged.event_id)
"""


#: ids a log carries itself may repeat inside one file (computed ids cannot): keep the first.
_DEDUPE_IDS_FROM_LOG = "QUALIFY NOT id_from_log OR row_number() OVER (PARTITION BY event_id ORDER BY source_line) = 1"


# -- reading helpers -----------------------------------------------------------


def _digest(source: Input, progress: Progress | None = None) -> tuple[str, int]:
    """sha256 of the (decompressed) content and its number of lines."""
    try:
        with source.open() as stream:
            reader = _HashingReader(stream, progress)
            reader.drain()
    except _UNREADABLE:
        return "", 0
    return reader.hexdigest(), reader.lines


class _HashingReader:
    """A read-through stream that hashes and counts lines of what passes, and reports progress."""

    def __init__(self, stream: BinaryIO, progress: Progress | None):
        self._stream = stream
        self._hash = hashlib.sha256()
        self._progress = progress
        self._done = 0
        self._newlines = 0
        self._last = b"\n"

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            self._hash.update(data)
            self._newlines += data.count(b"\n")
            self._last = data[-1:]
            self._done += len(data)
            if self._progress:
                self._progress(self._done)
        return data

    def drain(self) -> None:
        while self.read(1 << 22):
            pass

    @property
    def lines(self) -> int:
        return self._newlines + (0 if self._last == b"\n" else 1)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
