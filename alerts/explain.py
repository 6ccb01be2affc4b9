"""Why a rule fired, or did not: each evaluation time replayed from the stored closures with the live code.

``explain`` runs ``conditions`` (with ``every_value``: the numbers of the
groups that did not hold too) and the state machine's ``advance`` over the
asked range, one evaluation time at a time, after a warm-up replay that
rebuilds each group's state (pending since, fired at, notified at) the way
live evaluation would have. Calling ``advance`` per time gives the same
states as one call over the range (the watermark may cut the grid anywhere;
tests/alerts/test_transitions.py checks it), and lets each row say what the
state was before and after that time.

Silences are matched to evaluation times by their wall-clock span (created
until expired or ended): live evaluation applies the silences active when it
runs, which for logs that arrive as they happen is the same time.
Inhibition ([[inhibit]]) is read as live evaluation reads it: from the
source rules' stored transitions, up to their watermarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import polars as pl

from closewatch.alerts.conditions import conditions, where_sql
from closewatch.alerts.errors import AlertError
from closewatch.alerts.inhibition import Firing, Inhibitor, stored_firings
from closewatch.alerts.messages import traffic_detail
from closewatch.alerts.model import (
    FIRING, INACTIVE, MAX_TICKS, PENDING, RESOLVED, Grid, GroupState, Notice, Transition, ceil_to, floor_to, from_us,
    seconds_us, to_us,
)
from closewatch.alerts.rules import Rule, RuleSet, format_duration
from closewatch.alerts.silences import group_matches
from closewatch.alerts.transitions import advance
from closewatch.store import Store

#: The warm-up replay before the first explained time is at least this long (it rebuilds pending, firing, notified).
MIN_WARMUP_S = 86400.0
#: ... and at most this long (a replay costs about a second per day of a busy rule).
MAX_WARMUP_S = 31 * 86400.0
#: Rows at one time, without --group, when nothing happens: the groups nearest to their bound.
QUIET_GROUPS = 10
#: Rows that get a sample of the closures counted, and closures per sample.
SAMPLED_ROWS, SAMPLE_SIZE = 50, 5


@dataclass(frozen=True)
class SilenceSpan:
    """A silence as explanations use it: which rule and groups, from when until when (microseconds)."""

    silence_id: str
    rule: str
    group: str | None
    start: int
    end: int
    comment: str

    def covers(self, rule: str, group_key: str, at: int) -> bool:
        return self.rule == rule and self.start <= at < self.end and group_matches(self.group, group_key)


@dataclass
class Step:
    """One evaluation time of one group: what was measured, what the state machine did, and why."""

    eval_time: datetime
    rule: str
    group: str
    value: float | None
    bound: float | None
    holds: bool
    state_before: str
    state_after: str
    outcome: str  # quiet | pending | fired | firing | kept_firing | cleared | resolved
    reason: str
    notified: bool
    silence: str | None = None
    sample: list[dict[str, Any]] = field(default_factory=list)
    inhibited_by: str | None = None  # the firing source group that held this group back ([[inhibit]])

    def as_dict(self) -> dict[str, Any]:
        return {"eval_time": self.eval_time.isoformat(), "rule": self.rule, "group": self.group, "value": self.value,
                "bound": self.bound, "holds": self.holds, "state_before": self.state_before,
                "state_after": self.state_after, "outcome": self.outcome, "reason": self.reason,
                "notified": self.notified, "silence": self.silence, "inhibited_by": self.inhibited_by,
                "sample": self.sample}


@dataclass
class Explanation:
    """The rows of one explanation and what the reader should know about how they were computed."""

    rule: str
    steps: list[Step]
    replayed_from: datetime
    notes: list[str] = field(default_factory=list)


def explain(store: Store, ruleset: RuleSet, rule_name: str, start: datetime, end: datetime | None = None,
            group: str | None = None, warmup_s: float | None = None) -> Explanation:
    """Explain ``rule_name`` at every evaluation time in [start, end] (one time: ``end`` None), for one group or all.

    Reads only (a read-only connection); sends and writes nothing.
    """
    rule = ruleset.rule(rule_name)
    if rule is None:
        names = ", ".join(r.name for r in ruleset.rules)
        raise AlertError(f"No rule named '{rule_name}' in {ruleset.path} (rules: {names}); check the name.")
    report = _report_grid(rule, start, end)
    warmup = warmup_s if warmup_s is not None else warmup_for(rule)
    if not 0 <= warmup <= MAX_WARMUP_S:
        raise AlertError(f"A warm-up of {format_duration(warmup)} is out of range: give 0s to {format_duration(MAX_WARMUP_S)}.")
    warm = floor_to(report.first - seconds_us(warmup), report.step)
    with store.connect(read_only=True) as con:
        replay = _Replay(rule, group, _silences(con, rule.name), single=end is None,
                         inhibitor=_inhibitor(con, ruleset, rule, warm, report.last))
        if warm < report.first:
            for chunk in Grid(warm, report.first - report.step, report.step).chunks():
                replay.run(con, chunk, report=False)
        for chunk in report.chunks():
            replay.run(con, chunk, report=True)
        steps = replay.steps
        for step in [s for s in steps if s.holds or s.outcome != "quiet" or end is None][:SAMPLED_ROWS]:
            step.sample = closures_counted(con, rule, step.group, to_us(step.eval_time))
    notes = []
    if replay.held_at_start:
        notes.append(f"{', '.join(sorted(replay.held_at_start)[:5])} already held at the start of the warm-up "
                     f"({from_us(warm):%Y-%m-%d %H:%M} UTC): pending, fired and notified times before it are not known; "
                     f"a longer --warmup tells more.")
    return Explanation(rule.name, steps, from_us(warm), notes)


def _inhibitor(con: duckdb.DuckDBPyConnection, ruleset: RuleSet, rule: Rule, first: int, last: int) -> Inhibitor | None:
    """The stored firings of the rules that can hold this one back, as live evaluation read them; None if none can."""
    sources = {entry.source for entry in ruleset.inhibit if rule.name in entry.target}
    if not sources:
        return None
    firings, known = stored_firings(con, ruleset, sources, first, last)
    return Inhibitor(ruleset, firings, known)


def warmup_for(rule: Rule) -> float:
    """How far before the first explained time the replay starts: long enough to rebuild for, keep_firing_for, repeats."""
    return min(MAX_WARMUP_S, max(MIN_WARMUP_S, 2 * (rule.window_s + rule.for_s + rule.keep_firing_s + rule.repeat_s)))


def _report_grid(rule: Rule, start: datetime, end: datetime | None) -> Grid:
    """The evaluation times to explain: the last one at or before ``start`` alone, or those in [start, end]."""
    step = seconds_us(rule.every_s)
    if end is None:
        at = floor_to(to_us(start), step)
        return Grid(at, at, step)
    if end < start:
        raise AlertError("The range to explain is empty: --to must not be before --from.")
    grid = Grid(ceil_to(to_us(start), step), floor_to(to_us(end), step), step)
    if len(grid) == 0:
        return Grid(grid.last, grid.last, step)
    if len(grid) > MAX_TICKS:
        raise AlertError(f"{len(grid)} evaluation times is too many to explain at once (at most {MAX_TICKS}, "
                         f"{format_duration(MAX_TICKS * rule.every_s)} of this rule); narrow --from/--to or pick --group.")
    return grid


def _silences(con: duckdb.DuckDBPyConnection, rule: str) -> list[SilenceSpan]:
    rows = con.execute("""
        SELECT silence_id, rule, group_match, epoch_us(created_at), epoch_us(least(expires_at, coalesce(ended_at, expires_at))),
               coalesce(comment, '')
        FROM alert_silences WHERE rule = ?
    """, [rule]).fetchall()
    return [SilenceSpan(*row) for row in rows]


class _Replay:
    """The states of every group of one rule, advanced one evaluation time at a time, and the rows it explains."""

    def __init__(self, rule: Rule, group: str | None, silences: list[SilenceSpan], single: bool,
                 inhibitor: Inhibitor | None = None):
        self.rule, self.group, self.silences, self.single = rule, group, silences, single
        self.inhibitor = inhibitor
        self.states: dict[str, GroupState] = {}
        self.steps: list[Step] = []
        self.held_at_start: set[str] = set()
        self.started = False

    def run(self, con: duckdb.DuckDBPyConnection, grid: Grid, report: bool) -> None:
        frame = conditions(con, self.rule, grid, every_value=report)
        if self.group is not None and frame.height:
            keys = [k for k in frame["group_key"].unique().to_list() if group_matches(self.group, k)]
            frame = frame.filter(pl.col("group_key").is_in(keys))
        by_tick: dict[int, list[dict[str, Any]]] = {}
        for row in frame.iter_rows(named=True):
            by_tick.setdefault(row["tick"], []).append(row)
        for tick in range(grid.first, grid.last + 1, grid.step):
            rows = by_tick.get(tick, [])
            if not self.started:
                self.held_at_start = {r["group_key"] for r in rows if r.get("holds", True)}
                self.started = True
            self._tick(tick, grid.step, rows, report)

    def _tick(self, tick: int, step: int, rows: list[dict[str, Any]], report: bool) -> None:
        measured = {row["group_key"]: row for row in rows}
        active = [key for key, st in self.states.items() if st.state in (PENDING, FIRING) and key not in measured]
        found: list[Step] = []
        for key in list(measured) + active:
            row = measured.get(key)
            holds = bool(row is not None and row.get("holds", True))
            st = self.states.get(key)
            if st is None:
                if not holds and not report:
                    continue
                st = GroupState(key, {c: row.get(c) for c in self.rule.group_by} if row else {})
                if holds:
                    self.states[key] = st
            before = st.state
            silence = next((s for s in self.silences if s.covers(self.rule.name, key, tick)), None)
            value = row["value"] if row is not None else None
            extra = row["extra"] if row is not None else None
            check = self.inhibitor.check(self.rule, st.group_values) if self.inhibitor else None
            holder = check(tick) if check else None
            transitions, notices = advance(self.rule, st, [tick] if holds else [], [value or 0.0] if holds else [],
                                           [extra] if holds else [], Grid(tick, tick, step), silence is not None, check)
            if report:
                found.append(_step(self.rule, tick, key, row, holds, before, st, transitions, notices, silence, holder))
        if report:
            self.steps += self._chosen(tick, found)

    def _chosen(self, tick: int, found: list[Step]) -> list[Step]:
        """Every row that says something; quiet rows only for the asked group, or (one time) the nearest few."""
        if self.group is not None:
            if not found:
                key = group_key_of(self.rule, self.group, self.states)
                return [_unmeasured(self.rule, tick, key, self.states.get(key))]
            return found
        loud = [s for s in found if s.outcome != "quiet"]
        if not self.single:
            return loud
        quiet = sorted((s for s in found if s.outcome == "quiet"), key=lambda s: -(s.value or 0.0))[:QUIET_GROUPS]
        rows = loud + quiet
        return rows or [_unmeasured(self.rule, tick, "", None)]


def _step(rule: Rule, tick: int, key: str, row: dict[str, Any] | None, holds: bool, before: str, st: GroupState,
          transitions: list[Transition], notices: list[Notice], silence: SilenceSpan | None,
          holder: Firing | None = None) -> Step:
    moves = [t.to_state for t in transitions]
    value = _value(rule, tick, row)
    measured = condition_text(rule, value, holds, row is not None, row["extra"] if row is not None else None)
    outcome, what = _outcome(rule, holds, before, st, moves)
    notified = bool(notices) and bool(rule.channels)
    note = _notification_text(rule, st, moves, notices, silence, holder)
    return Step(from_us(tick), rule.name, key, value, bound_of(rule), holds, before, st.state, outcome,
                f"{measured}: {what}{note}", notified, silence.silence_id if silence else None,
                inhibited_by=holder.describe() if holder else None)


def _unmeasured(rule: Rule, tick: int, key: str, st: GroupState | None) -> Step:
    """A time where the asked group (or, with no group, any group) was not measured at all."""
    state = st.state if st else INACTIVE
    value = _value(rule, tick, None)
    return Step(from_us(tick), rule.name, key, value, bound_of(rule), False, state, state, "quiet",
                f"{condition_text(rule, value, False, False)}: does not hold", False)


def group_key_of(rule: Rule, group: str, known: dict[str, GroupState]) -> str:
    """The full key of a --group ('acme' is 'client_id=acme' for a rule grouped by client_id)."""
    match = next((key for key in known if group_matches(group, key)), None)
    if match is not None:
        return match
    if "=" not in group and len(rule.group_by) == 1:
        return f"{rule.group_by[0]}={group}"
    return group


def _value(rule: Rule, tick: int, row: dict[str, Any] | None) -> float | None:
    """The number compared with the bound; for absence, seconds since the group's last closure."""
    if row is None:
        return 0.0 if rule.kind == "threshold" and rule.metric == "count" else None
    if rule.kind == "absence":
        return None if row["extra"] is None else (tick - int(row["extra"])) / 1e6
    return row["value"]


