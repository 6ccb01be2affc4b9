"""`closewatch sql` prints DuckDB's Python values without polars: rich's table frame drawn character for character
when it fits, rich itself when it does not, and CSV and JSON that keep every value (issue 16)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from closewatch.cli.rows import framed


def rich_lines(columns: list[str], cells: list[list[str]], width: int) -> list[str]:
    table = Table(show_lines=False)
    for name in columns:
        table.add_column(Text(name), overflow="fold")
    for row in cells:
        table.add_row(*(Text(text) for text in row))
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(table)
    return console.file.getvalue().splitlines()


@pytest.mark.parametrize("columns, cells", [
    (["count_star()"], [["20000"]]),
    (["category", "n", "min(ts)"], [["account_issue", "7", "2026-11-16 07:06:14.583000+00:00"], ["auth_failed", "", "x"]]),
    (["only"], []),
    (["name", "wide"], [["é", "宽宽"], ["[bold]not markup[/]", "a"]]),
])
def test_a_table_that_fits_is_rich_s_table_character_for_character(columns, cells):
    assert framed(columns, cells, 200) == rich_lines(columns, cells, 200)


def test_a_table_too_wide_or_with_line_breaks_is_left_to_rich():
    assert framed(["a"], [["x" * 300]], 200) is None
    assert framed(["a", "b"], [["x" * 10, "y" * 10]], 20) is None
    assert framed(["a"], [["two\nlines"]], 200) is None


def test_sql_prints_a_table_csv_and_json(run, store):
    with store.transaction():
        pass  # a database to query
    query = ("SELECT 1 AS n, sum(2::DECIMAL(10, 0)) AS total, 1.5::DECIMAL(4, 1) AS ratio, "
             "TIMESTAMPTZ '2026-11-20 10:00:00+01' AS ts, NULL AS nothing, [1, 2] AS list, true AS yes, 'x,\"y\"' AS text")
    table = run("sql", query)
    assert table.exit_code == 0, table.output
    assert "│ 1 │ 2     │ 1.5   │ 2026-11-20 09:00:00+00:00 │         │ [1, 2] │ True │ x,\"y\" │" in table.stdout
    assert "1 rows" in table.stderr
    rows = list(csv.reader(io.StringIO(run("sql", query, "--format", "csv").stdout)))
    assert rows == [["n", "total", "ratio", "ts", "nothing", "list", "yes", "text"],
                    ["1", "2", "1.5", "2026-11-20T09:00:00+00:00", "", "[1,2]", "true", 'x,"y"']]
    assert json.loads(run("sql", query, "--format", "json").stdout) == [
        {"n": 1, "total": 2, "ratio": 1.5, "ts": "2026-11-20T09:00:00+00:00", "nothing": None, "list": [1, 2], "yes": True,
         "text": 'x,"y"'}]


def test_values_polars_could_not_print_are_printed(run, store):
    with store.transaction():
        pass
    query = "SELECT 'ab'::BLOB AS b, INTERVAL 3 SECOND AS i, 'nan'::DOUBLE AS f, {'k': [1]} AS s"
    assert json.loads(run("sql", query, "--format", "json").stdout) == [{"b": "ab", "i": "0:00:03", "f": None, "s": {"k": [1]}}]
    assert run("sql", query, "--format", "csv").stdout.splitlines()[1] == 'ab,0:00:03,NaN,"{""k"":[1]}"'
