"""Issue 11's delivery reproductions, each against real processes, a real DuckDB file and real HTTP on 127.0.0.1.

3. two deliverers at once send nothing twice; 7. a dead webhook delays no other
channel and SIGTERM stops a run within seconds, leaving unsent rows pending;
8. bad channel settings are one sentence per notification, and a rules file
that is not UTF-8 is one sentence; 9. a template that would eat memory is
refused by `alerts check`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from closewatch.alerts.evaluation import evaluate
from closewatch.alerts.model import EngineSettings
from closewatch.alerts.outbox import _claim, deliver
from closewatch.alerts.rules import check_rules, load_rules
from closewatch.store import Store
from tests.alerts.helpers import DeadEndpoint, Receiver, add, at, rules, steady

LIVE = EngineSettings(lateness_s=0, initial_lookback_s=3600, retry_base_s=2, retry_max_s=16)
ROOT = Path(__file__).resolve().parents[2]

RULES = """
[channels.hook]
type = "webhook"
url_env = "TEST_WEBHOOK_URL"
timeout = "{timeout}"
retries = 0

[channels.dead]
type = "webhook"
url_env = "TEST_DEAD_URL"
timeout = "1s"
retries = 0

[channels.jsonl]
type = "file"
path = "{out}"

[[rules]]
name = "violations"
kind = "threshold"
where = {{ category = ["input_duration_violation"] }}
group_by = ["client_id"]
window = "5m"
value = 3
resolve = true
channels = {channels}
"""


def write_rules(tmp_path: Path, channels: str, timeout: str = "5s") -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(RULES.format(channels=channels, timeout=timeout, out=tmp_path / "out.jsonl"), encoding="utf-8")
    return path


def queue(store: Store, ruleset, clients: int) -> list[str]:
    """Each client fires and resolves once: two notifications per client and channel."""
    rows = steady("good", 0, 60)
    for number in range(clients):
        rows += steady(f"c{number:03d}", 10 + number % 40, 15 + number % 40, "input_duration_violation")
    add(store, rows)
    evaluate(store, ruleset, LIVE, now=at(60))
    return store.query("SELECT notification_id FROM alert_outbox ORDER BY 1").to_series().to_list()


def cli(db: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "closewatch.cli", "--db", str(db), *args]


def environment(**values: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **values}


@pytest.mark.slow
def test_two_deliverers_at_once_send_every_notification_exactly_once(store, db_path, tmp_path):
    path = write_rules(tmp_path, '["hook"]')
    with Receiver(delay_s=(0.02, 0.06)) as receiver:
        ids = queue(store, load_rules(path), clients=60)
        assert len(ids) == 120
        env = environment(TEST_WEBHOOK_URL=receiver.url, TEST_DEAD_URL="http://127.0.0.1:9/")
        deliverers = [subprocess.Popen(cli(db_path, "alerts", "deliver", "--rules", str(path)), env=env, cwd=tmp_path,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
        outputs = [proc.communicate(timeout=120)[0] for proc in deliverers]
        assert all(proc.returncode == 0 for proc in deliverers), outputs
        assert all("Traceback" not in output for output in outputs), outputs
        assert receiver.duplicates() == {}, "a notification arrived twice"
        assert sorted(receiver.ids()) == ids, "every notification arrived"
    assert store.query("SELECT count(*) FROM alert_outbox WHERE status <> 'delivered' OR claimed_by IS NOT NULL").item() == 0


def test_a_claimed_row_waits_for_its_claimer_until_the_lease_ends(store, tmp_path, monkeypatch):
    path = write_rules(tmp_path, '["hook"]')
    ruleset = load_rules(path)
    with Receiver() as receiver:
        monkeypatch.setenv("TEST_WEBHOOK_URL", receiver.url)
        ids = queue(store, ruleset, clients=1)
        claimed = _claim(store, "a-deliverer-that-died", at(61), timedelta(minutes=2), 100)
        assert sorted(row[0] for row in claimed) == ids
        assert deliver(store, ruleset, LIVE, now=at(62)).delivered == 0, "another deliverer's claim is respected"
        assert receiver.ids() == []
        report = deliver(store, ruleset, LIVE, now=at(63.5))  # the lease ended at 63 minutes: the claimer is presumed dead
        assert report.delivered == 2 and sorted(receiver.ids()) == ids


def test_a_dead_channel_delays_no_other_channel(store, tmp_path, monkeypatch):
    path = write_rules(tmp_path, '["hook", "dead", "jsonl"]')
    with Receiver() as receiver, DeadEndpoint() as dead:
        monkeypatch.setenv("TEST_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("TEST_DEAD_URL", dead.url)
        ruleset = load_rules(path)
        queue(store, ruleset, clients=20)
        report = deliver(store, ruleset, LIVE, now=at(61))
        assert len(receiver.ids()) == 40, "every notification of the healthy webhook went out in the same run"
        assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 40
    assert report.delivered == 80 and report.failed == LIVE.deliver_failures and report.postponed == 40 - LIVE.deliver_failures
    assert any("channel 'dead' failed 3 times in a row; its other 37 notifications wait for the next run" in e for e in report.errors)
    dead_rows = store.query("""SELECT count(*) FILTER (WHERE attempts = 1), count(*) FILTER (WHERE attempts = 0),
                                      count(*) FILTER (WHERE claimed_by IS NOT NULL)
                               FROM alert_outbox WHERE channel = 'dead' AND status = 'pending'""").row(0)
    assert dead_rows == (3, 37, 0), "tried three, left the rest pending and unclaimed"


@pytest.mark.slow
def test_sigterm_stops_a_deliver_run_within_seconds_and_leaves_unsent_rows_pending(store, db_path, tmp_path):
    path = write_rules(tmp_path, '["dead"]')
    (tmp_path / "closewatch.toml").write_text('[alerts]\ndeliver_failures = 1000\ndeliver_deadline = "10m"\n')
    with DeadEndpoint() as dead:
        env = environment(TEST_DEAD_URL=dead.url, TEST_WEBHOOK_URL="http://127.0.0.1:9/")
        ids = queue(store, load_rules(path), clients=30)
        proc = subprocess.Popen(cli(db_path, "--config", str(tmp_path / "closewatch.toml"), "alerts", "deliver", "--rules", str(path)),
                                env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while store.query("SELECT count(*) FROM alert_outbox WHERE attempts > 0").item() < 2:  # it is busy failing
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]  # a guard against a hang, not a measurement
    assert proc.returncode == 0 and "Traceback" not in output, output
    assert "SIGTERM: stopping the delivery" in output and "left for the next run" in output
    rows = store.query("SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE claimed_by IS NOT NULL) FROM alert_outbox").row(0)
    assert rows[0] == len(ids), "nothing was lost or marked delivered"
    assert rows[1] <= 1, "every row but the call in flight was released"


def test_bad_channel_settings_are_one_sentence_per_notification_and_the_others_still_go(store, run, tmp_path, monkeypatch):
    path = write_rules(tmp_path, '["hook", "dead", "jsonl"]')
    monkeypatch.setenv("TEST_WEBHOOK_URL", "http://127.0.0.1:9/a path with spaces")
    monkeypatch.setenv("TEST_DEAD_URL", "hooks.slack.com/services/T000/B000/SECRETSECRETSECRET")
    queue(store, load_rules(path), clients=2)
    result = run("alerts", "deliver", "--rules", str(path))
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 4, "the file channel still delivered"
    errors = dict(store.query("SELECT channel, any_value(last_error) FROM alert_outbox WHERE status = 'pending' GROUP BY 1").rows())
    assert errors["hook"] == "webhook 'hook': the URL in environment variable TEST_WEBHOOK_URL contains a space or a control character; fix it"
    assert errors["dead"] == "webhook 'dead': the URL in environment variable TEST_DEAD_URL must start with http:// or https://; fix it"
    assert "SECRET" not in "".join(store.query("SELECT coalesce(last_error, '') FROM alert_outbox").to_series())
    checked = run("alerts", "check", "--rules", str(path))
    assert checked.exit_code == 1
    assert "the URL in environment variable TEST_WEBHOOK_URL contains a space" in checked.stderr
    assert "2 problems" in checked.stderr


def test_a_header_with_a_line_break_is_refused_by_check_and_by_delivery(store, run, tmp_path, monkeypatch):
    text = RULES.format(channels='["hook"]', timeout="1s", out=tmp_path / "out.jsonl").replace(
        'retries = 0\n\n[channels.dead]', 'retries = 0\nheaders_env = { "X-Token" = "TEST_HEADER" }\n\n[channels.dead]', 1)
    path = tmp_path / "alerts.toml"
    path.write_text(text, encoding="utf-8")
    with Receiver() as receiver:
        monkeypatch.setenv("TEST_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("TEST_DEAD_URL", receiver.url)
        monkeypatch.setenv("TEST_HEADER", "abc\r\nX-Injected: yes")
        queue(store, load_rules(path), clients=1)
        report = deliver(store, load_rules(path), LIVE, now=at(61))
        assert report.failed == 2 and receiver.requests == 0
        assert report.errors[0] == "webhook 'hook': header 'X-Token' from environment variable TEST_HEADER contains a line break or NUL; fix it"
    checked = run("alerts", "check", "--rules", str(path))
    assert checked.exit_code == 1 and "header 'X-Token' from environment variable TEST_HEADER contains a line break" in checked.stderr
    literal = path.read_text().replace('headers_env = { "X-Token" = "TEST_HEADER" }', 'headers = { "X-Team" = "a\\r\\nb" }')
    path.write_text(literal, encoding="utf-8")
    assert "field 'headers': header 'X-Team' contains a line break or NUL" in check_rules(path)[1][0]


def test_a_rules_file_that_is_not_utf8_is_one_sentence(run, tmp_path):
    path = tmp_path / "alerts.toml"
    path.write_bytes(b'[[rules]]\nname = "ok"\nkind = "threshold"\n# caf\xe9 in Latin-1\n')
    result = run("alerts", "check", "--rules", str(path))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "line 4 is not UTF-8 text (byte 0xe9); save the file as UTF-8" in result.stderr
    assert run("alerts", "run", "--rules", str(path)).exit_code == 1


@pytest.mark.parametrize("message, words", [
    ("{rule:>1999999999}", "asks for a width of 1,999,999,999; at most 200"),
    ("{value:.500f}", "asks for a precision of 500; at most 200"),
    ("{rule:{value}}", "has a placeholder inside its format"),
    ("{rule.__class__}", "reaches into a value; use the plain name (rule)"),
    ("{rule[0]}", "reaches into a value"),
    ("{rule!x}", "unknown conversion"),
])
def test_a_template_that_would_eat_memory_or_reach_into_values_is_refused(tmp_path, message, words):
    text = RULES.format(channels='["console"]', timeout="1s", out="o.jsonl") + f"message = '{message}'\n"
    _, problems = check_rules(_write(tmp_path, text))
    assert any("field 'message'" in p and words in p for p in problems), problems


def test_bounded_templates_still_work(tmp_path, store, monkeypatch, capsys):
    text = RULES.format(channels='["console"]', timeout="1s", out="o.jsonl") + "message = '{rule:>20} {value:>4} {client_id!r}'\n"
    ruleset = rules(tmp_path, text)
    queue(store, ruleset, clients=1)
    assert deliver(store, ruleset, LIVE, now=at(61)).delivered == 2
    assert "\n          violations    3 'c000'\n" in capsys.readouterr().out


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_claims_of_a_killed_deliverer_on_this_host_are_taken_over_at_once(store, tmp_path, monkeypatch):
    path = write_rules(tmp_path, '["hook"]')
    ruleset = load_rules(path)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    gone = f"{socket.gethostname()}:{finished.stdout.strip()}:cafe"  # a process that existed and is gone
    with Receiver() as receiver:
        monkeypatch.setenv("TEST_WEBHOOK_URL", receiver.url)
        ids = queue(store, ruleset, clients=1)
        _claim(store, gone, at(61), timedelta(hours=1), 100)
        assert deliver(store, ruleset, LIVE, now=at(61)).delivered == 2
        assert sorted(receiver.ids()) == ids