def bound_of(rule: Rule) -> float | None:
    """The number a row's value is compared with: the threshold, the findings needed, the silence allowed."""
    if rule.kind == "threshold":
        return rule.value
    if rule.kind == "pattern":
        return float(rule.min_findings)
    if rule.kind == "absence":
        return rule.window_s
    return None


def condition_text(rule: Rule, value: float | None, holds: bool, measured: bool, extra: str | None = None) -> str:
    """What was measured at one time, against what, in words."""
    window = format_duration(rule.window_s)
    filters = "".join(f" {k} {'/'.join(str(v) for v in values)}" for k, values in rule.where.items())
    if rule.kind == "threshold" and rule.metric == "per_1k_sessions":
        numbers = traffic_detail(rule, extra, value) if measured else None
        made_of = f" ({numbers})" if numbers else ""
        return (f"{_num(value or 0)} closures{' with' + filters if filters else ''} per 1,000 sessions in {window}{made_of} "
                f"(fires at {rule.op} {_num(rule.value)} with at least {rule.min_sessions} sessions)")
    if rule.kind == "threshold" and rule.metric == "clients":
        who = traffic_detail(rule, extra, value) if measured else "no client"
        return (f"{who} with at least {rule.min_per_client} closures{' with' + filters if filters else ''} in {window} "
                f"(fires at {rule.op} {_num(rule.value)} clients)")
    if rule.kind == "threshold" and rule.metric == "count":
        return f"{_num(value or 0)} closure{'' if value == 1 else 's'}{' with' + filters if filters else ''} in {window} (fires at {rule.op} {_num(rule.value)})"
    if rule.kind == "threshold":
        share = "no closures" if value is None else f"{value:.1%} of closures{' with' + filters if filters else ''}"
        return f"{share} in {window} (fires at {rule.op} {rule.value:.1%} of at least {rule.min_total} closures)"
    if rule.kind == "pattern":
        if not measured:
            return f"no {rule.pattern} finding of at least {rule.min_count} closures overlaps the {window} window"
        return (f"{rule.pattern} findings overlap the {window} window, the largest with {_num(value)} closures "
                f"(fires at {rule.min_findings} finding{'s' if rule.min_findings != 1 else ''})")
    if rule.kind == "absence":
        if not measured:
            return "this group is not expected to report (not seen within the lookback, not in expected)"
        silent = "no closure within the lookback" if value is None else f"last closure {format_duration(value)} before"
        return f"{silent} (fires after {window} without one)"
    if measured:
        return f"the query returned this group (value {_num(value)})"
    return "the query did not return this group"


