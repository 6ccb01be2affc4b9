"""Fixtures every test shares: a temporary database file and a CLI runner bound to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from closewatch.cli.main import cli
from closewatch.store import Store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "test.duckdb"


@pytest.fixture
def store(db_path: Path) -> Store:
    return Store(db_path, lock_timeout_s=10)


class Invoker:
    """Runs `closewatch --db <tmp db> ...` in-process and returns the click Result."""

    def __init__(self, db: Path):
        self.db = db
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | bytes | None = None, db: bool = True):
        argv = ["--db", str(self.db), *args] if db else list(args)
        return self.runner.invoke(cli, argv, input=input, obj={}, catch_exceptions=False)

    def json(self, query: str) -> list[dict]:
        result = self("sql", query, "--format", "json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def run(db_path: Path) -> Invoker:
    return Invoker(db_path)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
