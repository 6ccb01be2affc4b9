"""What a notification says: the numbers read from the data (``notice_details``) and the message built from them.

``notice_details`` runs in the evaluation's transaction, so a message
describes the window that fired; ``build_message`` is pure, and its result
is the outbox row's payload.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import duckdb

from closewatch.alerts.conditions import where_sql
from closewatch.alerts.model import NOTIFY_RESOLVED, Notice, from_us, seconds_us
from closewatch.alerts.rules import Rule, format_duration
from closewatch.store import first_row


# -- what the data says --------------------------------------------------------


def notice_details(con: duckdb.DuckDBPyConnection, rule: Rule, notice: Notice) -> dict[str, Any]:
    """Top reasons, the recommended action and counts for one notification, read from the data."""
    window = seconds_us(rule.window_s)
    at = notice.at if notice.kind != NOTIFY_RESOLVED else (notice.resolved_at or notice.at)
    details: dict[str, Any] = {"window_start": from_us(at - window), "window_end": from_us(at), "top_reasons": [], "action": ""}
    if rule.kind in ("threshold", "absence"):
        params: dict[str, Any] = {"lo": at - window, "hi": at}
        where = where_sql(rule, params)
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
            last = first_row(con, f"""
                SELECT max(ts) FROM closures WHERE ts <= make_timestamptz($hi) AND {where} AND {groups}
            """, {k: v for k, v in params.items() if k != "lo"})[0]
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


# -- the message ---------------------------------------------------------------


def build_message(rule: Rule, notice: Notice) -> dict[str, Any]:
    """What fired, for whom, how many over which window, the top reasons, the action and the runbook."""
    details = notice.details
    group = notice.group_key or "all"
    status = "RESOLVED" if notice.kind == NOTIFY_RESOLVED else "FIRING"
    window_start, window_end = details.get("window_start"), details.get("window_end")
    headline = _headline(rule, notice, group)
    reasons = details.get("top_reasons", [])
    context = {
        "rule": rule.name, "description": rule.description, "severity": rule.severity, "status": status,
        "group": group, "headline": headline, "value": _number(notice.value), "window": format_duration(rule.window_s),
        "window_start": _when(window_start), "window_end": _when(window_end),
        "top_reasons": "; ".join(_reason_text(r) for r in reasons) or "-",
        "action": details.get("action") or "", "runbook": rule.runbook,
        "labels": ", ".join(f"{k}={v}" for k, v in rule.labels.items()),
        **{k: ("(none)" if v is None else v) for k, v in notice.group_values.items()},
    }
    summary = _render(rule.message, context, headline)
    title = f"[{status}] {rule.name}{_whom_title(notice, group)}" + (f" ({rule.severity})" if status == "FIRING" else "")
    lines = [title, summary]
    if window_start is not None and notice.kind != NOTIFY_RESOLVED:
        lines.append(f"Window: {_when(window_start)} to {_when(window_end)} ({format_duration(rule.window_s)})")
    if reasons and notice.kind != NOTIFY_RESOLVED:
        lines.append("Top reasons:")
        lines += [f"  - {_reason_text(r)}" for r in reasons]
    if context["action"] and notice.kind != NOTIFY_RESOLVED:
        lines.append(f"Action: {context['action']}")
    if rule.runbook:
        lines.append(f"Runbook: {rule.runbook}")
    if rule.labels:
        lines.append(f"Labels: {context['labels']}")
    return {
        "rule": rule.name, "kind": notice.kind, "status": status, "severity": rule.severity,
        "description": rule.description, "group": group, "group_values": notice.group_values,
        "value": notice.value, "window": format_duration(rule.window_s),
        "window_start": _iso(window_start), "window_end": _iso(window_end),
        "event_time": from_us(notice.at).isoformat(),
        "fired_at": from_us(notice.fired_at).isoformat() if notice.fired_at is not None else None,
        "resolved_at": from_us(notice.resolved_at).isoformat() if notice.resolved_at is not None else None,
        "headline": headline, "summary": summary, "top_reasons": reasons, "action": context["action"],
        "runbook": rule.runbook, "labels": rule.labels, "title": title, "text": "\n".join(lines),
    }


def _whom_title(notice: Notice, group: str) -> str:
    return f" for {group}" if notice.group_key else ""


def _headline(rule: Rule, notice: Notice, group: str) -> str:
    """One sentence with the numbers, worded for the rule's kind."""
    details = notice.details
    window = format_duration(rule.window_s)
    whom = f" for {group}" if notice.group_key else ""
    if notice.kind == NOTIFY_RESOLVED:
        fired = from_us(notice.fired_at) if notice.fired_at is not None else None
        resolved = from_us(notice.resolved_at if notice.resolved_at is not None else notice.at)
        lasted = f" after {format_duration((resolved - fired).total_seconds())}" if fired else ""
        return f"{rule.name} resolved{whom} at {_when(resolved)}{lasted}."
    filters = _filters_text(rule)
    if rule.kind == "threshold" and rule.metric in ("per_1k_sessions", "clients"):
        return _traffic_headline(rule, notice, filters, window, whom)
    if rule.kind == "threshold" and rule.metric == "count":
        return f"{_number(notice.value)} closures{filters} in {window}{whom} (alert at {rule.op} {_number(rule.value)})."
    if rule.kind == "threshold":
        return f"{(notice.value or 0):.0%} of closures{filters} in {window}{whom} (alert at {rule.op} {rule.value:.0%})."
    if rule.kind == "pattern":
        findings = details.get("findings") or 1
        return (f"{findings} {rule.pattern} finding{'s' if findings != 1 else ''}{whom} within {window}, "
                f"the largest with {_number(notice.value)} closures.")
    if rule.kind == "absence":
        last = details.get("last_seen")
        seen = f"last one at {_when(last)}" if last else "none within the lookback"
        return f"No closures{filters}{whom or ' at all'} in the last {window} ({seen})."
    return f"The query of {rule.name} returned {group} (value {_number(notice.value)})."


