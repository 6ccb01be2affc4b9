"""Notifications through an outbox: written with the alert's state, sent later, retried until delivered.

Evaluation writes each notification into ``alert_outbox`` (``enqueue``) in
the same transaction as the state change that caused it, so a notification
exists if and only if its firing was recorded. ``deliver`` then sends what is
due through ``channels.send`` and marks each answer in a short transaction. A
failed send stays ``pending`` with its error and a next attempt after an
exponential backoff with jitter; nothing is dropped.

Exactly once: a notification's id is deterministic (rule, group, kind,
evaluation time, channel), so re-evaluating a range cannot queue it twice,
and a delivered row is never sent again. The one gap no sender can close
alone -- the process dies after the receiver said 2xx and before the row is
marked -- is covered by the receiver: webhooks carry the id in the body and
in an ``Idempotency-Key`` header, file lines carry it too.

A row names its channel only; the channel's secrets stay in the environment.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import httpx
import tenacity

from closewatch.alerts.channels import MAX_ERROR_CHARS, new_client, send
from closewatch.alerts.errors import DeliveryFailed
from closewatch.alerts.messages import build_message
from closewatch.alerts.model import EngineSettings, Notice, stable_id
from closewatch.alerts.rules import Channel, Rule, RuleSet, format_duration
from closewatch.errors import ClosewatchError
from closewatch.redaction import redact_text
from closewatch.store import Store, scalar

log = logging.getLogger("closewatch.alerts")
#: Rows a single deliver run sends at most (the rest wait for the next run).
DELIVER_BATCH = 200
#: How much longer than a run's deadline (plus the store's lock timeout) a claim lasts.
LEASE_MARGIN_S = 60.0
#: How long a run that hit its deadline or was stopped waits for the calls in flight.
STOP_GRACE_S = 2.0
#: How often a run writes the answers it got (one transaction each time).
MARK_EVERY_S = 0.5


# -- queueing ------------------------------------------------------------------


def enqueue(con: duckdb.DuckDBPyConnection, ruleset: RuleSet, rule: Rule, notices: list[Notice], now: datetime) -> int:
    """Queue one outbox row per notice and channel, in the caller's transaction; returns rows added."""
    added = 0
    for notice in notices:
        payload = json.dumps(build_message(rule, notice), default=str)
        for channel in rule.channels:
            notification_id = stable_id(rule.name, notice.group_key, notice.kind, notice.at, channel)
            added += scalar(
                con,
                """INSERT OR IGNORE INTO alert_outbox
                       (notification_id, rule, group_key, kind, event_time, channel, payload, status, attempts,
                        created_at, next_attempt_at)
                   VALUES (?, ?, ?, ?, make_timestamptz(?::BIGINT), ?, ?, 'pending', 0, ?, ?)""",
                [notification_id, rule.name, notice.group_key, notice.kind, notice.at, channel, payload, now, now],
            )
    return added


# -- delivering the outbox -----------------------------------------------------


@dataclass
class DeliveryReport:
    """What one deliver run did; ``postponed`` rows were claimed but not tried (deadline, stop, failing channel)."""

    delivered: int = 0
    failed: int = 0
    postponed: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.delivered} delivered, {self.failed} failed (kept for retry)"
        if self.postponed:
            text += f", {self.postponed} left for the next run"
        return text + (f": {self.errors[0]}" if self.errors else "")


@dataclass
class _Run:
    """One deliver run, shared by its channel workers and its marker."""

    store: Store
    ruleset: RuleSet
    settings: EngineSettings
    claimer: str
    now: datetime
    deadline: float
    stop: threading.Event
    sleep: Any
    report: DeliveryReport = field(default_factory=DeliveryReport)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: set[str] = field(default_factory=set)  # rows whose channel call has started and not ended
    outcomes: list[tuple[str, str | None, int]] = field(default_factory=list)  # (id, error or None, attempts): to mark
    over: bool = False  # set when the run returns: workers still alive start nothing new
    client: httpx.Client | None = None  # one for the whole run: building one costs about 0.1 s

    def may_start(self) -> bool:
        return not (self.over or self.stop.is_set() or time.monotonic() >= self.deadline)


