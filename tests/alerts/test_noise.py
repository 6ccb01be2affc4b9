"""The noise report: per-rule noise from backtests, and a suggested bound that gives in a backtest what it promises."""

from __future__ import annotations

import json
import uuid

import pytest

from closewatch.alerts.backtest import backtest
from closewatch.alerts.compare import WEEK_S
from closewatch.alerts.errors import AlertError
from closewatch.alerts.noise import noise_report, parse_target
from tests.alerts.helpers import add, at, rules

BURSTS = """
[[rules]]
name = "bursts"
kind = "threshold"
where = { category = ["network_abnormal"] }
group_by = ["client_id"]
window = "10m"
value = 3

[[rules]]
name = "quiet"
kind = "absence"
window = "1h"
"""


def bursts(store) -> None:
    """One client drops in bursts of 3, 4, ... 10 closures, two hours apart (one firing each at value = 3)."""
    rows = []
    for index, size in enumerate(range(3, 11)):
        rows += [(at(120 * index + 1 + i / 10), "acme", "network_abnormal") for i in range(size)]
    add(store, rows + [(at(120 * 8 + 30), "other", "normal")])


def add_detection(store, key: str, start, end, count: int) -> None:
    with store.transaction() as con:
        con.execute("INSERT INTO detections VALUES (?, 'frequent_disconnects', ?, ?, ?, ?, 'warning', 'drops', 'back off', [], now())",
                    [uuid.uuid4().hex, key, start, end, count])


@pytest.mark.parametrize("text, per_week", [("5/w", 5.0), ("1/d", 7.0), ("10/2w", 5.0), ("14/1w", 14.0), ("0.5/d", 3.5)])
def test_targets(text, per_week):
    assert parse_target(text) == pytest.approx(per_week)


@pytest.mark.parametrize("text", ["5", "5/", "x/w", "5/soon", "-1/w", "5/0s"])
def test_bad_targets_are_one_sentence(text):
    with pytest.raises(AlertError, match="like 5/w"):
        parse_target(text)


def test_the_report_counts_firings_and_the_suggested_bound_gives_its_promised_count(store, tmp_path):
    ruleset = rules(tmp_path, BURSTS)
    bursts(store)
    add_detection(store, "acme", at(240), at(250), 5)  # the burst of 5: a finding a stricter bound would stop alerting on
    start, end = at(0), at(24 * 60)
    weeks = (end - start).total_seconds() / WEEK_S

    [row] = noise_report(store, ruleset, start, end, rules=["bursts"])
    assert (row.firings, row.notifications, row.flaps) == (8, 8, 0)
    assert row.notifications_per_week == pytest.approx(8 / weeks)
    assert row.median_firing_s == row.longest_firing_s == 10 * 60 and row.sweep is None  # each burst: one window long

    target = 3 / weeks  # three notifications over this day
    [row] = noise_report(store, ruleset, start, end, target, rules=["bursts"])
    sweep = row.sweep
    assert sweep is not None and (sweep.setting, sweep.current, sweep.suggested) == ("value", 3.0, 8.0)  # bursts of 8, 9, 10
    assert sweep.notifications_per_week == pytest.approx(target) and sweep.lost_firings == 5
    assert [(d["pattern"], d["key"], d["count"]) for d in sweep.missed] == [("frequent_disconnects", "acme", 5)]

    # Applied, the bound gives the promised count in a backtest of the same range.
    applied = rules(tmp_path, BURSTS.replace("value = 3", f"value = {sweep.suggested:g}"), "applied.toml")
    episodes = backtest(store, applied, start, end, ["bursts"])
    assert sum(e.notifications for e in episodes) / weeks == pytest.approx(sweep.notifications_per_week)

    [quiet] = noise_report(store, ruleset, start, end, target, rules=["quiet"])
    assert quiet.sweep is None and "absence" in quiet.note