def _traffic_headline(rule: Rule, notice: Notice, filters: str, window: str, whom: str) -> str:
    """Both numbers of a per-traffic metric: the rate and what it is made of, or the clients and who they are."""
    bound = f"alert at {rule.op} {_number(rule.value)}"
    detail = traffic_detail(rule, notice.extra, notice.value)
    if rule.metric == "per_1k_sessions":
        parts = f": {detail}" if detail else ""
        return f"{_number(notice.value)} closures{filters} per 1,000 sessions in {window}{whom}{parts} ({bound})."
    return f"{detail} had closures{filters} in {window}{whom} ({bound}, at least {rule.min_per_client} each)."


def traffic_detail(rule: Rule, extra: str | None, value: float | None) -> str | None:
    """What a per-traffic value is made of, from its condition's extra: "4 of 20 sessions", or "3 clients (a, b, c)"."""
    numbers = json.loads(extra) if extra else {}
    if rule.metric == "per_1k_sessions":
        return f"{_number(numbers['matching'])} of {_number(numbers['sessions'])} sessions" if "sessions" in numbers else None
    if rule.metric == "clients":
        return clients_text(numbers, value)
    return None


def clients_text(extra: dict[str, Any], value: float | None) -> str:
    """'7 clients (a, b, c, ...)': how many and which, from a "clients" condition's extra."""
    names = [str(name) for name in extra.get("clients") or []]
    total = int(extra.get("clients_total") or value or len(names))
    more = f" and {total - len(names)} more" if total > len(names) else ""
    listed = f" ({', '.join(names)}{more})" if names else ""
    return f"{total} client{'s' if total != 1 else ''}{listed}"


def _filters_text(rule: Rule) -> str:
    if not rule.where:
        return ""
    parts = [f"{k} {'/'.join(str(v) for v in values)}" for k, values in rule.where.items()]
    return " with " + ", ".join(parts)


def _render(template: str, context: dict[str, Any], fallback: str) -> str:
    try:
        return template.format_map(context)
    except (KeyError, ValueError, IndexError, AttributeError, TypeError) as error:
        return f"{fallback} (the rule's message template failed: {error})"


def _reason_text(reason: dict[str, Any]) -> str:
    count = reason.get("count")
    category = reason.get("category")
    text = str(reason.get("reason") or "(no reason text)")
    suffix = f" [{category}]" if category and category not in text else ""
    return f"{_number(count)} x {text}{suffix}" if count is not None else f"{text}{suffix}"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def _when(moment: Any) -> str:
    if not isinstance(moment, datetime):
        return "-" if moment is None else str(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(moment: Any) -> str | None:
    return moment.astimezone(UTC).isoformat() if isinstance(moment, datetime) else None