def deliver(store: Store, ruleset: RuleSet, settings: EngineSettings = EngineSettings(),
            now: datetime | None = None, limit: int = DELIVER_BATCH, sleep=None,
            stop: threading.Event | None = None) -> DeliveryReport:
    """Claim the due outbox rows, send them (one worker per channel), and mark what each channel answered.

    Exactly once with any number of deliverers: a row is claimed (claimer id
    and lease) in a transaction before it is sent, and only unclaimed rows or
    rows whose lease ran out are claimed, so two deliverers never hold the
    same row. The lease outlasts the run's deadline plus the store's lock
    timeout, so a live claimer always marks or releases its rows first; a
    claimer that died leaves rows that another deliverer takes over when the
    lease ends (the documented crash window: sent, not yet marked).

    Channels are sent to in parallel, so a dead one never delays another;
    a channel that fails ``deliver_failures`` times in a row is not tried
    again this run. Answers are marked in small batches (every
    ``MARK_EVERY_S``) in one transaction each, so the database is held only to
    claim and to mark, never while a channel is called. The run stops
    starting sends at its deadline (``[alerts] deliver_deadline``) or when
    ``stop`` is set, waits a few seconds for the calls in flight, marks every
    answer it got, and releases every row it did not try: they stay pending.
    """
    now = now or datetime.now(UTC)
    stop = stop or threading.Event()
    run = _Run(store, ruleset, settings, _claimer_id(), now, time.monotonic() + settings.deliver_deadline_s, stop,
               sleep or (lambda seconds: stop.wait(seconds)))
    longest_call_s = max((c.timeout_s for c in ruleset.channels.values() if c.type == "webhook"), default=0.0)
    lease = timedelta(seconds=settings.deliver_deadline_s + longest_call_s + store.lock_timeout_s + LEASE_MARGIN_S)
    rows = _claim(store, run.claimer, now, lease, limit)
    by_channel: dict[str, list[tuple]] = {}
    for row in rows:
        by_channel.setdefault(row[1], []).append(row)
    if any(getattr(ruleset.channels.get(name), "type", None) == "webhook" for name in by_channel):
        run.client = new_client()
    workers = [threading.Thread(target=_channel_worker, args=(run, name, channel_rows), name=f"deliver-{name}", daemon=True)
               for name, channel_rows in by_channel.items()]
    for worker in workers:
        worker.start()
    _wait_for(workers, run, longest_call_s)
    with run.lock:
        run.over = True
        keep = set(run.in_flight)
    _mark_outcomes(run)
    if run.client is not None:
        run.client.close()
    released = _release(store, run.claimer, keep) if rows else 0  # nothing claimed, nothing to give back
    run.report.postponed = max(0, len(rows) - run.report.delivered - run.report.failed - len(keep))
    if released and (stop.is_set() or time.monotonic() >= run.deadline):
        why = "stopped" if stop.is_set() else f"reached its deadline ({format_duration(settings.deliver_deadline_s)})"
        run.report.errors.insert(0, f"the delivery run {why}; {released} notifications wait for the next run")
    return run.report


def due(store: Store, now: datetime | None = None) -> int:
    """How many pending notifications are due now, whoever holds them: 0 means a deliver run has nothing to do.

    One read-only query, so a scheduler can tell an idle run from a busy one
    without the claim's write transaction (a run with work claims as usual).
    """
    with store.connect(read_only=True) as con:
        return scalar(con, "SELECT count(*) FROM alert_outbox WHERE status = 'pending' AND next_attempt_at <= ?",
                      [now or datetime.now(UTC)])


