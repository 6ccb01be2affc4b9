"""Backtests: replay a range of stored history through the same conditions and state machine; send and write nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from closewatch.alerts.conditions import conditions
from closewatch.alerts.errors import AlertError
from closewatch.alerts.inhibition import Firing, Inhibitor, firings_from_transitions, sources_first, sources_of
from closewatch.alerts.model import (
    FIRING, INACTIVE, PENDING, RESOLVED, Grid, GroupState, Notice, Transition, ceil_to, floor_to, from_us, seconds_us,
    to_us,
)
from closewatch.alerts.rules import Rule, RuleSet
from closewatch.alerts.transitions import walk
from closewatch.store import Store


@dataclass(frozen=True)
class Episode:
    """One firing a rule would have had: when it went pending, fired, and resolved (None: still firing)."""

    rule: str
    group: str
    pending_at: datetime | None
    fired_at: datetime
    resolved_at: datetime | None
    peak_value: float | None
    notifications: int

    def as_dict(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {"rule": self.rule, "group": self.group, "pending_at": iso(self.pending_at), "fired_at": iso(self.fired_at),
                "resolved_at": iso(self.resolved_at), "peak_value": self.peak_value, "notifications": self.notifications}


def backtest(store: Store, ruleset: RuleSet, start: datetime, end: datetime, rules: list[str] | None = None) -> list[Episode]:
    """Replay [start, end] through the same conditions and state machine; sends and writes nothing."""
    if end <= start:
        raise AlertError("The backtest range is empty: --to must be after --from.")
    chosen = [r for r in ruleset.enabled if rules is None or r.name in rules]
    if rules:
        unknown = set(rules) - {r.name for r in ruleset.rules}
        if unknown:
            raise AlertError(f"No rule named {', '.join(sorted(unknown))} in {ruleset.path}; check the name.")
    names = {rule.name for rule in chosen}
    replayed = names | sources_of(ruleset, names)  # the rules whose firings hold back a chosen one are replayed too
    episodes: list[Episode] = []
    firings: list[Firing] = []
    with store.connect(read_only=True) as con:
        for rule in sources_first([r for r in ruleset.enabled if r.name in replayed], ruleset.inhibit):
            found, fired = _backtest_rule(con, rule, start, end, Inhibitor(ruleset, firings))
            firings += fired
            episodes += found if rule.name in names else []
    return sorted(episodes, key=lambda e: (e.fired_at, e.rule, e.group))


def _backtest_rule(con: duckdb.DuckDBPyConnection, rule: Rule, start: datetime, end: datetime,
                   inhibitor: Inhibitor | None = None) -> tuple[list[Episode], list[Firing]]:
    """One rule's episodes over the range, and its firings (for the rules it holds back), held back by ``inhibitor``."""
    step = seconds_us(rule.every_s)
    full = Grid(ceil_to(to_us(start), step), floor_to(to_us(end), step), step)
    states: dict[str, GroupState] = {}
    transitions: list[Transition] = []
    notices: list[Notice] = []
    held: list[pl.DataFrame] = []
    for grid in full.chunks():
        cond = conditions(con, rule, grid)
        found, sent = walk(rule, cond, states, grid, set(), _checker(inhibitor, rule))
        transitions += found
        notices += sent
        held.append(cond.select("tick", "group_key", "value"))
    values = {key: st.group_values for key, st in states.items()}
    return _episodes(rule, transitions, notices, pl.concat(held) if held else None), firings_from_transitions(rule, transitions, values)


def _checker(inhibitor: Inhibitor | None, rule: Rule):
    """``walk``'s held_back for a rule some [[inhibit]] entry targets (None for the others: no cost)."""
    if inhibitor is None or not any(rule.name in entry.target for entry in inhibitor.entries):
        return None
    return lambda values: inhibitor.check(rule, values)


def _episodes(rule: Rule, transitions: list[Transition], notices: list[Notice], held: pl.DataFrame | None) -> list[Episode]:
    """Pair each firing with its resolution; count its notifications and find its peak value."""
    pending: dict[str, int] = {}
    open_: dict[str, tuple[int | None, int]] = {}
    spans: list[tuple[str, int | None, int, int | None]] = []
    for t in transitions:
        if t.to_state == PENDING:
            pending[t.group_key] = t.at
        elif t.to_state == INACTIVE:
            pending.pop(t.group_key, None)
        elif t.to_state == FIRING:
            open_[t.group_key] = (pending.pop(t.group_key, None), t.at)
        elif t.to_state == RESOLVED and t.group_key in open_:
            spans.append((t.group_key, *open_.pop(t.group_key), t.at))
    spans += [(key, pending_at, fired_at, None) for key, (pending_at, fired_at) in open_.items()]
    episodes = []
    for key, pending_at, fired_at, resolved_at in spans:
        until = resolved_at if resolved_at is not None else 2**62
        count = sum(1 for n in notices if n.group_key == key and fired_at <= n.at <= until)
        peak: float | None = None
        if held is not None and held.height:
            values = held.filter((pl.col("group_key") == key) & pl.col("tick").is_between(fired_at, until, closed="left"))["value"]
            top = values.max() if values.len() else None
            peak = float(top) if isinstance(top, (int, float)) else None
        episodes.append(Episode(rule.name, key, from_us(pending_at) if pending_at is not None else None, from_us(fired_at),
                                from_us(resolved_at) if resolved_at is not None else None, peak, count))
    return episodes
