"""Nothing lost, nothing doubled: dedupe, deterministic ids, atomic files, bad input never raises."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closewatch import jobs
from closewatch.store import Store
from closewatch.ingest import pipeline
from closewatch.ingest.sources import bytes_input
from tests.conftest import write_lines


def closes(count: int, start: int = 0) -> list[str]:
    return [
        json.dumps({"ts": f"2026-11-20T10:{(i // 60) % 60:02d}:{i % 60:02d}Z", "session_id": f"s{i}", "code": 1006, "reason": "lost", "client": "web"})
        for i in range(start, start + count)
    ]


def test_reingest_adds_nothing_and_reports_duplicates(run, tmp_path):
    path = write_lines(tmp_path / "a.jsonl", closes(50))
    run("ingest", str(path))
    again = run("ingest", str(path))
    assert run.json("select count(*) as n from closures") == [{"n": 50}]
    batches = run.json("select accepted, duplicates from ingest_batches order by started_at")
    assert batches == [{"accepted": 50, "duplicates": 0}, {"accepted": 0, "duplicates": 50}]
    assert "50" in again.stdout


def test_same_event_from_another_file_has_the_same_id(run, tmp_path):
    lines = closes(30)
    write_lines(tmp_path / "first.jsonl", lines[:20])
    write_lines(tmp_path / "overlap.jsonl", lines[10:])
    run("ingest", str(tmp_path / "first.jsonl"))
    run("ingest", str(tmp_path / "overlap.jsonl"))
    assert run.json("select count(*) as n, count(distinct event_id) as ids from closures") == [{"n": 30, "ids": 30}]
    assert run.json("select duplicates from ingest_batches where source_file like '%overlap%'") == [{"duplicates": 10}]


def test_identical_lines_in_one_file_are_distinct_events(run, tmp_path):
    line = json.dumps({"code": 1006, "reason": "lost"})
    run("ingest", str(write_lines(tmp_path / "same.jsonl", [line, line, line])))
    run("ingest", str(write_lines(tmp_path / "same.jsonl", [line, line, line])))
    assert run.json("select count(*) as n from closures") == [{"n": 3}]


@pytest.mark.parametrize("slot_bits", [None, 0])
def test_event_ids_are_the_digest_of_identity_and_occurrence(run, tmp_path, monkeypatch, slot_bits):
    """Pins the id formula: a change would store every event again next to its old copy in users' stores.

    Identical lines at one time are numbered by occurrence; a line sharing only
    the time, and one at its own time, are the first of their kind. Only rows
    whose (time, code) slot repeats are numbered; with no slot bits every row
    shares one slot, so every row is numbered, and the ids must not change.
    """
    if slot_bits is not None:
        monkeypatch.setattr(pipeline, "SLOT_BITS", slot_bits)
    same = {"ts": "2026-11-20T10:15:02.5Z", "session_id": "s1", "code": 3008, "reason": "Session Expired", "client": "web"}
    lines = [same, same, {**same, "client": "ios"}, same, {**same, "ts": "2026-11-20T10:15:03Z"}]
    run("ingest", str(write_lines(tmp_path / "ids.jsonl", [json.dumps(line) for line in lines])))
    epoch_us = (datetime(2026, 11, 20, 10, 15, 2, 500_000, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)

    def event_id(epoch: int, client: str, occurrence: int) -> str:
        identity = "\x1f".join([str(epoch), "s1", "3008", "Session Expired", client])
        return hashlib.md5(f"{identity}#{occurrence}".encode()).hexdigest()

    expected = [event_id(epoch_us, "web", 0), event_id(epoch_us, "web", 1), event_id(epoch_us, "ios", 0),
                event_id(epoch_us, "web", 2), event_id(epoch_us + 500_000, "web", 0)]
    assert [row["event_id"] for row in run.json("select event_id from closures order by source_line")] == expected


def test_file_without_events_is_recorded_and_reported(run, tmp_path):
    path = write_lines(tmp_path / "app.log", ["just an application", "starting up", "done"])
    result = run("ingest", str(path))
    assert result.exit_code == 0
    assert "app.log" in result.stdout and ("no known log format" in result.stdout or "no session-close events" in result.stdout)
    assert run.json("select status from ingest_batches") == [{"status": "no_events"}]


def test_secrets_in_rejects_and_reasons_are_redacted(run, tmp_path, db_path):
    key = "0123456789abcdef0123456789abcdef"
    lines = [
        json.dumps({"code": 1008, "reason": f"Unauthorized Connection: invalid key {key}"}),
        f'{{"broken": "Authorization: Bearer {key}"',
    ]
    run("ingest", str(write_lines(tmp_path / "s.jsonl", lines)))
    assert key not in json.dumps(run.json("select * from closures"))
    assert key not in json.dumps(run.json("select * from rejects"))


INGEST_SCRIPT = """
import sys
from closewatch import jobs
from closewatch.store import Store
from closewatch.ingest.sources import expand_inputs
jobs.ingest(Store(sys.argv[1]), expand_inputs([sys.argv[2]]))
"""


#: The same ingest, but the transaction that writes the batch row stops before its commit and says so:
#: the moment at which a file that loads in more than one transaction would be half stored.
HELD_BEFORE_COMMIT_SCRIPT = """
import time
from contextlib import contextmanager
from closewatch.store import Store

