"""The scheduler: watched-folder ingest once per file, job-run records, the lock policy, and a real
subprocess killed with SIGKILL and restarted without duplicate or lost notifications."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from closewatch.alerts.errors import AlertError
from closewatch.errors import ConfigError
from closewatch.jobs.scheduler import JobRecorder, SchedulerLock, ingest_watched
from closewatch.settings import load_settings
from closewatch.store import Store
from tests.alerts.helpers import Receiver, jsonl, steady

ORIGIN = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


# -- settings ------------------------------------------------------------------------------


def config(tmp_path, text: str) -> Path:
    path = tmp_path / "etc" / "c.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_settings_come_from_the_config_section(tmp_path):
    settings = load_settings(config(tmp_path, '[scheduler]\nwatch = "incoming"\ningest_every = "10s"\nevaluate_every = "2m"\n'
                                              'misfire_grace = "30s"\nsettle = "0s"\nformat = "jsonl"\n')).scheduler
    assert settings.watch == tmp_path / "etc" / "incoming"
    assert (settings.ingest_every_s, settings.evaluate_every_s, settings.deliver_every_s) == (10, 120, 15)
    assert (settings.misfire_grace_s, settings.settle_s, settings.format) == (30, 0, "jsonl")


@pytest.mark.parametrize("section, words", [
    ('ingest_every = "often"', "[scheduler] ingest_every must be a duration"),
    ('deliver_every = "0s"', "[scheduler] deliver_every must be a duration longer than 0"),
    ('every = "1m"', "[scheduler] has no setting 'every'"),
    ("tz = 3", "[scheduler] tz must be text"),
])
def test_bad_settings_name_the_file_and_key(tmp_path, section, words):
    with pytest.raises(ConfigError, match=r"c\.toml: " + words.replace("[", r"\[").replace("]", r"\]")):
        load_settings(config(tmp_path, f"[scheduler]\n{section}\n"))


# -- the watched folder ----------------------------------------------------------------------


def batches(store) -> list[tuple]:
    return store.query("SELECT source_file, count(*) FROM ingest_batches GROUP BY 1 ORDER BY 1").rows()


def test_each_file_of_the_watched_folder_is_ingested_once(store, tmp_path):
    folder = tmp_path / "incoming"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl").write_text(jsonl(steady("a", 0, 10, origin=ORIGIN)))
    (folder / "sub" / "b.jsonl").write_text(jsonl(steady("b", 0, 10, origin=ORIGIN)))
    (folder / ".hidden.jsonl").write_text(jsonl(steady("h", 0, 3, origin=ORIGIN)))
    (folder / "c.jsonl.part").write_text(jsonl(steady("c", 0, 3, origin=ORIGIN)))
    (folder / "manifest.json").write_text("{}")
    later = lambda: time.time() + 60

    assert ingest_watched(store, folder, 5, None, "UTC", None, later) == "2 files loaded"
    assert [Path(name).name for name, n in batches(store)] == ["a.jsonl", "b.jsonl"]
    assert ingest_watched(store, folder, 5, None, "UTC", None, later) == "no new files"

    (folder / "copy.jsonl").write_bytes((folder / "a.jsonl").read_bytes())  # same content, new name
    assert ingest_watched(store, folder, 5, None, "UTC", None, later) == "1 already loaded"
    (folder / "a.jsonl").write_text(jsonl(steady("a", 0, 12, origin=ORIGIN)))  # the file grew: new content
    assert ingest_watched(store, folder, 5, None, "UTC", None, later) == "1 files loaded"
    (folder / "young.jsonl").write_text(jsonl(steady("y", 0, 3, origin=ORIGIN)))
    assert ingest_watched(store, folder, 5, None, "UTC", None) == "1 still being written"
    assert store.query("SELECT count(*) FROM closures").item() == 32
    statuses = dict(store.query("SELECT regexp_extract(path, '[^/]+$'), status FROM watched_files").rows())
    assert statuses == {"a.jsonl": "ingested", "b.jsonl": "ingested", "copy.jsonl": "already_loaded"}


def test_a_missing_watched_folder_is_one_sentence(store, tmp_path):
    with pytest.raises(AlertError, match="The watched folder .* does not exist"):
        ingest_watched(store, tmp_path / "nope", 0, None, "UTC", None)


# -- job runs and the database lock ------------------------------------------------------------


def hold_database(path: Path, seconds: float) -> subprocess.Popen:
    """Another process that opens the database read-write and keeps it for a while."""
    code = f"import duckdb, sys, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); time.sleep({seconds}); c.close()"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_every_job_run_is_recorded_with_its_outcome(store):
    recorder = JobRecorder(store)
    assert recorder.run("ingest", lambda: "2 files loaded") == ("ok", None)

    def broken():
        raise AlertError("The watched folder x does not exist; create it.")

    assert recorder.run("ingest", broken) == ("error", "The watched folder x does not exist; create it.")
    assert recorder.run("evaluate", lambda: 1 / 0)[1] == "ZeroDivisionError: division by zero"
    rows = store.query("SELECT job, outcome, error, detail, finished_at >= started_at, pid FROM job_runs ORDER BY started_at").rows()
    assert [r[:4] for r in rows] == [
        ("ingest", "ok", None, "2 files loaded"),
        ("ingest", "error", "The watched folder x does not exist; create it.", ""),
        ("evaluate", "error", "ZeroDivisionError: division by zero", ""),
    ]
    assert all(r[4] and r[5] == os.getpid() for r in rows)
    health = store.query("SELECT job, last_outcome, errors, runs FROM scheduler_health ORDER BY job").rows()
    assert health == [("evaluate", "error", 1, 1), ("ingest", "error", 1, 2)]


def test_an_idle_run_is_one_finished_row_and_does_no_work(store):
    recorder = JobRecorder(store)
    worked = []
    assert recorder.run("deliver", lambda: worked.append(1) or "sent", lambda: "nothing due") == ("ok", None)
    assert recorder.run("deliver", lambda: worked.append(1) or "sent", lambda: "nothing due") == ("ok", None)
    assert worked == []  # two idle runs in a row: one row (idle runs are written at most once a minute)
    assert recorder.run("deliver", lambda: worked.append(1) or "1 delivered", lambda: None) == ("ok", None)
    assert worked == [1]

    def broken_check():
        raise OSError("the check could not read")

    assert recorder.run("deliver", lambda: worked.append(2) or "1 delivered", broken_check) == ("ok", None)
    assert worked == [1, 2]  # a check that fails means "not idle": the run itself says what is wrong
    rows = store.query("SELECT outcome, detail, finished_at >= started_at FROM job_runs ORDER BY started_at").rows()
    assert rows == [("ok", "nothing due", True), ("ok", "1 delivered", True), ("ok", "1 delivered", True)]


def test_deliver_is_idle_only_while_no_notification_is_due(store, tmp_path):
    from closewatch.alerts.outbox import due
    from closewatch.jobs.scheduler import Jobs

    jobs = Jobs(store, tmp_path / "alerts.toml", load_settings(None))
    assert jobs.deliver_idle() == "nothing due"
    now = datetime.now(UTC)
    with store.transaction() as con:
        con.execute("""INSERT INTO alert_outbox (notification_id, channel, payload, status, attempts, created_at, event_time, next_attempt_at)
                       VALUES ('n1', 'hook', '{}', 'pending', 1, ?, ?, ?)""", [now, now, now + timedelta(minutes=5)])
    assert due(store) == 0 and jobs.deliver_idle() == "nothing due"  # pending, but its retry is not due yet
    assert due(store, now + timedelta(minutes=6)) == 1
    with store.transaction() as con:
        con.execute("UPDATE alert_outbox SET next_attempt_at = ?", [now - timedelta(seconds=1)])
    assert jobs.deliver_idle() is None


def test_a_job_waits_while_another_process_holds_the_database(db_path):
    Store(db_path).query("SELECT 1")  # create the schema first
    holder = hold_database(db_path, 1.5)
    started = time.monotonic()
    outcome = JobRecorder(Store(db_path, lock_timeout_s=20)).run("deliver", lambda: "0 delivered")
    waited = time.monotonic() - started
    holder.wait()
    assert outcome == ("ok", None) and waited >= 1.0


def test_a_job_gives_up_after_the_lock_timeout_and_its_record_is_written_later(db_path):
    Store(db_path).query("SELECT 1")
    recorder = JobRecorder(Store(db_path, lock_timeout_s=0.3))
    holder = hold_database(db_path, 2)
    outcome = recorder.run("evaluate", lambda: "never runs")
    holder.wait()
    assert outcome == ("error", "the database was busy")
    recorder.run("evaluate", lambda: "ran")
    rows = Store(db_path).query("SELECT outcome, coalesce(error, detail) FROM job_runs ORDER BY started_at").rows()
    assert rows == [("error", "the database was busy; the run was skipped"), ("ok", "ran")]


def test_runs_left_running_by_a_dead_scheduler_are_marked_interrupted(store):
    with store.transaction() as con:
        con.execute("INSERT INTO job_runs VALUES ('r1', 'ingest', now(), NULL, 'running', NULL, NULL, 1)")
    assert JobRecorder(store).interrupted() == 1
    assert store.query("SELECT outcome FROM job_runs").item() == "interrupted"


def test_only_one_scheduler_per_database(tmp_path):
    db = tmp_path / "x.duckdb"
    with SchedulerLock(db):
        with pytest.raises(AlertError, match=f"Another scheduler \\(PID {os.getpid()}\\) is already running"):
            with SchedulerLock(db):
                pass
    with SchedulerLock(db):  # released on exit
        pass
    assert not db.with_name(db.name + ".scheduler.lock").exists()  # and removed


def test_scheduler_once_runs_every_job_in_order(run, tmp_path, db_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(steady("a", 0, 30, origin=ORIGIN)))
    os.utime(folder / "a.jsonl", (time.time() - 60, time.time() - 60))
    result = run("scheduler", "--once", "--watch", str(folder))
    assert result.exit_code == 0, result.stderr
    rows = Store(db_path).query("SELECT job, outcome FROM job_runs ORDER BY started_at").rows()
    assert rows == [("ingest", "ok"), ("analyze", "ok"), ("evaluate", "ok"), ("deliver", "ok")]
    assert run("scheduler", "--once", "--watch", str(tmp_path / "missing")).exit_code == 1


# -- the real thing: a subprocess, SIGKILL, restart ------------------------------------------------


CONFIG = """
[store]
lock_timeout_s = 30

