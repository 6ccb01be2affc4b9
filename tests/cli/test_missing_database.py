"""Only the commands that load logs create a database; every other one refuses a path where none exists.

A mistyped --db (or a command run in the wrong folder) used to create an
empty ./closewatch.duckdb and answer `[]`, which reads as "nothing happened".
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from closewatch.cli.main import cli
from tests.cli.test_main import all_commands
from tests.conftest import write_lines

# Each command that needs a database, with the least arguments it runs with.
NEEDS_A_DATABASE = {
    ("sql",): ["select 1"],
    ("info",): [],
    ("analyze",): [],
    ("reclassify",): [],
    ("dashboard",): [],
    ("alerts", "run"): [],
    ("alerts", "status"): [],
    ("alerts", "history"): [],
    ("alerts", "silence"): ["auth-failures", "--for", "1h"],
    ("alerts", "silences"): [],
    ("alerts", "unsilence"): ["auth-failures"],
    ("alerts", "backtest"): ["--from", "7d", "--to", "0s"],
    ("alerts", "noise"): ["--from", "7d", "--to", "0s"],
    ("alerts", "explain"): ["auth-failures"],
    ("alerts", "outbox"): [],
    ("alerts", "deliver"): [],
}
# The commands that load logs, and so may start a new database.
CREATE_A_DATABASE = {("ingest",), ("up",), ("scheduler",), ("follow",)}
# The commands that never open one (lake drop works on the Parquet lake's folders).
NO_DATABASE = {("alerts",), ("alerts", "check"), ("catalog",), ("formats",), ("generate",), ("lake",), ("lake", "drop")}


def test_every_command_says_whether_it_creates_a_database():
    """A new command must be added to one of the lists above, and so to the refusal test below."""
    commands = set(all_commands(cli))
    assert commands == set(NEEDS_A_DATABASE) | CREATE_A_DATABASE | NO_DATABASE


def invoke_without_db_option(path: tuple[str, ...], folder, monkeypatch):
    monkeypatch.chdir(folder)
    monkeypatch.delenv("CLOSEWATCH_DB", raising=False)
    monkeypatch.delenv("CLOSEWATCH_CONFIG", raising=False)
    return CliRunner().invoke(cli, [*path, *NEEDS_A_DATABASE[path]], obj={}, catch_exceptions=False)


@pytest.mark.parametrize("path", sorted(NEEDS_A_DATABASE), ids=" ".join)
def test_a_reading_command_refuses_a_missing_default_database_and_creates_nothing(path, tmp_path, monkeypatch):
    result = invoke_without_db_option(path, tmp_path, monkeypatch)
    assert result.exit_code == 1, result.output
    message = result.stderr.strip()
    assert message.startswith("Error: Database closewatch.duckdb does not exist;"), message
    assert "closewatch --db closewatch.duckdb ingest" in message and "closewatch --db closewatch.duckdb up" in message
    assert message.count("\n") == 0 and "Traceback" not in result.output
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", sorted(NEEDS_A_DATABASE), ids=" ".join)
def test_a_reading_command_names_the_mistyped_path(path, tmp_path, monkeypatch):
    typo = tmp_path / "ops.duckbd"
    monkeypatch.setenv("CLOSEWATCH_DB", str(typo))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [*path, *NEEDS_A_DATABASE[path]], obj={}, catch_exceptions=False)
    assert result.exit_code == 1
    assert f"Database {typo} does not exist" in result.stderr
    assert not typo.exists()


def test_ingest_creates_the_database_the_readers_then_accept(run, tmp_path):
    assert not run.db.exists()
    assert run("ingest", str(write_lines(tmp_path / "a.jsonl", [json.dumps({"code": 1006})]))).exit_code == 0
    assert run.db.exists()
    result = run("alerts", "status", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
