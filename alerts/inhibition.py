"""Inhibition: while a group of one rule fires, matching groups of other rules change state but do not notify.

As Alertmanager's ``inhibit_rules``: an ``[[inhibit]]`` entry of the rules
file names a ``source`` rule (and ``source_match`` matchers on its groups),
the ``target`` rules it holds back (and ``target_match``), and the labels
whose values must be ``equal`` in the source group and the target group.
The shipped default: a platform-wide surge of one category holds back the
per-client alerts for that category, so one outage pages once.

A group's *labels* are what matchers and ``equal`` read, from the most
general to the most specific: the rule's ``labels`` table, its ``where``
filters (a label with several values: a rule watching network drops and
server errors carries ``category`` = both), its ``group_by`` values, and
``rule``, the rule's name. A matcher or an ``equal`` label holds when the
two sides share a value; a label missing on either side does not hold, so
an entry never holds back a group it cannot be shown to cover.

Time: a target group is held back at evaluation time t when a matching
source group was firing at t: from its ``firing`` transition up to (not
including) the transition that ended it. Sources are evaluated before their
targets (``sources_first``), so live evaluation reads the source's
transitions from the store in the same run; where the source has not been
evaluated yet (its watermark is behind), nothing is held back, so a page is
never lost to a rule that did not run. Backtests pass the firings of their
own replay.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from closewatch.alerts.rules import Inhibit, Rule, RuleSet

Labels = dict[str, frozenset[str]]
FIRING = "firing"
#: Source groups named in a status line or message at most (the rest are counted).
MAX_NAMED = 20


def group_labels(rule: Rule, group_values: dict[str, Any]) -> Labels:
    """The labels of one group of a rule: rule labels, then where filters, then group values, then the rule's name."""
    labels: dict[str, frozenset[str]] = {key: frozenset([value]) for key, value in rule.labels.items()}
    labels.update({key: frozenset(str(v) for v in values) for key, values in rule.where.items()})
    labels.update({key: frozenset([str(value)]) for key, value in group_values.items() if value is not None})
    labels["rule"] = frozenset([rule.name])
    return labels


def matches(matchers: dict[str, tuple[str, ...]], labels: Labels) -> bool:
    """Every matcher's label is present and shares a value with the matcher's values."""
    return all(labels.get(key, frozenset()) & set(values) for key, values in matchers.items())


def equal(names: Iterable[str], source: Labels, target: Labels) -> bool:
    """Every ``equal`` label is present on both sides with a value in common."""
    return all(source.get(name, frozenset()) & target.get(name, frozenset()) for name in names)


@dataclass(frozen=True)
class Firing:
    """One firing of a source group: from ``start`` up to ``end`` (exclusive; None: still firing), microseconds."""

    rule: str
    group_key: str
    labels: Labels
    start: int
    end: int | None

    def covers(self, at: int, known_until: int | None) -> bool:
        """Firing at ``at``, as far as the source has been evaluated (``known_until``: its watermark)."""
        if at < self.start or (known_until is not None and at > known_until):
            return False
        return self.end is None or at < self.end

    def describe(self) -> str:
        return f"{self.rule} ({self.group_key})" if self.group_key else self.rule


def sources_first(rules: list[Rule], entries: list[Inhibit]) -> list[Rule]:
    """The rules in file order, except that every source comes before the rules it holds back (the file has no cycles)."""
    targets_of: dict[str, set[str]] = {}
    for entry in entries:
        targets_of.setdefault(entry.source, set()).update(entry.target)
    sources_of: dict[str, set[str]] = {}
    for source, targets in targets_of.items():
        for target in targets:
            sources_of.setdefault(target, set()).add(source)
    ordered: list[Rule] = []
    placed: set[str] = set()
    by_name = {rule.name: rule for rule in rules}

    def place(rule: Rule) -> None:
        if rule.name in placed:
            return
        placed.add(rule.name)
        for source in sorted(sources_of.get(rule.name, ())):
            if source in by_name:
                place(by_name[source])
        ordered.append(rule)

    for rule in rules:
        place(rule)
    return ordered


def sources_of(ruleset: RuleSet, names: Iterable[str]) -> set[str]:
    """Every rule whose firing can hold back one of ``names`` (directly or through other sources)."""
    wanted, todo = set(), list(names)
    while todo:
        name = todo.pop()
        for entry in ruleset.inhibit:
            if name in entry.target and entry.source not in wanted:
                wanted.add(entry.source)
                todo.append(entry.source)
    return wanted