[alerts]
rules = "alerts.toml"
lateness = "0s"
initial_lookback = "4h"
retry_base = "1s"
retry_max = "2s"

[scheduler]
watch = "incoming"
ingest_every = "500ms"
analyze_every = "1h"
evaluate_every = "500ms"
deliver_every = "500ms"
misfire_grace = "5s"
settle = "200ms"
"""

RULES = """
[channels.hook]
type = "webhook"
url_env = "TEST_WEBHOOK_URL"
timeout = "20s"
retries = 0

[[rules]]
name = "violations"
kind = "threshold"
where = { category = ["input_duration_violation"] }
group_by = ["client_id"]
window = "5m"
value = 3
resolve = true
channels = ["hook"]
"""


class SchedulerProcess:
    """`closewatch scheduler` as a child process, with its output kept for failure messages."""

    def __init__(self, folder: Path, env: dict[str, str]):
        self.log = open(folder / "scheduler.log", "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "closewatch.cli", "--config", str(folder / "closewatch.toml"), "--db", str(folder / "db.duckdb"), "scheduler"],
            cwd=folder, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, sig=signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(30)


def wait_for(condition, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


@pytest.mark.slow
def test_a_scheduler_killed_and_restarted_loses_nothing_and_doubles_nothing(tmp_path):
    (tmp_path / "closewatch.toml").write_text(CONFIG)
    (tmp_path / "alerts.toml").write_text(RULES)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    log = tmp_path / "scheduler.log"
    store = Store(tmp_path / "db.duckdb", lock_timeout_s=30)
    origin = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    # Two files, two incidents: each fires and resolves once -> four notifications in all.
    first = steady("good", 0, 80, origin=origin) + steady("bad", 20, 25, "input_duration_violation", origin=origin)
    second = steady("good", 80, 170, origin=origin) + steady("ugly", 100, 105, "input_duration_violation", origin=origin)

    with Receiver(["hold"]) as receiver:
        env = {**os.environ, "TEST_WEBHOOK_URL": receiver.url, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        (incoming / "first.jsonl").write_text(jsonl(first))

        # 1. Killed while the receiver has a notification in hand but has not answered it.
        scheduler = SchedulerProcess(tmp_path, env)
        wait_for(receiver.held.is_set, 60, "the first webhook call", log)
        scheduler.kill()
        receiver.release()  # the dropped call was never acknowledged: it is not accepted

        # 2. Killed at a random moment while it loads the second file.
        (incoming / "second.jsonl").write_text(jsonl(second))
        scheduler = SchedulerProcess(tmp_path, env)
        time.sleep(random.uniform(0.2, 1.5))
        scheduler.kill()

        # 3. Restarted: it catches up; meanwhile this process can read the database whenever it wants.
        scheduler = SchedulerProcess(tmp_path, env)
        reads = []

        def all_delivered():
            reads.append(store.query("SELECT count(*) FROM alert_outbox WHERE status = 'delivered'").item())
            return len(receiver.ids()) >= 4 and reads[-1] >= 4

        wait_for(all_delivered, 90, "four delivered notifications", log)
        time.sleep(1.5)  # a few more rounds of every job: nothing new may happen
        assert scheduler.stop(signal.SIGTERM) == 0, log.read_text()[-3000:]

        # 4. Started again and stopped with Ctrl-C: still nothing new.
        def delivers() -> int:
            return store.query("SELECT count(*) FROM job_runs WHERE job = 'deliver' AND outcome = 'ok'").item()

        before = delivers()
        scheduler = SchedulerProcess(tmp_path, env)
        wait_for(lambda: delivers() >= before + 2, 60, "two more deliver runs", log)
        assert scheduler.stop(signal.SIGINT) == 0, log.read_text()[-3000:]

        accepted = receiver.ids()
    assert receiver.duplicates() == {}, "a notification arrived twice"
    outbox = store.query("SELECT notification_id, group_key, kind, status FROM alert_outbox ORDER BY 2, 3").rows()
    assert [(g, k, s) for _, g, k, s in outbox] == [
        ("client_id=bad", "firing", "delivered"), ("client_id=bad", "resolved", "delivered"),
        ("client_id=ugly", "firing", "delivered"), ("client_id=ugly", "resolved", "delivered"),
    ]
    assert sorted(accepted) == sorted(row[0] for row in outbox), "a notification was lost"
    assert [n for _, n in batches(store)] == [1, 1], "a file was ingested twice"
    assert store.query("SELECT count(*) FROM closures").item() == len(first) + len(second)
    outcomes = dict(store.query("SELECT outcome, count(*) FROM job_runs GROUP BY 1").rows())
    assert outcomes.get("running", 0) == 0 and outcomes.get("interrupted", 0) >= 1 and outcomes["ok"] > 10
    assert len(reads) > 3, "the test process read the database while the scheduler ran"
