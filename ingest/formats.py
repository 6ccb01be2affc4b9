"""The registry of log formats closewatch reads, and format detection.

A format is a name, an example line (shown by ``closewatch formats``), a
``sniff`` that scores the first lines of a file, and a ``parse`` that turns
batches of numbered lines into events in ``EVENT_SCHEMA``. ``builtin_formats``
is the explicit list of them, in the order detection tries them and
``closewatch formats`` lists them; the pipeline knows nothing about any one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from closewatch.ingest.errors import IngestError

if TYPE_CHECKING:
    import duckdb

#: What every parser yields: one row per session close. ``event_id`` is set
#: only where the log carries its own; ``ts`` is UTC.
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "source_line": pl.Int64(),
    "ts": pl.Datetime("us", "UTC"),
    "session_id": pl.String(),
    "close_code": pl.Int32(),
    "close_reason": pl.String(),
    "client_id": pl.String(),
    "audio_duration_s": pl.Float64(),
    "session_duration_s": pl.Float64(),
    "event_id": pl.String(),
    "labels": pl.String(),  # the envelope's labels (JSON object), for logs read inside one
}

#: Lines that could not be read as events: why, and where.
REJECT_SCHEMA: dict[str, pl.DataType] = {
    "source_line": pl.Int64(),
    "raw": pl.String(),
    "reason": pl.String(),
}


@dataclass(frozen=True)
class ParseOptions:
    """Settings that apply to every line of one input."""

    tz: str = "UTC"  # the zone of timestamps that carry none
    envelope: str | None = None  # read every input inside this envelope (see ingest.envelopes); None: detect
    client_from: str | None = None  # the envelope label that names the client where a line names none
    reference_time: datetime | None = None  # no line is later than this (the file's mtime): syslog's year
    source_name: str | None = None  # the input's path as given: the kubelet's log file layout names the pod in it
    scratch: Path | None = None  # a private folder beside the database for a parser's temporary files (the run's staging)


@dataclass
class Parsed:
    """One batch of parser output. ``skipped`` counts lines that are not about closes."""

    events: pl.DataFrame
    rejects: pl.DataFrame
    skipped: int = 0


@dataclass(frozen=True)
class StagedCounts:
    """What a whole-file reader staged: rows it saw (lines), events, rejects, other lines."""

    rows: int
    events: int
    rejects: int
    skipped: int


LineBatches = Iterator[pl.DataFrame]
Parser = Callable[[LineBatches, ParseOptions], Iterator[Parsed]]


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    example: str
    sniff: Callable[[list[str]], float]
    parse: Parser
    source: str = ""  # where the format comes from (a client's public source file)
    #: Optional whole-file reader for plain files: (path, options, the run's staging connection) ->
    #: StagedCounts, or None to fall back to ``parse``. It leaves in the connection a relation
    #: ``staged`` (EVENT_SCHEMA) and, for rejects, ``unfilled_rejects`` (source_line, reason).
    stage_file: Callable[[Path, ParseOptions, duckdb.DuckDBPyConnection], StagedCounts | None] | None = None
    #: The highest score ``sniff`` can give: ``detect_format`` does not run a sniff that cannot win
    #: (a JSON-lines head scores 0.9, which no client's text format reaches; issue 16).
    best_sniff: float = 1.0


def builtin_formats() -> tuple[Format, ...]:
    """Every format closewatch reads: the structured ones, then one per client, then the generic fallback.

    Imported here, not at the top, because the parser modules import this one for ``Format``.
    """
    from closewatch.ingest import structured, textlogs

    return (structured.JSONL, structured.API_MESSAGES, structured.CSV, *textlogs.FORMATS.values())


def all_formats() -> list[Format]:
    return list(builtin_formats())


def get_format(name: str) -> Format:
    for fmt in builtin_formats():
        if fmt.name == name:
            return fmt
    names = ", ".join(sorted(fmt.name for fmt in builtin_formats()))
    raise IngestError(f"Unknown format '{name}'; use one of: {names}.")


def detect_format(head: list[str]) -> Format | None:
    """The best-scoring format for a file's first lines, or None if nothing fits.

    The first format with the highest score wins, so a format whose ``best_sniff``
    is not above the best score so far cannot win and is not sniffed.
    """
    best, best_score = None, 0.0
    for fmt in all_formats():
        if fmt.best_sniff <= best_score:
            continue
        score = fmt.sniff(head)
        if score > best_score:
            best, best_score = fmt, score
    return best


def empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema=EVENT_SCHEMA)


def empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def conform(events: pl.DataFrame) -> pl.DataFrame:
    """Give a parser's events exactly EVENT_SCHEMA: missing columns become null."""
    return events.select(
        pl.col(name).cast(dtype) if name in events.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in EVENT_SCHEMA.items()
    )