class Inhibitor:
    """Which firings of source rules hold back which groups of target rules, and when."""

    def __init__(self, ruleset: RuleSet, firings: Iterable[Firing], known_until: dict[str, int | None] | None = None):
        self.entries = ruleset.inhibit
        self.rules = {rule.name: rule for rule in ruleset.rules}
        self.firings: dict[str, list[Firing]] = {}
        for firing in firings:
            self.firings.setdefault(firing.rule, []).append(firing)
        self.known_until = known_until or {}

    def holders(self, rule: Rule, group_values: dict[str, Any]) -> list[Firing]:
        """The source firings that would hold back this group whenever they fire (empty: nothing can)."""
        entries = [e for e in self.entries if rule.name in e.target]
        if not entries:
            return []
        target = group_labels(rule, group_values)
        found = []
        for entry in entries:
            if not matches(entry.target_match, target):
                continue
            found += [f for f in self.firings.get(entry.source, [])
                      if matches(entry.source_match, f.labels) and equal(entry.equal, f.labels, target)]
        return found

    def check(self, rule: Rule, group_values: dict[str, Any]) -> Callable[[int], Firing | None] | None:
        """A function of evaluation time giving the firing that holds this group back then; None when nothing ever can."""
        holders = self.holders(rule, group_values)
        if not holders:
            return None

        def holding(at: int) -> Firing | None:
            return next((f for f in holders if f.covers(at, self.known_until.get(f.rule))), None)

        return holding


# -- firings from transitions (backtests) and from the store (live evaluation) ------------------


def firings_from_transitions(rule: Rule, transitions: Iterable[Any], group_values: dict[str, dict[str, Any]]) -> list[Firing]:
    """A replay's firings of one rule, from its transitions (objects with group_key, at, to_state) in time order."""
    opened: dict[str, int] = {}
    out = []
    for t in sorted(transitions, key=lambda t: t.at):
        if t.to_state == FIRING:
            opened.setdefault(t.group_key, t.at)
        elif t.group_key in opened:
            start = opened.pop(t.group_key)
            out.append(Firing(rule.name, t.group_key, group_labels(rule, group_values.get(t.group_key, {})), start, t.at))
    out += [Firing(rule.name, key, group_labels(rule, group_values.get(key, {})), start, None) for key, start in opened.items()]
    return out


def stored_firings(con: duckdb.DuckDBPyConnection, ruleset: RuleSet, sources: Iterable[str], lo: int, hi: int
                   ) -> tuple[list[Firing], dict[str, int | None]]:
    """The firings of ``sources`` that overlap (lo, hi], from alert_events and alert_state, and each source's watermark.

    Reads the transitions inside the range and, for each group, the last one
    before it (a firing may have started long before), so the cost follows
    the range, not the history.
    """
    firings: list[Firing] = []
    known: dict[str, int | None] = {}
    for name in sorted(set(sources)):
        rule = ruleset.rule(name)
        if rule is None:
            continue
        row = con.execute("SELECT epoch_us(evaluated_to) FROM alert_watermarks WHERE rule = ?", [name]).fetchone()
        known[name] = row[0] if row else None
        if row is None:
            continue
        events = con.execute("""
            WITH e AS (SELECT group_key, to_state, epoch_us(event_time) AS t FROM alert_events WHERE rule = $rule)
            SELECT * FROM e WHERE t > $lo AND t <= $hi
            UNION ALL
            (SELECT * FROM e WHERE t <= $lo QUALIFY row_number() OVER (PARTITION BY group_key ORDER BY t DESC) = 1)
            ORDER BY t
        """, {"rule": name, "lo": lo, "hi": hi}).fetchall()
        values = {key: json.loads(text or "{}") for key, text in con.execute(
            "SELECT group_key, group_values FROM alert_state WHERE rule = ?", [name]).fetchall()}
        firings += firings_from_transitions(rule, [_Event(*event) for event in events], values)
    return firings, known


@dataclass(frozen=True)
class _Event:
    group_key: str
    to_state: str
    at: int


def held_back_now(con: duckdb.DuckDBPyConnection, ruleset: RuleSet, states: pl.DataFrame) -> pl.DataFrame:
    """``states`` (rule, group, state, ...) with ``inhibited_by``: the source groups firing now that hold each back.

    For `closewatch alerts status` and the dashboard: a held-back group is
    pending or firing like any other, and shows here why it did not notify.
    """
    if not ruleset.inhibit or states.is_empty():
        return states.with_columns(pl.lit(None, pl.String).alias("inhibited_by"))
    sources = {entry.source for entry in ruleset.inhibit}
    firing: list[Firing] = []
    rows = con.execute("SELECT rule, group_key, group_values FROM alert_state WHERE state = 'firing' AND list_contains($s, rule)",
                       {"s": sorted(sources)}).fetchall()
    for name, key, values in rows:
        rule = ruleset.rule(name)
        if rule is not None:
            firing.append(Firing(name, key, group_labels(rule, json.loads(values or "{}")), 0, None))
    inhibitor = Inhibitor(ruleset, firing)
    group_values = dict(((r, k), json.loads(v or "{}")) for r, k, v in con.execute(
        "SELECT rule, group_key, group_values FROM alert_state").fetchall())
    held = []
    for row in states.iter_rows(named=True):
        rule = ruleset.rule(row["rule"])
        holders = inhibitor.holders(rule, group_values.get((row["rule"], row["group"]), {})) if rule else []
        active = row["state"] in ("pending", "firing")
        held.append(", ".join(f.describe() for f in holders[:MAX_NAMED]) if holders and active else None)
    return states.with_columns(pl.Series("inhibited_by", held, dtype=pl.String))