def _wait_for(workers: list[threading.Thread], run: _Run, longest_timeout_s: float) -> None:
    """Mark answers as they come; return when every worker is done, or when waiting longer is pointless.

    After the deadline, the calls in flight get their timeout to end (no new
    call starts); after ``stop``, only ``STOP_GRACE_S``: a call still in
    flight then keeps its claim until the lease ends, like a crash.
    """
    stopped_at: float | None = None
    next_mark = time.monotonic() + MARK_EVERY_S
    while any(worker.is_alive() for worker in workers):
        clock = time.monotonic()
        if run.stop.is_set() and stopped_at is None:
            stopped_at = clock
        if clock >= run.deadline + longest_timeout_s + STOP_GRACE_S or (stopped_at is not None and clock >= stopped_at + STOP_GRACE_S):
            return
        if clock >= next_mark:
            _mark_outcomes(run)
            next_mark = time.monotonic() + MARK_EVERY_S
        for worker in workers:
            worker.join(0.02)


def _channel_worker(run: _Run, channel_name: str, rows: list[tuple]) -> None:
    """Send one channel's rows in order; stop early on the deadline, on stop, or when the channel keeps failing."""
    channel = run.ruleset.channels.get(channel_name)
    failures_in_a_row = 0
    for position, (notification_id, _, payload_text, attempts) in enumerate(rows):
        with run.lock:
            if not run.may_start():
                return
            if failures_in_a_row >= run.settings.deliver_failures:
                run.report.errors.append(
                    f"channel '{channel_name}' failed {failures_in_a_row} times in a row; "
                    f"its other {len(rows) - position} notifications wait for the next run")
                return
            run.in_flight.add(notification_id)
        error = _send_one(run, channel, channel_name, notification_id, payload_text)
        with run.lock:
            run.in_flight.discard(notification_id)
            if run.over:  # the run gave up waiting for this call: the row stays claimed until its lease ends
                return
            run.outcomes.append((notification_id, error, attempts))
            if error is None:
                run.report.delivered += 1
            else:
                run.report.failed += 1
                run.report.errors.append(error)
        failures_in_a_row = 0 if error is None else failures_in_a_row + 1


def _send_one(run: _Run, channel: Channel | None, channel_name: str, notification_id: str, payload_text: str) -> str | None:
    """None when the channel accepted the notification, else the one sentence that says why not."""
    try:
        if channel is None:
            raise DeliveryFailed(f"channel '{channel_name}' is not defined in {run.ruleset.path}")
        send(channel, {"id": notification_id, **json.loads(payload_text)}, run.sleep, run.deadline, run.stop,
             run.client)
    except DeliveryFailed as failure:
        return str(failure)
    except Exception as failure:  # a bug or a library's surprise: still one sentence, and the row stays pending
        log.exception("notification %s: unexpected error", notification_id)
        return f"channel '{channel_name}' failed unexpectedly ({type(failure).__name__}); see the log"
    return None


def _mark_outcomes(run: _Run) -> None:
    """Write the answers gathered so far in one transaction; a busy store keeps them for the next try."""
    with run.lock:
        batch, run.outcomes = run.outcomes, []
    if not batch:
        return
    try:
        _mark(run.store, run.claimer, batch, run.now, run.settings)
    except ClosewatchError as problem:
        with run.lock:
            run.outcomes = batch + run.outcomes
        log.warning("%d answers not marked yet: %s", len(batch), problem)