def test_alerts_noise_command(run, store, tmp_path):
    path = tmp_path / "alerts.toml"
    path.write_text(BURSTS, encoding="utf-8")
    bursts(store)
    result = run("alerts", "noise", "--from", at(0).isoformat(), "--to", at(24 * 60).isoformat(), "--target", "21/w",
                 "--rules", str(path), "--format", "json")
    assert result.exit_code == 0, result.stderr
    by_rule = {row["rule"]: row for row in json.loads(result.stdout)}
    assert by_rule["bursts"]["suggested_bound"] == "value = 8" and by_rule["bursts"]["suggested_notifications_per_week"] == 21.0
    assert by_rule["bursts"]["notifications_per_week"] == 56.0 and by_rule["quiet"]["bound"] is None
    result = run("alerts", "noise", "--from", "1d", "--to", "0s", "--target", "lots", "--rules", str(path))
    assert result.exit_code == 1 and "like 5/w" in result.stderr and "Traceback" not in result.stderr


def test_flaps_are_firings_again_within_an_hour(store, tmp_path):
    ruleset = rules(tmp_path, BURSTS)
    rows = [(at(minute + i / 10), "flappy", "network_abnormal") for minute in (1, 31, 200) for i in range(4)]
    add(store, rows + [(at(300), "other", "normal")])
    [row] = noise_report(store, ruleset, at(0), at(24 * 60), rules=["bursts"])
    assert (row.firings, row.flaps) == (3, 1)  # fired again 20 minutes after resolving; then not for hours


def _with_bound(text: str, rule: str, bound: str) -> str:
    """The rules file with one rule's `value` (or `min_count`) set to ``bound``."""
    head, _, rest = text.partition(f'name = "{rule}"')
    block, sep, tail = rest.partition("[[")
    setting, value = bound.split(" = ")
    lines = [f"{setting} = {value}" if line.startswith(f"{setting} = ") else line for line in block.splitlines()]
    if not any(line.startswith(f"{setting} = ") for line in block.splitlines()):
        lines.insert(1, f"{setting} = {value}")
    return head + f'name = "{rule}"' + "\n".join(lines) + "\n" + sep + tail


@pytest.mark.slow
def test_on_the_generators_week_each_suggested_bound_applied_gives_the_promised_count(run, store, tmp_path):
    from closewatch.alerts.rules import DEFAULT_RULES
    from closewatch.analysis.detection import detect

    out = tmp_path / "week"
    result = run("generate", str(out), "--days", "7", "--seed", "3", "--formats", "jsonl", "--platform-outage", "server_error", db=False)
    assert result.exit_code == 0, result.output
    assert run("ingest", str(out)).exit_code == 0
    detect(store)
    manifest = json.loads((out / "manifest.json").read_text())
    span = ["--from", manifest["start"], "--to", manifest["end"]]
    names = ["disconnect-storm", "repeated-violations", "platform-surge", "error-spike"]
    result = run("alerts", "noise", *span, "--target", "1/w", *[a for n in names for a in ("--rule", n)], "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {row["rule"] for row in rows} == set(names)
    # A rule whose strictest bound still notifies more says so (disconnect-storm: 100 % of a client's closures drop).
    assert all(row["suggested_bound"] or "strictest" in row["note"] for row in rows), rows
    suggested = [row for row in rows if row["suggested_bound"]]
    assert len(suggested) >= 3, rows
    for row in suggested:
        assert row["suggested_notifications_per_week"] <= 1
        applied = tmp_path / f"{row['rule']}.toml"
        applied.write_text(_with_bound(DEFAULT_RULES.read_text(encoding="utf-8"), row["rule"], row["suggested_bound"]), encoding="utf-8")
        result = run("alerts", "backtest", *span, "--rules", str(applied), "--rule", row["rule"], "--format", "json")
        assert result.exit_code == 0, result.stderr
        sent = sum(e["notifications"] for e in json.loads(result.stdout))  # the range is one week
        assert sent == pytest.approx(row["suggested_notifications_per_week"]), (row, sent)
