"""Fixtures of the alert tests that cost seconds to build, built once per session."""

from __future__ import annotations

import json

import pytest

from closewatch.store import Store
from tests.conftest import Invoker


@pytest.fixture(scope="session")
def week(tmp_path_factory):
    """A generated week with its incidents, ingested and analyzed (the detections feed the pattern rules)."""
    from closewatch.analysis.detection import detect

    folder = tmp_path_factory.mktemp("week")
    run = Invoker(folder / "week.duckdb")
    result = run("generate", str(folder / "gen"), "--days", "7", "--seed", "1", "--formats", "jsonl", db=False)
    assert result.exit_code == 0, result.output
    assert run("ingest", str(folder / "gen")).exit_code == 0
    store = Store(folder / "week.duckdb", lock_timeout_s=10)
    detect(store)
    return run, store, json.loads((folder / "gen" / "manifest.json").read_text())
