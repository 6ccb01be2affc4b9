"""Compare: two rule sets backtested over the same history, their firings paired as same, moved, only_old, only_new."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from closewatch.alerts.backtest import Episode, backtest
from closewatch.alerts.compare import compare, pair
from closewatch.alerts.errors import AlertError
from closewatch.alerts.rules import DEFAULT_RULES, load_rules
from tests.alerts.helpers import T0, VIOLATIONS, add, at, rules, steady


def episode(group: str, fired: float, resolved: float | None, notifications: int = 1) -> Episode:
    return Episode("r", group, None, at(fired), at(resolved) if resolved is not None else None, 1.0, notifications)


def test_firings_pair_by_overlap_in_time_per_group():
    old = [episode("a", 10, 20), episode("a", 40, 50), episode("b", 10, 20), episode("c", 5, 6)]
    new = [episode("a", 10, 20), episode("a", 45, 60), episode("a", 70, None), episode("b", 30, 35)]
    changes = [(c.group, c.change, c.old.fired_at if c.old else None, c.new.fired_at if c.new else None)
               for c in pair(old, new, at(100))]
    assert changes == [
        ("c", "only_old", at(5), None),
        ("a", "same", at(10), at(10)),
        ("b", "only_old", at(10), None),
        ("b", "only_new", None, at(30)),
        ("a", "moved", at(40), at(45)),
        ("a", "only_new", None, at(70)),
    ]


def test_a_compare_on_small_data_counts_notifications_per_week_and_time_firing(store, tmp_path):
    # one violation a minute: 4 in a row, then 10 in a row; the old bound is 3 a window, the new one 5
    add(store, steady("good", 0, 120) + steady("bad", 10, 14, "input_duration_violation") + steady("bad", 60, 70, "input_duration_violation"))
    old = rules(tmp_path, VIOLATIONS, "old.toml")
    new = rules(tmp_path, VIOLATIONS.replace("value = 3", "value = 5"), "new.toml")
    result = compare(store, new, old, T0, at(7 * 24 * 60))  # a week: per week is per run
    assert [c.as_dict() for c in result.changes] == [
        {"rule": "violations", "group": "client_id=bad", "change": "only_old", "old_fired_at": at(13).isoformat(),
         "new_fired_at": None, "old_resolved_at": at(17).isoformat(), "new_resolved_at": None, "old_notifications": 2,
         "new_notifications": 0},
        {"rule": "violations", "group": "client_id=bad", "change": "moved", "old_fired_at": at(63).isoformat(),
         "new_fired_at": at(65).isoformat(), "old_resolved_at": at(73).isoformat(), "new_resolved_at": at(71).isoformat(),
         "old_notifications": 2, "new_notifications": 2},
    ]
    [summary] = result.summary
    assert summary.counts == {"only_old": 1, "only_new": 0, "same": 0, "moved": 1}
    assert (summary.old_notifications_per_week, summary.new_notifications_per_week) == (4.0, 2.0)
    assert (summary.old_firing_s, summary.new_firing_s) == (14 * 60, 6 * 60)
    with pytest.raises(AlertError, match="No rule named nope"):
        compare(store, new, old, T0, at(60), ["nope"])


@pytest.mark.slow
def test_raising_one_bound_tenfold_reports_the_firings_it_loses_on_the_generated_week(week, tmp_path):
    run, store, manifest = week
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    assert text.count("\nvalue = 3\n") == 1  # auth-failures' bound
    raised = tmp_path / "raised.toml"
    raised.write_text(text.replace("\nvalue = 3\n", "\nvalue = 30\n"), encoding="utf-8")
    start, end = datetime.fromisoformat(manifest["start"]), datetime.fromisoformat(manifest["end"])

    result = run("alerts", "backtest", "--rules", str(raised), "--compare", str(DEFAULT_RULES),
                 "--from", start.isoformat(), "--to", end.isoformat(), "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert set(rows[0]) >= {"rule", "group", "change", "old_fired_at", "new_fired_at", "old_resolved_at", "new_resolved_at"}

    old = backtest(store, load_rules(), start, end)
    new = backtest(store, load_rules(raised), start, end)
    kept = {(e.group, e.fired_at.isoformat()) for e in new if e.rule == "auth-failures"}
    lost = sorted((e.group, e.fired_at.isoformat()) for e in old if e.rule == "auth-failures"
                  and not any(g == e.group and abs(datetime.fromisoformat(t) - e.fired_at) < timedelta(days=1) for g, t in kept))
    assert lost, "a bound ten times higher should lose some auth-failures firings on the generated week"
    reported = sorted((r["group"], r["old_fired_at"]) for r in rows if r["rule"] == "auth-failures" and r["change"] == "only_old")
    assert reported == lost
    assert not [r for r in rows if r["rule"] == "auth-failures" and r["change"] == "only_new"]
    others = [r for r in rows if r["rule"] != "auth-failures"]
    assert {r["change"] for r in others} == {"same"}
    assert len(others) == sum(1 for e in old if e.rule != "auth-failures")

    table = run("alerts", "backtest", "--rules", str(raised), "--compare", str(DEFAULT_RULES),
                "--from", start.isoformat(), "--to", end.isoformat())
    assert table.exit_code == 0 and "only_old" in table.stdout and "notifications/week old" in table.stdout
