"""The noise report: how much each rule would have paged over a stored range, and the bound that meets a budget.

Everything comes from backtests (``backtest``: the live conditions, state
machine and inhibition, in memory, nothing written or sent), so the report
holds for any stored range, whether or not the scheduler ran then. Per rule:
firings and notifications per week, the median and longest firing, flaps (a
group that fires again within an hour of resolving), and the share of the
range during which at least one group was firing.

Then a sweep of the rule's bound (``value`` of a threshold rule,
``min_count`` of a pattern rule with ``min_findings = 1``): candidates on a
round grid across the values the rule measured (whole numbers for counts,
clients and findings, 0.01 for rates, 1 for rates per 1,000 sessions) are
backtested, bisecting from the most sensitive to the strictest, and the most
sensitive bound whose notifications per week stay within the target is
suggested, with its own backtest's count: applying the bound gives exactly
that count in a backtest of the same range. Firings the suggested bound
would lose are paired with ``compare.pair``; the stored detections (pattern
findings) that overlap a lost firing of the same group are what it would
have missed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from closewatch.alerts.backtest import Episode, backtest
from closewatch.alerts.compare import ONLY_OLD, WEEK_S, pair
from closewatch.alerts.conditions import conditions
from closewatch.alerts.errors import AlertError
from closewatch.alerts.model import Grid, ceil_to, floor_to, seconds_us, to_us
from closewatch.alerts.rules import Rule, RuleSet
from closewatch.durations import format_duration, parse_duration
from closewatch.store import Store

#: A group that fires again within this long after resolving flaps.
FLAP_S = 3600.0
#: Detections named per rule (the rest are counted).
MAX_MISSED_NAMED = 5
#: Candidate bounds at most per sweep (the grid is coarsened beyond it).
MAX_CANDIDATES = 4096


def parse_target(text: str) -> float:
    """Notifications per week from "5/w", "1/d", "10/2w" (a number, a slash, a duration); AlertError otherwise."""
    count, _, per = text.partition("/")
    per = per.strip()
    seconds = parse_duration(per if per[:1].isdigit() else f"1{per}") if per else None
    try:
        number = float(count)
    except ValueError:
        number = -1.0
    if not per or seconds is None or seconds <= 0 or not math.isfinite(number) or number < 0:
        raise AlertError(f"--target {text!r} is not a number of notifications per period; write it like 5/w, 1/d or 10/2w.")
    return number * WEEK_S / seconds


@dataclass
class Sweep:
    """The bound that meets the target, what it promises, and what it would have missed."""

    setting: str  # the rule's field swept: "value" or "min_count"
    current: float
    suggested: float
    notifications_per_week: float  # with the suggested bound: what a backtest of the same range gives
    firings: int
    lost_firings: int
    missed: list[dict[str, Any]] = field(default_factory=list)  # detections overlapping a lost firing
    missed_total: int = 0


@dataclass
class RuleNoise:
    """One rule over the range: how often it fired and paged, how long, how it flapped, and the sweep."""

    rule: str
    firings: int
    notifications: int
    weeks: float
    median_firing_s: float | None
    longest_firing_s: float | None
    flaps: int
    firing_share: float
    sweep: Sweep | None = None
    note: str = ""

    @property
    def notifications_per_week(self) -> float:
        return self.notifications / self.weeks

    def as_dict(self) -> dict[str, Any]:
        sweep = self.sweep
        return {
            "rule": self.rule, "firings": self.firings, "notifications": self.notifications,
            "firings_per_week": round(self.firings / self.weeks, 2),
            "notifications_per_week": round(self.notifications_per_week, 2),
            "median_firing": _duration(self.median_firing_s), "longest_firing": _duration(self.longest_firing_s),
            "flaps": self.flaps, "firing_share": round(self.firing_share, 4),
            "bound": f"{sweep.setting} = {_bound(sweep.current)}" if sweep else None,
            "suggested_bound": f"{sweep.setting} = {_bound(sweep.suggested)}" if sweep else None,
            "suggested_notifications_per_week": round(sweep.notifications_per_week, 2) if sweep else None,
            "lost_firings": sweep.lost_firings if sweep else None,
            "missed_detections": sweep.missed_total if sweep else None,
            "missed": sweep.missed if sweep else [],
            "note": self.note,
        }


def noise_report(store: Store, ruleset: RuleSet, start: datetime, end: datetime, target_per_week: float | None = None,
                 rules: list[str] | None = None) -> list[RuleNoise]:
    """Per enabled rule (or the ``rules`` named): its noise over [start, end], and with a target, the sweep."""
    episodes = backtest(store, ruleset, start, end, rules)
    weeks = max((end - start).total_seconds(), 1.0) / WEEK_S
    report = []
    for rule in ruleset.enabled:
        if rules is not None and rule.name not in rules:
            continue
        own = [e for e in episodes if e.rule == rule.name]
        row = _stats(rule, own, start, end, weeks)
        if target_per_week is not None:
            row.sweep, row.note = _sweep(store, ruleset, rule, start, end, weeks, target_per_week, own)
        report.append(row)
    return report


def _stats(rule: Rule, episodes: list[Episode], start: datetime, end: datetime, weeks: float) -> RuleNoise:
    lengths = [((e.resolved_at or end) - e.fired_at).total_seconds() for e in episodes]
    flaps = 0
    last_resolved: dict[str, datetime | None] = {}
    for e in sorted(episodes, key=lambda e: e.fired_at):
        before = last_resolved.get(e.group)
        if before is not None and e.fired_at - before <= timedelta(seconds=FLAP_S):
            flaps += 1
        last_resolved[e.group] = e.resolved_at
    return RuleNoise(rule.name, len(episodes), sum(e.notifications for e in episodes), weeks,
                     statistics.median(lengths) if lengths else None, max(lengths) if lengths else None, flaps,
                     _covered(episodes, start, end) / max((end - start).total_seconds(), 1.0))


def _covered(episodes: list[Episode], start: datetime, end: datetime) -> float:
    """Seconds of [start, end] during which at least one of the episodes was firing."""
    spans = sorted((max(e.fired_at, start), min(e.resolved_at or end, end)) for e in episodes)
    total, reach = 0.0, start
    for begin, finish in spans:
        begin = max(begin, reach)
        if finish > begin:
            total += (finish - begin).total_seconds()
            reach = finish
    return total


# -- the sweep -------------------------------------------------------------------------


def _sweep(store: Store, ruleset: RuleSet, rule: Rule, start: datetime, end: datetime, weeks: float,
           target: float, current: list[Episode]) -> tuple[Sweep | None, str]:
    """Bisect the round candidates for the most sensitive bound within the target; (None, why) when there is none."""
    if rule.kind == "threshold":
        name = "value"
    elif rule.kind == "pattern" and rule.min_findings == 1:
        name = "min_count"
    else:
        article = "an" if rule.kind[0] in "aeiou" else "a"
        return None, f"no bound to sweep for {article} {rule.kind} rule" + (" with min_findings > 1" if rule.kind == "pattern" else "")
    candidates = _candidates(store, rule, name, start, end)
    if not candidates:
        return None, "measured nothing in the range, so there is nothing to sweep"
    tried: dict[float, list[Episode]] = {}

    def per_week(bound: float) -> float:
        if bound not in tried:
            tried[bound] = _replay(store, ruleset, rule, name, bound, start, end)
        return sum(e.notifications for e in tried[bound]) / weeks

    low, high = 0, len(candidates) - 1  # candidates run from the most sensitive to the strictest
    if per_week(candidates[high]) > target:
        return None, (f"even the strictest {name} = {_bound(candidates[high])} gives {per_week(candidates[high]):.1f} notifications "
                      "a week, more than the target; tune another field (window, for, min_total, repeat_interval)")
    while low < high:
        middle = (low + high) // 2
        if per_week(candidates[middle]) <= target:
            high = middle
        else:
            low = middle + 1
    bound = candidates[low]
    chosen = tried.get(bound) or _replay(store, ruleset, rule, name, bound, start, end)
    lost = [change.old for change in pair(current, chosen, end) if change.change == ONLY_OLD and change.old is not None]
    missed = _missed_detections(store, rule, lost, end)
    sweep = Sweep(name, float(getattr(rule, name)), bound, sum(e.notifications for e in chosen) / weeks, len(chosen),
                  len(lost), missed[:MAX_MISSED_NAMED], len(missed))
    return sweep, ""


def _replay(store: Store, ruleset: RuleSet, rule: Rule, name: str, bound: float, start: datetime, end: datetime) -> list[Episode]:
    """The rule's backtest with its bound set to ``bound`` (the rest of the file unchanged, so inhibition applies as it would)."""
    changed = replace(rule, min_count=int(bound)) if name == "min_count" else replace(rule, value=bound)
    variant = replace(ruleset, rules=[changed if r.name == rule.name else r for r in ruleset.rules])
    return backtest(store, variant, start, end, [rule.name])


