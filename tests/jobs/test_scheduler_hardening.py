"""Issue 11 in the scheduler: a dead webhook delays neither ingest nor evaluation, SIGTERM stops it within
seconds with unsent rows pending, and a secret in a channel's setting never reaches job_runs."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from closewatch.store import Store
from tests.alerts.helpers import DeadEndpoint, jsonl, steady
from tests.jobs.test_scheduler import CONFIG, RULES, SchedulerProcess, wait_for

UTC = timezone.utc
ROOT = Path(__file__).resolve().parents[2]
DEAD_RULES = RULES.replace('timeout = "20s"', 'timeout = "2s"')


def scheduler_env(**values: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **values}


@pytest.mark.slow
def test_a_dead_webhook_delays_neither_ingest_nor_evaluation_and_sigterm_stops_within_seconds(tmp_path, request):
    (tmp_path / "closewatch.toml").write_text(
        CONFIG.replace('retry_max = "2s"', 'retry_max = "2s"\ndeliver_failures = 1000\ndeliver_deadline = "10m"'))
    (tmp_path / "alerts.toml").write_text(DEAD_RULES)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    log = tmp_path / "scheduler.log"
    store = Store(tmp_path / "db.duckdb", lock_timeout_s=30)
    origin = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    clients = [f"c{n:02d}" for n in range(10)]
    first = steady("good", 0, 80, origin=origin)
    for number, client in enumerate(clients):
        first += steady(client, 10 + number, 15 + number, "input_duration_violation", origin=origin)
    (incoming / "first.jsonl").write_text(jsonl(first))
    with DeadEndpoint() as dead:
        scheduler = SchedulerProcess(tmp_path, scheduler_env(TEST_WEBHOOK_URL=dead.url))
        request.addfinalizer(lambda: scheduler.proc.poll() is None and scheduler.kill())
        wait_for(lambda: store.query("SELECT count(*) FROM alert_outbox WHERE attempts > 0").item() >= 1, 60,
                 "the deliver job busy with the dead webhook", log)
        # The deliver job is now stuck on 20 notifications x 2 s; the other jobs go on beside it.
        evaluations = store.query("SELECT count(*) FROM job_runs WHERE job = 'evaluate'").item()
        second = steady("good", 80, 120, origin=origin) + steady("late", 90, 95, "input_duration_violation", origin=origin)
        (incoming / "second.jsonl").write_text(jsonl(second))
        wait_for(lambda: len(store.query("SELECT * FROM ingest_batches").rows()) == 2, 30, "the second file loaded", log)
        wait_for(lambda: store.query("SELECT count(*) FROM job_runs WHERE job = 'evaluate'").item() >= evaluations + 3, 30,
                 "three more evaluations", log)
        wait_for(lambda: store.query("SELECT count(*) FROM alert_outbox WHERE group_key = 'client_id=late'").item() >= 1, 30,
                 "the late client's notification queued", log)
        assert store.query("SELECT count(*) FROM job_runs WHERE job = 'deliver' AND outcome = 'running'").item() == 1, \
            "a deliver run was still busy with the dead webhook meanwhile"
        # stop() waits 30 s at most, less than the 40 s the run would need to try every row: it must stop early.
        assert scheduler.stop(signal.SIGTERM) == 0, log.read_text()[-3000:]
    outbox = store.query("""SELECT count(*), count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE claimed_by IS NOT NULL)
                            FROM alert_outbox""").row(0)
    assert outbox[0] == outbox[1] >= 20, "nothing was delivered and nothing was lost"
    assert outbox[2] <= 1, "unsent rows were released (at most the call in flight keeps its claim until the lease ends)"
    outcome, error = store.query("SELECT outcome, error FROM job_runs WHERE job = 'deliver' ORDER BY started_at DESC LIMIT 1").row(0)
    assert outcome == "error" and "the delivery run stopped" in error and "wait for the next run" in error, error


def test_a_channel_url_from_the_environment_never_reaches_job_runs(run, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    origin = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    rows = steady("good", 0, 40, origin=origin) + steady("bad", 10, 15, "input_duration_violation", origin=origin)
    (folder / "a.jsonl").write_text(jsonl(rows))
    os.utime(folder / "a.jsonl", (time.time() - 60, time.time() - 60))
    (tmp_path / "alerts.toml").write_text(RULES)
    (tmp_path / "closewatch.toml").write_text('[alerts]\nrules = "alerts.toml"\nlateness = "0s"\ninitial_lookback = "4h"\n')
    monkeypatch.setenv("TEST_WEBHOOK_URL", "hooks.slack.com/services/T0000/B0000/XXXXSECRETXXXXSECRETXXXX")
    result = run("--config", str(tmp_path / "closewatch.toml"), "scheduler", "--once", "--watch", str(folder))
    assert result.exit_code == 1
    stored = run.json("SELECT job, outcome, error FROM job_runs WHERE job = 'deliver'")
    assert stored[0]["outcome"] == "error" and "TEST_WEBHOOK_URL must start with http:// or https://" in stored[0]["error"]
    everything = run.json("SELECT string_agg(coalesce(error, '') || coalesce(detail, ''), ' ') AS t FROM job_runs")[0]["t"]
    errors = run.json("SELECT string_agg(coalesce(last_error, ''), ' ') AS t FROM alert_outbox")[0]["t"]
    assert "SECRET" not in everything + errors
