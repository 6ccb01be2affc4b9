"""Explanations: each evaluation time replayed with the live code says what was measured, what the state did, and why."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from closewatch.alerts.backtest import backtest
from closewatch.alerts.errors import AlertError
from closewatch.alerts.evaluation import evaluate
from closewatch.alerts.explain import explain
from closewatch.alerts.model import EngineSettings
from closewatch.alerts.rules import load_rules
from closewatch.alerts.silences import add_silence
from tests.alerts.helpers import VIOLATIONS, add, at, rules, steady

SLOW_RULE = VIOLATIONS.replace("value = 3", 'value = 3\nfor = "2m"\nkeep_firing_for = "3m"')


def moves(explanation) -> list[tuple[int, str, str, str, bool]]:
    """(minute, outcome, before, after, notified) per row."""
    return [(int((s.eval_time - at(0)).total_seconds() // 60), s.outcome, s.state_before, s.state_after, s.notified)
            for s in explanation.steps]


def test_a_range_for_one_group_walks_pending_firing_keep_firing_and_resolved(store, tmp_path):
    ruleset = rules(tmp_path, SLOW_RULE)
    add(store, steady("good", 0, 60) + steady("bad", 10, 15, "input_duration_violation"))
    explained = explain(store, ruleset, "violations", at(11), at(21), group="bad")
    assert moves(explained) == [
        (11, "quiet", "inactive", "inactive", False), (12, "quiet", "inactive", "inactive", False),
        (13, "pending", "inactive", "pending", False), (14, "pending", "pending", "pending", False),
        (15, "fired", "pending", "firing", True), (16, "firing", "firing", "firing", False),
        (17, "firing", "firing", "firing", False), (18, "kept_firing", "firing", "firing", False),
        (19, "kept_firing", "firing", "firing", False), (20, "resolved", "firing", "resolved", True),
        (21, "quiet", "resolved", "resolved", False),
    ]
    rows = {int((s.eval_time - at(0)).total_seconds() // 60): s for s in explained.steps}
    assert rows[12].value == 2 and rows[12].bound == 3 and "2 closures" in rows[12].reason and "does not hold" in rows[12].reason
    assert "fires at 2024-05-01 10:15 UTC if it still holds" in rows[13].reason
    assert "already notified at 10:15 UTC (no repeat_interval)" in rows[16].reason
    assert "keep_firing_for (3m) keeps it firing until 2024-05-01 10:20 UTC" in rows[18].reason
    sample = rows[15].sample
    assert len(sample) == 5 and {c["client_id"] for c in sample} == {"bad"}
    assert sample[0]["link"].startswith("explorer?event=") and sample[0]["category"] == "input_duration_violation"


def test_explanations_agree_with_what_live_evaluation_recorded(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS)
    add(store, steady("good", 0, 120) + steady("bad", 10, 15, "input_duration_violation")
        + steady("bad", 70, 80, "input_duration_violation"))
    evaluate(store, ruleset, EngineSettings(lateness_s=0, initial_lookback_s=7200), now=at(120))
    live = store.query("SELECT to_state, event_time FROM alert_events ORDER BY event_time").rows()
    explained = explain(store, ruleset, "violations", at(0), at(119))
    changes = [(s.state_after, s.eval_time) for s in explained.steps if s.state_after != s.state_before]
    assert changes == live
    assert all(s.group == "client_id=bad" for s in explained.steps)  # without --group: only groups that did something


def test_a_pending_group_that_clears_says_so_and_sends_nothing(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS.replace("value = 3", 'value = 3\nfor = "10m"'))
    add(store, steady("good", 0, 60) + steady("bad", 10, 15, "input_duration_violation"))
    cleared = [s for s in explain(store, ruleset, "violations", at(10), at(30), group="client_id=bad").steps if s.outcome == "cleared"]
    assert len(cleared) == 1 and cleared[0].state_after == "inactive" and not cleared[0].notified
    assert "before `for` (10m) elapsed: back to inactive, nothing sent" in cleared[0].reason


def test_a_silenced_firing_names_its_silence(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS)
    add(store, steady("good", 0, 60) + steady("bad", 10, 15, "input_duration_violation"))
    silence = add_silence(store, ruleset, "violations", "bad", 3600, "deploy", now=at(0))
    fired = explain(store, ruleset, "violations", at(13), group="bad").steps
    assert [(s.outcome, s.notified, s.silence) for s in fired] == [("fired", False, silence)]
    assert f"no notification: silenced by {silence} (deploy)" in fired[0].reason


def test_a_quiet_moment_shows_the_groups_nearest_their_bound(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS)
    add(store, steady("good", 0, 60) + steady("bad", 10, 11, "input_duration_violation")
        + steady("meh", 10, 12, "input_duration_violation"))
    steps = explain(store, ruleset, "violations", at(12) + timedelta(seconds=30)).steps
    assert [(s.eval_time, s.group, s.value, s.outcome) for s in steps] == [
        (at(12), "client_id=meh", 2.0, "quiet"), (at(12), "client_id=bad", 1.0, "quiet")]
    nothing = explain(store, ruleset, "violations", at(40)).steps
    assert [(s.group, s.value, s.holds) for s in nothing] == [("", 0.0, False)]
    assert nothing[0].reason.startswith("0 closures with category input_duration_violation in 5m (fires at >= 3)")


def test_bad_requests_are_one_sentence(store, tmp_path, run):
    ruleset = rules(tmp_path, VIOLATIONS)
    with pytest.raises(AlertError, match="No rule named 'nope'"):
        explain(store, ruleset, "nope", at(0))
    with pytest.raises(AlertError, match="--to must not be before --from"):
        explain(store, ruleset, "violations", at(10), at(0))
    with pytest.raises(AlertError, match="too many to explain at once"):
        explain(store, ruleset, "violations", at(0), at(60 * 24 * 30))
    with pytest.raises(AlertError, match="warm-up of 365d is out of range: give 0s to 31d"):
        explain(store, ruleset, "violations", at(0), warmup_s=365 * 86400)
    add(store, steady("good", 0, 5))
    path = str(tmp_path / "alerts.toml")
    for args, message in [(["--at", "1h", "--from", "2h", "--to", "1h"], "either --at or --from/--to"),
                          (["--from", "2h"], "needs both --from and --to"), (["--warmup", "soon"], "not a duration")]:
        result = run("alerts", "explain", "violations", "--rules", path, *args)
        assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.output


# -- the generator's week --------------------------------------------------------------------


def explain_json(run, *args: str) -> list[dict]:
    result = run("alerts", "explain", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_on_the_generated_week_explain_says_why_an_incident_fired_and_why_a_quiet_time_did_not(week):
    run, store, manifest = week
    incident = next(i for i in manifest["incidents"] if i["kind"] == "network_outage")
    client, begins = incident["client"], datetime.fromisoformat(incident["start"])
    start, end = datetime.fromisoformat(manifest["start"]), datetime.fromisoformat(manifest["end"])
    episodes = [e for e in backtest(store, load_rules(), start, end, ["disconnect-storm"]) if e.group == f"client_id={client}"]
    episode = next(e for e in episodes if begins <= e.fired_at)

    fired = explain_json(run, "disconnect-storm", "--group", client, "--at", episode.fired_at.isoformat())
    assert len(fired) == 1, fired
    row = fired[0]
    assert set(row) >= {"eval_time", "rule", "group", "value", "bound", "holds", "state_before", "state_after", "reason", "notified"}
    assert (row["rule"], row["group"], row["holds"], row["state_after"], row["notified"]) == (
        "disconnect-storm", f"client_id={client}", True, "firing", True)
    assert row["state_before"] in ("inactive", "resolved") and row["value"] >= row["bound"] == 0.5
    assert "holds; fired" in row["reason"] and "firing notification queued to console" in row["reason"]
    assert row["sample"] and all(c["client_id"] == client for c in row["sample"])
    assert row["sample"][0]["link"].startswith("http://localhost:8501/explorer?event=")

    quiet_at = begins - timedelta(hours=6)
    assert not any(e.fired_at <= quiet_at <= (e.resolved_at or end) for e in episodes)
    quiet = explain_json(run, "disconnect-storm", "--group", client, "--at", quiet_at.isoformat())
    assert [(r["holds"], r["state_after"], r["notified"], r["outcome"]) for r in quiet] == [(False, quiet[0]["state_before"], False, "quiet")]
    assert quiet[0]["state_before"] in ("inactive", "resolved")
    assert (quiet[0]["value"] or 0) < 0.5 and "does not hold" in quiet[0]["reason"]

    around = explain_json(run, "disconnect-storm", "--group", client, "--from", (episode.fired_at - timedelta(minutes=5)).isoformat(),
                          "--to", (episode.resolved_at + timedelta(minutes=1)).isoformat())
    assert [r["eval_time"] for r in around if r["outcome"] == "fired"] == [episode.fired_at.isoformat()]
    assert [r["eval_time"] for r in around if r["outcome"] == "resolved"] == [episode.resolved_at.isoformat()]
