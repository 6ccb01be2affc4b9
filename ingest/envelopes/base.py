"""What every envelope shares: the Envelope type, the record frame it produces, and its helpers.

An envelope reader turns batches of numbered input lines (``source_line``,
``raw``) into *records*: the text the application wrote (``text``), the
envelope's own time (``env_ts``, UTC), the zone that time was written in
(``zone``, "+01:00", where the envelope says), its labels (``labels``: pod,
container, host, unit, log stream, service... as a JSON object), and
``reject``: why the line is not valid for its envelope (null when it is; ``raw`` then
may hold the text to show).
One input line may give several records (an OTLP request, a CloudWatch
subscription record) and several lines may give one (CRI and docker partial
lines joined); ``source_line`` always names the input line a record came from.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import duckdb
import polars as pl
from closewatch.ingest.timestamps import parse_text

UTC_US = pl.Datetime("us", "UTC")

#: The columns of a record frame (see the module docstring).
RECORD_SCHEMA: dict[str, pl.DataType] = {
    "source_line": pl.Int64(),
    "text": pl.String(),
    "env_ts": UTC_US,
    "zone": pl.String(),
    "labels": pl.String(),
    "reject": pl.String(),
    "raw": pl.String(),  # a rejected record's text, where the reader has it (else the input line is shown)
}

#: A document envelope (one JSON document for the whole input) is read whole, up to this size.
MAX_DOCUMENT_BYTES = 512 * 1024 * 1024
#: Labels kept per record, and the longest label value kept (bounds on what a log can make us store).
MAX_LABELS = 16
MAX_LABEL_CHARS = 256


@dataclass(frozen=True)
class UnwrapContext:
    """What a reader may need beyond the lines: the zone of times written without one, the
    time no line can be later than (the file's modification time; syslog's year is inferred from it),
    and the input's path (a CRI log file's path names its pod, namespace and container)."""

    tz: str = "UTC"
    reference_time: datetime | None = None
    source_name: str | None = None


Unwrap = Callable[[Iterator[pl.DataFrame], UnwrapContext], Iterator[pl.DataFrame]]
#: (lines as (time, text), labels) -> the envelope's lines; the generator, the samples and the tests use it.
Wrap = Callable[[list[tuple[datetime | None, str]], dict], list[str]]


@dataclass(frozen=True)
class Envelope:
    name: str
    description: str
    example: str
    source: str  # where its layout comes from (a public specification or source file)
    sniff: Callable[[list[str]], float]
    unwrap: Unwrap
    wrap: Wrap
    kind: str = "container"  # container / system / cloud / logger


def empty_records() -> pl.DataFrame:
    return pl.DataFrame(schema=RECORD_SCHEMA)


def conform_records(frame: pl.DataFrame) -> pl.DataFrame:
    """Exactly RECORD_SCHEMA, in order; missing columns are null."""
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in RECORD_SCHEMA.items()
    )


# --------------------------------------------------------------------------
# Reading JSON lines with DuckDB (one parse per line, all cores, no Python per line)
# --------------------------------------------------------------------------


def duck(tz: str = "UTC") -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for reading records (never the store); times written without a zone are read in ``tz``."""
    con = duckdb.connect()
    con.execute(f"SET TimeZone = '{tz}'")
    con.execute("SET enable_progress_bar = false")
    return con


def sql_records(con: duckdb.DuckDBPyConnection, lines: pl.DataFrame, sql: str) -> pl.DataFrame:
    """Run ``sql`` over the batch registered as ``lines`` (source_line, raw), blank lines left out.

    The SQL returns source_line, text, env_ts (TIMESTAMPTZ), zone, labels (JSON text) and reject.
    """
    register_lines(con, lines)
    frame = query_frame(con, sql)
    con.unregister("batch")
    if "env_ts" in frame.columns and frame.schema["env_ts"] != UTC_US:
        frame = frame.with_columns(pl.col("env_ts").dt.convert_time_zone("UTC").cast(UTC_US))
    return conform_records(frame)


