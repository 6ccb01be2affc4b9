"""Silences on a real DuckDB file: notifications held until they expire, ended by id or by rule and group."""

from __future__ import annotations

import pytest

from closewatch.alerts import silences
from closewatch.alerts.errors import AlertError
from closewatch.alerts.evaluation import evaluate
from tests.alerts.helpers import LIVE, VIOLATIONS, add, at, outbox_rows, rules, steady


def test_silences_hold_notifications_until_they_expire(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS)
    add(store, steady("good", 0, 120) + steady("bad", 10, 90, "input_duration_violation"))
    silence = silences.add_silence(store, ruleset, "violations", "bad", 3600, "known issue", "tester", now=at(0))
    assert silences.list_silences(store, now=at(1))["silence_id"].to_list() == [silence]
    evaluate(store, ruleset, LIVE, now=at(30))
    assert store.query("SELECT state FROM alert_state").item() == "firing"
    assert outbox_rows(store) == []  # silenced: the state moved, nobody was told
    evaluate(store, ruleset, LIVE, now=at(70))  # the silence expired at 11:00
    assert [(r[2], r[3]) for r in outbox_rows(store)] == [("firing", int(at(31).timestamp() * 1e6))]
    assert silences.list_silences(store, now=at(70)).height == 0
    assert silences.list_silences(store, include_ended=True, now=at(70)).height == 1


def test_unsilence_by_id_or_rule_and_group_matching(store, tmp_path):
    ruleset = rules(tmp_path, VIOLATIONS)
    first = silences.add_silence(store, ruleset, "violations", None, 600, now=at(0))
    silences.add_silence(store, ruleset, "violations", "client_id=bad", 600, now=at(1))
    assert silences.end_silences(store, first, now=at(2)) == 1
    assert silences.end_silences(store, "violations", now=at(2)) == 1
    assert silences.end_silences(store, "violations", now=at(2)) == 0
    assert silences.group_matches(None, "client_id=x")
    assert silences.group_matches("x", "client_id=x") and silences.group_matches("client_id=x", "client_id=x")
    assert not silences.group_matches("x", "client_id=y") and not silences.group_matches("x", "client_id=x,category=y")
    with pytest.raises(AlertError, match="No rule named 'nope'"):
        silences.add_silence(store, ruleset, "nope", None, 60)
