"""Envelopes: logs as production ships them, peeled before the text inside is read.

Docker, Kubernetes, systemd and the log services wrap every line an
application writes in an envelope of their own (a JSON object, a prefix, a
whole document), and many applications log JSON. An envelope is detected per
file like a format (``--envelope NAME`` forces one); the text inside goes
through the same format detection and the same parsers as a plain file, so an
SDK's log inside journald reads as that SDK's log. Envelopes nest: a
CloudWatch event or a container line whose text is a JSON logger's record is
read as both.

What the envelope adds:

* its time, used where the inner line has none; an inner time written without
  a zone is read in the envelope's zone (unless ``--tz`` says otherwise);
* its labels (pod, container, host, unit, log stream, service...), kept in
  ``closures.labels`` and used as ``client_id`` where the inner line names
  no client (``--client-from LABEL`` picks which label);
* its own rejects: a line that is not valid for its envelope is rejected with
  its line number and why, and the rest loads.

The registry is the explicit list ``ENVELOPE_LIST``; each module beside this
one holds its envelopes' readers, renderers (``wrap``: the generator, the
samples and the tests use them) and the public source of each layout.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import polars as pl
from closewatch.ingest.envelopes import cloud, containers, loggers, system
from closewatch.ingest.envelopes.base import (
    RECORD_SCHEMA,
    Envelope,
    UnwrapContext,
    clean_labels,
    conform_records,
    merge_labels,
    split_multiline,
)
from closewatch.ingest.errors import IngestError
from closewatch.ingest.formats import (
    Format,
    LineBatches,
    Parsed,
    ParseOptions,
    detect_format,
    empty_events,
    empty_rejects,
    get_format,
)
from closewatch.ingest.lines import head_lines_of
from closewatch.ingest.sources import Input

from closewatch.redaction import redact_series

#: Every envelope, in the order ``closewatch formats`` lists them and detection breaks ties.
ENVELOPE_LIST: tuple[Envelope, ...] = (*containers.ENVELOPES, *system.ENVELOPES, *cloud.ENVELOPES, *loggers.ENVELOPES)
#: An envelope is taken only when this share of the head fits it (scaled by the envelope's confidence).
DETECT_THRESHOLD = 0.5
#: The head an envelope file is detected on: more than a plain file's, because a document's entries are long.
HEAD_LINES, HEAD_BYTES = 2000, 1 << 20
SNIFF_LINES = 200  # of which envelopes are told apart on the first
#: Labels tried, in order, for a close whose line names no client (``--client-from`` picks one instead).
CLIENT_LABELS = ("service", "app", "container", "unit", "log_group", "log_stream", "pod", "host")
_NESTING = 2  # an envelope and a JSON logger inside it


def all_envelopes() -> list[Envelope]:
    return list(ENVELOPE_LIST)


def get_envelope(name: str) -> Envelope:
    for envelope in ENVELOPE_LIST:
        if envelope.name == name:
            return envelope
    names = ", ".join(e.name for e in ENVELOPE_LIST)
    raise IngestError(f"Unknown envelope '{name}'; use one of: {names}.")


def check_envelope_name(name: str | None) -> None:
    """Fail before any work if --envelope names no known envelope."""
    if name is not None:
        get_envelope(name)


def detect_envelope(head: list[str], kinds: tuple[str, ...] | None = None) -> Envelope | None:
    """The best-fitting envelope for a file's first lines, or None (a plain log)."""
    best, best_score = None, DETECT_THRESHOLD
    for envelope in ENVELOPE_LIST:
        if kinds and envelope.kind not in kinds:
            continue
        score = envelope.sniff(head[:SNIFF_LINES])
        if score > best_score:
            best, best_score = envelope, score
    return best


def options_for_input(options: ParseOptions, source: Input) -> ParseOptions:
    """The options of one input: its path, and the time no line of it can be later than
    (its file's modification time, or now)."""
    if options.source_name is None:
        options = replace(options, source_name=str(source.path) if source.path is not None else source.name)
    if options.reference_time is not None:
        return options
    moment = datetime.now(UTC)
    if source.path is not None:
        try:
            moment = datetime.fromtimestamp(source.path.stat().st_mtime, UTC)
        except OSError:
            pass
    return replace(options, reference_time=moment)


