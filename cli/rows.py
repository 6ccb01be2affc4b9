"""Printing a query's rows as DuckDB hands them to Python (tuples of Python values), without polars.

`closewatch sql` fetches its rows as Python values so that it starts without
polars and pyarrow (a third of a second; bench/bench_cli_start.py). The values
are shown as ``print_frame`` shows a frame's: DECIMAL results (sum(), some
counts) as plain numbers, times with a zone in UTC; CSV and JSON write times
in ISO 8601, JSON writes NaN and infinities as null, and nested values (lists,
structs, maps) as JSON in a CSV cell.

A table that fits the width (the terminal's, or 200 columns when piped) is
drawn here, in rich's own frame, character for character (a test compares
them): importing and running rich's table costs about 40 ms, a quarter of
what the whole answer costs otherwise. A table too wide, or with a cell
that holds a line break or other control character, is drawn by rich, which
folds its columns to the width. Cells are text as it is, never rich markup.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import unicodedata
from datetime import UTC, date, datetime, time
from typing import Any

import click

from closewatch.cli import kit

#: The width a table is drawn to when the output is not a terminal (cli/kit.py's out_console).
PIPED_WIDTH = 200


def print_rows(columns: list[str], rows: list[tuple[Any, ...]], output: str) -> None:
    """Print rows as a rich table, CSV, or one JSON array of objects (the formats of ``print_frame``)."""
    if output == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_csv_cell(value) for value in row] for row in rows)
    elif output == "json":
        records = [dict(zip(columns, (_jsonable(value) for value in row), strict=True)) for row in rows]
        sys.stdout.write(json.dumps(records, ensure_ascii=False, separators=(",", ":")) + "\n")
    else:
        cells = [["" if value is None else str(_plain(value)) for value in row] for row in rows]
        terminal = sys.stdout.isatty()
        width = shutil.get_terminal_size().columns if terminal else PIPED_WIDTH
        lines = framed(columns, cells, width, bold_header=terminal)
        if lines is None:
            kit.print_table(columns, cells)  # too wide, or a line break: rich folds it
        else:
            click.echo("\n".join(lines))
        click.echo(click.style(f"{len(rows):,} rows", dim=True), err=True)


def framed(columns: list[str], cells: list[list[str]], width: int, bold_header: bool = False) -> list[str] | None:
    """The lines of rich's default table (heavy head, one space of padding), or None if it does not fit ``width``."""
    texts = [columns, *cells]
    if any(_control(text) for row in texts for text in row):
        return None
    widths = [max(_cells(row[index]) for row in texts) for index in range(len(columns))]
    if not columns or sum(widths) + 3 * len(widths) + 1 > width:
        return None

    def line(left: str, fill: str, middle: str, right: str) -> str:
        return left + middle.join(fill * (size + 2) for size in widths) + right

    def row(texts: list[str], edge: str, bold: bool = False) -> str:
        padded = (f" {click.style(text, bold=True) if bold else text}{' ' * (size - _cells(text))} "
                  for text, size in zip(texts, widths, strict=True))
        return edge + edge.join(padded) + edge

    return [line("┏", "━", "┳", "┓"), row(columns, "┃", bold_header), line("┡", "━", "╇", "┩"),
            *(row(texts, "│") for texts in cells), line("└", "─", "┴", "┘")]


def _cells(text: str) -> int:
    """Terminal cells of ``text``: East Asian wide and full-width characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _control(text: str) -> bool:
    """Whether ``text`` holds a line break, tab or other control character (rich lays those out itself)."""
    return not text.isprintable()


def _plain(value: Any) -> Any:
    """A DECIMAL as an int (no fraction digits) or a float; a time with a zone in UTC; anything else as it is."""
    decimal = sys.modules.get("decimal")  # DuckDB imports it to make a DECIMAL value: not imported, there is none
    if decimal is not None and isinstance(value, decimal.Decimal):
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return value


def _jsonable(value: Any) -> Any:
    """A value as JSON writes it: numbers, text, true/false, null, arrays and objects."""
    value = _plain(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return _blob(bytes(value))
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return str(value)  # intervals, UUIDs, ...


def _csv_cell(value: Any) -> Any:
    """A value as one CSV cell: empty for NULL, true/false, ISO times, nested values as JSON."""
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict | list | tuple):
        return json.dumps(_jsonable(value), ensure_ascii=False, separators=(",", ":"))
    return _jsonable(value)


def _blob(value: bytes) -> str:
    """Bytes as DuckDB prints a BLOB: printable ASCII as it is, every other byte as \\xNN."""
    return "".join(chr(byte) if 32 <= byte < 127 and byte != 92 else f"\\x{byte:02X}" for byte in value)
