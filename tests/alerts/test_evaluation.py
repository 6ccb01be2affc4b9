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


# -- fed live: the frontier moves with the followers' mark -------------------------------------------


def mark(store, live_until, fresh: bool = True) -> None:
    """A follower's live mark, as closewatch.ingest.follow writes it (a stale one as a dead follower leaves it)."""
    with store.transaction() as con:
        con.execute("INSERT OR REPLACE INTO follow_marks VALUES ('files@test:1', ?, now() + INTERVAL (CASE WHEN ? THEN 60 ELSE -60 END) SECOND, 1, now())",
                    [live_until, fresh])


def test_a_burst_then_silence_is_evaluated_to_its_end_when_the_store_is_fed_live(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS)
    settings = EngineSettings(lateness_s=60, live_lateness_s=10, initial_lookback_s=3600)
    add(store, steady("bad", 10, 15, "input_duration_violation"))  # a client breaks, dies and goes quiet
    evaluate(store, ruleset, settings, now=at(40))
    firing = [("client_id=bad", "firing", at(13))]
    assert events(store) == firing, "logs at rest: the frontier stays the newest closure minus lateness, so it never resolves"

    mark(store, at(40), fresh=False)  # a follower that died long ago does not count
    evaluate(store, ruleset, settings, now=at(40))
    assert events(store) == firing

    mark(store, at(40))  # read up to now: the silence after the burst is real
    report = evaluate(store, ruleset, settings, now=at(40))
    assert events(store) == [("client_id=bad", "firing", at(13)), ("client_id=bad", "resolved", at(18))]
    assert store.query("SELECT evaluated_to FROM alert_watermarks").item() == at(39), "up to the mark minus [follow] lateness"
    assert report.evaluated["violations"] > 0

    mark(store, at(60))  # minutes with nothing in them are evaluated as nothing
    assert evaluate(store, ruleset, settings, now=at(90)).transitions == 0
    assert store.query("SELECT evaluated_to FROM alert_watermarks").item() == at(59), "never past the mark"


def episodes_as_transitions(episodes) -> list[tuple]:
    found = []
    for e in episodes:
        found.append((e.rule, e.group, "firing", e.fired_at))
        if e.resolved_at is not None:
            found.append((e.rule, e.group, "resolved", e.resolved_at))
    return sorted(found)


@pytest.mark.slow
def test_live_evaluation_and_backtest_agree_on_the_generators_week(run, store, tmp_path):
    """The generator's week, evaluated live half a day at a time behind a moving live mark, and ending in two
    hours of silence, fires and resolves at the same evaluation times as one backtest over the same range."""
    from datetime import datetime, timedelta

    from closewatch.alerts.backtest import backtest
    from closewatch.alerts.rules import load_rules
    from closewatch.analysis.detection import detect

    out = tmp_path / "gen"
    assert run("generate", str(out), "--days", "7", "--seed", "3", "--formats", "jsonl", db=False).exit_code == 0
    assert run("ingest", str(out)).exit_code == 0
    detect(store)
    manifest = json.loads((out / "manifest.json").read_text())
    start, end = datetime.fromisoformat(manifest["start"]), datetime.fromisoformat(manifest["end"]) + timedelta(hours=2)
    ruleset = load_rules()
    expected = episodes_as_transitions(backtest(store, ruleset, start, end))
    assert expected, "the week's incidents fire in the backtest"

    settings = EngineSettings(live_lateness_s=10, initial_lookback_s=0)
    moment = start
    while moment < end:
        moment = min(moment + timedelta(hours=12), end)
        mark(store, moment + timedelta(seconds=10))
        evaluate(store, ruleset, settings, now=moment + timedelta(seconds=10))
    live = store.query("""SELECT rule, group_key, to_state, event_time FROM alert_events
                          WHERE to_state IN ('firing', 'resolved') ORDER BY ALL""").rows()
    assert sorted(live) == expected
