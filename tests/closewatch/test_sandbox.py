"""Issue 11, reproduction 2: runaway SQL. A user's query runs on a snapshot in a child process, stops at its
time, memory and row limits, never blocks a writer, and a cancelled query leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from closewatch.sandbox import Limits, QueryRefused, run_query, snapshot_dir
from closewatch.store import Store

ROOT = Path(__file__).resolve().parents[2]
FOREVER = "SELECT count(*) FROM range(1000000000000::BIGINT)"


def sandbox_children(db: Path) -> list[psutil.Process]:
    """Live processes running a query on this database's snapshot."""
    marker = str(snapshot_dir(Store(db)))
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in process.info["cmdline"] or []) and "closewatch.sandbox" in process.info["cmdline"]:
                found.append(process)
        except psutil.Error:
            pass
    return found


@pytest.fixture
def filled(store: Store) -> Store:
    with store.transaction() as con:
        con.execute("INSERT INTO closures (event_id, ts, client_id, category) SELECT 'e' || i, now(), 'c' || (i % 7), 'normal' FROM range(1000) t(i)")
    return store


def test_a_query_answers_from_a_snapshot_that_follows_the_store(filled):
    assert run_query(filled, "SELECT count(*) AS n FROM closures").frame.item() == 1000
    with filled.transaction() as con:
        con.execute("INSERT INTO closures (event_id, ts, client_id, category) VALUES ('new', now(), 'x', 'normal')")
    assert run_query(filled, "SELECT count(*) AS n FROM closures").frame.item() == 1001, "a change is seen by the next query"
    assert (snapshot_dir(filled) / "snapshot.duckdb").exists()


def test_a_runaway_query_is_stopped_at_its_time_limit_and_leaves_no_process(filled, db_path):
    with pytest.raises(QueryRefused, match=r"ran longer than 2 s and was stopped; .* raise \[sql\] timeout"):
        run_query(filled, FOREVER, Limits(timeout_s=2))
    assert sandbox_children(db_path) == []


def test_a_query_that_needs_too_much_memory_is_stopped_in_one_sentence(filled):
    with pytest.raises(QueryRefused, match=r"memory limit|more memory than its limit"):
        run_query(filled, "SELECT string_agg(repeat('x', 1000000), ',') FROM range(5000)", Limits(timeout_s=60, memory_limit_mb=128))


def test_rows_beyond_the_row_limit_are_cut_and_said(filled):
    answer = run_query(filled, "SELECT * FROM range(50)", Limits(max_rows=10))
    assert answer.frame.height == 10 and answer.truncated
    assert not run_query(filled, "SELECT * FROM range(10)", Limits(max_rows=10)).truncated


@pytest.mark.parametrize("query, words", [
    ("DELETE FROM closures", "read-only"),
    ("SELECT * FROM read_csv('/etc/passwd')", "cannot read or write files"),
    ("SET memory_limit = '100GB'", "cannot be changed"),
])
def test_refusals_still_come_back_as_one_sentence(filled, query, words):
    with pytest.raises(QueryRefused, match=words):
        run_query(filled, query)


@pytest.mark.slow
def test_a_writer_is_never_blocked_by_a_running_query_and_ctrl_c_stops_it(filled, db_path, tmp_path):
    (tmp_path / "closewatch.toml").write_text('[sql]\ntimeout = "5m"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    query = subprocess.Popen([sys.executable, "-m", "closewatch.cli", "--config", str(tmp_path / "closewatch.toml"), "--db", str(db_path),
                              "sql", FOREVER], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not sandbox_children(db_path):
        assert time.monotonic() < deadline and query.poll() is None, query.communicate()[0]
        time.sleep(0.2)
    writer = Store(db_path, lock_timeout_s=2)  # the ingest gave up after 30 s of "busy"; here 2 s is plenty
    for number in range(5):
        with writer.transaction() as con:
            con.execute("INSERT INTO closures (event_id, ts, client_id, category) VALUES (?, now(), 'w', 'normal')", [f"w{number}"])
    assert writer.query("SELECT count(*) FROM closures").item() == 1005
    assert query.poll() is None, "the query was still running all along"
    query.send_signal(signal.SIGINT)
    query.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while sandbox_children(db_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sandbox_children(db_path) == [], "the query's process was killed with the command"


def test_the_cli_prints_a_refusal_in_one_line_and_says_when_rows_were_cut(run, filled, tmp_path):
    (tmp_path / "short.toml").write_text('[sql]\ntimeout = "2s"\n')
    stopped = run("--config", str(tmp_path / "short.toml"), "sql", FOREVER)
    assert stopped.exit_code == 1 and "ran longer than 2 s and was stopped" in stopped.stderr and "Traceback" not in stopped.output
    (tmp_path / "few.toml").write_text('[sql]\nmax_rows = 5\n')
    cut = run("--config", str(tmp_path / "few.toml"), "sql", "SELECT * FROM range(20)", "--format", "csv")
    assert cut.exit_code == 0 and len(cut.stdout.splitlines()) == 6, cut.output
    assert "Only the first 5 rows are shown ([sql] max_rows)" in cut.stderr
