"""Each rule kind's condition on a real DuckDB file: absence, pattern (detections) and sql rules, through live evaluation."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from closewatch.alerts.evaluation import evaluate
from closewatch.alerts.explain import explain
from closewatch.alerts.state import status
from tests.alerts.helpers import LIVE, add, at, events, rules, steady


ABSENCE = """
[[rules]]
name = "stopped"
kind = "absence"
window = "10m"
resolve = true

[[rules]]
name = "client-quiet"
kind = "absence"
group_by = ["client_id"]
expected = ["kiosk"]
window = "10m"
lookback = "1h"
"""


def test_absence_fires_when_logs_stop_and_resolves_when_they_return(store, tmp_path):
    ruleset = rules(tmp_path, ABSENCE)
    assert evaluate(store, ruleset, LIVE, now=at(0)).transitions == 0  # an empty store has not "stopped"
    add(store, steady("good", 0, 30))
    evaluate(store, ruleset, LIVE, now=at(60))
    stopped = store.query("SELECT state, fired_at FROM alert_state WHERE rule = 'stopped'").row(0)
    assert stopped == ("firing", at(40))  # last closure 10:29:30, in the 10:30 bucket; 10 quiet minutes later
    quiet = dict(store.query("SELECT group_key, state FROM alert_state WHERE rule = 'client-quiet'").rows())
    assert quiet == {"client_id=kiosk": "firing", "client_id=good": "firing"}
    add(store, [(at(65.5), "good", "normal")])
    evaluate(store, ruleset, LIVE, now=at(70))
    assert store.query("SELECT state, resolved_at FROM alert_state WHERE rule = 'stopped'").row(0) == ("resolved", at(66))
    payloads = [json.loads(p) for p in store.query("SELECT payload FROM alert_outbox WHERE rule = 'stopped' ORDER BY event_time").to_series()]
    assert [p["kind"] for p in payloads] == ["firing", "resolved"]
    assert "No closures at all in the last 10m (last one at 2024-05-01 10:29 UTC)" in payloads[0]["text"]


PATTERN = """
[[rules]]
name = "violators"
kind = "pattern"
pattern = "repeated_violation"
window = "5m"
min_count = 5
resolve = true
"""


def add_detection(store, key: str, start: datetime, end: datetime, count: int) -> None:
    with store.transaction() as con:
        con.execute("INSERT INTO detections VALUES (?, 'repeated_violation', ?, ?, ?, ?, 'error', ?, 'send shorter chunks', [], now())",
                    [uuid.uuid4().hex, key, start, end, count, f"{count} violations by {key}; chunks are ~1200 ms"])


def test_pattern_rules_follow_the_detections(store, tmp_path):
    ruleset = rules(tmp_path, PATTERN)
    add(store, steady("good", 0, 60))
    add_detection(store, "kiosk", at(10), at(20), 12)
    add_detection(store, "tiny", at(10), at(20), 2)  # below min_count
    evaluate(store, ruleset, LIVE, now=at(60))
    assert events(store) == [("key=kiosk", "firing", at(10)), ("key=kiosk", "resolved", at(25))]
    payload = json.loads(store.query("SELECT payload FROM alert_outbox WHERE kind = 'firing'").item())
    assert "12 violations by kiosk; chunks are ~1200 ms" in payload["text"] and payload["action"] == "send shorter chunks"


SQL = """
[[rules]]
name = "busy-clients"
kind = "sql"
query = "SELECT client_id, count(*) AS value, 'too busy' AS reason FROM closures WHERE ts > $start AND ts <= $end GROUP BY 1 HAVING count(*) >= 3"
group_by = ["client_id"]
window = "2m"

