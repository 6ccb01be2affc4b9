"""The store: schema versions, the lock policy between processes, read-only user queries."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from closewatch import schema
from closewatch.errors import ReadOnlyQuery, SchemaTooNew, StoreBusy
from closewatch.store import Store
from tests.conftest import write_lines

HOLD_SCRIPT = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def hold_database(path: Path, seconds: float) -> subprocess.Popen:
    """Another process with the file open read-write, as the scheduler or a CLI would be."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "holding"
    return process


def test_schema_is_created_on_first_use_and_versioned(store):
    assert store.query("SELECT max(version) AS v FROM schema_version").item() == schema.LATEST
    tables = set(store.query("SELECT table_name FROM information_schema.tables")["table_name"])
    assert {"closures", "ingest_batches", "rejects", "detections", "closures_daily", "client_error_rates"} <= tables


SCHEMA_QUERIES = {
    "columns": "SELECT table_name, column_index, column_name, data_type, column_default, is_nullable FROM duckdb_columns() "
               "WHERE NOT internal ORDER BY ALL",
    "views": "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY ALL",
    "indexes": "SELECT index_name, table_name, is_unique, sql FROM duckdb_indexes() ORDER BY ALL",
    "constraints": "SELECT table_name, constraint_type, constraint_text FROM duckdb_constraints() ORDER BY ALL",
    "versions": "SELECT list(version ORDER BY version) FROM schema_version",
}


def schema_of(path: Path) -> dict:
    with duckdb.connect(str(path), read_only=True) as con:
        return {name: con.execute(sql).fetchall() for name, sql in SCHEMA_QUERIES.items()}


def test_a_new_file_gets_the_same_schema_on_its_writing_connection_as_on_a_reading_one(tmp_path):
    """A first write makes the schema on the very connection it writes with (one open and one close fewer);
    a first read makes it on a connection of its own, as every store did before."""
    written, read = Store(tmp_path / "written.duckdb"), Store(tmp_path / "read.duckdb")
    with written.transaction() as con:
        con.execute("INSERT INTO job_runs (run_id, job, started_at, outcome) VALUES ('r1', 'x', now(), 'ok')")
    read.query("SELECT 1")
    assert schema_of(written.path) == schema_of(read.path)
    assert schema_of(written.path)["versions"] == [(sorted(schema.MIGRATIONS),)]
    assert written.query("SELECT count(*) FROM job_runs").item() == 1


