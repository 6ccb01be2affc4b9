"""Live evaluation: every enabled rule from its watermark up to its frontier, once per grid time.

The watermark (``alert_watermarks``) remembers the last evaluation time done
for each rule; a run evaluates every grid time after it up to the frontier,
once each, so after downtime the missed windows are caught up rather than
skipped, and never done twice. ``frontier`` says how far a rule may go:

* pattern, threshold and sql rules: the newest closure's time (never later
  than the clock) minus ``lateness``: logs arrive in batches, and a window is
  judged once its data is there;
* absence rules: the clock minus ``lateness``: silence is only visible on the clock;
* and, while the store is fed live (followed files and streams, which write
  a *live mark* in ``follow_marks``: everything their sources wrote before it
  is stored), every rule goes at least as far as that mark (never later than
  the clock) minus ``[follow] lateness``. So a burst followed by silence is
  evaluated to its end, and a window with nothing in it is evaluated as
  nothing, as a backtest over the same range does. A follower that dies stops
  counting once its mark is stale (``fresh_until``); with several followers
  the oldest fresh mark counts. For logs uploaded or dropped whole, no mark
  moves and the frontier stays the newest closure's time, as before.

One transaction per rule and range writes the new states, the transitions
(``alert_events``), the notifications (``alert_outbox``) and the watermark
together: a run killed half-way leaves nothing, and the next run does that
range again, with the same deterministic ids, so nothing is notified twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb

from closewatch.alerts import outbox
from closewatch.alerts.conditions import conditions
from closewatch.alerts.errors import RuleFailed
from closewatch.alerts.inhibition import Inhibitor, sources_first, stored_firings
from closewatch.alerts.messages import notice_details
from closewatch.alerts.model import EngineSettings, Grid, ceil_to, floor_to, seconds_us, to_us
from closewatch.alerts.rules import Rule, RuleSet
from closewatch.alerts.silences import Silence, active_silences, is_silenced
from closewatch.alerts.state import firing_groups, load_states, save_states
from closewatch.alerts.transitions import walk
from closewatch.store import Store, scalar


@dataclass
class EvalReport:
    """What one run did, for the CLI and the scheduler's job record."""

    evaluated: dict[str, int] = field(default_factory=dict)  # rule -> evaluation times
    transitions: int = 0
    notifications: int = 0
    firing: dict[str, list[str]] = field(default_factory=dict)  # rule -> groups firing after the run
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        ticks = sum(self.evaluated.values())
        firing = sum(len(v) for v in self.firing.values())
        text = (f"{len(self.evaluated)} rules over {ticks} evaluation times: {self.transitions} transitions, "
                f"{self.notifications} notifications queued, {firing} groups firing")
        return text + (f"; {len(self.failures)} rules failed" if self.failures else "")


@dataclass(frozen=True)
class RunContext:
    """What every rule of one run shares: where to read and write, the rules, the settings, the clock, the data's edge."""

    store: Store
    ruleset: RuleSet
    settings: EngineSettings
    now: datetime
    newest: int | None  # the newest closure's time (microseconds), None for an empty store
    silences: list[Silence]
    live_until: int | None = None  # the oldest fresh live mark (microseconds): stored up to here; None when not fed live


def evaluate(store: Store, ruleset: RuleSet, settings: EngineSettings = EngineSettings(),
             now: datetime | None = None) -> EvalReport:
    """Evaluate every enabled rule from its watermark up to its frontier, once per grid time.

    A rule that fails (its SQL does not run on this data) is reported and the
    others still run; its watermark stays, so it is retried next time.
    """
    now = now or datetime.now(UTC)
    with store.transaction() as con:
        newest = scalar(con, "SELECT epoch_us(max(ts)) FROM closures")
        live_until = scalar(con, "SELECT epoch_us(min(live_until)) FROM follow_marks WHERE fresh_until > now()")  # the real clock: marks are written on it
        silences = active_silences(con, now)
    ctx = RunContext(store, ruleset, settings, now, newest, silences, live_until)
    report = EvalReport()
    for rule in sources_first(ruleset.enabled, ruleset.inhibit):  # a source's firings are known before its targets run
        try:
            _evaluate_rule(ctx, rule, report)
        except RuleFailed as error:
            report.failures.append(str(error))
    return report


def frontier(rule: Rule, ctx: RunContext) -> int | None:
    """The last evaluation time whose window is complete, on the rule's grid (None: nothing to evaluate yet).

    The one place that decides how far evaluation may go: a new source of
    "the data is there up to here" changes this function (and, if it needs
    more facts, ``RunContext``), nothing else.
    """
    step = seconds_us(rule.every_s)
    clock = to_us(ctx.now)
    edges = []
    if rule.kind == "absence":
        edges.append(clock - seconds_us(ctx.settings.lateness_s))
    elif ctx.newest is not None:
        edges.append(min(clock, ctx.newest) - seconds_us(ctx.settings.lateness_s))
    if ctx.live_until is not None:
        edges.append(min(clock, ctx.live_until) - seconds_us(ctx.settings.live_lateness_s))
    return floor_to(max(edges), step) if edges else None


def _evaluate_rule(ctx: RunContext, rule: Rule, report: EvalReport) -> None:
    """Evaluate one rule up to its frontier, one chunk of the grid per transaction."""
    last = frontier(rule, ctx)
    report.evaluated.setdefault(rule.name, 0)
    if last is None:
        return
    while True:
        with ctx.store.transaction() as con:
            grid = _next_range(con, rule, ctx.settings, last)
            if grid is None:
                report.firing[rule.name] = firing_groups(con, rule.name)
                return
            states = load_states(con, rule.name)
            cond = conditions(con, rule, grid)
            silenced = {key for key in set(cond["group_key"].to_list()) | set(states) if is_silenced(ctx.silences, rule.name, key)}
            transitions, notices = walk(rule, cond, states, grid, silenced, _held_back(con, ctx.ruleset, rule, grid))
            for notice in notices:
                notice.details = notice_details(con, rule, notice)
            queued = outbox.enqueue(con, ctx.ruleset, rule, notices, ctx.now)
            save_states(con, rule, states, transitions, grid.last, ctx.now)
            report.evaluated[rule.name] += len(grid)
            report.transitions += len(transitions)
            report.notifications += queued
            if grid.last >= last:
                report.firing[rule.name] = firing_groups(con, rule.name)
                return


def _held_back(con: duckdb.DuckDBPyConnection, ruleset: RuleSet, rule: Rule, grid: Grid):
    """For a target of [[inhibit]] entries: what holds each group back when, from its sources' stored firings."""
    sources = {entry.source for entry in ruleset.inhibit if rule.name in entry.target}
    if not sources:
        return None
    firings, known = stored_firings(con, ruleset, sources, grid.first, grid.last)
    inhibitor = Inhibitor(ruleset, firings, known)
    return lambda values: inhibitor.check(rule, values)


def _next_range(con: duckdb.DuckDBPyConnection, rule: Rule, settings: EngineSettings, last: int) -> Grid | None:
    """The next chunk of grid times after the rule's watermark, up to ``last``; None when the rule is up to date.

    A rule never evaluated starts ``initial_lookback`` before ``last``.
    """
    step = seconds_us(rule.every_s)
    row = con.execute("SELECT epoch_us(evaluated_to) FROM alert_watermarks WHERE rule = ?", [rule.name]).fetchone()
    first = last - floor_to(seconds_us(settings.initial_lookback_s), step) if row is None else ceil_to(row[0] + 1, step)
    if first > last:
        return None
    return next(iter(Grid(first, last, step).chunks()))