# --------------------------------------------------------------------------
# Choosing how to read an input
# --------------------------------------------------------------------------


def choose_reader(source: Input, format_name: str | None, options: ParseOptions) -> Format | None:
    """The format to read ``source`` with: a plain format, or one behind its envelope(s); None if nothing fits."""
    with source.open() as stream:
        head = head_lines_of(stream, HEAD_LINES, HEAD_BYTES)
    return reader_for_head(head, format_name, options)


def reader_for_head(head: list[str], format_name: str | None, options: ParseOptions) -> Format | None:
    forced = get_envelope(options.envelope) if options.envelope else None
    outer = forced or detect_envelope(head)
    if outer is None:
        return get_format(format_name) if format_name else detect_format(head[:50])
    ctx = UnwrapContext(tz=options.tz, reference_time=options.reference_time, source_name=options.source_name)
    chain, records = [outer], _head_records(outer, head, ctx)
    texts = _texts(records)
    if outer.kind != "logger":
        inner = detect_envelope(texts[:200], kinds=("logger",))
        if inner is not None:
            chain.append(inner)
            records = _head_records(inner, texts, ctx)
            texts = _texts(records)
    texts = [t for t in texts if t.strip()]
    fmt = get_format(format_name) if format_name else detect_format(texts[:50])
    if fmt is None:
        return None
    zone = next((z for z in records["zone"].to_list() if z), None) if records.height else None
    return enveloped_format(tuple(chain), fmt, zone)


def _head_records(envelope: Envelope, lines: list[str], ctx: UnwrapContext) -> pl.DataFrame:
    frame = pl.DataFrame({"raw": lines}, schema={"raw": pl.String}).with_row_index("source_line", offset=1)
    frame = frame.with_columns(pl.col("source_line").cast(pl.Int64))
    parts = list(envelope.unwrap(iter([frame]), ctx))
    return split_multiline(pl.concat(parts)) if parts else conform_records(pl.DataFrame())


def _texts(records: pl.DataFrame) -> list[str]:
    if records.height == 0:
        return []
    return records.filter(pl.col("reject").is_null() & pl.col("text").is_not_null())["text"].to_list()


def zone_name(zone: str | None, tz: str) -> str:
    """The zone inner times without one are read in: the user's --tz if given (not UTC), else the envelope's
    whole-hour offset as an IANA name both polars and DuckDB know (Etc/GMT-1 is +01:00), else UTC."""
    if tz != "UTC" or not zone or zone in ("+00:00", "-00:00"):
        return tz
    sign, hours, minutes = zone[0], int(zone[1:3]), zone[4:6]
    if minutes != "00" or hours == 0:
        return tz
    return f"Etc/GMT{'-' if sign == '+' else '+'}{hours}"


def enveloped_format(chain: tuple[Envelope, ...], inner: Format, zone: str | None) -> Format:
    names = "/".join(e.name for e in chain)
    return Format(
        name=f"{names}/{inner.name}",
        description=f"{inner.description} (inside {names})",
        example=chain[0].example,
        sniff=lambda head: 0.0,
        parse=partial(parse_enveloped, chain, inner, zone),
        source="; ".join([*(e.source for e in chain), inner.source]),
    )


# --------------------------------------------------------------------------
# Reading an input through its envelope(s)
# --------------------------------------------------------------------------


def parse_enveloped(chain: tuple[Envelope, ...], inner: Format, zone: str | None, batches: LineBatches,
                    options: ParseOptions) -> Iterator[Parsed]:
    """Unwrap, parse the text inside with ``inner``, and give its events their envelope's line, time, labels
    and client. Counts stay whole: lines = events + rejects + skipped, over the input's own lines."""
    with tempfile.TemporaryDirectory(prefix="closewatch-envelope-", dir=options.scratch) as folder:
        run = _Run(Path(folder), chain, options)
        inner_options = replace(options, tz=zone_name(zone, options.tz))
        for parsed in inner.parse(run.records(batches), inner_options):
            yield run.remap(parsed)
        yield from run.envelope_rejects()
        yield Parsed(empty_events(), empty_rejects(), max(0, run.lines - run.events - run.rejects))