def test_two_processes_that_make_the_same_new_file_at_once_both_load(tmp_path):
    db = tmp_path / "new.duckdb"
    logs = [write_lines(tmp_path / f"{n}.jsonl", [json.dumps({"ts": f"2026-11-20T10:00:0{n}Z", "code": 1006, "reason": "lost"})])
            for n in range(2)]
    runs = [subprocess.Popen([sys.executable, "-m", "closewatch.cli", "--db", str(db), "ingest", str(log)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for log in logs]
    for run in runs:
        _, errors = run.communicate(timeout=120)
        assert run.returncode == 0, errors
    assert Store(db).query("SELECT count(*) FROM closures").item() == 2
    assert schema_of(db)["versions"] == [(sorted(schema.MIGRATIONS),)]


def test_older_database_is_migrated(db_path, monkeypatch):
    with duckdb.connect(str(db_path)) as con:
        con.execute("CREATE TABLE schema_version (version INTEGER, applied_at TIMESTAMPTZ DEFAULT now())")
        con.execute(schema.MIGRATIONS[1])
        con.execute("INSERT INTO schema_version (version) VALUES (1)")
    monkeypatch.setitem(schema.MIGRATIONS, schema.LATEST + 1, "CREATE TABLE added_later (x INTEGER);")
    monkeypatch.setattr("closewatch.store.LATEST", schema.LATEST + 1)
    store = Store(db_path)
    assert store.query("SELECT count(*) FROM added_later").item() == 0
    assert store.query("SELECT max(version) FROM schema_version").item() == schema.LATEST + 1


def test_newer_database_is_refused_with_one_sentence(db_path):
    Store(db_path).query("SELECT 1")
    with duckdb.connect(str(db_path)) as con:
        con.execute("INSERT INTO schema_version (version) VALUES (999)")
    with pytest.raises(SchemaTooNew, match="schema version 999, newer than this closewatch understands"):
        Store(db_path).query("SELECT 1")


def test_ingest_waits_for_another_process_then_succeeds(run, db_path, tmp_path):
    Store(db_path).query("SELECT 1")
    path = write_lines(tmp_path / "a.jsonl", [json.dumps({"code": 1000})])
    holder = hold_database(db_path, 6.0)  # long enough that ingest (parse, then open) finds it held even under load
    started = time.monotonic()
    result = run("--lock-timeout", "60", "ingest", str(path))
    holder.wait()
    assert result.exit_code == 0
    assert time.monotonic() - started >= 1.0
    assert f"held by PID {holder.pid}" in result.stderr
    assert run.json("select count(*) as n from closures") == [{"n": 1}]


def test_busy_database_gives_a_clear_error_after_the_timeout(run, db_path, tmp_path):
    Store(db_path).query("SELECT 1")
    path = write_lines(tmp_path / "a.jsonl", [json.dumps({"code": 1000})])
    holder = hold_database(db_path, 10.0)
    try:
        result = run("--lock-timeout", "0.5", "ingest", str(path))
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    assert f"is busy: held by PID {holder.pid} for more than 0.5 s" in result.stderr
    assert "Traceback" not in result.stderr


def test_busy_error_is_a_store_error_in_the_api(db_path):
    Store(db_path).query("SELECT 1")
    holder = hold_database(db_path, 10.0)
    try:
        with pytest.raises(StoreBusy):
            with Store(db_path, lock_timeout_s=0.2).transaction():
                pass
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    "query, refusal",
    [
        ("INSERT INTO closures (event_id) VALUES ('x')", "read-only"),
        ("DELETE FROM closures", "read-only"),
        ("COPY closures TO '/tmp/closewatch-leak.csv'", "cannot read or write files"),
        ("SELECT * FROM read_csv('/etc/passwd')", "cannot read or write files"),
        ("ATTACH '/tmp/other.duckdb' AS other", "cannot read or write files"),
        ("SET enable_external_access = true", "settings cannot be changed"),
        ("SELEC 1", "The query failed"),
    ],
)
def test_user_queries_are_read_only_and_without_files(store, query, refusal):
    with pytest.raises(ReadOnlyQuery, match=refusal):
        store.user_query(query)
    assert not Path("/tmp/closewatch-leak.csv").exists()


def test_user_query_returns_rows(store):
    assert store.user_query("SELECT 41 + 1 AS answer").to_dicts() == [{"answer": 42}]


def test_db_path_from_environment(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from closewatch.cli.main import cli

    target = tmp_path / "from-env.duckdb"
    monkeypatch.setenv("CLOSEWATCH_DB", str(target))
    missing = CliRunner().invoke(cli, ["info"], obj={})
    assert missing.exit_code == 1 and f"Database {target} does not exist" in missing.stderr
    Store(target).query("SELECT 1")
    result = CliRunner().invoke(cli, ["info"], obj={})
    assert result.exit_code == 0, result.output
    assert str(target) in result.stdout


def test_lock_timeout_from_config_file(tmp_path, monkeypatch):
    from closewatch.settings import load_settings

    config = tmp_path / "closewatch.toml"
    config.write_text("[store]\nlock_timeout_s = 2.5\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().lock_timeout_s == 2.5
    config.write_text("[store]\nlock_timeout_s = 'soon'\n")
    from closewatch.errors import ConfigError

    with pytest.raises(ConfigError, match="lock_timeout_s must be a number"):
        load_settings()


def test_literals_read_back_as_the_values_they_write():
    """store.literal stands in for bound parameters on the quick paths: each value comes back as itself."""
    import math
    from datetime import UTC, datetime, timedelta, timezone

    from closewatch.store import literal

    con = duckdb.connect()
    values = [None, True, False, 0, -(2**62), 1.25, "", "it's", "a''b \\ \n é \x1f", datetime(2026, 11, 20, 10, 0, 1, 123456, tzinfo=UTC),
              datetime(2026, 11, 20, 12, 0, tzinfo=timezone(timedelta(hours=2))), ["/tmp/a.parquet", "/tmp/it's.parquet"]]
    for value in values:
        assert con.execute(f"SELECT {literal(value)}").fetchone() == (value,), value
    assert math.isnan(con.execute(f"SELECT {literal(float('nan'))}").fetchone()[0])
    with pytest.raises(ValueError):
        literal(datetime(2026, 11, 20))
    with pytest.raises(TypeError):
        literal(object())


def test_a_held_unit_of_work_shares_one_open_file_and_lets_go_of_it_after(db_path):
    from closewatch.store import SerialStore

    store = SerialStore(db_path)
    store.query("SELECT 1")
    with store.held():
        for n in range(5):
            with store.transaction() as con:
                con.execute("INSERT INTO job_runs VALUES (?, 'x', now(), now(), 'ok', NULL, NULL, 1)", [f"run-{n}"])
        assert store.query("SELECT count(*) FROM job_runs").item() == 5  # a read-only read joins the held file
        other = subprocess.run([sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1], read_only=True)", str(db_path)],
                               capture_output=True, text=True)
        assert other.returncode != 0 and "lock" in other.stderr.lower()  # held: other processes wait, as for any writer
    other = subprocess.run([sys.executable, "-c", "import duckdb, sys; print(duckdb.connect(sys.argv[1], read_only=True)"
                            ".execute('SELECT count(*) FROM job_runs').fetchone()[0])", str(db_path)], capture_output=True, text=True)
    assert other.stdout.strip() == "5", other.stderr  # let go, every transaction committed


def test_a_held_unit_of_work_on_a_busy_file_runs_unheld_and_waits_as_usual(db_path):
    from closewatch.store import SerialStore

    Store(db_path).query("SELECT 1")
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(1.5)", str(db_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    store = SerialStore(db_path, lock_timeout_s=0.2)
    with store.held():  # could not open it: the work runs, its own connections wait (here: give up) as usual
        with pytest.raises(StoreBusy):
            store.query("SELECT 1")
    holder.wait()
    with store.held():
        assert store.query("SELECT 1").item() == 1