def _candidates(store: Store, rule: Rule, name: str, start: datetime, end: datetime) -> list[float]:
    """Round bounds across the values the rule measured, from the most sensitive to the strictest."""
    values = _measured(store, rule, start, end)
    if values.is_empty():
        return []
    low, high = float(values.min()), float(values.max())  # type: ignore[arg-type]
    whole = name == "min_count" or rule.metric in ("count", "clients")
    step = 1.0 if whole or rule.metric == "per_1k_sessions" else 0.01
    first = max(math.floor(low / step) * step, step if whole else 0.0)
    last = (math.floor(high / step) + 1) * step  # one step past the largest value: fires never (for >= and >)
    count = int(round((last - first) / step)) + 1
    if count > MAX_CANDIDATES:
        step *= math.ceil(count / MAX_CANDIDATES)
        count = int(round((last - first) / step)) + 1
    ceiling = {"rate": 1.0, "per_1k_sessions": 1000.0}.get(rule.metric, math.inf) if name == "value" else math.inf
    bounds = [bound for i in range(count) if (bound := round(first + i * step, 10)) <= ceiling]  # the file's limits
    if rule.op in ("<", "<="):  # smaller is stricter: from the largest down, ending below every value measured
        bounds = [b for b in reversed(bounds)] + [round(first - step, 10)]
        bounds = [b for b in bounds if b >= 0]
    return bounds