class _Run:
    """One input's state: its lines, the record numbers handed to the inner parser and what they map back to
    (kept on disk, so memory stays bounded however large the input), and the envelope's rejects."""

    def __init__(self, folder: Path, chain: tuple[Envelope, ...], options: ParseOptions):
        self.folder, self.chain, self.options = folder, chain, options
        self.ctx = UnwrapContext(tz=options.tz, reference_time=options.reference_time, source_name=options.source_name)
        self.lines = self.events = self.rejects = 0
        self.next_record = 1
        self.parts = 0
        self.maps: list[tuple[int, int, Path]] = []  # (first record, last record, file) of each map part
        self.recent: list[pl.DataFrame] = []  # the last input batches, for the text of a rejected line

    def _keep(self, batches: LineBatches) -> LineBatches:
        for batch in batches:
            self.lines += batch.height
            self.recent = [*self.recent[-1:], batch]
            yield batch

    def records(self, batches: LineBatches) -> LineBatches:
        """(source_line = record number, raw = the text inside) batches for the inner parser."""
        for records in self.chain[0].unwrap(self._keep(batches), self.ctx):
            records = self._split_rejects(records)
            for envelope in self.chain[1:]:
                records = self._nest(envelope, records)
            records = clean_labels(split_multiline(records))
            if records.height == 0:
                continue
            numbered = records.with_row_index("record", offset=self.next_record).with_columns(pl.col("record").cast(pl.Int64))
            self.next_record += numbered.height
            path = self.folder / f"map-{self.parts:06d}.parquet"
            numbered.select("record", "source_line", "env_ts", "labels").write_parquet(path, compression="lz4")
            self.maps.append((self.next_record - numbered.height, self.next_record - 1, path))
            self.parts += 1
            yield numbered.select(pl.col("record").alias("source_line"), pl.col("text").alias("raw"))

    def _split_rejects(self, records: pl.DataFrame) -> pl.DataFrame:
        """Write the envelope's rejects aside; keep the records that have text."""
        bad = records.filter(pl.col("reject").is_not_null())
        if bad.height:
            self._write_rejects(bad)
        return records.filter(pl.col("reject").is_null() & pl.col("text").is_not_null())

    def _write_rejects(self, bad: pl.DataFrame) -> None:
        lines = pl.concat(self.recent) if self.recent else pl.DataFrame(schema={"source_line": pl.Int64, "raw": pl.String})
        bad = bad.join(lines.rename({"raw": "line"}), on="source_line", how="left")
        name = " inside ".join(e.name for e in reversed(self.chain))
        sentence = pl.col("reject").str.slice(0, 1).str.to_uppercase() + pl.col("reject").str.slice(1)
        rejects = bad.select(
            "source_line",
            pl.coalesce("raw", "line", "text").fill_null("").alias("raw"),  # whole: the pipeline redacts, then cuts
            pl.format("{} (envelope {}).", sentence, pl.lit(name)).alias("reason"),
        )
        rejects.write_parquet(self.folder / f"rejects-{self.parts:06d}-{self.rejects:09d}.parquet")
        self.rejects += rejects.height

    def _nest(self, envelope: Envelope, records: pl.DataFrame) -> pl.DataFrame:
        """Unwrap the JSON logger records inside; other lines (a banner, a plain print) pass as they are."""
        records = records.with_row_index("_k").with_columns(pl.col("_k").cast(pl.Int64))
        is_json = pl.col("text").str.strip_chars_start().str.starts_with("{")
        plain, wrapped = records.filter(~is_json), records.filter(is_json)
        if wrapped.height == 0:
            return records.drop("_k")
        inner = pl.concat(list(envelope.unwrap(iter([wrapped.select(pl.col("_k").alias("source_line"),
                                                                        pl.col("text").alias("raw"))]), self.ctx)))
        outer = wrapped.select("_k", "source_line", pl.col("text").alias("outer_text"),
                               pl.col("env_ts").alias("outer_ts"), pl.col("labels").alias("outer_labels"))
        inner = clean_labels(inner).rename({"source_line": "_k"}).join(outer, on="_k", how="left")
        bad = inner.filter(pl.col("reject").is_not_null())
        if bad.height:
            self._write_rejects(bad.with_columns(raw=pl.coalesce("raw", "outer_text")))
        good = inner.filter(pl.col("reject").is_null() & pl.col("text").is_not_null())
        merged = {(o, i): merge_labels(o, i) for o, i in good.select("outer_labels", "labels").unique().iter_rows()}
        good = good.with_columns(
            env_ts=pl.coalesce("env_ts", "outer_ts"),
            labels=pl.struct("outer_labels", "labels").map_elements(
                lambda row: merged.get((row["outer_labels"], row["labels"])), return_dtype=pl.String),
        )
        joined = pl.concat([plain, good.select(*plain.columns)], how="vertical_relaxed").sort("_k", maintain_order=True)
        return joined.drop("_k")

    def remap(self, parsed: Parsed) -> Parsed:
        """Give the inner parser's events and rejects their input line, and events their envelope's time,
        labels and (where the line names none) client."""
        self.events += parsed.events.height
        self.rejects += parsed.rejects.height
        return Parsed(self._remap_events(parsed.events), self._remap_rejects(parsed.rejects), 0)

    def _mapping(self, records: pl.Series) -> pl.DataFrame:
        # only the parts whose records the batch can hold: the inner parser reads in order, so this is one
        # or two files, where scanning every part for every batch grew with the square of the input's length
        numbers = records.drop_nulls().cast(pl.Int64)
        low, high = (int(numbers.min()), int(numbers.max())) if numbers.len() else (0, -1)  # type: ignore[arg-type]
        parts = [path for first, last, path in self.maps if last >= low and first <= high]
        if not parts:
            return pl.DataFrame(schema={"record": pl.Int64, "line": pl.Int64, "env_ts": RECORD_SCHEMA["env_ts"],
                                        "env_labels": pl.String})
        scan = pl.scan_parquet(parts)
        return scan.filter(pl.col("record").is_in(records.unique().implode())).rename(
            {"source_line": "line", "labels": "env_labels"}).collect()

    def _remap_events(self, events: pl.DataFrame) -> pl.DataFrame:
        if events.height == 0:
            return events
        mapped = events.join(self._mapping(events["source_line"]), left_on="source_line", right_on="record", how="left")
        labels = _redacted(mapped["env_labels"])
        clients = {value: pick_client(value, self.options.client_from) for value in labels.drop_nulls().unique().to_list()}
        return mapped.with_columns(labels=labels).with_columns(
            source_line=pl.coalesce("line", "source_line"),
            ts=pl.coalesce("ts", "env_ts"),
            client_id=pl.coalesce("client_id", pl.col("labels").replace_strict(clients, default=None, return_dtype=pl.String)),
        ).drop("line", "env_ts", "env_labels")

    def _remap_rejects(self, rejects: pl.DataFrame) -> pl.DataFrame:
        if rejects.height == 0:
            return rejects
        mapped = rejects.join(self._mapping(rejects["source_line"]), left_on="source_line", right_on="record", how="left")
        return mapped.select(pl.coalesce("line", "source_line").alias("source_line"), "raw", "reason")

    def envelope_rejects(self) -> Iterator[Parsed]:
        for path in sorted(self.folder.glob("rejects-*.parquet")):
            yield Parsed(empty_events(), pl.read_parquet(path), 0)


