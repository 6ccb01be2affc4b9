"""Issue 11, reproduction 2: runaway SQL. A user's query runs on a snapshot (in a child process for the dashboard,
in the command's own process for the CLI), stops at its time, memory and row limits, never blocks a writer, and a
cancelled query leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from closewatch import sandbox
from closewatch.sandbox import Limits, QueryRefused, run_here, run_query, snapshot_dir
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


def test_columns_a_frame_cannot_hold_come_back_as_duckdb_writes_them(filled):
    """The dashboard shows any query's rows: an INTERVAL, a UNION or a BIT column (also in a list) is text."""
    answer = run_query(filled, 'SELECT interval 3 day AS "gap ""quoted""", [interval 1 hour] AS gaps, '
                                       "union_value(k := 1) AS u, '101'::BIT AS bits, 7 AS n")
    assert answer.frame.rows(named=True) == [{'gap "quoted"': "3 days", "gaps": "['01:00:00']", "u": "1", "bits": "101", "n": 7}]


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


def holds_the_snapshot(pid: int, db: Path) -> bool:
    """Whether the process has the database's snapshot open (its query is running there, not on the store)."""
    snapshot = str(snapshot_dir(Store(db)) / "snapshot.duckdb")
    try:
        return any(file.path == snapshot for file in psutil.Process(pid).open_files())
    except psutil.Error:
        return False


@pytest.mark.slow
def test_a_writer_is_never_blocked_by_a_running_query_and_ctrl_c_stops_it(filled, db_path, tmp_path):
    (tmp_path / "closewatch.toml").write_text('[sql]\ntimeout = "5m"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    query = subprocess.Popen([sys.executable, "-m", "closewatch.cli", "--config", str(tmp_path / "closewatch.toml"), "--db", str(db_path),
                              "sql", FOREVER], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not holds_the_snapshot(query.pid, db_path):
        assert time.monotonic() < deadline and query.poll() is None, query.communicate()[0]
        time.sleep(0.2)
    writer = Store(db_path, lock_timeout_s=2)  # the ingest gave up after 30 s of "busy"; here 2 s is plenty
    for number in range(5):
        with writer.transaction() as con:
            con.execute("INSERT INTO closures (event_id, ts, client_id, category) VALUES (?, now(), 'w', 'normal')", [f"w{number}"])
    assert writer.query("SELECT count(*) FROM closures").item() == 1005
    assert query.poll() is None, "the query was still running all along"
    query.send_signal(signal.SIGINT)
    output = query.communicate(timeout=60)[0]
    assert query.returncode != 0 and "Traceback" not in output, output
    assert sandbox_children(db_path) == [] and not list(snapshot_dir(Store(db_path)).glob("query-*")), "nothing left behind"


def test_the_cli_prints_a_refusal_in_one_line_and_says_when_rows_were_cut(run, filled, tmp_path):
    (tmp_path / "short.toml").write_text('[sql]\ntimeout = "2s"\n')
    stopped = run("--config", str(tmp_path / "short.toml"), "sql", FOREVER)
    assert stopped.exit_code == 1 and "ran longer than 2 s and was stopped" in stopped.stderr and "Traceback" not in stopped.output
    (tmp_path / "few.toml").write_text('[sql]\nmax_rows = 5\n')
    cut = run("--config", str(tmp_path / "few.toml"), "sql", "SELECT * FROM range(20)", "--format", "csv")
    assert cut.exit_code == 0 and len(cut.stdout.splitlines()) == 6, cut.output
    assert "Only the first 5 rows are shown ([sql] max_rows)" in cut.stderr


# -- the command line's query, run in its own process (run_here) -----------------------------------------------


def test_here_a_query_answers_from_the_snapshot_as_python_values(filled):
    answer = run_here(filled, "SELECT count(*) AS n, sum(1::DECIMAL(10, 0)) AS s FROM closures")
    assert (answer.columns, answer.rows, answer.truncated) == (["n", "s"], [(1000, 1000)], False)
    with filled.transaction() as con:
        con.execute("INSERT INTO closures (event_id, ts, client_id, category) VALUES ('new', now(), 'x', 'normal')")
    assert run_here(filled, "SELECT count(*) FROM closures").rows == [(1001,)], "a change is seen by the next query"