def _outcome(rule: Rule, holds: bool, before: str, st: GroupState, moves: list[str]) -> tuple[str, str]:
    """A short code and the state machine's part of the sentence."""
    when = lambda micros: f"{from_us(micros):%Y-%m-%d %H:%M} UTC" if micros is not None else "?"
    if FIRING in moves:
        held = f" after holding for `for` ({format_duration(rule.for_s)})" if rule.for_s else ""
        return "fired", f"holds; fired{held}"
    if PENDING in moves or (holds and st.state == PENDING):
        due = (st.pending_since or 0) + seconds_us(rule.for_s)
        return "pending", f"holds; pending since {when(st.pending_since)}, fires at {when(due)} if it still holds (`for` {format_duration(rule.for_s)})"
    if holds and st.state == FIRING:
        return "firing", f"holds; firing since {when(st.fired_at)}"
    if INACTIVE in moves:
        return "cleared", f"no longer holds before `for` ({format_duration(rule.for_s)}) elapsed: back to inactive, nothing sent"
    if RESOLVED in moves:
        return "resolved", "no longer holds: resolved"
    if st.state == FIRING:
        until = (st.last_true or 0) + max(seconds_us(rule.keep_firing_s), seconds_us(rule.every_s))
        return "kept_firing", f"does not hold, but keep_firing_for ({format_duration(rule.keep_firing_s)}) keeps it firing until {when(until)}"
    return "quiet", "does not hold" + (" (already resolved)" if before == RESOLVED else "")


