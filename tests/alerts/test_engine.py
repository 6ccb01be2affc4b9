"""The alert engine on a real DuckDB file: state machine, watermark catch-up, silences, repeats, kinds, backtest."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closewatch.alerts import engine, notify
from closewatch.alerts.engine import EngineSettings, Grid, GroupState, advance, evaluate
from closewatch.alerts.rules import Rule, load_rules
from tests.alerts.helpers import T0, add, at, rules, steady

MINUTE = 60 * 1_000_000
LIVE = EngineSettings(lateness_s=0, initial_lookback_s=3600)


VIOLATIONS = """
[[rules]]
name = "violations"
kind = "threshold"
where = { category = ["input_duration_violation"] }
group_by = ["client_id"]
window = "5m"
value = 3
resolve = true
runbook = "fix the chunks"
"""


def outbox_rows(store) -> list[tuple]:
    return store.query("SELECT rule, group_key, kind, epoch_us(event_time) AS t, channel FROM alert_outbox ORDER BY event_time, kind").rows()


def events(store) -> list[tuple]:
    return store.query("SELECT group_key, to_state, event_time FROM alert_events ORDER BY event_time, to_state").rows()


# -- the state machine, as a pure function ---------------------------------------------


def walk(true_minutes, last_minute, *, state=None, silenced=False, first_minute=0, **fields):
    rule = Rule(name="r", kind="threshold", every_s=60, window_s=60, **fields)
    st = state or GroupState("g", {})
    grid = Grid(first_minute * MINUTE, last_minute * MINUTE, MINUTE)
    ticks = [m * MINUTE for m in sorted(true_minutes) if first_minute <= m <= last_minute]
    transitions, notices = advance(rule, st, ticks, [1.0] * len(ticks), [None] * len(ticks), grid, silenced)
    return ([(t.at // MINUTE, t.to_state) for t in transitions], [(n.at // MINUTE, n.kind) for n in notices], st)


def test_pending_that_clears_before_for_goes_back_to_inactive_silently():
    moves, notes, st = walk([0, 1], 5, for_s=120, resolve=True)
    assert moves == [(0, "pending"), (2, "inactive")] and notes == [] and st.state == "inactive"


def test_pending_fires_after_for_and_resolves_when_the_condition_clears():
    moves, notes, st = walk(range(0, 6), 8, for_s=120, resolve=True)
    assert moves == [(0, "pending"), (2, "firing"), (6, "resolved")]
    assert notes == [(2, "firing"), (6, "resolved")]
    assert (st.state, st.fired_at, st.resolved_at) == ("resolved", 2 * MINUTE, 6 * MINUTE)


def test_without_for_a_group_fires_at_once_and_notifies_once_without_repeat():
    moves, notes, _ = walk(range(0, 10), 12, resolve=False)
    assert moves == [(0, "firing"), (10, "resolved")] and notes == [(0, "firing")]


def test_repeat_interval_renotifies_while_firing():
    _, notes, _ = walk(range(0, 10), 12, repeat_s=180, resolve=True)
    assert notes == [(0, "firing"), (3, "repeat"), (6, "repeat"), (9, "repeat"), (10, "resolved")]


def test_keep_firing_for_bridges_short_gaps():
    moves, notes, _ = walk([0, 1, 2, 4, 5], 12, keep_firing_s=180, resolve=True)
    assert moves == [(0, "firing"), (8, "resolved")] and notes == [(0, "firing"), (8, "resolved")]
    moves, _, _ = walk([0, 1, 2, 7], 12, keep_firing_s=180)
    assert moves == [(0, "firing"), (5, "resolved"), (7, "firing"), (10, "resolved")]


def test_silenced_groups_change_state_but_send_nothing():
    moves, notes, st = walk(range(0, 4), 6, silenced=True, resolve=True, repeat_s=60)
    assert moves == [(0, "firing"), (4, "resolved")] and notes == [] and st.notified_at is None


def test_a_firing_that_was_silenced_notifies_when_the_silence_ends():
    _, notes, st = walk(range(0, 4), 3, silenced=True, resolve=True)
    assert notes == [] and st.state == "firing"
    _, notes, st = walk(range(4, 8), 9, state=st, first_minute=4, resolve=True)
    assert notes == [(4, "firing"), (8, "resolved")]


@settings(max_examples=200, deadline=None)
@given(
    true=st.sets(st.integers(0, 40)),
    split=st.integers(1, 40),
    for_m=st.integers(0, 4),
    keep_m=st.integers(0, 4),
    repeat_m=st.integers(0, 6),
)
def test_evaluating_in_two_runs_equals_evaluating_in_one(true, split, for_m, keep_m, repeat_m):
    """The watermark may cut the grid anywhere: the result must not depend on where."""
    fields = dict(for_s=60 * for_m, keep_firing_s=60 * keep_m, repeat_s=60 * repeat_m, resolve=True)
    once = walk(true, 40, **fields)
    moves1, notes1, st = walk(true, split - 1, **fields)
    moves2, notes2, st = walk(true, 40, state=st, first_minute=split, **fields)
    assert (moves1 + moves2, notes1 + notes2) == once[:2]


# -- live evaluation on a real store ---------------------------------------------------


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

    monkeypatch.setattr(notify, "enqueue", dies)
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


def test_silences_hold_notifications_until_they_expire(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS)
    add(store, steady("good", 0, 120) + steady("bad", 10, 90, "input_duration_violation"))
    silence = engine.add_silence(store, ruleset, "violations", "bad", 3600, "known issue", "tester", now=at(0))
    assert engine.list_silences(store, now=at(1))["silence_id"].to_list() == [silence]
    evaluate(store, ruleset, LIVE, now=at(30))
    assert store.query("SELECT state FROM alert_state").item() == "firing"
    assert outbox_rows(store) == []  # silenced: the state moved, nobody was told
    evaluate(store, ruleset, LIVE, now=at(70))  # the silence expired at 11:00
    assert [(r[2], r[3]) for r in outbox_rows(store)] == [("firing", int(at(31).timestamp() * 1e6))]
    assert engine.list_silences(store, now=at(70)).height == 0
    assert engine.list_silences(store, include_ended=True, now=at(70)).height == 1


def test_unsilence_by_id_or_rule_and_group_matching(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS)
    first = engine.add_silence(store, ruleset, "violations", None, 600, now=at(0))
    engine.add_silence(store, ruleset, "violations", "client_id=bad", 600, now=at(1))
    assert engine.end_silences(store, first, now=at(2)) == 1
    assert engine.end_silences(store, "violations", now=at(2)) == 1
    assert engine.end_silences(store, "violations", now=at(2)) == 0
    assert engine.group_matches(None, "client_id=x")
    assert engine.group_matches("x", "client_id=x") and engine.group_matches("client_id=x", "client_id=x")
    assert not engine.group_matches("x", "client_id=y") and not engine.group_matches("x", "client_id=x,category=y")
    with pytest.raises(engine.AlertError, match="No rule named 'nope'"):
        engine.add_silence(store, ruleset, "nope", None, 60)


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


def test_backtest_replays_what_live_evaluation_did_and_writes_nothing(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS.replace("window = \"5m\"", "window = \"5m\"\nfor = \"1m\""))
    add(store, steady("good", 0, 120) + steady("bad", 10, 15, "input_duration_violation") + steady("bad", 50, 70, "input_duration_violation"))
    episodes = engine.backtest(store, ruleset, at(0), at(119))
    assert [(e.group, e.pending_at, e.fired_at, e.resolved_at, e.peak_value, e.notifications) for e in episodes] == [
        ("client_id=bad", at(13), at(14), at(18), 5.0, 2),
        ("client_id=bad", at(53), at(54), at(73), 5.0, 2),
    ]
    assert store.query("SELECT (SELECT count(*) FROM alert_state) + (SELECT count(*) FROM alert_outbox)").item() == 0
    evaluate(store, ruleset, EngineSettings(lateness_s=0, initial_lookback_s=7200), now=at(119))
    live = store.query("SELECT to_state, event_time FROM alert_events WHERE to_state IN ('firing', 'resolved') ORDER BY event_time").rows()
    assert live == [("firing", at(14)), ("resolved", at(18)), ("firing", at(54)), ("resolved", at(73))]


def test_backtest_rejects_an_empty_range_and_unknown_rules(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS)
    with pytest.raises(engine.AlertError, match="--to must be after --from"):
        engine.backtest(store, ruleset, at(10), at(0))
    with pytest.raises(engine.AlertError, match="No rule named nope"):
        engine.backtest(store, ruleset, at(0), at(10), ["nope"])


# -- the commands ---------------------------------------------------------------------------


def test_alert_commands_through_the_cli(run, store, tmp_path):
    path = tmp_path / "alerts.toml"
    path.write_text(VIOLATIONS, encoding="utf-8")
    add(store, steady("good", 0, 60) + steady("bad", 10, 15, "input_duration_violation") + steady("bad", 55, 60, "input_duration_violation"))

    result = run("alerts", "run", "--rules", str(path))
    assert result.exit_code == 0, result.stderr
    assert "1 rules over 61 evaluation times: 3 transitions, 3 notifications queued, 1 groups firing" in result.stdout
    assert "3 delivered" in result.stdout and "[FIRING] violations for client_id=bad" in result.stdout

    states = json.loads(run("alerts", "status", "--format", "json").stdout)
    assert [(s["rule"], s["group"], s["state"]) for s in states] == [("violations", "client_id=bad", "firing")]
    transitions = json.loads(run("alerts", "history", "--rule", "violations", "--format", "json").stdout)
    assert [t["to_state"] for t in transitions] == ["firing", "resolved", "firing"]

    result = run("alerts", "silence", "violations", "--group", "bad", "--for", "2h", "--comment", "deploy", "--rules", str(path))
    assert result.exit_code == 0 and "Silenced violations for bad for 2h" in result.stdout
    listed = json.loads(run("alerts", "silences", "--format", "json").stdout)
    assert [(s["rule"], s["group"], s["comment"]) for s in listed] == [("violations", "bad", "deploy")]
    assert run("alerts", "unsilence", listed[0]["silence_id"]).exit_code == 0
    result = run("alerts", "unsilence", "violations")
    assert result.exit_code == 1 and "No active silence" in result.stderr
    assert run("alerts", "silence", "violations", "--for", "soon", "--rules", str(path)).exit_code == 1

    sent = json.loads(run("alerts", "outbox", "--format", "json").stdout)
    assert len(sent) == 3 and {row["status"] for row in sent} == {"delivered"}

    result = run("alerts", "backtest", "--from", "2024-05-01T09:00", "--to", "2024-05-01T11:10", "--rules", str(path), "--format", "json")
    assert result.exit_code == 0, result.stderr
    episodes = json.loads(result.stdout)
    assert [(e["rule"], e["group"], e["fired_at"], e["resolved_at"]) for e in episodes] == [
        ("violations", "client_id=bad", "2024-05-01T10:13:00+00:00", "2024-05-01T10:18:00+00:00"),
        ("violations", "client_id=bad", "2024-05-01T10:58:00+00:00", "2024-05-01T11:03:00+00:00"),
    ]
    assert run("alerts", "backtest", "--from", "yesterday", "--to", "now", "--rules", str(path)).exit_code == 1


# -- backtest on generator data -----------------------------------------------------------

#: Which default rule answers each injected incident kind (error_spike incidents are implied, not required).
RULE_FOR = {
    "network_outage": "disconnect-storm", "chunks_too_long": "repeated-violations",
    "faster_than_realtime": "repeated-violations", "concurrency_burst": "concurrency-saturation",
    "revoked_key": "auth-failures", "expiry_leak": "expiry-cost-leak", "new_reason": "new-close-reason",
}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_backtest_of_the_default_rules_fires_on_the_injected_incidents_and_resolves_after_them(run, store, tmp_path, seed):
    from closewatch.analysis.detection import detect

    out = tmp_path / "gen"
    result = run("generate", str(out), "--days", "7", "--seed", str(seed), "--formats", "jsonl", db=False)
    assert result.exit_code == 0, result.output
    assert run("ingest", str(out)).exit_code == 0
    detect(store)
    manifest = json.loads((out / "manifest.json").read_text())
    ruleset = load_rules()
    start, end = datetime.fromisoformat(manifest["start"]), datetime.fromisoformat(manifest["end"])
    episodes = engine.backtest(store, ruleset, start, end)
    matched = set()
    for incident in manifest["incidents"]:
        rule_name = RULE_FOR.get(incident["kind"])
        if rule_name is None:
            continue
        rule = ruleset.rule(rule_name)
        begins, ends = datetime.fromisoformat(incident["start"]), datetime.fromisoformat(incident["end"])
        group = f"key={incident['details']['reason'][:20]}" if incident["kind"] == "new_reason" else None
        hits = [e for e in episodes if e.rule == rule_name
                and (e.group.startswith(group) if group else e.group.endswith("=" + incident["client"]))
                and begins <= e.fired_at <= ends + timedelta(seconds=rule.window_s)]
        assert len(hits) == 1, (incident["kind"], incident["client"], hits)
        episode = hits[0]
        latest = ends + timedelta(seconds=rule.window_s + rule.keep_firing_s + rule.every_s)
        assert episode.resolved_at is not None and episode.fired_at < episode.resolved_at <= latest, (incident, episode)
        matched.add(episode)
    others = [e for e in episodes if e not in matched and e.rule != "error-spike"]
    print(f"seed {seed}: {len(matched)} incidents matched, {len(others)} other episodes: {others}")
    assert len(others) <= 2, others
