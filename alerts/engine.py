"""The alert engine: per (rule, group) state over event time, a stored watermark, and backtests.

Time is the logs' time, not the clock's. A rule is evaluated at *evaluation
times* on a fixed grid (every ``every``, default one minute, aligned to the
epoch). Each evaluation time t asks "does the condition hold over the window
(t - window, t]?". The watermark (``alert_watermarks``) remembers the last
evaluation time done for each rule; a run evaluates every grid time after it
up to the frontier, once each, so after downtime the missed windows are
caught up rather than skipped, and never done twice:

* the frontier of pattern, threshold and sql rules is the newest closure's
  time (never later than the clock) minus ``lateness``: logs arrive in
  batches, and a window is judged once its data is there;
* the frontier of absence rules is the clock minus ``lateness``: silence is
  only visible on the clock.

Conditions are computed for a whole range of evaluation times in one query
(closures pre-aggregated per grid step, then a range join), and the state
machine then walks each group's times in Python:

    inactive ──condition──► pending ──held for `for`──► firing ──cleared──► resolved
        ▲                      │                           │                   │
        └──────cleared─────────┘                (repeat_interval)     condition: pending

One transaction per rule and range writes the new states, the transitions
(``alert_events``), the notifications (``alert_outbox``) and the watermark
together: a run killed half-way leaves nothing, and the next run does that
range again, with the same deterministic ids, so nothing is notified twice.
Backtests run the same code over any range, in memory, writing nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from closewatch.alerts.errors import AlertError, RuleFailed
from closewatch.alerts.rules import Rule, RuleSet
from closewatch.errors import first_line
from closewatch.store import Store

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = 1_000_000
#: Evaluation times per query and transaction; long catch-ups and backtests are chunked.
MAX_TICKS = 20_000

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"
#: Notification kinds.
NOTIFY_FIRING, NOTIFY_REPEAT, NOTIFY_RESOLVED = "firing", "repeat", "resolved"


# -- settings ------------------------------------------------------------------


@dataclass(frozen=True)
class EngineSettings:
    """The [alerts] section of closewatch.toml (all durations in seconds)."""

    step_s: float = 60.0              # default evaluation step of every rule
    lateness_s: float = 60.0          # how far behind the frontier evaluation stays
    initial_lookback_s: float = 3600.0  # how far back a rule's first run starts
    retry_base_s: float = 30.0        # first delay after a failed delivery ...
    retry_max_s: float = 3600.0       # ... doubling up to this
    deliver_deadline_s: float = 30.0  # a deliver run starts no send after this long, and then stops
    deliver_failures: int = 3         # failures in a row after which a channel is left for the next run


# -- time on the grid ----------------------------------------------------------------


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


def from_us(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(micros))


def seconds_us(seconds: float) -> int:
    return int(round(seconds * US))


@dataclass(frozen=True)
class Grid:
    """Evaluation times first, first+step, ..., last (microseconds since the epoch)."""

    first: int
    last: int
    step: int

    def __len__(self) -> int:
        return 0 if self.last < self.first else (self.last - self.first) // self.step + 1

    def chunks(self, size: int = MAX_TICKS) -> Iterable[Grid]:
        start = self.first
        while start <= self.last:
            end = min(self.last, start + (size - 1) * self.step)
            yield Grid(start, end, self.step)
            start = end + self.step


def floor_to(micros: int, step: int) -> int:
    return (micros // step) * step


def ceil_to(micros: int, step: int) -> int:
    return -((-micros) // step) * step


# -- conditions: which groups hold at which evaluation times --------------------


def conditions(con: duckdb.DuckDBPyConnection, rule: Rule, grid: Grid) -> pl.DataFrame:
    """Rows (tick, group_key, value, group columns..., extra) for every time and group where the rule holds."""
    try:
        if rule.kind == "sql":
            return _sql_conditions(con, rule, grid)
        sql, params = _CONDITION_SQL[rule.kind](rule, grid)
        return con.execute(sql, params).pl()
    except duckdb.Error as error:
        raise RuleFailed(f"Rule '{rule.name}' could not be evaluated: {first_line(error)}; check the rule (closewatch alerts check) and the schema.") from None


def _group_key_sql(columns: Iterable[str], prefix: str = "") -> str:
    parts = [f"'{c}=' || coalesce(CAST({prefix}{c} AS VARCHAR), '(none)')" for c in columns]
    return f"concat_ws(',', {', '.join(parts)})" if parts else "''"


def _where_sql(rule: Rule, params: dict[str, Any]) -> str:
    clauses = []
    for column, values in rule.where.items():
        params[f"w_{column}"] = list(values)
        clauses.append(f"list_contains($w_{column}, {column})")
    return " AND ".join(clauses) or "TRUE"


def _grid_params(rule: Rule, grid: Grid, lookback_s: float) -> dict[str, Any]:
    return {"t0": grid.first, "t1": grid.last, "step": grid.step, "win": seconds_us(rule.window_s),
            "lo": grid.first - seconds_us(lookback_s)}


_TICKS = "ticks AS (SELECT unnest(generate_series($t0::BIGINT, $t1::BIGINT, $step::BIGINT)) AS tick)"
_BUCKET = "((epoch_us(ts) + $step - 1) // $step) * $step"


def _threshold_sql(rule: Rule, grid: Grid) -> tuple[str, dict]:
    params = _grid_params(rule, grid, rule.window_s)
    where = _where_sql(rule, params)
    groups = list(rule.group_by)
    select = "".join(f"{c}, " for c in groups)
    params["bound"] = rule.value
    if rule.metric == "count":
        counts, filtered = "count(*) AS n, 0 AS total", f"AND {where}"
        having, value = f"sum(n) {rule.op} $bound", "sum(n)"
    else:
        counts, filtered = f"count(*) FILTER (WHERE {where}) AS n, count(*) AS total", ""
        params["min_total"] = rule.min_total
        having = f"sum(total) >= $min_total AND sum(n) / sum(total) {rule.op} $bound"
        value = "sum(n) / sum(total)"
    sql = f"""
        WITH b AS (
            SELECT {select}{_BUCKET} AS bucket, {counts}
            FROM closures
            WHERE ts > make_timestamptz($lo) AND ts <= make_timestamptz($t1) {filtered}
            GROUP BY ALL
        ), {_TICKS}
        SELECT tick, {_group_key_sql(groups)} AS group_key, ({value})::DOUBLE AS value, {select}NULL::VARCHAR AS extra
        FROM ticks JOIN b ON b.bucket > tick - $win AND b.bucket <= tick
        GROUP BY ALL
        HAVING {having}
        ORDER BY group_key, tick
    """
    return sql, params


def _pattern_sql(rule: Rule, grid: Grid) -> tuple[str, dict]:
    params = _grid_params(rule, grid, rule.window_s)
    params.update(pattern=rule.pattern, min_count=rule.min_count, min_findings=rule.min_findings)
    severity = ""
    if rule.detection_severity:
        params["sev"] = list(rule.detection_severity)
        severity = "AND list_contains($sev, severity)"
    groups = list(rule.group_by)
    select = "".join(f"d.{c} AS {c}, " for c in groups)
    sql = f"""
        WITH d AS (
            SELECT *, epoch_us(window_start) AS ws, epoch_us(window_end) AS we
            FROM detections
            WHERE pattern = $pattern AND count >= $min_count {severity}
              AND window_end > make_timestamptz($lo) AND window_start <= make_timestamptz($t1)
        ), {_TICKS}
        SELECT tick, {_group_key_sql(groups, 'd.')} AS group_key, max(d.count)::DOUBLE AS value, {select}NULL::VARCHAR AS extra
        FROM ticks JOIN d ON d.ws <= tick AND d.we > tick - $win
        GROUP BY ALL
        HAVING count(*) >= $min_findings
        ORDER BY group_key, tick
    """
    return sql, params


def _absence_sql(rule: Rule, grid: Grid) -> tuple[str, dict]:
    """Groups whose last closure is older than the window, among those expected to report.

    Expected: everything (no group_by), the `expected` list, and any group seen
    within `lookback`; the first two only from the first closure on, since an
    empty store has not "stopped". The last closure per group and time comes from an ASOF
    join, so a week of minutes costs one pass, not a join over every window.
    """
    params = _grid_params(rule, grid, rule.lookback_s)
    params["lookback"] = seconds_us(rule.lookback_s)
    where = _where_sql(rule, params)
    groups = list(rule.group_by)
    if groups:
        cast = "".join(f"CAST({c} AS VARCHAR) AS {c}, " for c in groups)
        not_null = "".join(f" AND {c} IS NOT NULL" for c in groups)
        group_rows = f"SELECT DISTINCT {', '.join(groups)} FROM b"
        if rule.expected:
            params["expected"] = list(rule.expected)
            group_rows += f" UNION SELECT unnest($expected) AS {groups[0]}"
            expected = f"list_contains($expected, g.{groups[0]}) AND tick >= (SELECT min(epoch_us(ts)) FROM closures WHERE {where})"
        else:
            expected = "FALSE"
        on = "".join(f"g.{c} = b.{c} AND " for c in groups)
        out = "".join(f"g.{c} AS {c}, " for c in groups)
    else:
        # The whole stream is expected to report from its first closure on (not before: an empty store is not "stopped").
        cast, not_null, group_rows, on, out = "", "", "SELECT 1 AS one", "", ""
        expected = f"tick >= (SELECT min(epoch_us(ts)) FROM closures WHERE {where})"
    sql = f"""
        WITH b AS (
            SELECT DISTINCT {cast}{_BUCKET} AS bucket
            FROM closures
            WHERE ts > make_timestamptz($lo) AND ts <= make_timestamptz($t1) AND {where}{not_null}
        ), {_TICKS},
        g AS (SELECT * FROM ticks CROSS JOIN ({group_rows})),
        last AS (
            SELECT g.*, b.bucket AS last_bucket
            FROM g ASOF LEFT JOIN b ON {on}b.bucket <= g.tick
        )
        SELECT tick, {_group_key_sql(groups, 'g.')} AS group_key, 0.0::DOUBLE AS value, {out}
               CAST(last_bucket AS VARCHAR) AS extra
        FROM last AS g
        WHERE (last_bucket IS NULL OR last_bucket <= tick - $win)
          AND ({expected} OR last_bucket > tick - $lookback)
        ORDER BY group_key, tick
    """
    return sql, params


_CONDITION_SQL = {"threshold": _threshold_sql, "pattern": _pattern_sql, "absence": _absence_sql}


def _sql_conditions(con: duckdb.DuckDBPyConnection, rule: Rule, grid: Grid) -> pl.DataFrame:
    """A sql rule runs its query once per evaluation time, with $start and $end bound to the window."""
    frames = []
    window = seconds_us(rule.window_s)
    for tick in range(grid.first, grid.last + 1, grid.step):
        bounds = {"start": from_us(tick - window), "end": from_us(tick)}
        rows = con.execute(rule.query, {k: bounds[k] for k in rule.query_params}).pl()
        missing = [c for c in rule.group_by if c not in rows.columns]
        if missing:
            raise RuleFailed(
                f"Rule '{rule.name}': its query returns no column {', '.join(missing)} named in group_by "
                f"(it returns {', '.join(rows.columns) or 'nothing'}); fix the query or group_by."
            )
        if rows.height == 0:
            continue
        frames.append(_sql_rows(rule, rows, tick))
    if not frames:
        return pl.DataFrame(schema={"tick": pl.Int64, "group_key": pl.String, "value": pl.Float64, "extra": pl.String})
    return pl.concat(frames, how="diagonal_relaxed").sort("group_key", "tick")


def _sql_rows(rule: Rule, rows: pl.DataFrame, tick: int) -> pl.DataFrame:
    """One row per group: the first row of each group, its other columns kept as JSON for the message."""
    records = []
    seen: set[str] = set()
    for row in rows.iter_rows(named=True):
        values = {c: row[c] for c in rule.group_by}
        key = ",".join(f"{c}={'(none)' if v is None else v}" for c, v in values.items())
        if key in seen:
            continue
        seen.add(key)
        value = row.get("value")
        extra = {k: v for k, v in row.items() if k not in rule.group_by}
        records.append({"tick": tick, "group_key": key,
                        "value": float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float(len(rows)),
                        **{c: None if v is None else str(v) for c, v in values.items()},
                        "extra": json.dumps(extra, default=str)})
    return pl.DataFrame(records)


# -- the state machine -------------------------------------------------------------


@dataclass
class GroupState:
    """Where one (rule, group) stands; times are microseconds since the epoch."""

    group_key: str
    group_values: dict[str, Any]
    state: str = INACTIVE
    pending_since: int | None = None
    fired_at: int | None = None
    resolved_at: int | None = None
    notified_at: int | None = None
    last_true: int | None = None
    value: float | None = None
    dirty: bool = False


@dataclass(frozen=True)
class Transition:
    group_key: str
    at: int
    from_state: str
    to_state: str
    value: float | None


@dataclass
class Notice:
    """A notification to send: what happened to which group, when, and what the message needs."""

    rule: str
    group_key: str
    group_values: dict[str, Any]
    kind: str
    at: int
    value: float | None
    fired_at: int | None
    resolved_at: int | None = None
    extra: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def advance(rule: Rule, st: GroupState, ticks: list[int], values: list[float], extras: list[str | None],
            grid: Grid, silenced: bool) -> tuple[list[Transition], list[Notice]]:
    """Walk one group through the grid, given the times at which its condition held.

    The condition is false at every grid time not in ``ticks``. Only the true
    times and the first false time after each run of them matter, so the cost
    is the number of firing (time, group) pairs, not the grid's length.
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
        if st.state in (INACTIVE, RESOLVED, PENDING) and at - st.pending_since >= for_us:
            st.fired_at = at
            move(FIRING, at)
        if st.state == FIRING and not silenced:
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


