"""Issue 11's ingest reproductions, each on real files (and real processes where it matters).

1 memory on small inputs (behaviour only: peak memory is measured by bench/bench_ingest_memory.py),
4 closes lost to a log-supplied event_id, 5 closes doubled when a grown file is re-ingested,
10 timestamps and close codes at the edges, 11 unreadable files, FIFOs, devices, link loops,
overlapping globs, a read-only database; and where staged rows live.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from closewatch.ingest.lines import LineReader
from closewatch.jobs.scheduler import ingest_watched
from closewatch.store import Store
from tests.conftest import write_lines

ROOT = Path(__file__).resolve().parents[2]
WEBSOCKET_LOG = ROOT / "sample_logs" / "demo" / "websocket-client" / "transcribe-worker.log.gz"
MIB = 1024 * 1024


def close(i: int, **extra) -> str:
    return json.dumps({"ts": f"2026-11-20T10:{(i // 60) % 60:02d}:{i % 60:02d}Z", "session_id": f"s{i}", "code": 1006,
                       "reason": "lost", "client": "web", **extra})


def closewatch(*args: str, timeout: float = 120, prefix: list[str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """The real command line, in its own process."""
    command = [*(prefix or []), sys.executable, "-m", "closewatch", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def count(db: Path, sql: str = "SELECT count(*) FROM closures"):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


# -- 1. memory on small inputs: over-long lines are rejected by number, never held ------------


def test_a_gzip_with_a_huge_reason_loads_its_good_line_and_rejects_the_long_one(run, tmp_path):
    path = tmp_path / "small.jsonl.gz"
    with gzip.open(path, "wb") as out:
        out.write(close(1).encode() + b"\n")
        out.write(b'{"code": 1000, "reason": "' + b"A" * (3 * MIB) + b'"}\n')
        out.write(close(2).encode() + b"\n")
    result = run("ingest", str(path))
    assert result.exit_code == 0, result.output
    assert run.json("select count(*) as n from closures") == [{"n": 2}]
    (reject,) = run.json("select line_no, reason, length(raw) as n from rejects")
    assert reject["line_no"] == 2 and "longer than the 1,048,576-byte limit" in reject["reason"] and reject["n"] < 4096


def test_detection_skips_an_over_long_first_line(run, tmp_path):
    path = tmp_path / "app.log"
    lines = gzip.decompress(WEBSOCKET_LOG.read_bytes()).decode().splitlines()[:400]
    write_lines(path, ["x" * (2 * MIB)] + lines)
    result = run("ingest", str(path))
    assert result.exit_code == 0, result.output
    assert run.json("select distinct source_format from closures") == [{"source_format": "websocket-client"}]
    assert run.json("select line_no from rejects where reason like 'Line is%'") == [{"line_no": 1}]


def test_a_long_reason_with_a_forced_format_is_rejected_and_a_stored_field_is_bounded(run, tmp_path):
    path = write_lines(tmp_path / "r.jsonl", [
        close(1), json.dumps({"code": 1000, "reason": "B" * (2 * MIB)}), json.dumps({"code": 1000, "reason": "Z" * 20_000})])
    run("ingest", str(path), "--format", "jsonl")
    assert run.json("select line_no from rejects") == [{"line_no": 2}]
    assert run.json("select max(length(close_reason)) as n from closures") == [{"n": 8192}]


def test_a_stream_that_is_one_endless_line_is_read_in_bounded_pieces():
    class Zeros:
        """1 GiB of zero bytes, made up on the fly: nothing close to it ever exists in memory."""

        def __init__(self):
            self.left = 1024 * MIB

        def read(self, size: int) -> bytes:
            size = min(size, self.left)
            self.left -= size
            return b"\0" * size

    reader = LineReader(Zeros(), batch_bytes=8 * MIB, max_line_bytes=MIB)
    assert list(reader.batches()) == []
    (long_line,) = reader.long_lines
    assert (long_line.source_line, long_line.length, len(long_line.prefix)) == (1, 1024 * MIB, 4096)


@pytest.mark.parametrize("compressed", [False, True])
def test_stdin_beyond_its_memory_bound_is_spooled_to_an_unnamed_file_and_loads_the_same(tmp_path, monkeypatch, compressed):
    from closewatch import jobs
    from closewatch.ingest import sources

    lines = "".join(close(i) + "\n" for i in range(3000)).encode()
    data = gzip.compress(lines) if compressed else lines
    monkeypatch.setattr(sources, "STDIN_IN_MEMORY", 4096)
    spool = tmp_path / "db.duckdb.staging"
    spool.mkdir()
    with open(write_lines(tmp_path / "in.jsonl", []), "wb") as handle:
        handle.write(data)
    with open(tmp_path / "in.jsonl", "rb") as stream:
        source = sources.spooled_input("<stdin>", stream, spool)
    assert source.size == len(data) and list(spool.iterdir()) == []  # on disk, but under no name
    (result,) = jobs.ingest(Store(tmp_path / "db.duckdb"), [source])
    assert (result.lines_read, result.accepted, result.rejected) == (3000, 3000, 0)


def test_the_decompressed_size_guard_refuses_a_bomb(tmp_path):
    bomb = tmp_path / "bomb.gz"
    with gzip.open(bomb, "wb") as out:
        out.write(b"\0" * (8 * MIB))
    (tmp_path / "closewatch.toml").write_text('[ingest]\nmax_decompressed = "1MiB"\n')
    done = closewatch("--db", str(tmp_path / "db.duckdb"), "ingest", str(bomb), "--format", "jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "decompresses to more than 1,048,576 bytes" in done.stdout and "Traceback" not in done.stdout + done.stderr


# -- 4. identity never comes from the log ------------------------------------------------------


@pytest.mark.parametrize("supplied", ["session.closed", 1])
def test_a_log_supplied_event_id_is_not_the_key(run, tmp_path, supplied):
    path = write_lines(tmp_path / "ids.jsonl", [close(i, event_id=supplied) for i in range(100)])
    run("ingest", str(path))
    assert run.json("select count(*) as n, count(distinct event_id) as ids from closures") == [{"n": 100, "ids": 100}]
    assert run.json("select accepted, duplicates from ingest_batches") == [{"accepted": 100, "duplicates": 0}]


# -- 5. a grown file adds only its new closes ----------------------------------------------------


def _grow(run, path: Path, lines: list[str], cut: int) -> tuple[int, int]:
    """Ingest the first ``cut`` lines, then the whole file; returns (rows stored, rows of the whole file alone)."""
    write_lines(path, lines[:cut])
    run("ingest", str(path))
    write_lines(path, lines)
    run("ingest", str(path))
    stored = run.json("select count(*) as n from closures")[0]["n"]
    alone = Store(path.with_suffix(".alone.duckdb"))
    from closewatch.ingest.sources import file_input

    from closewatch import jobs
    (result,) = jobs.ingest(alone, [file_input(path)])
    return stored, result.accepted


def test_a_grown_log_without_timestamps_adds_only_its_new_closes(run, tmp_path):
    lines = gzip.decompress(WEBSOCKET_LOG.read_bytes()).decode().splitlines()
    stored, whole = _grow(run, tmp_path / "worker.log", lines, len(lines) // 2)
    assert whole > 100 and stored == whole
    assert run.json("select count(*) as n from closures where ts is null")[0]["n"] == whole


def test_a_grown_log_with_timestamps_adds_only_its_new_closes(run, tmp_path):
    lines = [close(i) for i in range(300)]
    stored, whole = _grow(run, tmp_path / "timed.jsonl", lines, 137)
    assert (stored, whole) == (300, 300)


def test_the_watched_folder_adds_only_new_closes_when_a_file_grows(tmp_path):
    folder = tmp_path / "watched"
    folder.mkdir()
    store = Store(tmp_path / "w.duckdb")
    lines = gzip.decompress(WEBSOCKET_LOG.read_bytes()).decode().splitlines()
    log = folder / "worker.log"
    write_lines(log, lines[: len(lines) // 3])
    ingest_watched(store, folder, 0, None, "UTC", None)
    first = count(store.path)
    write_lines(log, lines)
    ingest_watched(store, folder, 0, None, "UTC", None)
    alone = Store(tmp_path / "alone.duckdb")
    ingest_watched(alone, folder, 0, None, "UTC", None)
    assert 0 < first < count(alone.path) == count(store.path)


# -- 10. timestamps and close codes at the edges ------------------------------------------------


def test_timestamps_and_codes_out_of_range_are_rejected_with_their_line(run, tmp_path):
    lines = [close(i) for i in range(5)] + [
        json.dumps({"ts": "0001-01-01T00:00:00Z", "code": 1006, "reason": "lost"}),
        json.dumps({"ts": "10000-01-01T00:00:00Z", "code": 1006, "reason": "lost"}),
        json.dumps({"ts": "2026-11-20T10:00:00Z", "code": -3008, "reason": "Session Expired"}),
        json.dumps({"ts": "2026-11-20T10:00:00Z", "code": -2147483648, "reason": "x"}),
        json.dumps({"ts": "2026-11-20T10:00:00Z", "code": 70000, "reason": "x"}),
        json.dumps({"ts": 99999999999, "code": 1006, "reason": "epoch in the year 5138"}),
    ]
    result = run("ingest", str(write_lines(tmp_path / "edges.jsonl", lines)))
    assert result.exit_code == 0, result.output
    assert run.json("select count(*) as n from closures") == [{"n": 5}]
    rejects = run.json("select line_no, reason from rejects order by line_no")
    assert [r["line_no"] for r in rejects] == [6, 7, 8, 9, 10, 11]
    assert "0001-01-01" in rejects[0]["reason"] and "outside the accepted years 2000-2100" in rejects[0]["reason"]
    assert "-3008 is outside 0-65535" in rejects[2]["reason"]
    analyzed = run("analyze")
    assert analyzed.exit_code == 0, analyzed.output


# -- 11. files that are not readable logs ---------------------------------------------------------

#: Root reads any file; dropping these capabilities makes permissions apply to it, as to any user.
NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def _permissions_apply(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0)
    if shutil.which("setpriv") is None:
        return False
    done = subprocess.run([*NO_OVERRIDE, "cat", str(probe)], capture_output=True, check=False)
    probe.chmod(0o600)
    return done.returncode != 0


def test_unreadable_fifo_device_and_loops_get_a_sentence_each_and_the_rest_loads(tmp_path):
    logs = tmp_path / "logs"
    (logs / "deep").mkdir(parents=True)
    write_lines(logs / "a.jsonl", [close(i) for i in range(10)])
    write_lines(logs / "deep" / "b.jsonl", [close(i) for i in range(10, 20)])
    (logs / "deep" / "up").symlink_to("..")
    (logs / "self").symlink_to("self")
    os.mkfifo(logs / "pipe")
    secret = write_lines(logs / "locked.jsonl", [close(99)])
    secret.chmod(0)
    prefix = NO_OVERRIDE if _permissions_apply(tmp_path) else []
    db = tmp_path / "db.duckdb"
    done = closewatch("--db", str(db), "ingest", str(logs), "/dev/zero", str(logs / "pipe"), timeout=60, prefix=prefix)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Traceback" not in out
    assert count(db) == 20
    assert "pipe is a named pipe (FIFO)" in out and "/dev/zero is a device" in out
    assert "self is a symbolic link loop" in out and "deep/up is a symbolic link loop" in out
    if prefix:
        assert "locked.jsonl cannot be read (permission denied)" in out


def test_an_unreadable_file_in_the_watched_folder_does_not_stop_the_others(tmp_path):
    if not _permissions_apply(tmp_path):
        pytest.skip("cannot drop root's permission override here (no setpriv)")
    folder = tmp_path / "watched"
    folder.mkdir()
    write_lines(folder / "a.jsonl", [close(i) for i in range(5)])
    write_lines(folder / "b.jsonl", [close(i) for i in range(5, 8)]).chmod(0)
    write_lines(folder / "c.jsonl", [close(i) for i in range(8, 10)])
    db = tmp_path / "w.duckdb"
    script = ("import sys; from pathlib import Path; from closewatch.store import Store; "
              "from closewatch.jobs.scheduler import ingest_watched; "
              "print(ingest_watched(Store(sys.argv[1]), Path(sys.argv[2]), 0, None, 'UTC', None))")
    done = subprocess.run([*NO_OVERRIDE, sys.executable, "-c", script, str(db), str(folder)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert "b.jsonl cannot be read (permission denied)" in done.stderr
    assert count(db) == 7


def test_overlapping_globs_and_loops_read_each_file_once(tmp_path):
    logs = tmp_path / "loops"
    (logs / "a" / "b").mkdir(parents=True)
    write_lines(logs / "one.jsonl", [close(i) for i in range(5)])
    write_lines(logs / "a" / "b" / "two.jsonl", [close(i) for i in range(5, 9)])
    (logs / "a" / "b" / "back").symlink_to("../..")
    (logs / "a" / "again").symlink_to("b")
    db = tmp_path / "db.duckdb"
    done = closewatch("--db", str(db), "ingest", f"{logs}/**", f"{logs}/*.jsonl", str(logs), f"{logs}/a/**/*.jsonl", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert count(db, "SELECT count(*) FROM ingest_batches") == 2
    assert count(db) == 9


def test_a_read_only_database_says_so_at_once(tmp_path):
    if not _permissions_apply(tmp_path):
        pytest.skip("cannot drop root's permission override here (no setpriv)")
    db = tmp_path / "ro.duckdb"
    assert closewatch("--db", str(db), "ingest", str(write_lines(tmp_path / "a.jsonl", [close(1)]))).returncode == 0
    db.chmod(0o444)
    started = time.monotonic()
    done = closewatch("--db", str(db), "ingest", str(write_lines(tmp_path / "b.jsonl", [close(2)])), prefix=NO_OVERRIDE)
    assert done.returncode == 1
    assert "is read-only here" in done.stderr and "busy" not in done.stderr
    assert time.monotonic() - started < 20
    readable = closewatch("--db", str(db), "sql", "select count(*) as n from closures", "--format", "json", prefix=NO_OVERRIDE)
    assert json.loads(readable.stdout) == [{"n": 1}]


# -- 6. staged rows live beside the database and never outlive a run -----------------------------


def _ingest_until_staged(tmp_path: Path, db: Path, staging: Path) -> subprocess.Popen:
    """A real `closewatch ingest` of a large file (its reasons carry tokens), once its staging folder exists."""
    big = write_lines(tmp_path / "big.jsonl", [close(i, reason=f"lost token=tok{i:012d}") for i in range(300_000)])
    process = subprocess.Popen([sys.executable, "-m", "closewatch", "--db", str(db), "ingest", str(big)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (staging.is_dir() and any(staging.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.02)
    return process


def test_staging_lives_beside_the_database_and_a_killed_runs_folder_is_removed_next_time(tmp_path):
    db, staging = tmp_path / "db.duckdb", tmp_path / "db.duckdb.staging"
    process = _ingest_until_staged(tmp_path, db, staging)
    (folder,) = staging.iterdir()
    assert folder.name.startswith(f"{process.pid}.") and folder.stat().st_mode & 0o777 == 0o700
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert folder.exists()  # a killed process cannot clean up...
    done = closewatch("--db", str(db), "ingest", str(write_lines(tmp_path / "small.jsonl", [close(1)])))
    assert done.returncode == 0, done.stderr
    assert not staging.exists()  # ...so the next run removes its folder, and its own


def test_sigterm_mid_ingest_removes_the_staging_folder_on_the_way_out(tmp_path):
    db, staging = tmp_path / "db.duckdb", tmp_path / "db.duckdb.staging"
    process = _ingest_until_staged(tmp_path, db, staging)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) != 0
    assert not staging.exists()


def test_a_finished_or_failed_run_leaves_no_staging(run, tmp_path, db_path):
    run("ingest", str(write_lines(tmp_path / "a.jsonl", [close(i) for i in range(10)])))
    run("ingest", str(tmp_path / "a.jsonl"), "--format", "csv")
    assert sorted(p.name for p in db_path.parent.iterdir() if "staging" in p.name) == []