def query_frame(con: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    """A query's rows as a polars frame (through Arrow, which a table always gives as a DataFrame)."""
    frame = pl.from_arrow(con.execute(sql).to_arrow_table())
    return frame if isinstance(frame, pl.DataFrame) else frame.to_frame()


def register_lines(con: duckdb.DuckDBPyConnection, lines: pl.DataFrame) -> None:
    """The batch's non-blank lines as the view ``lines`` (source_line, raw).

    Blank means what DuckDB's ``trim(raw) = ''`` means (only space separators,
    Unicode category Zs), tested in polars: the same lines for a fraction of
    the cost (DuckDB's trim copies every line).
    """
    con.register("batch", lines.filter(pl.col("raw").str.contains(r"[^\p{Zs}]")).to_arrow())  # Arrow: scanned as is
    con.execute("CREATE OR REPLACE TEMP VIEW lines AS SELECT source_line, raw FROM batch")


def nonblank(lines: pl.DataFrame) -> pl.DataFrame:
    """Lines with something besides whitespace (``str.strip_chars() != ""`` without copying every line)."""
    return lines.filter(pl.col("raw").str.contains(r"\S"))


def json_spec(**fields: str | dict) -> str:
    """A json_transform structure, quoted for SQL."""
    return "'" + json.dumps(fields).replace("'", "''") + "'"


def zone_sql(text: str) -> str:
    """SQL: the zone an RFC 3339 time text was written in ("+01:00"), or null (string functions, no regex)."""
    return (f"CASE WHEN right({text}, 1) IN ('Z', 'z') THEN '+00:00' "
            f"WHEN substr({text}, -6, 1) IN ('+', '-') AND substr({text}, -3, 1) = ':' THEN right({text}, 6) END")


def rfc3339_utc(text: pl.Series) -> pl.Series:
    """RFC 3339 times to UTC: the "Z" times collectors write parsed directly (fast), and only the others
    through ingest.timestamps.parse_text (offsets, spaces, commas), which costs several passes a row."""
    zulu = text.str.ends_with("Z").fill_null(False)
    direct = text.str.strip_suffix("Z").str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_unit="us", strict=False)
    out = pl.select(pl.when(zulu).then(direct.dt.replace_time_zone("UTC"))).to_series().cast(UTC_US)
    others = (~zulu & text.is_not_null()).arg_true()
    if others.len():
        parsed = pl.select(parse_text(pl.lit(text.gather(others)), "UTC")).to_series()
        out = out.scatter(others, parsed)
    return out.alias(text.name)


def epoch_sql(number: str, unit: str) -> str:
    """SQL: an epoch number in ``unit`` (s, ms, us, ns) as TIMESTAMPTZ."""
    scale = {"s": "* 1000000", "ms": "* 1000", "us": "", "ns": "// 1000"}[unit]
    # out of range (a corrupt or hostile number) is null, so the line is rejected rather than the input failing
    return f"try(make_timestamptz(TRY_CAST(TRY_CAST({number} AS HUGEINT) {scale} AS BIGINT)))"


# --------------------------------------------------------------------------
# Record post-processing shared by readers
# --------------------------------------------------------------------------


def clean_labels(frame: pl.DataFrame) -> pl.DataFrame:
    """Labels as compact, sorted JSON without nulls or empty values, bounded in count and length.

    Label sets repeat (one per pod, stream or unit), so this runs in Python on the distinct values only.
    """
    if frame.height == 0 or frame["labels"].null_count() == frame.height:
        return frame
    distinct = frame["labels"].drop_nulls().unique().to_list()
    mapping = {value: _clean_label_json(value) for value in distinct}
    return frame.with_columns(pl.col("labels").replace_strict(mapping, default=None, return_dtype=pl.String))


#: Label names as the envelopes write them -> closewatch's names (so --client-from and the defaults work alike).
LABEL_NAMES = {"pod_name": "pod", "container_name": "container", "namespace_name": "namespace", "service_name": "service",
               "k8s-pod/app": "app", "hostname": "host", "instance_id": "instance"}


def _clean_label_json(value: str) -> str | None:
    try:
        labels = json.loads(value)
    except ValueError:
        return None
    if not isinstance(labels, dict):
        return None
    kept = {}
    for key, item in sorted(labels.items()):
        if item is None or item == "" or isinstance(item, (dict, list)):
            continue
        kept[LABEL_NAMES.get(str(key), str(key)[:64])] = str(item)[:MAX_LABEL_CHARS]
        if len(kept) == MAX_LABELS:
            break
    return json.dumps(kept, separators=(",", ":"), ensure_ascii=False) if kept else None


def merge_labels(outer: str | None, inner: str | None) -> str | None:
    """An inner envelope's labels over the outer one's (a nested logger's service over the pod's)."""
    if not outer or not inner:
        return inner or outer
    merged = {**json.loads(outer), **json.loads(inner)}
    return _clean_label_json(json.dumps(merged))


