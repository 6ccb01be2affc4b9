"""Silences: a rule, or one of its groups, kept quiet for a while; silenced groups change state but notify nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypedDict

import duckdb
import polars as pl

from closewatch.alerts.errors import AlertError
from closewatch.alerts.model import stable_id
from closewatch.alerts.rules import RuleSet
from closewatch.store import Store, scalar


class Silence(TypedDict):
    """An active silence as evaluation uses it; ``group`` None silences every group of the rule."""

    id: str
    rule: str
    group: str | None


def active_silences(con: duckdb.DuckDBPyConnection, now: datetime) -> list[Silence]:
    """The silences in force at ``now`` (created before it, not ended, not expired)."""
    rows = con.execute("""
        SELECT silence_id, rule, group_match FROM alert_silences
        WHERE ended_at IS NULL AND created_at <= ? AND expires_at > ?
    """, [now, now]).fetchall()
    return [Silence(id=r[0], rule=r[1], group=r[2]) for r in rows]


def is_silenced(silences: list[Silence], rule: str, group_key: str) -> bool:
    """Whether one of ``silences`` covers this group of this rule."""
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
        by_id = scalar(con, f"UPDATE alert_silences SET ended_at = ? WHERE silence_id = ? AND {active}", [now, target, now])
        if by_id:
            return int(by_id)
        if group is None:
            return scalar(con, f"UPDATE alert_silences SET ended_at = ? WHERE rule = ? AND {active}", [now, target, now])
        return scalar(con, f"UPDATE alert_silences SET ended_at = ? WHERE rule = ? AND group_match IS NOT DISTINCT FROM ? AND {active}",
                      [now, target, group, now])


def list_silences(store: Store, include_ended: bool = False, now: datetime | None = None) -> pl.DataFrame:
    now = now or datetime.now(UTC)
    condition = "TRUE" if include_ended else "ended_at IS NULL AND expires_at > $now"
    params = {} if include_ended else {"now": now}
    return store.query(f"""
        SELECT silence_id, rule, coalesce(group_match, '(all groups)') AS "group", created_at, expires_at,
               comment, created_by, ended_at
        FROM alert_silences WHERE {condition} ORDER BY created_at DESC
    """, params)