def test_here_a_runaway_query_is_interrupted_at_its_time_limit_and_leaves_nothing(filled):
    with pytest.raises(QueryRefused, match=r"^The query ran longer than 1.5 s and was stopped; .* raise \[sql\] timeout"):
        run_here(filled, FOREVER, Limits(timeout_s=1.5))
    assert not list(snapshot_dir(filled).glob("query-*")), "the query's spill folder is removed"
    assert run_here(filled, "SELECT 1").rows == [(1,)], "the next query runs"


def test_here_past_the_memory_ceiling_the_query_is_stopped_in_one_sentence(filled, monkeypatch):
    # a ceiling below what this process already holds: the watcher's first look at its resident memory stops the query
    monkeypatch.setattr(sandbox, "MEMORY_SLACK_MB", -4096)
    with pytest.raises(QueryRefused, match=r"^The query needed more than its memory limit \(64 MB\) and was stopped"):
        run_here(filled, FOREVER, Limits(timeout_s=60, memory_limit_mb=64))


def test_here_duckdbs_own_memory_limit_is_one_sentence(filled):
    with pytest.raises(QueryRefused, match=r"memory limit|more memory than its limit"):
        run_here(filled, "SELECT string_agg(repeat('x', 1000000), ',') FROM range(5000)", Limits(timeout_s=60, memory_limit_mb=128))


def test_here_rows_beyond_the_row_limit_are_cut_and_said(filled):
    answer = run_here(filled, "SELECT * FROM range(50)", Limits(max_rows=10))
    assert answer.rows == [(number,) for number in range(10)] and answer.truncated
    assert not run_here(filled, "SELECT * FROM range(10)", Limits(max_rows=10)).truncated


@pytest.mark.parametrize("query, words", [
    ("DELETE FROM closures", "read-only"),
    ("CREATE TABLE mine AS SELECT 1", "read-only"),
    ("SELECT * FROM read_csv('/etc/passwd')", "cannot read or write files"),
    ("COPY closures TO '/tmp/closures.csv'", "cannot read or write files|read-only"),
    ("ATTACH '/tmp/other.duckdb' AS other", "cannot read or write files|read-only"),
    ("SET memory_limit = '100GB'", "cannot be changed"),
    ("SELECT nonsense FROM closures", "The query failed: .*fix the SQL"),
])
def test_here_refusals_are_one_sentence_and_the_store_is_unchanged(filled, query, words):
    with pytest.raises(QueryRefused, match=words):
        run_here(filled, query)
    assert filled.query("SELECT count(*) FROM closures").item() == 1000


def test_the_cli_stops_a_runaway_query_in_one_sentence_with_exit_1(filled, db_path, tmp_path):
    (tmp_path / "short.toml").write_text('[sql]\ntimeout = "1500ms"\n')
    done = subprocess.run([sys.executable, "-m", "closewatch.cli", "--config", str(tmp_path / "short.toml"), "--db", str(db_path),
                           "sql", FOREVER],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == "", done
    assert done.stderr.strip().splitlines() == [
        "Error: The query ran longer than 1.5 s and was stopped; add a WHERE on ts, aggregate, or raise [sql] timeout in closewatch.toml."]


def test_the_folders_of_killed_queries_and_copies_are_removed_by_the_next_query(filled):
    run_here(filled, "SELECT 1")
    folder = snapshot_dir(filled)
    dead = folder / "query-4194305-x"  # above Linux's largest pid: no such process
    alive = folder / f"query-{os.getpid()}-y"  # a query of a live process (this one)
    for left in (dead, alive, folder / "copy-z"):
        (left / "spill").mkdir(parents=True)
    run_here(filled, "SELECT 1")
    assert not dead.exists() and alive.exists()
    with filled.transaction() as con:  # a change: the next query copies the store again, under the copiers' lock
        con.execute("INSERT INTO closures (event_id, ts, client_id, category) VALUES ('new', now(), 'x', 'normal')")
    run_query(filled, "SELECT 1")
    assert not (folder / "copy-z").exists() and alive.exists()