def split_multiline(frame: pl.DataFrame) -> pl.DataFrame:
    """A record whose text holds several lines (a JSON logger's message and its traceback) becomes
    one record per line, in order, so the text parsers see them as a plain log has them."""
    text = pl.col("text").str.strip_chars_end("\r\n")
    frame = frame.with_columns(text=text)
    multi = frame["text"].str.contains("\n", literal=True).fill_null(False)
    if not multi.any():
        return frame
    return (frame.with_row_index("_order")
            .with_columns(pl.when(multi).then(pl.col("text").str.split("\n")).otherwise(pl.concat_list("text")).alias("text"))
            .explode("text").drop("_order").with_columns(pl.col("text").str.strip_chars_end("\r")))


def join_partials(frame: pl.DataFrame, partial: pl.Expr, stream: pl.Expr, carry: pl.DataFrame | None
                  ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Join records a runtime split (``partial`` true: more of the same line follows on ``stream``).

    The joined record keeps the first part's line number and time. Parts still open at the end of
    the batch are returned as the carry, to be put in front of the next batch (or flushed at the end).
    """
    frame = frame.with_columns(*(pl.lit(None, dtype).alias(name) for name, dtype in RECORD_SCHEMA.items() if name not in frame.columns))
    if carry is not None and carry.height:
        frame = pl.concat([carry, frame], how="diagonal_relaxed")
    frame = frame.with_columns(_partial=partial.fill_null(False), _stream=stream.fill_null(""))
    if not frame["_partial"].any():
        return frame.drop("_partial", "_stream"), None
    frame = frame.with_row_index("_order").with_columns(
        # a record belongs to the group of the next record on its stream that is not partial
        _group=(~pl.col("_partial")).cast(pl.Int64).cum_sum().shift(1, fill_value=0).over("_stream"),
    )
    last_closed = frame.filter(~pl.col("_partial")).group_by("_stream").agg(pl.col("_group").max().alias("_closed"))
    frame = frame.join(last_closed, on="_stream", how="left")
    open_rows = pl.col("_closed").is_null() | (pl.col("_group") > pl.col("_closed"))
    pending = frame.filter(open_rows & pl.col("reject").is_null())
    done = frame.filter(~open_rows | pl.col("reject").is_not_null())
    joined = done.filter(pl.col("reject").is_null()).group_by("_stream", "_group", maintain_order=True).agg(
        pl.col("_order").first(), pl.col("source_line").first(), pl.col("text").str.join(""),
        pl.col("env_ts").first(), pl.col("zone").first(), pl.col("labels").first(), pl.col("reject").first(),
        pl.col("raw").first(),
    )
    rejected = done.filter(pl.col("reject").is_not_null())
    columns = list(RECORD_SCHEMA)
    out = pl.concat([joined.select("_order", *columns), rejected.select("_order", *columns)]).sort("_order").drop("_order")
    carry_out = pending.drop("_order", "_group", "_closed", "_partial", "_stream") if pending.height else None
    return out, carry_out


def now_utc() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------
# Sniffing helpers
# --------------------------------------------------------------------------


def json_objects(head: list[str]) -> list[dict]:
    """The head lines that are JSON objects, parsed (each line once, however many envelopes sniff it)."""
    return [value for value in map(_json_object, head) if value is not None]


@lru_cache(maxsize=4096)
def _json_object(line: str) -> dict | None:
    line = line.strip()
    if not (line.startswith("{") and line.endswith("}")):
        return None
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's decoder goes
        return None
    return value if isinstance(value, dict) else None


def share(head: list[str], test: Callable[[dict], bool]) -> float:
    """The share of non-blank head lines that are JSON objects passing ``test``."""
    lines = [line for line in head if line.strip()]
    if not lines:
        return 0.0
    return sum(1 for obj in json_objects(lines) if test(obj)) / len(lines)


def iso(ts: datetime) -> str:
    """RFC 3339 UTC with microseconds and a Z, as docker, CRI and most collectors write it."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fill_times(lines: list[tuple[datetime | None, str]]) -> list[tuple[datetime, str]]:
    """Every line gets a time (an envelope always has one): a line without takes the last one seen."""
    last = next((ts for ts, _ in lines if ts is not None), datetime(2026, 1, 1, tzinfo=UTC))
    out = []
    for ts, text in lines:
        last = ts or last
        out.append((last, text))
    return out
