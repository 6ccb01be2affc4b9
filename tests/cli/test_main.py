"""The command line: help everywhere, --db in both places, JSON output, one-sentence errors."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from closewatch.cli.main import cli
from closewatch.store import Store
from tests.conftest import write_lines


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    context = click.Context(group)
    for name in group.list_commands(context):  # the CLI loads a command's module on demand (cli/kit.py)
        command = group.get_command(context, name)
        yield prefix + (name,)
        if isinstance(command, click.Group):
            yield from all_commands(command, prefix + (name,))


@pytest.mark.parametrize("path", list(all_commands(cli)), ids=lambda p: " ".join(p))
def test_every_command_has_help_with_an_example(path):
    result = CliRunner().invoke(cli, [*path, "--help"], obj={})
    assert result.exit_code == 0
    assert "Example" in result.output, f"closewatch {' '.join(path)} --help has no example"


def test_db_option_works_before_and_after_the_command(tmp_path):
    runner = CliRunner()
    first, second = tmp_path / "first.duckdb", tmp_path / "second.duckdb"
    for path in (first, second):
        Store(path).query("SELECT 1")
    assert str(first) in runner.invoke(cli, ["--db", str(first), "info"], obj={}).stdout
    assert str(second) in runner.invoke(cli, ["info", "--db", str(second)], obj={}).stdout


def test_sql_json_is_one_array_of_objects(run, tmp_path):
    run("ingest", str(write_lines(tmp_path / "a.jsonl", [json.dumps({"code": 1000}), json.dumps({"code": 1006})])))
    result = run("sql", "select close_code, category from closures order by 1", "--format", "json")
    assert json.loads(result.stdout) == [
        {"close_code": 1000, "category": "normal"},
        {"close_code": 1006, "category": "network_abnormal"},
    ]


def test_sql_csv_output(run):
    Store(run.db).query("SELECT 1")
    result = run("sql", "select 1 as a, 'x' as b", "--format", "csv")
    assert result.stdout.splitlines() == ["a,b", "1,x"]


def test_sql_refusal_is_one_sentence_and_exit_1(run):
    Store(run.db).query("SELECT 1")
    result = run("sql", "drop table closures")
    assert result.exit_code == 1
    assert result.stderr.count("\n") <= 2 and "read-only" in result.stderr
    assert "Traceback" not in result.stderr


def test_catalog_and_formats_list_their_contents(run):
    catalog = json.loads(run("catalog", "--format", "json", db=False).stdout)
    assert {"session_expired", "input_duration_violation", "concurrency_limit"} <= {row["category"] for row in catalog}
    formats = run("formats", db=False).stdout
    for name in ("jsonl", "api-messages", "csv"):
        assert f"{name}:" in formats


def test_info_reports_counts_and_span(run, tmp_path):
    run("ingest", str(write_lines(tmp_path / "a.jsonl", [json.dumps({"code": 1000, "ts": "2026-11-20T10:00:00Z"})])))
    output = run("info").stdout
    assert "closures: 1" in output and "schema_version:" in output and "2026-11-20 10:00:00" in output


def test_reclassify_applies_a_changed_catalog(run, tmp_path):
    run("ingest", str(write_lines(tmp_path / "a.jsonl", [json.dumps({"code": 3999, "reason": "Brand new reason"})])))
    assert run.json("select category from closures") == [{"category": "unknown"}]
    custom = tmp_path / "mine.toml"
    custom.write_text(
        '[[entry]]\ncodes = [3999]\ncategory = "server_error"\nseverity = "error"\nretry_safe = "with_backoff"\n'
        'action = "Retry later."\nera = "v3"\ndocs = "x"\n'
    )
    result = run("reclassify", "--catalog", str(custom))
    assert result.exit_code == 0, result.output
    assert run.json("select category, action from closures") == [{"category": "server_error", "action": "Retry later."}]


def test_missing_path_is_one_sentence(run):
    result = run("ingest", "/nonexistent/file.jsonl")
    assert result.exit_code == 1
    assert "No file matches '/nonexistent/file.jsonl'" in result.stderr


def test_reclassify_changes_the_readers_cache_token(run, tmp_path):
    from closewatch.store import Store

    run("ingest", str(write_lines(tmp_path / "a.jsonl", [json.dumps({"code": 1000})])))
    store = Store(run.db)
    before = store.latest_batch()
    assert store.latest_batch() == before
    run("reclassify")
    assert store.latest_batch() != before


def test_hourly_and_daily_views_bucket_in_utc(run, tmp_path):
    lines = [json.dumps({"code": 1006, "ts": ts}) for ts in ("2026-11-20T10:59:59+02:00", "2026-11-20T09:00:00Z", "2026-11-21T00:30:00Z")]
    run("ingest", str(write_lines(tmp_path / "a.jsonl", lines)))
    hourly = run.json("select strftime(hour AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M') as h, closures from closures_hourly order by 1")
    assert hourly == [{"h": "2026-11-20 08:00", "closures": 1}, {"h": "2026-11-20 09:00", "closures": 1}, {"h": "2026-11-21 00:00", "closures": 1}]
    daily = run.json("select strftime(day AT TIME ZONE 'UTC', '%Y-%m-%d') as d, closures from closures_daily order by 1")
    assert daily == [{"d": "2026-11-20", "closures": 2}, {"d": "2026-11-21", "closures": 1}]


def test_reading_a_database_that_does_not_exist_is_one_sentence_and_creates_nothing(run):
    for args in (("sql", "select 1"), ("info",)):
        result = run(*args)
        assert result.exit_code == 1
        assert f"Database {run.db} does not exist" in result.stderr
    assert not run.db.exists()


def test_sums_print_as_numbers_not_strings(run, tmp_path):
    run("ingest", str(write_lines(tmp_path / "a.jsonl", [json.dumps({"code": 1000}), json.dumps({"code": 1006})])))
    rows = run.json("select sum(close_code) as total, avg(close_code) as mean, sum(close_code) / 7 as seventh from closures")
    assert rows == [{"total": 2006, "mean": 1003.0, "seventh": pytest.approx(2006 / 7)}]


def test_table_cells_are_data_not_rich_markup(run, tmp_path):
    custom = tmp_path / "mine.toml"
    custom.write_text(
        '[[entry]]\ncodes = [3999]\ncategory = "server_error"\nseverity = "error"\nretry_safe = "with_backoff"\n'
        'action = "[bold]Retry[/bold] later [red]"\nera = "v3"\ndocs = "x"\n'
    )
    result = run("catalog", "--catalog", str(custom), db=False)
    assert result.exit_code == 0, result.output
    assert "[bold]Retry[/bold] later [red]" in result.stdout