def _walk(rule: Rule, cond: pl.DataFrame, states: dict[str, GroupState], grid: Grid,
          silenced_keys: set[str]) -> tuple[list[Transition], list[Notice]]:
    """Run the state machine for every group that holds somewhere in the grid or was active before it."""
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
                           grid, key in silenced_keys)
            transitions += t
            notices += n
            touched.add(key)
    for key, st in states.items():
        if key not in touched and st.state in (PENDING, FIRING):
            t, n = advance(rule, st, [], [], [], grid, key in silenced_keys)
            transitions += t
            notices += n
    return transitions, notices


# -- live evaluation ----------------------------------------------------------------


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


def evaluate(store: Store, ruleset: RuleSet, settings: EngineSettings = EngineSettings(),
             now: datetime | None = None) -> EvalReport:
    """Evaluate every enabled rule from its watermark up to its frontier, once per grid time.

    A rule that fails (its SQL does not run on this data) is reported and the
    others still run; its watermark stays, so it is retried next time.
    """
    from closewatch.alerts import notify  # the outbox lives there; imported here to keep the module graph flat

    now = now or datetime.now(UTC)
    with store.transaction() as con:
        newest = con.execute("SELECT epoch_us(max(ts)) FROM closures").fetchone()[0]
        silences = _active_silences(con, now)
    report = EvalReport()
    for rule in ruleset.enabled:
        try:
            _evaluate_rule(store, ruleset, rule, settings, now, newest, silences, report, notify)
        except RuleFailed as error:
            report.failures.append(str(error))
    return report