_transaction = Store.transaction

@contextmanager
def held_before_commit(self, *args, **kwargs):
    with _transaction(self, *args, **kwargs) as con:
        yield con
        if con.execute("SELECT count(*) FROM ingest_batches").fetchone()[0]:
            print("batch written, not committed", flush=True)
            time.sleep(600)

Store.transaction = held_before_commit
""" + INGEST_SCRIPT


def stored_counts(db: Path) -> tuple[int, int, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT (SELECT count(*) FROM closures), (SELECT count(*) FROM rejects), (SELECT count(*) FROM ingest_batches)"
        ).fetchone()


def has_closures_table(db: Path) -> bool:
    if not db.exists():
        return False
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'closures'").fetchone()[0] == 1


def test_killed_before_the_commit_leaves_nothing_and_rerun_loads_all(tmp_path):
    """SIGKILL at the last moment of a real ingest, before its commit: no closure, reject or batch row is stored."""
    big = write_lines(tmp_path / "big.jsonl", closes(20_000) + ["not json"])
    db = tmp_path / "killed.duckdb"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    process = subprocess.Popen([sys.executable, "-c", HELD_BEFORE_COMMIT_SCRIPT, str(db), str(big)], env=env,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "batch written, not committed"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert stored_counts(db) == (0, 0, 0)
    jobs.ingest(Store(db), [bytes_input("big.jsonl", big.read_bytes())])
    assert stored_counts(db) == (20_000, 1, 1)


def test_killed_mid_ingest_leaves_nothing_partial_and_rerun_loads_all(tmp_path):
    """SIGKILL at several moments of a real ingest: the file is either absent or complete, and a rerun completes it."""
    big = write_lines(tmp_path / "big.jsonl", closes(200_000))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", INGEST_SCRIPT, str(tmp_path / "timing.duckdb"), str(big)], env=env, check=True)
    duration = time.monotonic() - started
    for number, fraction in enumerate((0.5, 0.8, 0.95)):
        db = tmp_path / f"killed-{number}.duckdb"
        process = subprocess.Popen([sys.executable, "-c", INGEST_SCRIPT, str(db), str(big)], env=env)
        time.sleep(duration * fraction)
        process.send_signal(signal.SIGKILL)
        process.wait()
        # killed before the store was first opened there is no file, and killed while its schema was being
        # created there is a file without tables; otherwise nothing or everything is in it
        closures = stored_counts(db)[0] if has_closures_table(db) else 0
        assert closures in (0, 200_000)
        jobs.ingest(Store(db), [bytes_input("big.jsonl", big.read_bytes())])
        with duckdb.connect(str(db), read_only=True) as con:
            assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM closures").fetchone() == (200_000, 200_000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(tmp_path_factory, data):
    store = Store(tmp_path_factory.mktemp("fuzz") / "f.duckdb")
    (result,) = jobs.ingest(store, [bytes_input("fuzz.bin", data)])
    assert result.accepted + result.rejected + result.skipped <= max(result.lines_read, 1) + 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)
keys = st.sampled_from(["code", "close_code", "reason", "ts", "timestamp", "session_id", "client", "type", "error", "id", "x"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.dictionaries(keys, json_values, max_size=6) | json_values, min_size=1, max_size=8))
def test_arbitrary_json_never_raises(tmp_path_factory, records):
    store = Store(tmp_path_factory.mktemp("fuzz") / "f.duckdb")
    data = "\n".join(json.dumps(record) for record in records).encode()
    (result,) = jobs.ingest(store, [bytes_input("fuzz.jsonl", data)], format_name="jsonl")
    assert result.accepted + result.rejected + result.skipped == len(records)


def test_fast_file_reader_and_line_reader_agree(tmp_path):
    """Files on disk take DuckDB's whole-file reader, stdin the line reader: same rows, same rejects."""
    lines = closes(20) + [
        json.dumps({"code": "abc", "reason": "x"}),
        json.dumps({"code": 3007, "reason": "Input duration violation: 1500 ms. Expected between 50 and 1000 ms", "ts": "2026-11-20 10:00:00,5"}),
        json.dumps({"ts": "not a time", "code": 1000}),
        json.dumps({"note": "not a close"}),
    ]
    path = write_lines(tmp_path / "clean.jsonl", lines)
    by_file, by_bytes = Store(tmp_path / "file.duckdb"), Store(tmp_path / "bytes.duckdb")
    (from_file,) = jobs.ingest(by_file, [__import__("ingest.sources", fromlist=["file_input"]).file_input(path)])
    (from_bytes,) = jobs.ingest(by_bytes, [bytes_input(str(path), path.read_bytes())])
    columns = "event_id, ts, session_id, close_code, close_reason, client_id, source_line, category, chunk_ms"
    rows = [store.query(f"SELECT {columns} FROM closures ORDER BY source_line") for store in (by_file, by_bytes)]
    assert rows[0].equals(rows[1]) and rows[0].height == 21
    rejects = [store.query("SELECT line_no, raw, reason FROM rejects ORDER BY line_no") for store in (by_file, by_bytes)]
    assert rejects[0].equals(rejects[1])
    assert rejects[0]["line_no"].to_list() == [21, 23]
    assert rejects[0]["raw"][0] == lines[20]
    assert (from_file.skipped, from_bytes.skipped) == (1, 1)