def _claimer_id() -> str:
    """host:pid:random, so that a deliverer on the same host can tell that a claimer's process is gone."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _claimer_is_gone(claimer: str) -> bool:
    """True when the claimer ran on this host and its process no longer exists (killed): its claims need not wait out
    their lease. A process elsewhere, or a live (or reused) PID here, keeps its claims until the lease ends."""
    parts = claimer.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit() or int(parts[1]) == os.getpid():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by someone else
        return False
    return False


@tenacity.retry(retry=tenacity.retry_if_exception_type(duckdb.TransactionException), stop=tenacity.stop_after_attempt(8),
                wait=tenacity.wait_random(0.01, 0.1), reraise=True)
def _claim(store: Store, claimer: str, now: datetime, lease: timedelta, limit: int) -> list[tuple]:
    """Claim up to ``limit`` due rows that nobody holds (or whose holder's lease ran out), in one transaction.

    Two claims of the same row conflict (DuckDB refuses the second update of a
    row another open transaction changed; another process cannot open the
    file meanwhile), and a conflicting claim is retried from scratch.
    """
    with store.transaction() as con:
        holders = con.execute("SELECT DISTINCT claimed_by FROM alert_outbox WHERE status = 'pending' AND claimed_until > ?",
                              [now]).fetchall()
        gone = [holder for (holder,) in holders if _claimer_is_gone(holder)]
        rows = con.execute("""
            UPDATE alert_outbox SET claimed_by = $claimer, claimed_until = $until
            WHERE notification_id IN (
                SELECT notification_id FROM alert_outbox
                WHERE status = 'pending' AND next_attempt_at <= $now
                  AND (claimed_until IS NULL OR claimed_until <= $now OR list_contains($gone, claimed_by))
                ORDER BY created_at, event_time, notification_id LIMIT $limit
            )
            RETURNING notification_id, channel, payload, attempts, created_at, event_time
        """, {"claimer": claimer, "until": now + lease, "now": now, "limit": limit, "gone": gone}).fetchall()
    rows.sort(key=lambda r: (r[4], r[5], r[0]))
    return [r[:4] for r in rows]


def _release(store: Store, claimer: str, keep: set[str]) -> int:
    """Give back every row this run claimed and did not finish (except the calls still in flight); returns how many."""
    try:
        with store.transaction() as con:
            return scalar(con, """
                UPDATE alert_outbox SET claimed_by = NULL, claimed_until = NULL
                WHERE claimed_by = $claimer AND status = 'pending' AND NOT list_contains($keep, notification_id)
            """, {"claimer": claimer, "keep": sorted(keep)})
    except ClosewatchError as problem:  # busy: the leases run out on their own
        log.warning("claims of %s not released: %s", claimer, problem)
        return 0


def _backoff(attempts: int, settings: EngineSettings) -> float:
    """Exponential backoff with jitter: base * 2^(attempts-1), capped, times a random factor in [0.5, 1]."""
    delay = min(settings.retry_max_s, settings.retry_base_s * 2 ** min(attempts - 1, 30))
    return delay * random.uniform(0.5, 1.0)


def _mark(store: Store, claimer: str, outcomes: list[tuple[str, str | None, int]], now: datetime,
          settings: EngineSettings) -> None:
    """Record each attempt and drop its claim, only where this run still holds the row (one transaction)."""
    delivered = [notification_id for notification_id, error, _ in outcomes if error is None]
    failed = [(notification_id, error, attempts) for notification_id, error, attempts in outcomes if error is not None]
    at = datetime.now(UTC)
    with store.transaction() as con:
        changed = 0
        if delivered:
            changed += scalar(con, """
                UPDATE alert_outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = $at,
                       last_attempt_at = $at, last_error = NULL, claimed_by = NULL, claimed_until = NULL
                WHERE list_contains($ids, notification_id) AND claimed_by = $claimer
            """, {"at": at, "ids": delivered, "claimer": claimer})
        for notification_id, error, attempts in failed:
            delay = _backoff(attempts + 1, settings)
            changed += scalar(con, """
                UPDATE alert_outbox SET attempts = attempts + 1, last_attempt_at = ?, last_error = ?, next_attempt_at = ?,
                       claimed_by = NULL, claimed_until = NULL
                WHERE notification_id = ? AND claimed_by = ?
            """, [at, redact_text(error)[:MAX_ERROR_CHARS], now + timedelta(seconds=delay), notification_id, claimer])
            log.info("notification %s not delivered (%s); next attempt in %s", notification_id, error, format_duration(delay))
    if changed < len(outcomes):
        log.warning("%d notifications: the claim of %s had ended before they were marked", len(outcomes) - changed, claimer)


def outbox(store: Store, status: str | None = None, limit: int = 100) -> Any:
    """Outbox rows for people: newest first, with attempts and the last error (a read-only connection)."""
    return store.query("""
        SELECT notification_id, rule, group_key AS "group", kind, channel, status, attempts, created_at,
               next_attempt_at, delivered_at, last_error
        FROM alert_outbox WHERE ($status IS NULL OR status = $status)
        ORDER BY created_at DESC, event_time DESC LIMIT $limit
    """, {"status": status, "limit": limit})
