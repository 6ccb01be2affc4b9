"""What a rule change would have done: two rule sets backtested over the same history, firing by firing.

Both sets go through ``backtest`` (the live conditions and state machine, in
memory, nothing written or sent). The firings of a rule and group are then
paired in time order: an old and a new firing that overlap are the same
incident (``same`` when they fired and resolved at the same times, else
``moved``); a firing that overlaps nothing of the other set is ``only_old``
(the change loses it) or ``only_new`` (the change adds it). Rules are
matched by name; a rule in one set only has only that set's firings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from closewatch.alerts.backtest import Episode, backtest
from closewatch.alerts.errors import AlertError
from closewatch.alerts.rules import RuleSet
from closewatch.store import Store

ONLY_OLD, ONLY_NEW, SAME, MOVED = "only_old", "only_new", "same", "moved"
WEEK_S = 7 * 86400.0


@dataclass(frozen=True)
class Change:
    """One firing of either set, paired with its counterpart in the other set when there is one."""

    rule: str
    group: str
    change: str
    old: Episode | None
    new: Episode | None

    def as_dict(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {"rule": self.rule, "group": self.group, "change": self.change,
                "old_fired_at": iso(self.old.fired_at if self.old else None),
                "new_fired_at": iso(self.new.fired_at if self.new else None),
                "old_resolved_at": iso(self.old.resolved_at if self.old else None),
                "new_resolved_at": iso(self.new.resolved_at if self.new else None),
                "old_notifications": self.old.notifications if self.old else 0,
                "new_notifications": self.new.notifications if self.new else 0}


@dataclass
class RuleSummary:
    """Per rule: the firings by change, notifications per week and time spent firing, before and after."""

    rule: str
    counts: dict[str, int] = field(default_factory=lambda: {ONLY_OLD: 0, ONLY_NEW: 0, SAME: 0, MOVED: 0})
    old_notifications_per_week: float = 0.0
    new_notifications_per_week: float = 0.0
    old_firing_s: float = 0.0
    new_firing_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, **self.counts,
                "old_notifications_per_week": round(self.old_notifications_per_week, 2),
                "new_notifications_per_week": round(self.new_notifications_per_week, 2),
                "old_firing_s": self.old_firing_s, "new_firing_s": self.new_firing_s}


@dataclass
class Comparison:
    """Everything a compare found: the paired firings, the per-rule summary, and both sets' firings for drawing."""

    start: datetime
    end: datetime
    changes: list[Change]
    summary: list[RuleSummary]
    old: list[Episode]
    new: list[Episode]


def compare(store: Store, new: RuleSet, old: RuleSet, start: datetime, end: datetime,
            rules: list[str] | None = None) -> Comparison:
    """Backtest ``old`` and ``new`` over [start, end] and pair their firings per rule and group."""
    if rules:
        unknown = set(rules) - {r.name for r in new.rules} - {r.name for r in old.rules}
        if unknown:
            raise AlertError(f"No rule named {', '.join(sorted(unknown))} in {new.path} or {old.path}; check the name.")
    old_episodes = backtest(store, old, start, end, _known(old, rules))
    new_episodes = backtest(store, new, start, end, _known(new, rules))
    changes = pair(old_episodes, new_episodes, end)
    return Comparison(start, end, changes, summarize(changes, old_episodes, new_episodes, start, end), old_episodes, new_episodes)


def _known(ruleset: RuleSet, rules: list[str] | None) -> list[str] | None:
    """The asked rules this set has (an empty list when it has none of them: it then fires nothing)."""
    if rules is None:
        return None
    names = {r.name for r in ruleset.rules}
    return [name for name in rules if name in names]


def pair(old: list[Episode], new: list[Episode], end: datetime) -> list[Change]:
    """Pair overlapping firings of the same rule and group, in time order; the rest are only in one set."""
    changes: list[Change] = []
    keys = sorted({(e.rule, e.group) for e in old} | {(e.rule, e.group) for e in new})
    for rule, group in keys:
        olds = sorted((e for e in old if (e.rule, e.group) == (rule, group)), key=lambda e: e.fired_at)
        news = sorted((e for e in new if (e.rule, e.group) == (rule, group)), key=lambda e: e.fired_at)
        i = j = 0
        while i < len(olds) and j < len(news):
            a, b = olds[i], news[j]
            if _overlap(a, b, end):
                same = a.fired_at == b.fired_at and a.resolved_at == b.resolved_at
                changes.append(Change(rule, group, SAME if same else MOVED, a, b))
                i, j = i + 1, j + 1
            elif a.fired_at < b.fired_at:
                changes.append(Change(rule, group, ONLY_OLD, a, None))
                i += 1
            else:
                changes.append(Change(rule, group, ONLY_NEW, None, b))
                j += 1
        changes += [Change(rule, group, ONLY_OLD, a, None) for a in olds[i:]]
        changes += [Change(rule, group, ONLY_NEW, None, b) for b in news[j:]]
    return sorted(changes, key=lambda c: (_first(c), c.rule, c.group))


def _overlap(a: Episode, b: Episode, end: datetime) -> bool:
    return a.fired_at <= (b.resolved_at or end) and b.fired_at <= (a.resolved_at or end)


def _first(change: Change) -> datetime:
    times = [e.fired_at for e in (change.old, change.new) if e is not None]
    return min(times)


def summarize(changes: list[Change], old: list[Episode], new: list[Episode], start: datetime, end: datetime) -> list[RuleSummary]:
    """Per rule: firings by change, notifications per week and seconds firing, before (old) and after (new)."""
    weeks = max((end - start).total_seconds(), 1.0) / WEEK_S
    summary: dict[str, RuleSummary] = {}
    for change in changes:
        summary.setdefault(change.rule, RuleSummary(change.rule)).counts[change.change] += 1
    for episodes, side in ((old, "old"), (new, "new")):
        for e in episodes:
            row = summary.setdefault(e.rule, RuleSummary(e.rule))
            firing = ((e.resolved_at or end) - e.fired_at).total_seconds()
            if side == "old":
                row.old_notifications_per_week += e.notifications / weeks
                row.old_firing_s += firing
            else:
                row.new_notifications_per_week += e.notifications / weeks
                row.new_firing_s += firing
    return [summary[name] for name in sorted(summary)]
