"""Inhibition: a firing source group holds back matching target groups, live and in backtests; status shows it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from closewatch.alerts.backtest import backtest
from closewatch.alerts.evaluation import evaluate
from closewatch.alerts.explain import explain
from closewatch.alerts.inhibition import group_labels, sources_first
from closewatch.alerts.model import EngineSettings
from closewatch.alerts.rules import load_rules
from closewatch.alerts.state import status
from tests.alerts.helpers import LIVE, add, at, rules, steady

RULES = """
[defaults]
resolve = true

[[rules]]
name = "per-client"
kind = "threshold"
where = { category = ["network_abnormal"] }
group_by = ["client_id"]
window = "5m"
value = 3

[[rules]]
name = "everyone"
kind = "threshold"
where = { category = ["network_abnormal"] }
group_by = ["category"]
window = "5m"
metric = "clients"
min_per_client = 2
value = 3

[[inhibit]]
source = "everyone"
target = ["per-client"]
equal = ["category"]
"""


def outbox(store) -> list[tuple]:
    return store.query("SELECT rule, group_key, kind, event_time FROM alert_outbox ORDER BY event_time, rule, group_key").rows()


def test_a_platform_alert_holds_back_the_per_client_alerts_while_it_fires(store, tmp_path):
    ruleset = rules(tmp_path, RULES)
    assert [r.name for r in sources_first(ruleset.rules, ruleset.inhibit)] == ["everyone", "per-client"]
    # Four clients drop once a minute for 10 minutes; "solo" keeps dropping alone for 10 minutes more.
    outage = [row for client in ("a", "b", "c", "solo") for row in steady(client, 0, 10, "network_abnormal")]
    add(store, outage + steady("solo", 10, 20, "network_abnormal") + steady("quiet", 0, 40))
    evaluate(store, ruleset, LIVE, now=at(8))

    shown = status(store, ruleset).filter(rule="per-client").select("group", "state", "inhibited_by").rows()
    assert shown == [(f"client_id={c}", "firing", "everyone (category=network_abnormal)") for c in ("a", "b", "c", "solo")]
    assert outbox(store) == [("everyone", "category=network_abnormal", "firing", at(2))]  # one page, not five

    evaluate(store, ruleset, LIVE, now=at(40))
    sent = outbox(store)
    # "everyone" resolves when fewer than 3 clients drop; "solo" still fires then, so it notifies then; a, b, c never do.
    assert sent == [
        ("everyone", "category=network_abnormal", "firing", at(2)),
        ("everyone", "category=network_abnormal", "resolved", at(14)),
        ("per-client", "client_id=solo", "firing", at(14)),
        ("per-client", "client_id=solo", "resolved", at(23)),
    ]
    # explain says why a held-back group did not notify, and names what held it back.
    [fired] = [s for s in explain(store, ruleset, "per-client", at(0), at(20), "a").steps if s.outcome == "fired"]
    assert (fired.notified, fired.inhibited_by) == (False, "everyone (category=network_abnormal)")
    assert "no notification: inhibited by everyone (category=network_abnormal), firing since" in fired.reason
    [solo] = [s for s in explain(store, ruleset, "per-client", at(14), group="solo").steps]
    assert solo.notified and solo.inhibited_by is None
    # The held-back groups changed state all the same.
    states = dict(store.query("SELECT group_key, state FROM alert_state WHERE rule = 'per-client'").rows())
    assert states == {"client_id=a": "resolved", "client_id=b": "resolved", "client_id=c": "resolved", "client_id=solo": "resolved"}

    # A backtest replays the same: a chosen target brings its source along, and its notifications are the ones sent.
    episodes = backtest(store, ruleset, at(-60), at(40), rules=["per-client"])
    assert {e.group: e.notifications for e in episodes} == {"client_id=a": 0, "client_id=b": 0, "client_id=c": 0,
                                                            "client_id=solo": 2}


def test_matchers_and_equal_read_the_rule_labels_where_filters_and_group_values(tmp_path):
    ruleset = rules(tmp_path, RULES.replace('equal = ["category"]', 'equal = ["category"]\ntarget_match = { team = "voice" }')
                    .replace('value = 3\n\n[[rules]]', 'value = 3\nlabels = { team = "voice" }\n\n[[rules]]', 1))
    per_client = ruleset.rule("per-client")
    labels = group_labels(per_client, {"client_id": "a"})
    assert labels == {"team": {"voice"}, "category": {"network_abnormal"}, "client_id": {"a"}, "rule": {"per-client"}}


def test_a_generated_platform_outage_pages_once_and_status_shows_the_held_back_clients(run, store, tmp_path):
    out = tmp_path / "week"
    result = run("generate", str(out), "--days", "2", "--formats", "jsonl", "--no-incidents",
                 "--platform-outage", "network_abnormal", db=False)
    assert result.exit_code == 0, result.output
    assert run("ingest", str(out)).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    [outage] = manifest["incidents"]
    begins, ends = datetime.fromisoformat(outage["start"]), datetime.fromisoformat(outage["end"])
    ruleset = load_rules()  # the shipped defaults: platform-surge holds back disconnect-storm and concurrency-saturation
    settings = EngineSettings(initial_lookback_s=6 * 3600)
    evaluate(store, ruleset, settings, now=begins + timedelta(minutes=20))

    shown = status(store, ruleset)
    held = shown.filter(rule="disconnect-storm")
    assert held.height >= 10 and set(held["state"]) == {"firing"}
    assert set(held["inhibited_by"]) == {"platform-surge (category=network_abnormal)"}
    assert shown.filter(rule="platform-surge")["detail"][0].startswith(f"{len(outage['details']['clients'])} clients (")

    evaluate(store, ruleset, settings, now=datetime.fromisoformat(manifest["end"]))
    pages = store.query("SELECT rule, group_key, kind, payload FROM alert_outbox WHERE kind = 'firing' ORDER BY event_time").rows()
    assert [(rule, group) for rule, group, _, _ in pages] == [("platform-surge", "category=network_abnormal")]
    text = json.loads(pages[0][3])["text"]
    assert f"{len(outage['details']['clients'])} clients (" in text and "held back while this fires" in text
    assert begins <= store.query("SELECT min(event_time) FROM alert_outbox").item() <= ends
    history = store.query("SELECT count(DISTINCT group_key) FROM alert_events WHERE rule = 'disconnect-storm' AND to_state = 'firing'").item()
    assert history >= 10  # every held-back client fired and resolved without a page


def test_alerts_run_and_status_name_what_holds_a_group_back(run, store, tmp_path):
    path = tmp_path / "alerts.toml"
    path.write_text(RULES, encoding="utf-8")
    add(store, [row for client in ("a", "b", "c") for row in steady(client, 0, 10, "network_abnormal")])
    result = run("alerts", "run", "--rules", str(path), "--no-deliver")
    assert result.exit_code == 0, result.stderr
    assert "inhibited_by" in result.stdout and "1 notifications queued" in result.stdout
    states = json.loads(run("alerts", "status", "--rules", str(path), "--format", "json").stdout)
    assert {(s["rule"], s["inhibited_by"]) for s in states} == {
        ("everyone", None), ("per-client", "everyone (category=network_abnormal)")}
    assert [s["detail"] for s in states if s["rule"] == "everyone"] == ["3 clients (a, b, c)"]
