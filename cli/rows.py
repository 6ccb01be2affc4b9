"""Printing a query's rows as DuckDB hands them to Python (tuples of Python values), without polars.

`closewatch sql` fetches its rows as Python values so that it starts without
polars and pyarrow (a third of a second; bench/bench_cli_start.py). The values
are shown as ``print_frame`` shows a frame's: DECIMAL results (sum(), some
counts) as plain numbers, times with a zone in UTC; CSV and JSON write times
in ISO 8601, JSON writes NaN and infinities as null, and nested values (lists,
structs, maps) as JSON in a CSV cell.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from closewatch.cli import kit


def print_rows(columns: list[str], rows: list[tuple[Any, ...]], output: str) -> None:
    """Print rows as a rich table, CSV, or one JSON array of objects (the formats of ``print_frame``)."""
    if output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_csv_cell(value) for value in row] for row in rows)
    elif output == "json":
        records = [dict(zip(columns, (_jsonable(value) for value in row), strict=True)) for row in rows]
        sys.stdout.write(json.dumps(records, ensure_ascii=False, separators=(",", ":")) + "\n")
    else:
        from rich.table import Table

        table = Table(show_lines=False)
        for name in columns:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*("" if value is None else str(_plain(value)) for value in row))
        kit.out_console().print(table)
        kit.err_console.print(f"{len(rows):,} rows", style="dim")


def _plain(value: Any) -> Any:
    """A DECIMAL as an int (no fraction digits) or a float; a time with a zone in UTC; anything else as it is."""
    if isinstance(value, Decimal):
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
