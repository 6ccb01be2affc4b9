"""Live evaluation on a real DuckDB file: watermark catch-up, the frontier, a run killed half-way, repeats."""

from __future__ import annotations

import json

import pytest

from closewatch.alerts import outbox
from closewatch.alerts.evaluation import evaluate
from closewatch.alerts.model import EngineSettings
from tests.alerts.helpers import LIVE, MINUTE, T0, VIOLATIONS, add, at, events, outbox_rows, rules, steady


def test_a_threshold_fires_once_resolves_once_and_rerunning_adds_nothing(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS)
    add(store, steady("good", 0, 60) + steady("bad", 10, 15, "input_duration_violation"))
    report = evaluate(store, ruleset, LIVE, now=at(60))
    assert report.evaluated == {"violations": 61} and report.failures == []
    assert events(store) == [("client_id=bad", "firing", at(13)), ("client_id=bad", "resolved", at(18))]
    assert [(r[1], r[2]) for r in outbox_rows(store)] == [("client_id=bad", "firing"), ("client_id=bad", "resolved")]
    payload = json.loads(store.query("SELECT payload FROM alert_outbox WHERE kind = 'firing'").item())
    assert payload["group"] == "client_id=bad" and payload["value"] == 3
    assert "3 closures with category input_duration_violation in 5m for client_id=bad" in payload["text"]
    assert "Input duration violation: 1200 ms" in payload["text"] and "fix the chunks" in payload["text"]
    assert payload["window_start"].startswith("2024-05-01T10:08") and payload["window_end"].startswith("2024-05-01T10:13")
    assert payload["top_reasons"][0]["count"] == 3 and payload["action"] == "fix input_duration_violation"

    again = evaluate(store, ruleset, LIVE, now=at(60))
    assert again.evaluated == {"violations": 0} and len(outbox_rows(store)) == 2 and len(events(store)) == 2


def test_missed_windows_are_evaluated_once_each_after_downtime(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS)
    add(store, steady("good", 0, 30))
    first = evaluate(store, ruleset, LIVE, now=at(30))
    assert first.evaluated == {"violations": 61}  # 09:29 .. 10:29, the initial lookback
    watermark = store.query("SELECT evaluated_to FROM alert_watermarks WHERE rule = 'violations'").item()
    assert watermark == at(29)

    # The scheduler was down for 90 minutes; meanwhile an incident came and went.
    add(store, steady("good", 30, 120) + steady("bad", 60, 65, "input_duration_violation"))
    caught_up = evaluate(store, ruleset, LIVE, now=at(120))
    assert caught_up.evaluated == {"violations": 90}  # 10:30 .. 11:59, each once
    assert events(store) == [("client_id=bad", "firing", at(63)), ("client_id=bad", "resolved", at(68))]
    assert [r[2] for r in outbox_rows(store)] == ["firing", "resolved"]
    assert evaluate(store, ruleset, LIVE, now=at(125)).evaluated == {"violations": 0}


def test_the_frontier_follows_the_data_and_never_passes_the_clock(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS)
    add(store, steady("good", 0, 10) + [(at(500), "good", "normal")])  # one closure stamped in the future
    evaluate(store, ruleset, EngineSettings(lateness_s=120, initial_lookback_s=600), now=at(20))
    assert store.query("SELECT evaluated_to FROM alert_watermarks").item() == at(18)  # the clock minus lateness


def test_a_run_killed_half_way_leaves_nothing_and_the_rerun_is_exact(store, tmp_path, monkeypatch):
    ruleset = rules(tmp_path, VIOLATIONS)
    add(store, steady("good", 0, 60) + steady("bad", 10, 15, "input_duration_violation"))

    def dies(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the outbox")

    monkeypatch.setattr(outbox, "enqueue", dies)
    with pytest.raises(KeyboardInterrupt):
        evaluate(store, ruleset, LIVE, now=at(60))
    for table in ("alert_state", "alert_events", "alert_outbox", "alert_watermarks"):
        assert store.query(f"SELECT count(*) FROM {table}").item() == 0, table
    monkeypatch.undo()
    evaluate(store, ruleset, LIVE, now=at(60))
    assert [r[2] for r in outbox_rows(store)] == ["firing", "resolved"]


def test_repeat_interval_and_resolve_in_live_runs(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS.replace('resolve = true', 'resolve = true\nrepeat_interval = "10m"\nchannels = ["console", "log"]'))
    add(store, steady("good", 0, 60) + steady("bad", 10, 40, "input_duration_violation"))
    for minute in (20, 35, 60):  # three runs cut the incident in pieces
        evaluate(store, ruleset, LIVE, now=at(minute))
    kinds = [(r[2], r[3], r[4]) for r in outbox_rows(store)]
    minutes = [(kind, (t - int(T0.timestamp() * 1e6)) // MINUTE, channel) for kind, t, channel in kinds]
    assert sorted(minutes) == sorted([(k, m, c) for k, m in [("firing", 13), ("repeat", 23), ("repeat", 33), ("resolved", 43)] for c in ("console", "log")])
