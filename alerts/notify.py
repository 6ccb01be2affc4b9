"""Notifications through an outbox: written with the alert's state, sent later, retried until delivered.

The engine writes each notification into ``alert_outbox`` in the same
transaction as the state change that caused it, so a notification exists if
and only if its firing was recorded. ``deliver`` then sends what is due, one
row at a time, and marks each row in its own short transaction right after
the channel accepted it. A failed send stays ``pending`` with its error and a
next attempt after an exponential backoff with jitter; nothing is dropped.

Exactly once: a notification's id is deterministic (rule, group, kind,
evaluation time, channel), so re-evaluating a range cannot queue it twice,
and a delivered row is never sent again. The one gap no sender can close
alone -- the process dies after the receiver said 2xx and before the row is
marked -- is covered by the receiver: webhooks carry the id in the body and
in an ``Idempotency-Key`` header, file lines carry it too.

Secrets stay out of the database: a row names its channel, and the channel's
URL and headers are read from the environment variables the rules file names
at the moment of sending.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from closewatch.alerts.engine import NOTIFY_RESOLVED, EngineSettings, Notice, from_us, stable_id
from closewatch.alerts.errors import DeliveryFailed
from closewatch.alerts.rules import Channel, Rule, RuleSet, format_duration
from closewatch import __version__
from closewatch.store import Store

log = logging.getLogger("closewatch.alerts")
USER_AGENT = f"closewatch/{__version__}"
#: Rows a single deliver run sends at most (the rest wait for the next run).
DELIVER_BATCH = 200
MAX_ERROR_CHARS = 300


# -- queueing --------------------------------------------------------------------


def enqueue(con: duckdb.DuckDBPyConnection, ruleset: RuleSet, rule: Rule, notices: list[Notice], now: datetime) -> int:
    """Queue one outbox row per notice and channel, in the caller's transaction; returns rows added."""
    added = 0
    for notice in notices:
        payload = json.dumps(build_message(rule, notice), default=str)
        for channel in rule.channels:
            notification_id = stable_id(rule.name, notice.group_key, notice.kind, notice.at, channel)
            added += con.execute(
                """INSERT OR IGNORE INTO alert_outbox VALUES
                   (?, ?, ?, ?, make_timestamptz(?::BIGINT), ?, ?, 'pending', 0, ?, ?, NULL, NULL, NULL)""",
                [notification_id, rule.name, notice.group_key, notice.kind, notice.at, channel, payload, now, now],
            ).fetchone()[0]
    return added


# -- the message -----------------------------------------------------------------


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


# -- channels ----------------------------------------------------------------------


def send(channel: Channel, payload: dict[str, Any], sleep=time.sleep) -> None:
    """Deliver one message through one channel, or raise DeliveryFailed with one sentence."""
    if channel.type == "console":
        print(payload["text"] + f"\n(notification {payload['id']})\n", flush=True)
    elif channel.type == "log":
        log.warning("%s | %s", payload["title"], payload["summary"], extra={"notification_id": payload["id"]})
    elif channel.type == "file":
        _append_line(Path(channel.path or "alerts.jsonl"), payload)
    elif channel.type == "webhook":
        _post_with_retries(channel, payload, sleep)
    elif channel.type == "apprise":
        _apprise(channel, payload)
    else:  # pragma: no cover - rules.py admits no other type
        raise DeliveryFailed(f"channel '{channel.name}' has unknown type {channel.type!r}")


