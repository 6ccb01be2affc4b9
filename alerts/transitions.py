"""The state machine: one group walked through a range of evaluation times, given when its condition held.

    inactive ──condition──► pending ──held for `for`──► firing ──cleared──► resolved
        ▲                      │                           │                   │
        └──────cleared─────────┘                (repeat_interval)     condition: pending

Pure functions over ``GroupState``: no database, no clock. Live evaluation
and backtests share them, which is why a backtest shows what live
evaluation would have done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from closewatch.alerts.model import (
    FIRING, INACTIVE, NOTIFY_FIRING, NOTIFY_REPEAT, NOTIFY_RESOLVED, PENDING, RESOLVED, Grid, GroupState, Notice,
    Transition, seconds_us,
)
from closewatch.alerts.rules import Rule


#: For one group: a function of evaluation time saying what holds it back then (None: nothing), or None when nothing ever can.
HeldBack = Callable[[int], object] | None


def advance(rule: Rule, st: GroupState, ticks: list[int], values: list[float], extras: list[str | None],
            grid: Grid, silenced: bool, held_back: HeldBack = None) -> tuple[list[Transition], list[Notice]]:
    """Walk one group through the grid, given the times at which its condition held.

    The condition is false at every grid time not in ``ticks``. Only the true
    times and the first false time after each run of them matter, so the cost
    is the number of firing (time, group) pairs, not the grid's length.
    ``held_back`` (inhibition) mutes the group's firing and repeat
    notifications at the times it says; its states change as always, and a
    group still firing when it is let go notifies then, as after a silence.
    """
    transitions: list[Transition] = []
    notices: list[Notice] = []
    step = grid.step
    for_us, repeat_us = seconds_us(rule.for_s), seconds_us(rule.repeat_s)

    def move(to_state: str, at: int) -> None:
        transitions.append(Transition(st.group_key, at, st.state, to_state, st.value))
        st.state, st.dirty = to_state, True

    def notify(kind: str, at: int, extra: str | None) -> None:
        notices.append(Notice(rule.name, st.group_key, st.group_values, kind, at, st.value, st.fired_at,
                              st.resolved_at, extra))

    def cleared(at: int) -> None:
        if st.state == PENDING:
            move(INACTIVE, at)
            st.pending_since = None
        elif st.state == FIRING:
            st.resolved_at = at
            move(RESOLVED, at)
            if rule.resolve and st.notified_at is not None and not silenced:
                notify(NOTIFY_RESOLVED, at, None)

    def held(at: int, value: float, extra: str | None) -> None:
        st.value, st.last_true, st.dirty = value, at, True
        if st.state in (INACTIVE, RESOLVED):
            st.pending_since, st.fired_at, st.resolved_at, st.notified_at = at, None, None, None
            if for_us > 0:
                move(PENDING, at)
        since = st.pending_since if st.pending_since is not None else at  # set just above, or when it went pending
        if st.state in (INACTIVE, RESOLVED, PENDING) and at - since >= for_us:
            st.fired_at = at
            move(FIRING, at)
        if st.state == FIRING and not silenced and not (held_back is not None and held_back(at)):
            if st.notified_at is None:
                notify(NOTIFY_FIRING, at, extra)
                st.notified_at = at
            elif repeat_us > 0 and at - st.notified_at >= repeat_us:
                notify(NOTIFY_REPEAT, at, extra)
                st.notified_at = at

    def clears_at(previous: int | None) -> int:
        """The first time the condition has been clear long enough: the next step, or keep_firing_for later."""
        if previous is None:
            return grid.first
        hold = max(step, keep_us) if st.state == FIRING else step
        return max(previous + hold, grid.first)

    keep_us = seconds_us(rule.keep_firing_s)
    previous = st.last_true if st.state in (PENDING, FIRING) else None
    for at, value, extra in zip(ticks, values, extras, strict=True):
        if st.state in (PENDING, FIRING) and clears_at(previous) < at:
            cleared(clears_at(previous))
        held(at, value, extra)
        previous = at
    if st.state in (PENDING, FIRING) and clears_at(previous) <= grid.last:
        cleared(clears_at(previous))
    return transitions, notices


def walk(rule: Rule, cond: pl.DataFrame, states: dict[str, GroupState], grid: Grid,
          silenced_keys: set[str], held_back: Callable[[dict[str, Any]], HeldBack] | None = None
          ) -> tuple[list[Transition], list[Notice]]:
    """Run the state machine for every group that holds somewhere in the grid or was active before it.

    ``held_back`` gives, from a group's values, what holds it back when
    (``Inhibitor.check``); None: nothing holds this rule back.
    """
    transitions: list[Transition] = []
    notices: list[Notice] = []
    touched: set[str] = set()
    if cond.height:
        group_columns = list(rule.group_by)
        for (key,), part in cond.partition_by("group_key", as_dict=True, maintain_order=True).items():
            st = states.get(key)
            if st is None:
                row = part.row(0, named=True)
                st = states[key] = GroupState(key, {c: row.get(c) for c in group_columns})
            t, n = advance(rule, st, part["tick"].to_list(), part["value"].to_list(), part["extra"].to_list(),
                           grid, key in silenced_keys, held_back(st.group_values) if held_back else None)
            transitions += t
            notices += n
            touched.add(key)
    for key, st in states.items():
        if key not in touched and st.state in (PENDING, FIRING):
            t, n = advance(rule, st, [], [], [], grid, key in silenced_keys, held_back(st.group_values) if held_back else None)
            transitions += t
            notices += n
    return transitions, notices