def _notification_text(rule: Rule, st: GroupState, moves: list[str], notices: list[Notice],
                       silence: SilenceSpan | None, holder: Firing | None = None) -> str:
    """Whether a notification was queued at this time, and if one could have been and was not, why not."""
    when = lambda micros: f"{from_us(micros):%H:%M} UTC" if micros is not None else "?"
    if notices:
        kinds = "/".join(sorted({n.kind for n in notices}))
        if not rule.channels:
            return f"; a {kinds} notification, but the rule has no channels"
        return f"; {kinds} notification queued to {', '.join(rule.channels)}"
    if st.state != FIRING and RESOLVED not in moves:
        return ""
    if silence is not None:
        why = f" ({silence.comment})" if silence.comment else ""
        return f"; no notification: silenced by {silence.silence_id}{why} until {from_us(silence.end):%Y-%m-%d %H:%M} UTC"
    if holder is not None and RESOLVED not in moves and st.notified_at is None:
        return f"; no notification: inhibited by {holder.describe()}, firing since {when(holder.start)} ([[inhibit]])"
    if RESOLVED in moves:
        return "" if not rule.resolve else "; no resolved notification: its firing was never notified"
    if st.notified_at is None:
        return ""
    if rule.repeat_s <= 0:
        return f"; no notification: already notified at {when(st.notified_at)} (no repeat_interval)"
    return f"; no notification: notified at {when(st.notified_at)}, next at {when(st.notified_at + seconds_us(rule.repeat_s))} (repeat_interval)"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