def _redacted(labels: pl.Series) -> pl.Series:
    """Labels are stored, so a secret in one (an env label, a URL) is masked like any other text."""
    distinct = labels.drop_nulls().unique()
    if distinct.len() == 0:
        return labels
    mapping = dict(zip(distinct.to_list(), redact_series(distinct).to_list(), strict=True))
    return labels.replace_strict(mapping, default=None, return_dtype=pl.String)


def pick_client(labels: str | None, client_from: str | None = None) -> str | None:
    """The client a close's labels name: ``client_from`` if given, else the first of CLIENT_LABELS present."""
    if not labels:
        return None
    values = json.loads(labels)
    for name in (client_from,) if client_from else CLIENT_LABELS:
        if values.get(name):
            return values[name]
    return None


def examples() -> list[tuple[str, str, str, str]]:
    """(name, description, example, source) of every envelope, for ``closewatch formats`` and the README."""
    return [(e.name, e.description, e.example, e.source) for e in ENVELOPE_LIST]


__all__ = [
    "CLIENT_LABELS", "ENVELOPE_LIST", "Envelope", "all_envelopes", "check_envelope_name", "choose_reader",
    "detect_envelope", "enveloped_format", "examples", "get_envelope", "pick_client", "reader_for_head",
    "options_for_input", "zone_name",
]