def _measured(store: Store, rule: Rule, start: datetime, end: datetime) -> pl.Series:
    """Every value the rule measured at an evaluation time in the range (held or not), the bound's frame of reference."""
    step = seconds_us(rule.every_s)
    full = Grid(ceil_to(to_us(start), step), floor_to(to_us(end), step), step)
    frames = []
    with store.connect(read_only=True) as con:
        for grid in full.chunks():
            frames.append(conditions(con, rule, grid, every_value=True).select("value"))
    return pl.concat(frames)["value"].drop_nulls() if frames else pl.Series("value", [], pl.Float64)


def _missed_detections(store: Store, rule: Rule, lost: list[Episode], end: datetime) -> list[dict[str, Any]]:
    """Stored detections that overlap a firing the new bound loses, for the same group (their key is a group value).

    A pattern rule's own pattern only: its other findings for the key are other rules' business.
    """
    if not lost:
        return []
    found: dict[str, dict[str, Any]] = {}
    with store.connect(read_only=True) as con:
        for episode in lost:
            values = [part.split("=", 1)[1] for part in episode.group.split(",") if "=" in part]
            rows = con.execute("""
                SELECT detection_id, pattern, key, window_start, window_end, count FROM detections
                WHERE window_end > $lo AND window_start <= $hi AND (len($keys) = 0 OR list_contains($keys, key))
                  AND ($pattern IS NULL OR pattern = $pattern)
                ORDER BY window_start
            """, {"lo": episode.fired_at, "hi": episode.resolved_at or end, "keys": values, "pattern": rule.pattern}).fetchall()
            for detection_id, pattern, key, ws, we, count in rows:
                found.setdefault(detection_id, {"pattern": pattern, "key": key, "window_start": ws.isoformat(),
                                                "window_end": we.isoformat(), "count": count, "rule": rule.name,
                                                "group": episode.group})
    return sorted(found.values(), key=lambda d: d["window_start"])


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _duration(seconds: float | None) -> str | None:
    return None if seconds is None else format_duration(round(seconds))