def _append_line(path: Path, payload: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(payload, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise DeliveryFailed(f"cannot append to {path}: {error.strerror or error}") from None


def _secret(channel: Channel, env: str) -> str:
    value = os.environ.get(env)
    if not value:
        raise DeliveryFailed(f"environment variable {env} (channel '{channel.name}') is not set")
    return value


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that answers 3xx has not accepted the notification: do not follow it."""

    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post_with_retries(channel: Channel, payload: dict[str, Any], sleep) -> None:
    """POST the JSON payload; retry a few times with exponential backoff and full jitter; only 2xx counts."""
    url = channel.url or _secret(channel, channel.url_envs[0])
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Idempotency-Key": payload["id"],
               **channel.headers, **{name: _secret(channel, env) for name, env in channel.headers_env.items()}}
    body = json.dumps(payload, default=str).encode("utf-8")
    last = ""
    for attempt in range(channel.retries + 1):
        if attempt:
            sleep(random.uniform(0, channel.backoff_s * 2 ** (attempt - 1)))
        try:
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with _OPENER.open(request, timeout=channel.timeout_s) as response:
                if 200 <= response.status < 300:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
            error.close()
        except (TimeoutError, OSError, urllib.error.URLError) as error:
            reason = getattr(error, "reason", error)
            last = f"timed out after {format_duration(channel.timeout_s)}" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else f"connection failed ({_clean(str(reason), url)})"
    raise DeliveryFailed(f"webhook '{channel.name}' did not accept it: {last} (after {channel.retries + 1} attempts)")


def _apprise(channel: Channel, payload: dict[str, Any]) -> None:
    import apprise

    notifier = apprise.Apprise()
    for env in channel.url_envs:
        if not notifier.add(_secret(channel, env)):
            raise DeliveryFailed(f"apprise does not understand the URL in {env} (channel '{channel.name}'); see https://github.com/caronc/apprise/wiki")
    if not notifier.notify(title=payload["title"], body=payload["text"]):
        raise DeliveryFailed(f"apprise could not deliver to channel '{channel.name}' (its log says why)")


def _clean(text: str, *secrets: str) -> str:
    """An error text without the secrets it might quote."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<secret>")
    return text[:MAX_ERROR_CHARS]


# -- delivering the outbox ---------------------------------------------------------------


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.delivered} delivered, {self.failed} failed (kept for retry)"
        return text + (f": {self.errors[0]}" if self.errors else "")


def deliver(store: Store, ruleset: RuleSet, settings: EngineSettings = EngineSettings(),
            now: datetime | None = None, limit: int = DELIVER_BATCH, sleep=time.sleep) -> DeliveryReport:
    """Send every due outbox row once; mark each right after its channel answers.

    The database is held only to read the due rows and to mark each one, never
    while a channel is being called, so a slow webhook does not block the
    dashboard.
    """
    report = DeliveryReport()
    now = now or datetime.now(UTC)
    with store.transaction() as con:
        rows = con.execute("""
            SELECT notification_id, channel, payload, attempts FROM alert_outbox
            WHERE status = 'pending' AND next_attempt_at <= ?
            ORDER BY created_at, event_time, notification_id LIMIT ?
        """, [now, limit]).fetchall()
    for notification_id, channel_name, payload_text, attempts in rows:
        payload = {"id": notification_id, **json.loads(payload_text)}
        channel = ruleset.channels.get(channel_name)
        try:
            if channel is None:
                raise DeliveryFailed(f"channel '{channel_name}' is not defined in {ruleset.path}")
            send(channel, payload, sleep)
        except DeliveryFailed as error:
            report.failed += 1
            report.errors.append(str(error))
            delay = _backoff(attempts + 1, settings)
            _mark(store, notification_id, None, str(error), now + timedelta(seconds=delay))
            log.info("notification %s not delivered (%s); next attempt in %s", notification_id, error, format_duration(delay))
        else:
            report.delivered += 1
            _mark(store, notification_id, datetime.now(UTC), None, None)
    return report


def _backoff(attempts: int, settings: EngineSettings) -> float:
    """Exponential backoff with jitter: base * 2^(attempts-1), capped, times a random factor in [0.5, 1]."""
    delay = min(settings.retry_max_s, settings.retry_base_s * 2 ** min(attempts - 1, 30))
    return delay * random.uniform(0.5, 1.0)


def _mark(store: Store, notification_id: str, delivered_at: datetime | None, error: str | None,
          next_attempt: datetime | None) -> None:
    with store.transaction() as con:
        if delivered_at is not None:
            con.execute("""
                UPDATE alert_outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = ?,
                       last_attempt_at = ?, last_error = NULL
                WHERE notification_id = ?
            """, [delivered_at, delivered_at, notification_id])
        else:
            con.execute("""
                UPDATE alert_outbox SET attempts = attempts + 1, last_attempt_at = now(), last_error = ?, next_attempt_at = ?
                WHERE notification_id = ?
            """, [error[:MAX_ERROR_CHARS], next_attempt, notification_id])


def outbox(store: Store, status: str | None = None, limit: int = 100) -> Any:
    """Outbox rows for people: newest first, with attempts and the last error (a read-only connection)."""
    return store.query("""
        SELECT notification_id, rule, group_key AS "group", kind, channel, status, attempts, created_at,
               next_attempt_at, delivered_at, last_error
        FROM alert_outbox WHERE ($status IS NULL OR status = $status)
        ORDER BY created_at DESC, event_time DESC LIMIT $limit
    """, {"status": status, "limit": limit})
