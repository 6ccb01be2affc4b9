"""Structured logs: JSON lines (any field names), the API's own messages, CSV/TSV.

JSON is read by DuckDB's JSON functions over each batch of lines (Arrow, no
copy, all cores): one ``json_transform`` per line pulls every alias field out
at once, so the hot path has no per-line Python.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl

from closewatch.ingest.fields import ALIASES, ALL_NAMES, KNOWN_REASON_SQL, TYPING_SQL, finish, has_frames, missing_names, to_events
from closewatch.ingest.formats import EVENT_SCHEMA, Format, LineBatches, ParseOptions, Parsed, StagedCounts
from closewatch.store import first_row, literal

_JSON_ROWS_SQL = f"""
    CREATE OR REPLACE TEMP VIEW rows AS
    SELECT source_line, raw,
           CASE WHEN f IS NULL THEN 'line is not valid JSON'
                WHEN NOT starts_with(ltrim(raw), '{{') THEN 'line is JSON but not an object'
           END AS parse_error,
           f.*
    FROM (SELECT source_line, raw, try(json_transform(raw, '{json.dumps({name: "VARCHAR" for name in ALL_NAMES})}')) AS f
          FROM lines WHERE trim(raw) <> '')
"""


def parse_json_lines(batches: LineBatches, options: ParseOptions) -> Iterator[Parsed]:
    """JSON lines of any shape; API frames are joined per batch."""
    for parsed in _json_batches(batches, options):
        yield finish(parsed, with_frames=has_frames(parsed.events))


def parse_api_messages(batches: LineBatches, options: ParseOptions) -> Iterator[Parsed]:
    """The API's messages, joined across the whole file (a Begin may be far from its close)."""
    parts = list(_json_batches(batches, options))
    if not parts:
        return
    events = pl.concat([p.events for p in parts], how="diagonal_relaxed")
    rejects = pl.concat([p.rejects for p in parts])
    yield finish(Parsed(events, rejects, sum(p.skipped for p in parts)), with_frames=True)


def _json_batches(batches: LineBatches, options: ParseOptions) -> Iterator[Parsed]:
    with _typing_connection(options) as con:
        for lines in batches:
            con.register("lines", lines)
            con.execute(_JSON_ROWS_SQL)
            parsed = to_events(con)
            parsed.skipped += lines.height - parsed.events.height - parsed.rejects.height - parsed.skipped
            yield parsed


def _typing_connection(options: ParseOptions, spill: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB (not the store) whose TimeZone reads zone-less timestamps in --tz.

    Its memory is bounded whatever the input (DuckDB's default is most of the
    machine's); with a spill folder it writes to disk beyond the bound.
    """
    config = {"memory_limit": "1GB", **({"temp_directory": str(spill)} if spill else {})}
    con = duckdb.connect(config=config)
    con.execute(f"SET TimeZone = '{options.tz}'")
    con.execute("SET enable_progress_bar = false")
    return con


def stage_json_file(path: Path, options: ParseOptions, con: duckdb.DuckDBPyConnection) -> StagedCounts | None:
    """The fast path for JSON-lines files: DuckDB's own reader straight off the file, into ``con``.

    One pass reads and types every line into a table of the run's staging
    connection (``con``, which spills to disk beyond its memory bound), so no
    intermediate file is written: the view ``staged`` has the events
    (EVENT_SCHEMA), ``unfilled_rejects`` the rejects (source_line, reason).
    It needs a clean file: any line DuckDB cannot read as a JSON object, a
    blank line (line numbers would shift) or an API frame (which needs joining)
    sends the file down the line-by-line path instead (returns None, and
    nothing is left in ``con``).

    A line's number is its row's place in ``typed``: the table keeps the
    file's order (DuckDB preserves insertion order for a single scan with
    projections only), so it is ``rowid + 1``. ``row_number() OVER ()`` says
    the same but made the whole read single-threaded: 1.8 s against 1.0 s of
    wall time on 2 M lines (issue 16).
    """
    columns = "{" + ", ".join(f"'{name}': 'VARCHAR'" for name in ALL_NAMES) + "}"
    compression = "gzip" if _is_gzip(path) else "uncompressed"
    con.execute(f"SET TimeZone = '{options.tz}'")
    con.execute("SET preserve_insertion_order = true")  # the rowid is the line's place (see above)
    try:
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW rows AS
            SELECT NULL::BIGINT AS source_line, NULL::VARCHAR AS raw, NULL::VARCHAR AS parse_error, *
            FROM read_json({literal(str(path))}, columns = {columns}, format = 'newline_delimited',
                           compression = '{compression}', maximum_object_size = 16777216)
        """)
        con.execute(f"CREATE OR REPLACE TEMP TABLE typed AS {TYPING_SQL}")
    except duckdb.Error:
        con.execute("DROP TABLE IF EXISTS typed")
        return None
    return _split_typed(con)


#: The typed rows with their line numbers, which are their places in the file (see stage_json_file).
_NUMBERED = "(SELECT * REPLACE (rowid + 1 AS source_line) FROM typed)"


