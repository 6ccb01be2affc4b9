"""Backtests replay stored history through the live code and write nothing; on the generator's week they find its incidents."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from closewatch.alerts.backtest import backtest
from closewatch.alerts.errors import AlertError
from closewatch.alerts.evaluation import evaluate
from closewatch.alerts.model import EngineSettings
from closewatch.alerts.rules import load_rules
from tests.alerts.helpers import VIOLATIONS, add, at, rules, steady


def test_backtest_replays_what_live_evaluation_did_and_writes_nothing(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS.replace("window = \"5m\"", "window = \"5m\"\nfor = \"1m\""))
    add(store, steady("good", 0, 120) + steady("bad", 10, 15, "input_duration_violation") + steady("bad", 50, 70, "input_duration_violation"))
    episodes = backtest(store, ruleset, at(0), at(119))
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
    with pytest.raises(AlertError, match="--to must be after --from"):
        backtest(store, ruleset, at(10), at(0))
    with pytest.raises(AlertError, match="No rule named nope"):
        backtest(store, ruleset, at(0), at(10), ["nope"])


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
    episodes = backtest(store, ruleset, start, end)
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
