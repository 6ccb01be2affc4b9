"""One input, end to end: detect, parse, stage, finalise, load.

1. Parse: the format's parser turns the input into events (EVENT_SCHEMA) and
   rejects in a private staging folder beside the database
   (``closewatch.ingest.staging``), held by one in-memory DuckDB per input that
   spills there beyond its memory limit, so memory stays bounded whatever the
   file's size. A clean JSON-lines file is read and typed by DuckDB straight
   into it; other formats write batch by batch to Parquet files it reads.
   Lines longer than the configured limit are rejected with their number and
   never held whole (``IngestLimits``).
2. Finalise (still outside the store): events with a timestamp outside the
   sane range or a close code outside 0-65535 become rejects; secrets are
   redacted, then long fields cut; the distinct (code, reason) pairs are
   classified by ``enrich`` (polars, the catalog), and every event gets its
   deterministic event_id (never a field of the log).
3. Load: only now is the store opened; the whole file is appended in one
   transaction with its duplicate check (an anti-join on event_id against the
   stored rows of the file's time range only, see ``_load``), its rejects and
   its ``ingest_batches`` row. A file loads whole or not at all, and the lock
   is held only for the append.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import duckdb
import numpy as np
import polars as pl

from closewatch.ingest.envelopes import choose_reader, options_for_input
from closewatch.ingest.formats import Format, Parsed, ParseOptions, conform, get_format
from closewatch.ingest.limits import IngestLimits
from closewatch.ingest.lines import InputTooLarge, LineReader, LongLine
from closewatch.ingest.sources import Input
from closewatch.ingest.staging import private_folder, staging_folder
from closewatch.redaction import ANY_SECRET, MASK, redact_series, redact_text, redact_then_cut
from closewatch.store import Store, first_row, literal, scalar

#: Adds the classification columns (category, severity, ...) to a frame of
#: distinct (close_code, close_reason) pairs; may fill close_code where inferred.
Enrich = Callable[[pl.DataFrame], pl.DataFrame]
#: Called with the number of bytes read so far.
Progress = Callable[[int], None]

STORED_CLOSURE_COLUMNS = [
    "event_id", "ts", "session_id", "close_code", "close_reason", "client_id", "source_format",
    "source_file", "source_line", "batch_id", "audio_duration_s", "session_duration_s", "category",
    "severity", "retry_safe", "action", "chunk_ms", "audio_rate_ratio", "code_inferred", "era", "labels",
]
CLASSIFICATION_COLUMNS = ["category", "severity", "retry_safe", "action", "chunk_ms", "audio_rate_ratio", "code_inferred", "era"]
FIRST_REJECTS_SHOWN = 5
DEFAULT_LIMITS = IngestLimits()
#: rejects.raw keeps this many characters of a line, cut after redaction so no key is kept in part.
REJECT_RAW_CHARS = 2048
_UNREADABLE = (EOFError, OSError, zlib.error)


@dataclass
class FileResult:
    """What happened to one input; the CLI and the dashboard print it."""

    source: str
    format: str | None
    batch_id: str
    status: str = "loaded"  # loaded / no_events / unreadable / too_large
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
    limits: IngestLimits = DEFAULT_LIMITS,
) -> FileResult:
    """Load one input into the store; returns its counts."""
    if not source.problem:
        store.check_writable()  # a read-only database says so before any work
    with staged_input(source, enrich, format_name, options, progress, limits, home=store.path, by_pair=True) as staged:
        if not source.problem:
            _load(store, staged.folder, staged.result, staged.sha256, staged.started, staged.parse_s, limits)
    return staged.result


@dataclass
class Staged:
    """One input after steps 1 and 2, before any store: its counts and its staged Parquet files.

    ``closures`` (if any) are the Parquet parts of the final rows (STORED_CLOSURE_COLUMNS but the
    source_file, source_format and batch_id that ``result`` names); ``rejects``
    are (source_line, raw, reason) files. Staged ``by_pair``, the columns that
    follow from the (close code, reason) pair (close_code, close_reason and
    CLASSIFICATION_COLUMNS) are in ``pairs``, one row a pair, and the closures
    have its number ``pair`` instead (see ``_load``).
    """

    result: FileResult
    folder: Path
    sha256: str
    started: datetime
    parse_s: float

    @property
    def closures(self) -> list[Path] | None:
        return final_parts(self.folder) or None

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
    limits: IngestLimits = DEFAULT_LIMITS,
    home: Path | None = None,
    by_pair: bool = False,
) -> Iterator[Staged]:
    """Detect, parse, redact, classify and identify one input into a private folder, removed on exit.

    The local path loads the folder into the store; the Spark engine
    (``closewatch.jobs.spark``) writes it to the lake: one parser, one
    event id, whichever engine runs it. The folder lives beside the database
    ``home`` (``closewatch.ingest.staging``), or in a private temporary
    folder when there is none (Spark tasks). ``by_pair`` stages the columns
    that follow from the (code, reason) pair once a pair (see ``Staged``): the
    local load joins them back, which costs less than writing and reading
    them on every row (issue 16).
    """
    started = datetime.now(UTC)
    result = FileResult(source=source.name, format=None, batch_id=uuid.uuid4().hex)
    if source.problem:
        result.status, result.message = "unreadable", source.problem
        with private_folder() as nothing_staged:
            yield Staged(result, nothing_staged, "", started, 0.0)
        return
    options = options_for_input(options, source)
    fmt = _choose_format(source, format_name, options)
    with staging_folder(home) if home is not None else private_folder() as staging:
        options = replace(options, scratch=staging)
        clock = time.perf_counter()
        with _staging_connection(staging, limits) as con:
            sha = _parse(source, fmt, options, staging, con, result, progress, limits)
            if result.accepted:
                out_of_range = _finalise(con, staging, enrich, source, limits, by_pair)
                if out_of_range.height:
                    result.accepted -= out_of_range.height
                    _fill_reject_texts(source, staging, result, out_of_range, limits, "rejects-range.parquet")
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


def _parse(source: Input, fmt: Format | None, options: ParseOptions, staging: Path, con: duckdb.DuckDBPyConnection,
           result: FileResult, progress: Progress | None, limits: IngestLimits) -> str:
    """Stage the input's events and rejects; returns the content's sha256 ('' if unreadable)."""
    if fmt is None:
        result.status = "no_events"
        result.message = ("no known log format recognised; see `closewatch formats` or pass --format" if not options.envelope
                          else f"no known log format recognised inside a {options.envelope} envelope; is it the right "
                               "envelope? Leave it to detection or see `closewatch formats`")
        digest = _digest(source, limits)
        return "" if isinstance(digest, BaseException) else digest[0]
    result.format = fmt.name
    try:
        if not (fmt.stage_file and source.path and _stage_fast(source, fmt, options, staging, con, result, progress, limits)):
            return _stage_lines(source, fmt, options, staging, con, result, progress, limits)
        return result.sha256
    except InputTooLarge as error:
        _discard(staging, con, result)
        result.status = "too_large"
        result.message = f"not loaded: {error}; split the file or raise the bound"
        return ""
    except _UNREADABLE as error:
        _discard(staging, con, result)
        result.status = "unreadable"
        result.message = f"the file cannot be read to its end ({error}); check that it is complete and not corrupted"
        return ""
    finally:
        if result.status == "loaded" and result.accepted == 0 and result.rejected == 0:
            result.status = "no_events"
            result.message = f"no session-close events found in {result.lines_read:,} lines; check the format with `closewatch formats` or pass --format"


def _stage_fast(source: Input, fmt: Format, options: ParseOptions, staging: Path, con: duckdb.DuckDBPyConnection,
                result: FileResult, progress: Progress | None, limits: IngestLimits) -> bool:
    """A format's whole-file reader (DuckDB straight off the file into ``con``), hashing in parallel.

    The reader may decline (returns None) when the file needs the line-by-line
    path, e.g. blank lines or unparseable records; nothing staged is kept then.
    Progress follows the hashing pass, the only one that reads in Python; it
    also measures the longest line, so a file with a line over the limit goes
    the line-by-line way, which rejects that line.
    """
    digest: list[tuple[str, int, int] | BaseException] = []
    hasher = threading.Thread(target=lambda: digest.append(_digest(source, limits, progress)))
    hasher.start()
    assert fmt.stage_file is not None and source.path is not None  # the caller checked both
    counts = fmt.stage_file(source.path, options, con)
    hasher.join()
    outcome = digest[0] if digest else EOFError("the file could not be read")
    if isinstance(outcome, BaseException):
        _discard(staging, con, result)
        raise outcome
    sha, lines, longest = outcome
    if counts is None or counts.rows != lines or longest > limits.max_line_length:
        _discard(staging, con, result)
        return False
    result.sha256 = sha
    result.lines_read, result.accepted, result.skipped = lines, counts.events, counts.skipped
    if counts.rejects:
        rejects = con.execute("SELECT source_line, reason FROM unfilled_rejects").pl()
        _fill_reject_texts(source, staging, result, rejects, limits, "rejects-fast.parquet")
    return True


def _stage_lines(source: Input, fmt: Format, options: ParseOptions, staging: Path, con: duckdb.DuckDBPyConnection,
                 result: FileResult, progress: Progress | None, limits: IngestLimits) -> str:
    """The format's parser over numbered lines, batch by batch; each batch's events go to a Parquet file
    (so memory stays bounded), read back by ``con`` as the view ``staged``."""
    with source.open() as stream:
        hashing = _HashingReader(stream, progress)
        lines = LineReader(hashing, max_line_bytes=int(limits.max_line_length), max_total_bytes=int(limits.max_decompressed))
        number = 0
        for number, parsed in enumerate(fmt.parse(lines.batches(), options)):
            _stage_batch(parsed, number, staging, result)
            _stage_long_lines(lines, staging / f"rejects-long-{number:06d}.parquet", result, limits)
        _stage_long_lines(lines, staging / "rejects-long-last.parquet", result, limits)
        hashing.drain()
        result.lines_read = lines.lines
    if result.accepted:
        con.execute(f"CREATE OR REPLACE TEMP VIEW staged AS SELECT * FROM read_parquet({literal(str(staging / 'events-*.parquet'))})")
    return hashing.hexdigest()


#: An over-long line's reject keeps its first bytes only; a secret may straddle where they end,
#: so after redaction this many characters are dropped from the end as well (longer than any key).
_LONG_LINE_TAIL_DROPPED = 512


def _stage_long_lines(reader: LineReader, path: Path, result: FileResult, limits: IngestLimits) -> None:
    """Rejects for the lines the reader set aside as too long (with their number and length)."""
    if not reader.long_lines:
        return
    found, reader.long_lines = reader.long_lines, []
    _stage_rejects(pl.DataFrame(
        {"source_line": [line.source_line for line in found],
         "raw": [_long_line_text(line) for line in found],
         "reason": [f"Line is {line.length:,} bytes, longer than the {int(limits.max_line_length):,}-byte limit; it was "
                    "skipped (raise [ingest] max_line_length if such lines are real)." for line in found]},
        schema={"source_line": pl.Int64, "raw": pl.String, "reason": pl.String},
    ), path, result)


def _long_line_text(line: LongLine) -> str:
    redacted = redact_text(line.prefix)
    return redacted[: max(0, len(redacted) - _LONG_LINE_TAIL_DROPPED)] + " [...]"


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
    # the first ones by line number, whichever order the parts were staged in (over-long lines come last)
    shown = result.first_rejects + list(rejects.select("source_line", "reason").sort("source_line").head(FIRST_REJECTS_SHOWN).iter_rows())
    result.first_rejects = sorted(shown)[:FIRST_REJECTS_SHOWN]


def _fill_reject_texts(source: Input, staging: Path, result: FileResult, rejects: pl.DataFrame,
                       limits: IngestLimits, name: str) -> None:
    """Rejects known by line number only (the fast reader's, out-of-range events): read just those lines' text."""
    wanted = rejects.select(pl.col("source_line").cast(pl.Int64), "reason")
    texts = []
    with source.open() as stream:
        for batch in LineReader(stream, max_line_bytes=int(limits.max_line_length)).batches():
            texts.append(batch.join(wanted.select("source_line"), on="source_line", how="semi"))
    found = pl.concat(texts) if texts else pl.DataFrame(schema={"source_line": pl.Int64, "raw": pl.String})
    filled = wanted.join(found, on="source_line", how="left").select("source_line", "raw", "reason")
    _stage_rejects(filled, staging / name, result)


def _discard(staging: Path, con: duckdb.DuckDBPyConnection, result: FileResult) -> None:
    """An input that fails half way loads nothing: drop what was staged and zero the counts."""
    for part in staging.glob("*.parquet"):
        part.unlink()
    con.execute("DROP VIEW IF EXISTS staged; DROP VIEW IF EXISTS unfilled_rejects; DROP TABLE IF EXISTS typed")
    result.accepted = result.rejected = result.skipped = 0
    result.first_rejects = []


# -- 2. finalise ---------------------------------------------------------------


def _finalise(con: duckdb.DuckDBPyConnection, staging: Path, enrich: Enrich, source: Input, limits: IngestLimits,
              by_pair: bool = False) -> pl.DataFrame:
    """Screen, redact, classify and identify the staged events (the view ``staged`` on ``con``) into the final parts.

    Returns the events screened out (source_line, reason): a timestamp outside
    the configured years or a close code outside 0-65535 is a broken line,
    rejected with its number like any other.

    An event's identity is its time, session, code, reason and client, and
    its occurrence number among identical ones; a field the log calls
    ``event_id`` is never trusted (a logger may write the same one on every
    line). An event without a timestamp is identified instead by the file it
    comes from and its place among the file's untimestamped events: the file
    is its opening bytes (sha256 up to the end of the line of its first
    untimestamped event, at most the first 4 KiB), the place its ordinal
    number. A grown copy of the file opens the same way and has the same
    events before the new ones, so it adds only those; an entry whose last
    line was not yet written (a Termination before its close) is folded with
    it later and still counts once, because it keeps its ordinal. Another
    file with other content adds its own.

    Classification and redaction of reasons and clients run in polars on the
    distinct values (few, even in huge files) and are joined back in DuckDB,
    which also computes the event ids and spills to disk rather than running
    out of memory. Identical events share their time and code, so only the
    rows whose (time, code) slot repeats are numbered by a window
    (``_repeated_slots``); the rest are each the first of their kind. A window
    over the whole file's wide rows cost about 2 of the finalise's 5-6 CPU-s
    on 2 M lines (issue 16); a GROUP BY over the times, tried before, took a
    13.5 M-line file past its 1.5 GB memory bound, which the fixed byte table
    of slots does not. The staged rows are read in place (no
    screened copy); the small tables go to DuckDB as Parquet written by
    polars, which spares importing pyarrow's dataset module (and pandas) for
    a registered frame.
    """
    con.execute(_SCREEN_SQL.format(first=limits.earliest_year, last=limits.latest_year + 1))
    out_of_range = con.execute("SELECT source_line, why AS reason FROM screened WHERE why IS NOT NULL ORDER BY source_line").pl()
    con.execute("CREATE OR REPLACE TEMP VIEW parts AS SELECT * EXCLUDE (why) FROM screened WHERE why IS NULL")
    pairs = con.execute("SELECT DISTINCT close_code, close_reason FROM parts").pl()
    clients = con.execute("SELECT DISTINCT client_id FROM parts WHERE client_id IS NOT NULL").pl()
    first_untimed, timed = first_row(con, "SELECT min(source_line) FILTER (WHERE ts IS NULL), count(ts) FROM parts")
    _put(con, staging, "reasons", _classified_reasons(pairs, enrich, limits).with_row_index("pair"))
    if by_pair:
        con.execute(f"COPY (SELECT {_PAIR_COLUMNS} FROM reasons) TO {literal(str(staging / PAIRS_FILE))} (FORMAT parquet)")
    _put(con, staging, "clients", clients.with_columns(redacted=redact_then_cut(clients["client_id"], limits.max_field_length)))
    untimed = "NULL::BIGINT AS untimed_ordinal"
    untimed_join = ""
    if first_untimed is not None:
        untimed, untimed_join = "u.untimed_ordinal", _UNTIMED_JOIN
    slot_mask, repeated = _repeated_slots(con, timed)
    _put(con, staging, "repeated", pl.DataFrame({"slot": repeated}, schema={"slot": pl.UInt64}))
    con.execute("SET preserve_insertion_order = false")  # every order that matters is explicit (ORDER BY source_line)
    con.execute(_FINAL_SQL.format(final=literal(str(staging / FINAL_FOLDER)), secret=literal(ANY_SECRET), mask=literal(MASK),
                                  file_key=_file_key(source, first_untimed), field=limits.max_field_length,
                                  untimed=untimed, untimed_join=untimed_join, slot_mask=slot_mask,
                                  columns=_BY_PAIR_COLUMNS if by_pair else _FINAL_COLUMNS))
    return out_of_range


#: At most 2**SLOT_BITS slots for _repeated_slots: two bits each, 64 MiB for the largest files. Fewer
#: slots cost more in the COPY than they save: at 2**26, a fifth of a 13.5 M-line file shared a slot by
#: chance, and numbering them took its peak memory 70 MB higher (1.41 against 1.34 GB).
SLOT_BITS = 28


def _repeated_slots(con: duckdb.DuckDBPyConnection, timed: int) -> tuple[int, np.ndarray]:
    """The slot mask, and the slots of (time, close code) that two or more of the ``timed`` timestamped rows of ``parts`` share.

    Identical events share their time and code, so only rows in these slots
    can need an occurrence number above 0. A slot is a hash of the pair cut to
    a number of bits (32 slots a row, at most SLOT_BITS): unrelated rows that
    share one are merely numbered with the rest, correctly, by their whole
    identity (about 3 % of 2 M rows, 5 % of 13.5 M). Two bitsets say which slots were seen
    once and which twice, read in small batches, so memory stays small and
    fixed whatever the file's size: this runs while the staging DuckDB holds
    its whole memory, and a GROUP BY over the times, and a byte a slot, took a
    13.5 M-line file to or past its 1.5 GB bound (issue 16).
    """
    bits = min(SLOT_BITS, max(10, (timed * 32).bit_length()))
    mask = (1 << bits) - 1
    once = np.zeros((mask >> 3) + 1, dtype=np.uint8)
    twice = np.zeros((mask >> 3) + 1, dtype=np.uint8)
    repeated = [np.empty(0, dtype=np.uint64)]
    reader = con.execute(f"SELECT ({_SLOT.format(slot_mask=mask)})::UBIGINT AS slot FROM parts WHERE ts IS NOT NULL").to_arrow_reader(1 << 17)
    for batch in reader:
        slots, counts = np.unique(_uint64s(batch.column(0)), return_counts=True)
        byte, bit = slots >> 3, np.left_shift(1, slots & 7).astype(np.uint8)
        new = slots[((counts > 1) | (once[byte] & bit > 0)) & (twice[byte] & bit == 0)]
        np.bitwise_or.at(once, byte, bit)
        np.bitwise_or.at(twice, new >> 3, np.left_shift(1, new & 7).astype(np.uint8))
        repeated.append(new)
    return mask, np.concatenate(repeated)


def _uint64s(column) -> np.ndarray:
    """An Arrow column of UBIGINT without NULLs (a hash never is) as numpy, read from its buffer.

    pyarrow's, DuckDB's and polars' own numpy conversions import pandas or
    pyarrow.compute, 0.3 s of every small ingest (tests/cli/test_start.py).
    """
    return np.frombuffer(column.buffers()[1], dtype=np.uint64, count=len(column), offset=column.offset * 8)


def _put(con: duckdb.DuckDBPyConnection, staging: Path, name: str, frame: pl.DataFrame) -> None:
    """A small polars frame as a table of ``con``, through a Parquet file in the staging folder."""
    path = staging / f"{name}.table.parquet"
    frame.write_parquet(path)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM read_parquet({literal(str(path))})")
    path.unlink()


#: How much of a file's start identifies it for untimestamped closes (see _finalise).
PREFIX_BYTES = 4096


def _file_key(source: Input, first_untimed: int | None) -> str:
    """The file an untimestamped close comes from, as its opening bytes (see _finalise): sha256 up to the
    end of the line of the file's first untimestamped close if that line ends in the first PREFIX_BYTES
    (a grown copy shares it), else of those bytes. '' when every close has a timestamp."""
    if first_untimed is None:
        return ""
    head_keys, tail_key = _prefix_keys(source)
    return head_keys.get(first_untimed, tail_key)


def _prefix_keys(source: Input) -> tuple[dict[int, str], str]:
    """sha256 of the file's start up to the end of each line that ends in its first PREFIX_BYTES, and of those bytes.

    A line's key covers the bytes before its newline (not the newline), so the
    last line of a file that later grows keeps its key once the newline is written.
    """
    try:
        with source.open() as stream:
            head = stream.read(PREFIX_BYTES)
    except _UNREADABLE:
        head = b""
    ends = [i for i, byte in enumerate(head) if byte == 10]
    if len(head) < PREFIX_BYTES and not head.endswith(b"\n"):
        ends.append(len(head))  # the whole file is in the head: its last line ends at the end
    keys = {number: hashlib.sha256(head[:end]).hexdigest() for number, end in enumerate(ends, start=1)}
    return keys, hashlib.sha256(head).hexdigest()


def _classified_reasons(pairs: pl.DataFrame, enrich: Enrich, limits: IngestLimits) -> pl.DataFrame:
    """(close_code, close_reason) as logged -> redacted (then cut) reason, classification, inferred code."""
    redacted = pairs.with_columns(reason_redacted=redact_then_cut(pairs["close_reason"], limits.max_field_length))
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

_SCREEN_SQL = """
CREATE OR REPLACE TEMP VIEW screened AS
SELECT *, CASE
    WHEN ts IS NOT NULL AND (ts < make_timestamptz({first}, 1, 1, 0, 0, 0, 'UTC') OR ts >= make_timestamptz({last}, 1, 1, 0, 0, 0, 'UTC'))
        THEN 'Timestamp ' || strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ')
             || ' is outside the accepted years {first}-' || ({last} - 1)::VARCHAR
             || ' (change [ingest] earliest_year / latest_year if it is real).'
    WHEN close_code IS NOT NULL AND (close_code < 0 OR close_code > 65535)
        THEN 'Close code ' || close_code::VARCHAR || ' is outside 0-65535, so it is not a WebSocket close code.'
END AS why
FROM staged
"""

#: An untimestamped close's ordinal among the file's untimestamped closes (joined only when there are any).
_UNTIMED_JOIN = """
        LEFT JOIN (SELECT source_line AS line, row_number() OVER (ORDER BY source_line) AS untimed_ordinal
                   FROM parts WHERE ts IS NULL) u ON u.line = p.source_line"""

#: The rows of ``parts`` whose (time, close code) may repeat: their slot (see _repeated_slots) is in ``repeated``.
_SLOT = "(hash(epoch_us(ts), close_code) & {slot_mask})"
_MAY_REPEAT = f"ts IS NOT NULL AND {_SLOT} IN (SELECT slot FROM repeated)"

#: Redacted, classified rows of {{rows}} (a part of ``parts``) with their identity.
_IDENTIFIED_SQL = f"""
    SELECT *, concat_ws(chr(31), coalesce(epoch_us(ts)::VARCHAR, 'untimed:{{file_key}}:' || untimed_ordinal::VARCHAR),
                        coalesce(session_clean, ''), coalesce(close_code::VARCHAR, ''), coalesce(reason_redacted, ''),
                        coalesce(client_clean, '')) AS identity
    FROM (
        SELECT p.*,
               left(CASE WHEN regexp_matches(p.session_id, {{secret}}) THEN {{mask}} ELSE p.session_id END, {{field}}) AS session_clean,
               r.pair, r.reason_redacted, r.new_code, {", ".join("r." + c for c in CLASSIFICATION_COLUMNS)},
               c.redacted AS client_clean, {{untimed}}
        FROM (SELECT * FROM parts WHERE {{rows}}) p
        JOIN reasons r ON coalesce(p.close_code, {_NULL_CODE}) = r.key_code AND coalesce(p.close_reason, chr(31)) = r.key_reason
        LEFT JOIN clients c ON p.client_id = c.client_id{{untimed_join}}
    )
"""

_FINAL_COLUMNS = f"""ts, session_clean AS session_id, new_code AS close_code, reason_redacted AS close_reason, client_clean AS client_id,
           source_line, audio_duration_s, session_duration_s, {", ".join(CLASSIFICATION_COLUMNS)}, labels"""
#: Staged by pair: the row's pair number instead of the columns that follow from it, which PAIRS_FILE has.
_BY_PAIR_COLUMNS = """ts, session_clean AS session_id, client_clean AS client_id, source_line, audio_duration_s, session_duration_s,
           labels, pair"""
_PAIR_COLUMNS = f"pair, new_code AS close_code, reason_redacted AS close_reason, {', '.join(CLASSIFICATION_COLUMNS)}"
PAIRS_FILE = "pairs.parquet"

#: Event ids: md5 of the identity and its occurrence number among identical events in file order. Only
#: the rows that may repeat are numbered (a window over the whole file's wide rows cost a third of
#: the finalise); every other row is its identity's first occurrence, number 0. The parts are read
#: once, by the load, and removed, so they are written for speed: one a thread (DuckDB writes one
#: Parquet file on one thread), uncompressed and without dictionaries (event and session ids are
#: unique): 0.3 s of 2 M lines against 1.6 s with Parquet's defaults, for a third more bytes (issue 16).
_FINAL_SQL = f"""
COPY (
    SELECT md5(identity || '#0') AS event_id, {{columns}}
    FROM ({_IDENTIFIED_SQL.replace("{rows}", f"NOT coalesce({_MAY_REPEAT}, false)")})
    UNION ALL
    SELECT md5(identity || '#' || (row_number() OVER (PARTITION BY identity ORDER BY source_line) - 1)::VARCHAR) AS event_id,
           {{columns}}
    FROM ({_IDENTIFIED_SQL.replace("{rows}", _MAY_REPEAT)})
) TO {{final}} (FORMAT parquet, COMPRESSION uncompressed, DICTIONARY_SIZE_LIMIT 1, PER_THREAD_OUTPUT true)
"""

#: The folder of the final rows' Parquet parts, one a thread (see _FINAL_SQL).
FINAL_FOLDER = "final"


def final_parts(staging: Path) -> list[Path]:
    """The Parquet parts of a staging folder's final rows (none when no row was final)."""
    return sorted((staging / FINAL_FOLDER).glob("*.parquet"))


def read_parts(parts: list[Path]) -> str:
    """SQL reading staged Parquet parts as one relation (their paths as a literal: see store.literal)."""
    return f"read_parquet({literal([str(part) for part in parts])})"


def _staging_connection(staging: Path, limits: IngestLimits) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB (not the store) that spills to the staging folder."""
    con = duckdb.connect(config={"temp_directory": str(staging / "spill"), "memory_limit": limits.duckdb_memory_limit})
    con.execute("SET enable_progress_bar = false")
    return con


# -- 3. load -------------------------------------------------------------------


def _load(store: Store, staging: Path, result: FileResult, sha: str, started: datetime, parse_s: float,
          limits: IngestLimits) -> None:
    """Append the staged file in one transaction: events (deduplicated), rejects, batch row.

    The duplicate check reads only the stored closures that could be the same
    events: an event id includes the event's time, so a stored duplicate of a
    timestamped event has that very time, and only rows within the file's
    first and last timestamp are compared (DuckDB skips the other row groups
    by their min/max); an untimestamped event can only match another
    untimestamped one, so those are compared with the stored rows without a
    timestamp, and only when the file has any. The cost of an append then
    follows the file and the stored rows of its period, not the whole store.
    """
    clock = time.perf_counter()
    final = final_parts(staging)
    reject_parts = [str(p) for p in sorted(staging.glob("rejects-*.parquet"))]
    with store.transaction(lake=False) as con:  # writes closures: the file's own table
        con.execute(f"SET memory_limit = '{limits.duckdb_memory_limit}'")
        con.execute(f"SET temp_directory = {literal(str(staging / 'spill'))}")  # literals, no bound parameters: see store.literal
        # Rows go in as parallel, already compressed row groups; in file order DuckDB would write them
        # through the WAL and compress them again at the checkpoint when the connection closes (under
        # the lock), which doubled the append's cost.
        con.execute("SET preserve_insertion_order = false")
        if final:
            pairs = staging / PAIRS_FILE
            rows = read_parts(final)
            staged = (f"(SELECT * FROM {rows} AS rows JOIN read_parquet({literal(str(pairs))}) AS pairs USING (pair))"
                      if pairs.exists() else rows)
            inserted = scalar(con, _INSERT_SQL.format(staged=staged, stored=stored_ids_sql(con, final), source=literal(result.source),
                                                      format=literal(result.format), batch=literal(result.batch_id)))
            result.duplicates = result.accepted - inserted
            result.accepted = inserted
        if reject_parts:
            con.execute(f"INSERT INTO rejects SELECT {literal(result.batch_id)}, {literal(result.source)}, source_line, raw, reason "
                        f"FROM read_parquet({literal(reject_parts)})")
        values = [result.batch_id, result.source, sha, result.format, started, result.lines_read, result.accepted,
                  result.duplicates, result.rejected, result.skipped, result.status, parse_s,
                  time.perf_counter() - clock, result.message]
        con.execute(f"INSERT INTO ingest_batches VALUES ({', '.join(map(literal, values[:5]))}, now(), {', '.join(map(literal, values[5:]))})")


def stored_ids_sql(con: duckdb.DuckDBPyConnection, closures: list[Path]) -> str:
    """A query of the stored event ids that staged closures (Parquet parts) may repeat: the duplicate check's scope.

    Those of the stored rows within the staged rows' first and last timestamp,
    and those without a timestamp when the staged rows have any (see _load).
    For whoever appends staged closures in a transaction on ``con`` (the
    followers too): ``... ANTI JOIN (<this>) AS stored ON stored.event_id = staged.event_id``.
    """
    first, last, untimed = first_row(con, f"SELECT epoch_us(min(ts)), epoch_us(max(ts)), count(*) - count(ts) FROM {read_parts(closures)}")
    return _stored_ids(first, last, untimed)


def _stored_ids(first_us: int | None, last_us: int | None, untimed: int) -> str:
    """The stored event ids within [first, last] (microseconds since the epoch) and, if ``untimed``, those
    without a time; as SQL with constants, so DuckDB skips the row groups outside the range by their
    min/max. The times travel as integers: DuckDB's client builds pytz's whole zone list the first time
    it hands Python a time with a zone, 35 ms of a small ingest (issue 16)."""
    parts = []
    if first_us is not None and last_us is not None:
        parts.append(f"SELECT event_id FROM closures WHERE ts BETWEEN make_timestamptz({int(first_us)}) AND make_timestamptz({int(last_us)})")
    if untimed:
        parts.append("SELECT event_id FROM closures WHERE ts IS NULL")
    return " UNION ALL ".join(parts) or "SELECT NULL::VARCHAR AS event_id WHERE false"


_INSERT_SQL = f"""
INSERT INTO closures ({", ".join(STORED_CLOSURE_COLUMNS)}, ingested_at)
SELECT {", ".join("{source}" if c == "source_file" else "{format}" if c == "source_format" else "{batch}" if c == "batch_id" else c for c in STORED_CLOSURE_COLUMNS)}, now()
FROM {{staged}} AS staged ANTI JOIN ({{stored}}) AS stored ON stored.event_id = staged.event_id
"""


# -- reading helpers -----------------------------------------------------------


def _digest(source: Input, limits: IngestLimits, progress: Progress | None = None) -> tuple[str, int, int] | BaseException:
    """sha256 of the (decompressed) content, its number of lines and its longest line in bytes.

    Returns the error instead of raising it (this runs on the fast path's
    hashing thread): InputTooLarge past the decompressed bound, or ("", 0, 0)
    for content that cannot be read.
    """
    try:
        with source.open() as stream:
            reader = _HashingReader(stream, progress, int(limits.max_decompressed))
            reader.drain()
    except InputTooLarge as error:
        return error
    except _UNREADABLE:
        return "", 0, 0
    return reader.hexdigest(), reader.lines, reader.longest


class _HashingReader:
    """A read-through stream that hashes what passes, counts its lines, measures the longest, reports progress."""

    def __init__(self, stream: BinaryIO, progress: Progress | None, max_total: int | None = None):
        self._stream = stream
        self._hash = hashlib.sha256()
        self._progress = progress
        self._max_total = max_total
        self._done = 0
        self._newlines = 0
        self._last = b"\n"
        self._open_line = 0  # length of the line still open at the end of what was read
        self.longest = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            self._hash.update(data)
            self._measure(data)
            self._last = data[-1:]
            self._done += len(data)
            if self._max_total is not None and self._done > self._max_total:
                raise InputTooLarge(f"it decompresses to more than {self._max_total:,} bytes (the [ingest] max_decompressed bound)")
            if self._progress:
                self._progress(self._done)
        return data

    def _measure(self, data: bytes) -> None:
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        self._newlines += len(ends)
        if len(ends) == 0:
            self._open_line += len(data)
        else:
            inner = int(np.diff(ends).max()) - 1 if len(ends) > 1 else 0
            self.longest = max(self.longest, self._open_line + int(ends[0]), inner)
            self._open_line = len(data) - int(ends[-1]) - 1
        self.longest = max(self.longest, self._open_line)

    def drain(self) -> None:
        while self.read(1 << 22):
            pass

    @property
    def lines(self) -> int:
        return self._newlines + (0 if self._last == b"\n" else 1)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