def _frontier(rule: Rule, settings: EngineSettings, now: datetime, newest: int | None) -> int | None:
    """The last evaluation time whose window is complete, on the rule's grid."""
    step = seconds_us(rule.every_s)
    clock = to_us(now)
    if rule.kind == "absence":
        edge = clock
    elif newest is None:
        return None
    else:
        edge = min(clock, newest)
    return floor_to(edge - seconds_us(settings.lateness_s), step)


def _evaluate_rule(store: Store, ruleset: RuleSet, rule: Rule, settings: EngineSettings, now: datetime,
                   newest: int | None, silences: list[dict], report: EvalReport, notify) -> None:
    frontier = _frontier(rule, settings, now, newest)
    step = seconds_us(rule.every_s)
    report.evaluated.setdefault(rule.name, 0)
    if frontier is None:
        return
    while True:
        with store.transaction() as con:
            row = con.execute("SELECT epoch_us(evaluated_to) FROM alert_watermarks WHERE rule = ?", [rule.name]).fetchone()
            if row is None:
                first = frontier - floor_to(seconds_us(settings.initial_lookback_s), step)
            else:
                first = ceil_to(row[0] + 1, step)
            if first > frontier:
                report.firing[rule.name] = _firing_groups(con, rule.name)
                return
            grid = next(Grid(first, frontier, step).chunks())
            states = _load_states(con, rule.name)
            cond = conditions(con, rule, grid)
            silenced = {key for key in set(cond["group_key"].to_list()) | set(states) if _is_silenced(silences, rule.name, key)}
            transitions, notices = _walk(rule, cond, states, grid, silenced)
            for notice in notices:
                notice.details = notice_details(con, rule, notice)
            queued = notify.enqueue(con, ruleset, rule, notices, now)
            _save(con, rule, states, transitions, grid.last, now)
            report.evaluated[rule.name] += len(grid)
            report.transitions += len(transitions)
            report.notifications += queued
            if grid.last >= frontier:
                report.firing[rule.name] = _firing_groups(con, rule.name)
                return


