"""The outbox: exactly-once delivery through its channels, against a real webhook receiver on 127.0.0.1 and a real DuckDB file."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from closewatch.alerts.channels import send
from closewatch.alerts.errors import DeliveryFailed
from closewatch.alerts.evaluation import evaluate
from closewatch.alerts.model import EngineSettings
from closewatch.alerts.outbox import deliver
from tests.alerts.helpers import Receiver, add, at, rules, steady

LIVE = EngineSettings(lateness_s=0, initial_lookback_s=3600, retry_base_s=2, retry_max_s=16)

HOOK = """
[channels.hook]
type = "webhook"
url_env = "TEST_WEBHOOK_URL"
timeout = "1s"
retries = 1
backoff = "10ms"
headers = {{ "X-Team" = "voice" }}
headers_env = {{ Authorization = "TEST_WEBHOOK_TOKEN" }}

[[rules]]
name = "violations"
kind = "threshold"
where = {{ category = ["input_duration_violation"] }}
group_by = ["client_id"]
window = "5m"
value = 3
resolve = true
channels = {channels}
severity = "error"
runbook = "fix the chunks"
"""


def hook_rules(tmp_path, channels='["hook"]'):
    return rules(tmp_path, HOOK.format(channels=channels))


def queue(store, ruleset, clients=("a", "b", "c")) -> list[str]:
    """Three clients fire and resolve: six notifications in the outbox; returns their ids."""
    rows = steady("good", 0, 60)
    for offset, client in enumerate(clients):
        rows += steady(client, 10 + 10 * offset, 15 + 10 * offset, "input_duration_violation")
    add(store, rows)
    evaluate(store, ruleset, LIVE, now=at(60))
    return store.query("SELECT notification_id FROM alert_outbox ORDER BY 1").to_series().to_list()


def deliver_until_done(store, ruleset, start: datetime, rounds: int = 30) -> int:
    """Run deliver on a clock that jumps ahead of every backoff; returns the rounds it took."""
    now = start
    for number in range(1, rounds + 1):
        deliver(store, ruleset, LIVE, now=now, sleep=lambda s: None)
        if store.query("SELECT count(*) FROM alert_outbox WHERE status = 'pending'").item() == 0:
            return number
        now += timedelta(seconds=LIVE.retry_max_s)
    raise AssertionError("the outbox never emptied")


def test_every_notification_arrives_exactly_once_through_500s_and_timeouts(store, tmp_path, monkeypatch):
    failures = ["500", "timeout", "500", "500", "timeout", "timeout", "500", "500", "timeout"]
    with Receiver(failures, stall_s=3.0) as receiver:
        monkeypatch.setenv("TEST_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("TEST_WEBHOOK_TOKEN", "Bearer test-token")
        ruleset = hook_rules(tmp_path)
        ids = queue(store, ruleset)
        assert len(ids) == 6
        rounds = deliver_until_done(store, ruleset, at(61))
        assert sorted(receiver.ids()) == ids, "every notification arrived"
        assert receiver.duplicates() == {}, "none arrived twice"
        assert receiver.requests == len(ids) + len(failures)
        assert rounds > 1
    rows = store.query("SELECT status, attempts, last_error FROM alert_outbox").rows()
    assert {status for status, _, _ in rows} == {"delivered"}
    # Each attempt is two requests (retries = 1): the nine failures sink four attempts of four rows, the fifth recovers.
    assert sum(attempts for _, attempts, _ in rows) == len(ids) + 4
    for accepted in receiver.accepted:
        assert accepted["headers"]["Idempotency-Key"] == accepted["payload"]["id"]
        assert accepted["headers"]["X-Team"] == "voice" and accepted["headers"]["Authorization"] == "Bearer test-token"
        assert accepted["headers"]["Content-Type"] == "application/json"


def test_a_failing_channel_backs_off_exponentially_with_jitter_and_keeps_the_notification(store, tmp_path, monkeypatch):
    with Receiver(["500"] * 100) as receiver:
        monkeypatch.setenv("TEST_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("TEST_WEBHOOK_TOKEN", "t")
        ruleset = hook_rules(tmp_path)
        queue(store, ruleset, clients=("a",))
        first = store.query("SELECT notification_id FROM alert_outbox WHERE kind = 'firing'").item()
        now = at(61)
        delays = []
        for _ in range(6):
            before = receiver.requests
            deliver(store, ruleset, LIVE, now=now, sleep=lambda s: None)
            assert receiver.requests > before
            deliver(store, ruleset, LIVE, now=now, sleep=lambda s: None)  # not due yet: nothing is sent
            next_at = store.query("SELECT next_attempt_at FROM alert_outbox WHERE notification_id = ?", [first]).item()
            delays.append((next_at - now).total_seconds())
            now = next_at
        caps = [min(LIVE.retry_max_s, LIVE.retry_base_s * 2 ** n) for n in range(6)]
        assert all(cap / 2 <= delay <= cap for delay, cap in zip(delays, caps, strict=True)), (delays, caps)
        row = store.query("SELECT status, attempts, last_error FROM alert_outbox WHERE notification_id = ?", [first]).row(0)
        assert row[0] == "pending" and row[1] == 6 and "HTTP 500" in row[2] and "2 attempts" in row[2]
        receiver.script.clear()
        deliver(store, ruleset, LIVE, now=now + timedelta(hours=1), sleep=lambda s: None)
        assert first in receiver.ids()


def test_secrets_stay_in_the_environment_and_never_reach_the_database(store, db_path, tmp_path, monkeypatch):
    with Receiver(["500"]) as receiver:
        monkeypatch.setenv("TEST_WEBHOOK_URL", receiver.url + "?token=SECRET-URL-TOKEN-123")
        monkeypatch.setenv("TEST_WEBHOOK_TOKEN", "Bearer SECRET-HEADER-456")
        ruleset = hook_rules(tmp_path)
        queue(store, ruleset, clients=("a",))
        deliver_until_done(store, ruleset, at(61))
        assert receiver.accepted[0]["path"].endswith("token=SECRET-URL-TOKEN-123")
    data = b"".join(f.read_bytes() for p in db_path.parent.glob(db_path.name + "*")
                    for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    assert b"SECRET-URL-TOKEN-123" not in data and b"SECRET-HEADER-456" not in data
    assert b"violations" in data  # the check can see the file's contents at all


def test_a_channel_without_its_secret_or_definition_waits_in_the_outbox(store, tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_WEBHOOK_URL", raising=False)
    monkeypatch.setenv("TEST_WEBHOOK_TOKEN", "t")
    ruleset = hook_rules(tmp_path)
    queue(store, ruleset, clients=("a",))
    report = deliver(store, ruleset, LIVE, now=at(61))
    assert report.failed == 2 and "environment variable TEST_WEBHOOK_URL (channel 'hook') is not set" in report.errors[0]
    renamed = rules(tmp_path, HOOK.format(channels='["console"]').replace("[channels.hook]", "[channels.other]"), "renamed.toml")
    report = deliver(store, renamed, LIVE, now=at(200))
    assert report.failed == 2 and "channel 'hook' is not defined" in report.errors[0]
    assert store.query("SELECT count(*) FROM alert_outbox WHERE status = 'pending'").item() == 2
    with Receiver() as receiver:
        monkeypatch.setenv("TEST_WEBHOOK_URL", receiver.url)
        deliver(store, ruleset, LIVE, now=at(300))
        assert len(receiver.ids()) == 2


def test_apprise_urls_deliver_through_apprise(store, tmp_path, monkeypatch):
    with Receiver() as receiver:
        monkeypatch.setenv("TEST_APPRISE_URL", receiver.url.replace("http://", "json://"))
        ruleset = rules(tmp_path, HOOK.format(channels='["chat"]').replace("[channels.hook]", "[channels.unused]")
                        + '\n[channels.chat]\ntype = "apprise"\nurl_env = "TEST_APPRISE_URL"\n')
        queue(store, ruleset, clients=("a",))
        assert deliver(store, ruleset, LIVE, now=at(61)).delivered == 2
        titles = [a["payload"]["title"] for a in receiver.accepted]
        assert titles == ["[FIRING] violations for client_id=a (error)", "[RESOLVED] violations for client_id=a"]
        assert "fix the chunks" in receiver.accepted[0]["payload"]["message"]
    monkeypatch.setenv("TEST_APPRISE_URL", "not-a-url")
    with pytest.raises(DeliveryFailed, match="apprise does not understand the URL in TEST_APPRISE_URL"):
        send(ruleset.channels["chat"], {"id": "x", "title": "t", "text": "t"})


def test_file_and_console_channels(store, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ruleset = rules(tmp_path, HOOK.format(channels='["jsonl", "console", "log"]')
                    + '\n[channels.jsonl]\ntype = "file"\npath = "out/alerts.jsonl"\n')
    ids = queue(store, ruleset, clients=("a",))
    assert deliver(store, ruleset, LIVE, now=at(61)).delivered == 6
    lines = [json.loads(line) for line in (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["firing", "resolved"] and {line["id"] for line in lines} <= set(ids)
    printed = capsys.readouterr().out
    assert "[FIRING] violations for client_id=a (error)" in printed and "[RESOLVED] violations for client_id=a" in printed