[[rules]]
name = "broken"
kind = "sql"
query = "SELECT no_such_column FROM closures WHERE ts > $start"
"""


def test_sql_rules_fire_on_returned_rows_and_a_broken_rule_does_not_stop_the_others(store, tmp_path):
    ruleset = rules(tmp_path, SQL)
    add(store, steady("good", 0, 20) + steady("busy", 5, 8) + [(at(m + 0.7), "busy", "normal") for m in range(5, 8)])
    report = evaluate(store, ruleset, LIVE, now=at(20))
    assert len(report.failures) == 1 and "Rule 'broken'" in report.failures[0] and "no_such_column" in report.failures[0]
    assert events(store) == [("client_id=busy", "firing", at(7)), ("client_id=busy", "resolved", at(9))]
    assert store.query("SELECT rule FROM alert_watermarks").to_series().to_list() == ["busy-clients"]
    payload = json.loads(store.query("SELECT payload FROM alert_outbox").item())
    assert payload["value"] == 4 and "too busy" in payload["text"]


PER_TRAFFIC = """
[[rules]]
name = "drops-per-1k"
kind = "threshold"
where = { category = ["network_abnormal"] }
group_by = ["client_id"]
window = "10m"
metric = "per_1k_sessions"
value = 100
min_sessions = 10

[[rules]]
name = "drops-everywhere"
kind = "threshold"
where = { category = ["network_abnormal"] }
group_by = ["category"]
window = "10m"
metric = "clients"
min_per_client = 2
value = 3
"""


def test_per_1k_sessions_scales_with_the_client_traffic_and_states_both_numbers(store, tmp_path):
    ruleset = rules(tmp_path, PER_TRAFFIC)
    drops = [(at(5.2 + i / 10), client, "network_abnormal") for client in ("small", "big", "tiny") for i in range(4)]
    normal = ([(at(i / 4 + 0.1), "small", "normal") for i in range(16)]  # 16 + 4 = 20 sessions: 200 per 1,000
              + [(at(i / 40 + 0.01), "big", "normal") for i in range(196)])  # 196 + 4 = 200 sessions: 20 per 1,000
    add(store, drops + normal + [(at(8.5), "other", "normal")])  # tiny: 4 sessions, all dropped, but fewer than min_sessions
    evaluate(store, ruleset, LIVE, now=at(9))
    fired = store.query("SELECT group_key, value FROM alert_state WHERE rule = 'drops-per-1k' AND state = 'firing'").rows()
    assert fired == [("client_id=small", 200.0)]
    payload = json.loads(store.query("SELECT payload FROM alert_outbox WHERE rule = 'drops-per-1k'").item())
    assert ("200 closures with category network_abnormal per 1,000 sessions in 10m for client_id=small: 4 of 20 sessions "
            "(alert at >= 100)") in payload["text"]
    shown = status(store, ruleset).filter(rule="drops-per-1k").select("group", "value", "detail").rows()
    assert shown == [("client_id=small", 200.0, "4 of 20 sessions")]  # alerts status: both numbers
    [step] = explain(store, ruleset, "drops-per-1k", at(6), group="small").steps  # and explain
    assert step.reason.startswith("200 closures with category network_abnormal per 1,000 sessions in 10m (4 of 20 sessions) "
                                  "(fires at >= 100 with at least 10 sessions): holds; fired")


def test_the_clients_metric_counts_clients_and_names_them(store, tmp_path):
    ruleset = rules(tmp_path, PER_TRAFFIC)
    rows = [(at(3 + i / 10), client, "network_abnormal") for client in ("a", "b", "c") for i in range(2)]
    add(store, rows + [(at(3.5), "d", "network_abnormal"), (at(8.5), "e", "normal")])  # d: one drop, below min_per_client
    evaluate(store, ruleset, LIVE, now=at(8))
    assert store.query("SELECT group_key, value FROM alert_state WHERE rule = 'drops-everywhere'").rows() == [
        ("category=network_abnormal", 3.0)]
    payload = json.loads(store.query("SELECT payload FROM alert_outbox WHERE rule = 'drops-everywhere'").item())
    assert "3 clients (a, b, c) had closures with category network_abnormal in 10m" in payload["text"]
    assert status(store, ruleset)["detail"].to_list() == ["3 clients (a, b, c)"]
