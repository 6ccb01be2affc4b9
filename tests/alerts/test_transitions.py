"""The state machine as a pure function: pending, firing, resolved, repeats, keep_firing_for, silences, any cut of the grid."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from closewatch.alerts.model import Grid, GroupState
from closewatch.alerts.rules import Rule
from closewatch.alerts.transitions import advance
from tests.alerts.helpers import MINUTE


def walk(true_minutes, last_minute, *, state=None, silenced=False, first_minute=0, **fields):
    rule = Rule(name="r", kind="threshold", every_s=60, window_s=60, **fields)
    st = state or GroupState("g", {})
    grid = Grid(first_minute * MINUTE, last_minute * MINUTE, MINUTE)
    ticks = [m * MINUTE for m in sorted(true_minutes) if first_minute <= m <= last_minute]
    transitions, notices = advance(rule, st, ticks, [1.0] * len(ticks), [None] * len(ticks), grid, silenced)
    return ([(t.at // MINUTE, t.to_state) for t in transitions], [(n.at // MINUTE, n.kind) for n in notices], st)


def test_pending_that_clears_before_for_goes_back_to_inactive_silently():
    moves, notes, st = walk([0, 1], 5, for_s=120, resolve=True)
    assert moves == [(0, "pending"), (2, "inactive")] and notes == [] and st.state == "inactive"


def test_pending_fires_after_for_and_resolves_when_the_condition_clears():
    moves, notes, st = walk(range(0, 6), 8, for_s=120, resolve=True)
    assert moves == [(0, "pending"), (2, "firing"), (6, "resolved")]
    assert notes == [(2, "firing"), (6, "resolved")]
    assert (st.state, st.fired_at, st.resolved_at) == ("resolved", 2 * MINUTE, 6 * MINUTE)


def test_without_for_a_group_fires_at_once_and_notifies_once_without_repeat():
    moves, notes, _ = walk(range(0, 10), 12, resolve=False)
    assert moves == [(0, "firing"), (10, "resolved")] and notes == [(0, "firing")]


def test_repeat_interval_renotifies_while_firing():
    _, notes, _ = walk(range(0, 10), 12, repeat_s=180, resolve=True)
    assert notes == [(0, "firing"), (3, "repeat"), (6, "repeat"), (9, "repeat"), (10, "resolved")]


def test_keep_firing_for_bridges_short_gaps():
    moves, notes, _ = walk([0, 1, 2, 4, 5], 12, keep_firing_s=180, resolve=True)
    assert moves == [(0, "firing"), (8, "resolved")] and notes == [(0, "firing"), (8, "resolved")]
    moves, _, _ = walk([0, 1, 2, 7], 12, keep_firing_s=180)
    assert moves == [(0, "firing"), (5, "resolved"), (7, "firing"), (10, "resolved")]


def test_silenced_groups_change_state_but_send_nothing():
    moves, notes, st = walk(range(0, 4), 6, silenced=True, resolve=True, repeat_s=60)
    assert moves == [(0, "firing"), (4, "resolved")] and notes == [] and st.notified_at is None


def test_a_firing_that_was_silenced_notifies_when_the_silence_ends():
    _, notes, st = walk(range(0, 4), 3, silenced=True, resolve=True)
    assert notes == [] and st.state == "firing"
    _, notes, st = walk(range(4, 8), 9, state=st, first_minute=4, resolve=True)
    assert notes == [(4, "firing"), (8, "resolved")]


@settings(max_examples=200, deadline=None)
@given(
    true=st.sets(st.integers(0, 40)),
    split=st.integers(1, 40),
    for_m=st.integers(0, 4),
    keep_m=st.integers(0, 4),
    repeat_m=st.integers(0, 6),
)
def test_evaluating_in_two_runs_equals_evaluating_in_one(true, split, for_m, keep_m, repeat_m):
    """The watermark may cut the grid anywhere: the result must not depend on where."""
    fields = dict(for_s=60 * for_m, keep_firing_s=60 * keep_m, repeat_s=60 * repeat_m, resolve=True)
    once = walk(true, 40, **fields)
    moves1, notes1, st = walk(true, split - 1, **fields)
    moves2, notes2, st = walk(true, 40, state=st, first_minute=split, **fields)
    assert (moves1 + moves2, notes1 + notes2) == once[:2]