def _load_states(con: duckdb.DuckDBPyConnection, rule: str) -> dict[str, GroupState]:
    rows = con.execute("""
        SELECT group_key, group_values, state, epoch_us(pending_since), epoch_us(fired_at), epoch_us(resolved_at),
               epoch_us(notified_at), epoch_us(last_true), value
        FROM alert_state WHERE rule = ?
    """, [rule]).fetchall()
    return {
        r[0]: GroupState(r[0], json.loads(r[1] or "{}"), r[2], r[3], r[4], r[5], r[6], r[7], r[8])
        for r in rows
    }


def _save(con: duckdb.DuckDBPyConnection, rule: Rule, states: dict[str, GroupState],
          transitions: list[Transition], evaluated_to: int, now: datetime) -> None:
    """States, transitions and the watermark, in the caller's transaction."""
    dirty = [st for st in states.values() if st.dirty]
    if dirty:
        frame = pl.DataFrame({
            "rule": [rule.name] * len(dirty),
            "group_key": [st.group_key for st in dirty],
            "group_values": [json.dumps(st.group_values, default=str) for st in dirty],
            "state": [st.state for st in dirty],
            **{name: pl.Series([getattr(st, name) for st in dirty], dtype=pl.Int64)
               for name in ("pending_since", "fired_at", "resolved_at", "notified_at", "last_true")},
            "value": pl.Series([st.value for st in dirty], dtype=pl.Float64),
        })
        con.register("dirty_states", frame.to_arrow())
        con.execute("""
            INSERT OR REPLACE INTO alert_state
            SELECT rule, group_key, group_values, state, make_timestamptz(pending_since), make_timestamptz(fired_at),
                   make_timestamptz(resolved_at), make_timestamptz(notified_at), make_timestamptz(last_true), value, ?
            FROM dirty_states
        """, [now])
        con.unregister("dirty_states")
    if transitions:
        frame = pl.DataFrame({
            "event_id": [stable_id(rule.name, t.group_key, t.to_state, t.at) for t in transitions],
            "rule": [rule.name] * len(transitions),
            "group_key": [t.group_key for t in transitions],
            "from_state": [t.from_state for t in transitions],
            "to_state": [t.to_state for t in transitions],
            "event_time": pl.Series([t.at for t in transitions], dtype=pl.Int64),
            "value": pl.Series([t.value for t in transitions], dtype=pl.Float64),
        })
        con.register("new_events", frame.to_arrow())
        con.execute("""
            INSERT OR IGNORE INTO alert_events
            SELECT event_id, rule, group_key, from_state, to_state, make_timestamptz(event_time), value, ?, ?
            FROM new_events
        """, [rule.severity, now])
        con.unregister("new_events")
    con.execute("INSERT OR REPLACE INTO alert_watermarks VALUES (?, make_timestamptz(?::BIGINT), ?)", [rule.name, evaluated_to, now])