# -- the closures behind a row ------------------------------------------------------------


def closures_counted(con: duckdb.DuckDBPyConnection, rule: Rule, group_key: str, at: int,
                     limit: int = SAMPLE_SIZE) -> list[dict[str, Any]]:
    """A sample of the closures a row counted (newest first), each with a link to it in the dashboard's Explorer.

    Threshold: the closures of the window that match the rule's filters; absence:
    the group's last closure; pattern: the closures of the group in the window.
    A sql rule's query is its own: no sample.
    """
    if rule.kind == "sql":
        return []
    window = seconds_us(rule.window_s if rule.kind != "absence" else rule.lookback_s)
    params: dict[str, Any] = {"lo": at - window, "hi": at, "limit": limit}
    where = where_sql(rule, params) if rule.kind in ("threshold", "absence") else "TRUE"
    groups = _group_sql(rule, group_key, params)
    rows = con.execute(f"""
        SELECT event_id, ts, client_id, close_code, close_reason, category
        FROM closures
        WHERE ts > make_timestamptz($lo) AND ts <= make_timestamptz($hi) AND {where} AND {groups}
        ORDER BY ts DESC, event_id LIMIT $limit
    """, params).fetchall()
    return [{"event_id": r[0], "ts": r[1].astimezone(UTC).isoformat(), "client_id": r[2], "close_code": r[3],
             "close_reason": r[4], "category": r[5], "link": explorer_link(r[0], r[1])} for r in rows]


def _group_sql(rule: Rule, group_key: str, params: dict[str, Any]) -> str:
    """The closures of one group, from its key ('client_id=acme,category=x'); pattern keys name detection columns."""
    if not group_key or rule.kind == "pattern" and not group_key.startswith("client_id="):
        return "TRUE"
    clauses = []
    for index, part in enumerate(group_key.split(",")):
        column, _, text = part.partition("=")
        if rule.kind == "pattern" and column != "client_id":
            continue
        params[f"g{index}"] = None if text == "(none)" else text
        clauses.append(f"CAST({column} AS VARCHAR) IS NOT DISTINCT FROM $g{index}")
    return " AND ".join(clauses) or "TRUE"


def explorer_link(event_id: str, ts: datetime) -> str:
    """The Explorer page that opens one closure (relative to the dashboard's address)."""
    return f"explorer?event={event_id}&at={ts.astimezone(UTC):%Y-%m-%dT%H:%M}"


def newest_time(store: Store) -> datetime:
    """The newest closure's time, the default moment to explain; the clock when the store is empty."""
    with store.connect(read_only=True) as con:
        row = con.execute("SELECT max(ts) FROM closures").fetchone()
    newest = row[0] if row else None
    return newest.astimezone(UTC) if isinstance(newest, datetime) else datetime.now(UTC)