def _split_typed(con: duckdb.DuckDBPyConnection) -> StagedCounts | None:
    is_event = f"(close_code IS NOT NULL OR {KNOWN_REASON_SQL})"
    rows, rejects, events, frames = first_row(con, f"""
        SELECT count(*), count(reject_reason), count(*) FILTER (WHERE reject_reason IS NULL AND {is_event}),
               count(*) FILTER (WHERE lower(type) IN ('begin', 'error', 'termination'))
        FROM typed
    """)
    if frames:
        con.execute("DROP TABLE typed")
        return None
    con.execute(f"CREATE OR REPLACE TEMP VIEW staged AS SELECT {', '.join(EVENT_SCHEMA)} FROM {_NUMBERED} WHERE reject_reason IS NULL AND {is_event}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW unfilled_rejects AS SELECT source_line, reject_reason AS reason FROM {_NUMBERED} WHERE reject_reason IS NOT NULL")
    return StagedCounts(rows=rows, events=events, rejects=rejects, skipped=rows - events - rejects)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def parse_delimited(batches: LineBatches, options: ParseOptions) -> Iterator[Parsed]:
    """CSV or TSV with a header row; the delimiter is read off the header."""
    header: list[str] | None = None
    delimiter = ","
    with _typing_connection(options) as con:
        for lines in batches:
            if header is None:
                first = lines.filter(pl.col("raw").str.strip_chars() != "").head(1)
                if first.height == 0:
                    continue
                header_line = first.item(0, "raw")
                delimiter = "\t" if header_line.count("\t") > header_line.count(",") else ","
                header = [name.strip().strip('"').lower() for name in next(csv.reader([header_line], delimiter=delimiter))]
                lines = lines.filter(pl.col("source_line") > first.item(0, "source_line"))
            con.register("cells", _delimited_cells(lines, header, delimiter))
            present = {name for name in header if name in ALL_NAMES}
            con.execute(f"CREATE OR REPLACE TEMP VIEW rows AS SELECT *{missing_names(present)} FROM cells")
            parsed = to_events(con)
            parsed.skipped += lines.height - parsed.events.height - parsed.rejects.height - parsed.skipped
            yield finish(parsed, with_frames=False)


def _delimited_cells(lines: pl.DataFrame, header: list[str], delimiter: str) -> pl.DataFrame:
    """Split rows into text columns; quoted rows go through the csv module, the rest through polars."""
    rows = lines.filter(pl.col("raw").str.strip_chars() != "")
    quoted = rows.filter(pl.col("raw").str.contains('"', literal=True))
    cells = rows.filter(~pl.col("raw").str.contains('"', literal=True)).with_columns(cells=pl.col("raw").str.split(delimiter))
    if quoted.height:
        parsed = [next(csv.reader([raw], delimiter=delimiter), []) for raw in quoted["raw"]]
        cells = pl.concat([cells, quoted.with_columns(cells=pl.Series(parsed, dtype=pl.List(pl.String)))])
    width = len(header)
    wanted = {name: header.index(name) for name in ALL_NAMES if name in header}
    return cells.sort("source_line").select(
        "source_line",
        "raw",
        pl.when(pl.col("cells").list.len() != width)
        .then(pl.format("row has {} fields, the header has {}", pl.col("cells").list.len(), pl.lit(width)))
        .alias("parse_error"),
        *(_cell(position).alias(name) for name, position in wanted.items()),
    )


def _sniff_json(head: list[str]) -> float:
    lines = [line for line in head if line.strip()]
    if not lines:
        return 0.0
    objects = sum(1 for line in lines if line.lstrip().startswith("{") and line.rstrip().endswith("}"))
    return 0.9 * objects / len(lines)


def _sniff_api_messages(head: list[str]) -> float:
    score = _sniff_json(head)
    frames = sum(1 for line in head if '"type"' in line and any(t in line for t in ('"Begin"', '"Termination"', '"Error"', '"Turn"')))
    return min(1.0, score + 0.05) if frames else 0.0


def _sniff_delimited(head: list[str]) -> float:
    lines = [line for line in head if line.strip()]
    if len(lines) < 1:
        return 0.0
    delimiter = "\t" if lines[0].count("\t") > lines[0].count(",") else ","
    header = [cell.strip().strip('"').lower() for cell in lines[0].split(delimiter)]
    known = {name for names in ALIASES.values() for name in names}
    if len(header) < 2 or not (set(header) & set(ALIASES["close_code"]) or set(header) & set(ALIASES["close_reason"])):
        return 0.0
    return 0.5 + 0.4 * len(set(header) & known) / len(header)


JSONL = Format(
    name="jsonl",
    description="JSON lines, one close per line; field names by alias (close_code/code/status_code..., reason/close_msg/message/error..., ts/timestamp/time/@timestamp...).",
    example='{"ts": "2026-11-20T10:15:02Z", "session_id": "4f1c...", "close_code": 3008, "close_reason": "Session Expired: Maximum session duration exceeded", "client_id": "web-app"}',
    sniff=_sniff_json,
    parse=parse_json_lines,
    stage_file=stage_json_file,
    source="closewatch's canonical shape (DESIGN.md) and common structured-logging field names",
)
API_MESSAGES = Format(
    name="api-messages",
    description="The API's own messages logged as JSON lines: Begin, Error and Termination frames (and close lines), joined per session.",
    example='{"type": "Error", "error_code": 3007, "error": "Input duration violation: 1200 ms. Expected between 50 and 1000 ms"}',
    sniff=_sniff_api_messages,
    parse=parse_api_messages,
    source="AssemblyAI Universal Streaming message reference (Begin, Termination, Error)",
)
CSV = Format(
    name="csv",
    description="CSV or TSV with a header row; columns mapped by the same aliases as JSON lines.",
    example="ts,session_id,close_code,close_reason,client_id",
    sniff=_sniff_delimited,
    parse=parse_delimited,
    source="spreadsheets and log exports",
)


def _cell(position: int) -> pl.Expr:
    value = pl.col("cells").list.get(position, null_on_oob=True).str.strip_chars()
    return pl.when(value != "").then(value)