def _firing_groups(con: duckdb.DuckDBPyConnection, rule: str) -> list[str]:
    return [r[0] for r in con.execute("SELECT group_key FROM alert_state WHERE rule = ? AND state = 'firing' ORDER BY 1", [rule]).fetchall()]


def stable_id(*parts: Any) -> str:
    """A short deterministic id: re-evaluating the same range yields the same ids, so inserts are idempotent."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:24]


# -- what a message says ------------------------------------------------------------


def notice_details(con: duckdb.DuckDBPyConnection, rule: Rule, notice: Notice) -> dict[str, Any]:
    """Top reasons, the recommended action and counts for one notification, read from the data."""
    window = seconds_us(rule.window_s)
    at = notice.at if notice.kind != NOTIFY_RESOLVED else (notice.resolved_at or notice.at)
    details: dict[str, Any] = {"window_start": from_us(at - window), "window_end": from_us(at), "top_reasons": [], "action": ""}
    if rule.kind in ("threshold", "absence"):
        params: dict[str, Any] = {"lo": at - window, "hi": at}
        where = _where_sql(rule, params)
        groups = _group_filter(rule, notice, params)
        if rule.kind == "threshold":
            rows = con.execute(f"""
                SELECT close_reason, category, any_value(action) AS action, count(*) AS n
                FROM closures
                WHERE ts > make_timestamptz($lo) AND ts <= make_timestamptz($hi) AND {where} AND {groups}
                GROUP BY ALL ORDER BY n DESC, close_reason LIMIT 3
            """, params).fetchall()
            details["top_reasons"] = [{"reason": r[0] or r[1], "category": r[1], "count": r[3]} for r in rows]
            details["action"] = rows[0][2] if rows else ""
        else:
            last = con.execute(f"""
                SELECT max(ts) FROM closures WHERE ts <= make_timestamptz($hi) AND {where} AND {groups}
            """, {k: v for k, v in params.items() if k != "lo"}).fetchone()[0]
            details["last_seen"] = last
    elif rule.kind == "pattern":
        params = {"pattern": rule.pattern, "lo": at - window, "hi": at}
        groups = " AND ".join(f"CAST({c} AS VARCHAR) IS NOT DISTINCT FROM ${'g_' + c}" for c in rule.group_by) or "TRUE"
        params.update({f"g_{c}": _text(notice.group_values.get(c)) for c in rule.group_by})
        rows = con.execute(f"""
            SELECT explanation, action, count, window_start, window_end FROM detections
            WHERE pattern = $pattern AND {groups}
              AND window_end > make_timestamptz($lo) AND window_start <= make_timestamptz($hi)
            ORDER BY count DESC LIMIT 3
        """, params).fetchall()
        details["top_reasons"] = [{"reason": r[0], "category": rule.pattern, "count": r[2]} for r in rows]
        details["action"] = rows[0][1] if rows else ""
        details["findings"] = len(rows)
    elif notice.extra:
        extra = json.loads(notice.extra)
        details["columns"] = extra
        details["action"] = str(extra.get("action") or "")
        reason = extra.get("reason") or extra.get("explanation")
        if reason:
            details["top_reasons"] = [{"reason": str(reason), "category": "", "count": extra.get("value")}]
    if rule.action:
        details["action"] = rule.action
    return details


def _group_filter(rule: Rule, notice: Notice, params: dict[str, Any]) -> str:
    clauses = []
    for index, column in enumerate(rule.group_by):
        params[f"g{index}"] = _text(notice.group_values.get(column))
        clauses.append(f"CAST({column} AS VARCHAR) IS NOT DISTINCT FROM $g{index}")
    return " AND ".join(clauses) or "TRUE"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# -- silences ------------------------------------------------------------------------


def _active_silences(con: duckdb.DuckDBPyConnection, now: datetime) -> list[dict]:
    rows = con.execute("""
        SELECT silence_id, rule, group_match FROM alert_silences
        WHERE ended_at IS NULL AND created_at <= ? AND expires_at > ?
    """, [now, now]).fetchall()
    return [{"id": r[0], "rule": r[1], "group": r[2]} for r in rows]


def _is_silenced(silences: list[dict], rule: str, group_key: str) -> bool:
    return any(s["rule"] == rule and group_matches(s["group"], group_key) for s in silences)


def group_matches(pattern: str | None, group_key: str) -> bool:
    """A silence's --group matches 'client_id=acme' exactly, or 'acme' as the value of a one-column group."""
    if pattern is None:
        return True
    if pattern == group_key:
        return True
    if "=" not in pattern and group_key.count("=") == 1:
        return group_key.split("=", 1)[1] == pattern
    return False