def test_closes_without_time_in_different_files_are_not_duplicates(run, tmp_path):
    """Without a timestamp a close is known by its place in its file's content: other content, another close."""
    line = json.dumps({"code": 1006, "reason": "connection lost", "client": "web"})
    run("ingest", str(write_lines(tmp_path / "monday.jsonl", [json.dumps({"note": "monday"}), line])))
    run("ingest", str(write_lines(tmp_path / "tuesday.jsonl", [json.dumps({"note": "tuesday"}), line, json.dumps({"code": 1000})])))
    run("ingest", str(write_lines(tmp_path / "tuesday-copy.jsonl", [json.dumps({"note": "tuesday"}), line, json.dumps({"code": 1000})])))
    assert run.json("select count(*) as n from closures") == [{"n": 3}]
    assert run.json("select duplicates from ingest_batches order by started_at") == [{"duplicates": 0}, {"duplicates": 0}, {"duplicates": 2}]


def test_progress_reaches_the_input_size_on_both_readers(tmp_path):
    from closewatch.ingest.sources import file_input

    path = write_lines(tmp_path / "p.jsonl", closes(2000))
    for source in (file_input(path), bytes_input("p.jsonl", path.read_bytes())):
        seen: list[int] = []
        record = seen.append
        jobs.ingest(Store(tmp_path / f"{source.path is None}.duckdb"), [source], progress_for=lambda _source, record=record: record)
        assert seen and seen == sorted(seen) and seen[-1] == path.stat().st_size


def test_duplicates_at_the_edges_of_a_files_time_range_are_found(run, tmp_path):
    """The duplicate check reads only stored rows within the file's first and last time: the edges are in it,
    to the microsecond, whatever zone the log wrote them in."""
    lines = [json.dumps({"ts": f"2026-11-20T12:00:0{i}.12345{i}+02:00", "session_id": f"s{i}", "code": 1006, "reason": "lost"})
             for i in range(6)]
    run("ingest", str(write_lines(tmp_path / "all.jsonl", lines)))
    run("ingest", str(write_lines(tmp_path / "edges.jsonl", [lines[1], lines[4]])))
    run("ingest", str(write_lines(tmp_path / "untimed.jsonl", [lines[2], json.dumps({"code": 1006, "reason": "lost"})])))
    run("ingest", str(write_lines(tmp_path / "untimed.jsonl", [lines[2], json.dumps({"code": 1006, "reason": "lost"})])))
    assert run.json("select count(*) as n from closures") == [{"n": 7}]
    assert run.json("select source_file, accepted, duplicates from ingest_batches order by started_at") == [
        {"source_file": str(tmp_path / "all.jsonl"), "accepted": 6, "duplicates": 0},
        {"source_file": str(tmp_path / "edges.jsonl"), "accepted": 0, "duplicates": 2},
        {"source_file": str(tmp_path / "untimed.jsonl"), "accepted": 1, "duplicates": 1},
        {"source_file": str(tmp_path / "untimed.jsonl"), "accepted": 0, "duplicates": 2},
    ]


