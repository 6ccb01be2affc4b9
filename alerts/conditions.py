"""Conditions: for a range of evaluation times, which groups of a rule hold, with their values (one SQL query per kind).

Each evaluation time t asks "does the condition hold over the window
(t - window, t]?". Closures are pre-aggregated per grid step, then a range
join gives every time of the range in one query; a sql rule runs its own
query once per time. Live evaluation, backtests and explanations all call
``conditions``, so they cannot disagree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import duckdb
import polars as pl

from closewatch.alerts.errors import RuleFailed
from closewatch.alerts.model import Grid, from_us, seconds_us
from closewatch.alerts.rules import Rule
from closewatch.errors import first_line


def conditions(con: duckdb.DuckDBPyConnection, rule: Rule, grid: Grid, every_value: bool = False) -> pl.DataFrame:
    """Rows (tick, group_key, value, group columns..., extra) for every time and group where the rule holds.

    With ``every_value`` the groups that were measured and do not hold come too,
    with a ``holds`` column: the same query, the filter turned into a column,
    so an explanation of why a group did not fire reads the very numbers
    evaluation compared. (A sql rule's query returns only the groups that hold.)
    """
    try:
        if rule.kind == "sql":
            frame = _sql_conditions(con, rule, grid)
            return frame.with_columns(holds=pl.lit(True)) if every_value else frame
        sql, params = _CONDITION_SQL[rule.kind](rule, grid)
        keep, drop = ("TRUE", "") if every_value else ("holds", " EXCLUDE (holds)")
        return con.execute(f"SELECT *{drop} FROM ({sql}) WHERE {keep} ORDER BY group_key, tick", params).pl()
    except duckdb.Error as error:
        raise RuleFailed(f"Rule '{rule.name}' could not be evaluated: {first_line(error)}; check the rule (closewatch alerts check) and the schema.") from None


def _group_key_sql(columns: Iterable[str], prefix: str = "") -> str:
    parts = [f"'{c}=' || coalesce(CAST({prefix}{c} AS VARCHAR), '(none)')" for c in columns]
    return f"concat_ws(',', {', '.join(parts)})" if parts else "''"


def where_sql(rule: Rule, params: dict[str, Any]) -> str:
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
    if rule.metric == "clients":
        return _clients_sql(rule, grid)
    params = _grid_params(rule, grid, rule.window_s)
    where = where_sql(rule, params)
    groups = list(rule.group_by)
    select = "".join(f"{c}, " for c in groups)
    params["bound"] = rule.value
    extra = "NULL::VARCHAR"
    if rule.metric == "count":
        counts, filtered = "count(*) AS n, 0 AS total", f"AND {where}"
        having, value = f"sum(n) {rule.op} $bound", "sum(n)"
    elif rule.metric == "per_1k_sessions":
        # Every closure is one session closed: the group's closures in the window are its sessions.
        counts, filtered = f"count(*) FILTER (WHERE {where}) AS n, count(*) AS total", ""
        params["min_sessions"] = rule.min_sessions
        value = "1000.0 * sum(n) / sum(total)"
        having = f"sum(total) >= $min_sessions AND {value} {rule.op} $bound"
        extra = "json_object('matching', sum(n), 'sessions', sum(total))::VARCHAR"
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
        SELECT tick, {_group_key_sql(groups)} AS group_key, ({value})::DOUBLE AS value, {select}{extra} AS extra,
               coalesce({having}, FALSE) AS holds
        FROM ticks JOIN b ON b.bucket > tick - $win AND b.bucket <= tick
        GROUP BY ALL
    """
    return sql, params


#: Clients a "clients" condition names in its extra (the rest are counted): a message lists who is affected.
MAX_CLIENTS_NAMED = 20


def _clients_sql(rule: Rule, grid: Grid) -> tuple[str, dict]:
    """metric = "clients": per group, how many clients had at least ``min_per_client`` matching closures in the window.

    The extra names them (most closures first) and counts them and their
    closures, so a platform-wide alert can say who is affected.
    """
    params = _grid_params(rule, grid, rule.window_s)
    where = where_sql(rule, params)
    groups = list(rule.group_by)
    select = "".join(f"{c}, " for c in groups)
    params.update(bound=rule.value, min_per_client=rule.min_per_client, named=MAX_CLIENTS_NAMED)
    sql = f"""
        WITH b AS (
            SELECT {select}client_id, {_BUCKET} AS bucket, count(*) AS n
            FROM closures
            WHERE ts > make_timestamptz($lo) AND ts <= make_timestamptz($t1) AND client_id IS NOT NULL AND {where}
            GROUP BY ALL
        ), {_TICKS},
        per_client AS (
            SELECT tick, {select}client_id, sum(n) AS n
            FROM ticks JOIN b ON b.bucket > tick - $win AND b.bucket <= tick
            GROUP BY ALL
            HAVING sum(n) >= $min_per_client
        )
        SELECT tick, {_group_key_sql(groups)} AS group_key, count(*)::DOUBLE AS value, {select}
               json_object('clients', list(client_id ORDER BY n DESC, client_id)[1:$named], 'clients_total', count(*),
                           'matching', sum(n))::VARCHAR AS extra,
               count(*) {rule.op} $bound AS holds
        FROM per_client
        GROUP BY ALL
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
        SELECT tick, {_group_key_sql(groups, 'd.')} AS group_key, max(d.count)::DOUBLE AS value, {select}NULL::VARCHAR AS extra,
               count(*) >= $min_findings AS holds
        FROM ticks JOIN d ON d.ws <= tick AND d.we > tick - $win
        GROUP BY ALL
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
    where = where_sql(rule, params)
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
               CAST(last_bucket AS VARCHAR) AS extra,
               coalesce((last_bucket IS NULL OR last_bucket <= tick - $win) AND ({expected} OR last_bucket > tick - $lookback), FALSE) AS holds
        FROM last AS g
    """
    return sql, params


_CONDITION_SQL = {"threshold": _threshold_sql, "pattern": _pattern_sql, "absence": _absence_sql}


def _sql_conditions(con: duckdb.DuckDBPyConnection, rule: Rule, grid: Grid) -> pl.DataFrame:
    """A sql rule runs its query once per evaluation time, with $start and $end bound to the window."""
    if not rule.query:  # the rules file refuses a sql rule without one; a Rule built in code may lack it
        raise RuleFailed(f"Rule '{rule.name}' is a sql rule without a query; give it one.")
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
