"""Alert state at rest: per (rule, group) states, transitions and watermarks read and written, and read for people.

Only evaluation writes these tables (``alert_state``, ``alert_events``,
``alert_watermarks``), inside the transaction of the range it evaluated.
"""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import polars as pl

from closewatch.alerts.conditions import conditions
from closewatch.alerts.inhibition import held_back_now
from closewatch.alerts.messages import traffic_detail
from closewatch.alerts.model import Grid, GroupState, Transition, seconds_us, stable_id
from closewatch.alerts.rules import Rule, RuleSet
from closewatch.store import Store


# -- states, transitions and watermarks ----------------------------------------


def load_states(con: duckdb.DuckDBPyConnection, rule: str) -> dict[str, GroupState]:
    rows = con.execute("""
        SELECT group_key, group_values, state, epoch_us(pending_since), epoch_us(fired_at), epoch_us(resolved_at),
               epoch_us(notified_at), epoch_us(last_true), value
        FROM alert_state WHERE rule = ?
    """, [rule]).fetchall()
    return {
        r[0]: GroupState(r[0], json.loads(r[1] or "{}"), r[2], r[3], r[4], r[5], r[6], r[7], r[8])
        for r in rows
    }


def save_states(con: duckdb.DuckDBPyConnection, rule: Rule, states: dict[str, GroupState],
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


def firing_groups(con: duckdb.DuckDBPyConnection, rule: str) -> list[str]:
    return [r[0] for r in con.execute("SELECT group_key FROM alert_state WHERE rule = ? AND state = 'firing' ORDER BY 1", [rule]).fetchall()]


# -- reading state for people --------------------------------------------------


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


def status(store: Store, ruleset: RuleSet, all_states: bool = False) -> pl.DataFrame:
    """``current_states`` and, per group, what it is made of and what holds it back.

    ``detail``: both numbers of a per-traffic rule at the group's last true
    evaluation ("4 of 20 sessions", "7 clients (a, b, ...)"), recomputed by
    the same condition code as evaluation; ``inhibited_by``: the firing
    source groups that keep a pending or firing group from notifying
    (alerts/inhibition.py). Both are empty where they do not apply.
    """
    states = current_states(store, all_states)
    with store.connect(read_only=True) as con:
        states = held_back_now(con, ruleset, states)
        details = [_detail(con, ruleset.rule(row["rule"]), row["group"]) for row in states.iter_rows(named=True)]
    return states.with_columns(pl.Series("detail", details, dtype=pl.String))


def _detail(con: duckdb.DuckDBPyConnection, rule: Rule | None, group_key: str) -> str | None:
    if rule is None or rule.kind != "threshold" or rule.metric not in ("per_1k_sessions", "clients"):
        return None
    row = con.execute("SELECT epoch_us(last_true) FROM alert_state WHERE rule = ? AND group_key = ?", [rule.name, group_key]).fetchone()
    if row is None or row[0] is None:
        return None
    step = seconds_us(rule.every_s)
    held = conditions(con, rule, Grid(row[0], row[0], step)).filter(pl.col("group_key") == group_key)
    return traffic_detail(rule, held["extra"][0], held["value"][0]) if held.height else None


def history(store: Store, rule: str | None = None, since: datetime | None = None, limit: int = 100) -> pl.DataFrame:
    """State transitions, newest first."""
    return store.query("""
        SELECT event_time, rule, group_key AS "group", from_state, to_state, value, severity, recorded_at
        FROM alert_events
        WHERE ($rule IS NULL OR rule = $rule) AND ($since IS NULL OR event_time >= $since)
        ORDER BY event_time DESC, rule, group_key LIMIT $limit
    """, {"rule": rule, "since": since, "limit": limit})