def test_the_duplicate_check_reads_only_stored_rows_of_the_files_period(tmp_path):
    """The scope of the check: stored rows within the staged rows' time range, and untimed ones only when the file has any."""
    from closewatch.ingest.pipeline import stored_ids_sql

    store = Store(tmp_path / "scope.duckdb")
    days = [json.dumps({"ts": f"2026-11-{day:02d}T10:00:00Z", "session_id": f"d{day}", "code": 1006, "reason": "lost"})
            for day in range(1, 11)]
    jobs.ingest(store, [bytes_input("days.jsonl", ("\n".join(days) + "\n").encode())])
    jobs.ingest(store, [bytes_input("untimed.jsonl", b'{"code": 1006, "reason": "lost"}\n')])
    staged = tmp_path / "staged.parquet"
    with store.connect(read_only=True) as con:
        def scope(rows: str) -> set[str]:
            con.execute(f"COPY (SELECT * FROM (VALUES {rows}) v(ts)) TO '{staged}' (FORMAT parquet)")
            ids = {row[0] for row in con.execute(stored_ids_sql(con, [staged])).fetchall()}
            return {row[0] for row in con.execute("SELECT coalesce(session_id, 'untimed') FROM closures WHERE list_contains(?, event_id)",
                                                  [sorted(ids)]).fetchall()}

        assert scope("('2026-11-03T10:00:00Z'::TIMESTAMPTZ), ('2026-11-05T10:00:00Z'::TIMESTAMPTZ)") == {"d3", "d4", "d5"}
        assert scope("('2026-11-05T10:00:00Z'::TIMESTAMPTZ), (NULL)") == {"d5", "untimed"}
        assert scope("(NULL::TIMESTAMPTZ)") == {"untimed"}
        assert scope("('2026-12-01T00:00:00Z'::TIMESTAMPTZ)") == set()


def test_a_quote_in_the_folders_and_file_names_is_part_of_the_path(tmp_path):
    """Paths reach DuckDB as SQL literals (the staging folder beside the database, the input's own path)."""
    from click.testing import CliRunner

    from closewatch.cli.main import cli

    samples = Path(__file__).resolve().parents[2] / "sample_logs"
    folder = tmp_path / "o'neil's logs"
    folder.mkdir()
    names = ["closures.jsonl", "closures.csv", "assemblyai-python-v3.log"]
    for name in names:
        (folder / f"it's {name}").write_bytes((samples / name).read_bytes())
    db = folder / "o'neil.duckdb"
    result = CliRunner().invoke(cli, ["--db", str(db), "ingest", *(str(folder / f"it's {name}") for name in names)], obj={})
    assert result.exit_code == 0, result.output
    expected = {}
    for name in names:
        plain = tmp_path / f"plain-{name}.duckdb"
        assert CliRunner().invoke(cli, ["--db", str(plain), "ingest", str(samples / name)], obj={}).exit_code == 0
        expected[f"it's {name}"] = Store(plain).query("SELECT count(*) FROM closures").item()
    stored = dict(Store(db).query("SELECT source_file, count(*) FROM closures GROUP BY 1").rows())
    assert {Path(source).name: n for source, n in stored.items()} == expected
    assert all(n > 0 for n in expected.values())


def test_repeated_slots_are_exactly_the_slots_two_rows_share():
    """The bitsets, read batch by batch, find every slot two or more timestamped rows share, each once, and no other."""
    con = duckdb.connect()
    con.execute("SELECT setseed(0.25)")
    con.execute("""CREATE TABLE parts AS SELECT CASE WHEN i % 50 = 0 THEN NULL ELSE TIMESTAMPTZ '2026-01-01' + to_microseconds((random() * 1e9)::BIGINT) END AS ts,
                   (random() * 3)::INT AS close_code FROM range(400000) AS t(i)""")
    mask, repeated = pipeline._repeated_slots(con, 400_000)
    expected = con.execute(f"SELECT slot FROM (SELECT {pipeline._SLOT.format(slot_mask=mask)} AS slot FROM parts WHERE ts IS NOT NULL) "
                           "GROUP BY slot HAVING count(*) > 1").fetchnumpy()["slot"]
    assert len(expected) > 1000  # enough shared slots, across many batches, to mean something
    assert sorted(repeated.tolist()) == sorted(expected.tolist())