def add_silence(store: Store, ruleset: RuleSet, rule: str, group: str | None, duration_s: float,
                comment: str = "", by: str = "", now: datetime | None = None) -> str:
    """Silence a rule (or one of its groups) for a while; returns the silence id."""
    if ruleset.rule(rule) is None:
        names = ", ".join(r.name for r in ruleset.rules)
        raise AlertError(f"No rule named '{rule}' in {ruleset.path} (rules: {names}); check the name.")
    if duration_s <= 0:
        raise AlertError("The silence needs a positive duration, e.g. --for 2h.")
    now = now or datetime.now(UTC)
    silence_id = stable_id(rule, group, now.isoformat())[:8]
    with store.transaction() as con:
        con.execute("INSERT INTO alert_silences VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                    [silence_id, rule, group, now, now + timedelta(seconds=duration_s), comment, by])
    return silence_id


def end_silences(store: Store, target: str, group: str | None = None, now: datetime | None = None) -> int:
    """End a silence by its id, or every active silence of a rule (and group); returns how many ended."""
    now = now or datetime.now(UTC)
    with store.transaction() as con:
        active = "ended_at IS NULL AND expires_at > ?"
        by_id = con.execute(f"UPDATE alert_silences SET ended_at = ? WHERE silence_id = ? AND {active}", [now, target, now]).fetchone()[0]
        if by_id:
            return by_id
        if group is None:
            return con.execute(f"UPDATE alert_silences SET ended_at = ? WHERE rule = ? AND {active}", [now, target, now]).fetchone()[0]
        return con.execute(f"UPDATE alert_silences SET ended_at = ? WHERE rule = ? AND group_match IS NOT DISTINCT FROM ? AND {active}",
                           [now, target, group, now]).fetchone()[0]


def list_silences(store: Store, include_ended: bool = False, now: datetime | None = None) -> pl.DataFrame:
    now = now or datetime.now(UTC)
    condition = "TRUE" if include_ended else "ended_at IS NULL AND expires_at > $now"
    params = {} if include_ended else {"now": now}
    return store.query(f"""
        SELECT silence_id, rule, coalesce(group_match, '(all groups)') AS "group", created_at, expires_at,
               comment, created_by, ended_at
        FROM alert_silences WHERE {condition} ORDER BY created_at DESC
    """, params)


# -- reading state for people ---------------------------------------------------------


def current_states(store: Store, all_states: bool = False) -> pl.DataFrame:
    """Pending and firing groups (or every group), with each rule's watermark (a read-only connection)."""
    condition = "TRUE" if all_states else "s.state IN ('pending', 'firing')"
    return store.query(f"""
        SELECT s.rule, s.group_key AS "group", s.state, s.value, s.pending_since, s.fired_at, s.resolved_at,
               s.notified_at, w.evaluated_to
        FROM alert_state s LEFT JOIN alert_watermarks w USING (rule)
        WHERE {condition}
        ORDER BY CASE s.state WHEN 'firing' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, s.rule, s.group_key
    """)


def history(store: Store, rule: str | None = None, since: datetime | None = None, limit: int = 100) -> pl.DataFrame:
    """State transitions, newest first."""
    return store.query("""
        SELECT event_time, rule, group_key AS "group", from_state, to_state, value, severity, recorded_at
        FROM alert_events
        WHERE ($rule IS NULL OR rule = $rule) AND ($since IS NULL OR event_time >= $since)
        ORDER BY event_time DESC, rule, group_key LIMIT $limit
    """, {"rule": rule, "since": since, "limit": limit})


# -- backtest ------------------------------------------------------------------------------


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
    episodes: list[Episode] = []
    with store.connect(read_only=True) as con:
        for rule in chosen:
            episodes += _backtest_rule(con, rule, start, end)
    return sorted(episodes, key=lambda e: (e.fired_at, e.rule, e.group))


def _backtest_rule(con: duckdb.DuckDBPyConnection, rule: Rule, start: datetime, end: datetime) -> list[Episode]:
    step = seconds_us(rule.every_s)
    full = Grid(ceil_to(to_us(start), step), floor_to(to_us(end), step), step)
    states: dict[str, GroupState] = {}
    transitions: list[Transition] = []
    notices: list[Notice] = []
    held: list[pl.DataFrame] = []
    for grid in full.chunks():
        cond = conditions(con, rule, grid)
        found, sent = _walk(rule, cond, states, grid, set())
        transitions += found
        notices += sent
        held.append(cond.select("tick", "group_key", "value"))
    return _episodes(rule, transitions, notices, pl.concat(held) if held else None)


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
        peak = None
        if held is not None and held.height:
            values = held.filter((pl.col("group_key") == key) & pl.col("tick").is_between(fired_at, until, closed="left"))["value"]
            peak = values.max() if values.len() else None
        episodes.append(Episode(rule.name, key, from_us(pending_at) if pending_at is not None else None, from_us(fired_at),
                                from_us(resolved_at) if resolved_at is not None else None, peak, count))
    return episodes


__all__ = [
    "EngineSettings", "evaluate", "backtest", "Episode", "EvalReport", "advance", "conditions", "Grid",
    "add_silence", "end_silences", "list_silences", "current_states", "history", "group_matches",
    "INACTIVE", "PENDING", "FIRING", "RESOLVED",
]
