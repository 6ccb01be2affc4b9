"""The Alerts page's reads: rule states, history, silences, scheduler health, the backtest backdrop, the rules file."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from closewatch.dashboard.queries.shared import get_settings, reader, reading
from closewatch.dashboard.queries.timespan import bucket_to_time, bucketed_counts, range_sql
from closewatch.settings import SchedulerSettings
from closewatch.store import Store

ALERT_TABLES = ("alert_state", "alert_events", "alert_silences", "job_runs")


@dataclass
class AlertData:
    """The alert tables as the Alerts page shows them; ``available`` is False on a database without them."""

    available: bool
    states: pl.DataFrame = field(default_factory=pl.DataFrame)
    history: pl.DataFrame = field(default_factory=pl.DataFrame)
    silences: pl.DataFrame = field(default_factory=pl.DataFrame)
    health: pl.DataFrame = field(default_factory=pl.DataFrame)
    outbox: pl.DataFrame = field(default_factory=pl.DataFrame)
    followed: pl.DataFrame = field(default_factory=pl.DataFrame)  # followed files and streams (follow_health)


def alert_data(store: Store, now: datetime | None = None, history_rows: int = 200) -> AlertData:
    """Rule states, recent transitions, active silences, each job's last run; read-only, uncached (it auto-refreshes)."""
    now = now or datetime.now(UTC)
    with reading(store) as con:
        present = {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
        if not set(ALERT_TABLES) <= present:
            return AlertData(False)
        states = con.execute("""
            SELECT s.rule, s.group_key AS "group", s.state, s.value, s.pending_since, s.fired_at, s.resolved_at,
                   s.notified_at, s.updated_at, w.evaluated_to
            FROM alert_state s LEFT JOIN alert_watermarks w USING (rule)
            ORDER BY CASE s.state WHEN 'firing' THEN 0 WHEN 'pending' THEN 1 WHEN 'resolved' THEN 2 ELSE 3 END, s.rule, s.group_key
        """).pl()
        history = con.execute(f"""
            SELECT event_time, rule, group_key AS "group", from_state, to_state, value, severity
            FROM alert_events ORDER BY event_time DESC, rule, group_key LIMIT {int(history_rows)}
        """).pl()
        silences = con.execute("""
            SELECT silence_id, rule, coalesce(group_match, '(all groups)') AS "group", created_at, expires_at, comment, created_by
            FROM alert_silences WHERE ended_at IS NULL AND expires_at > ? ORDER BY created_at DESC
        """, [now]).pl()
        health = con.execute("""
            SELECT job,
                   arg_max(outcome, started_at) AS last_outcome,
                   max(started_at) AS last_started,
                   arg_max(finished_at, started_at) AS last_finished,
                   max(finished_at) FILTER (WHERE outcome = 'ok') AS last_ok,
                   arg_max(error, started_at) AS last_error,
                   count(*) FILTER (WHERE outcome = 'error') AS errors,
                   count(*) AS runs
            FROM job_runs GROUP BY job ORDER BY job
        """).pl()
        outbox = con.execute("""
            SELECT status, count(*) AS notifications, max(last_error) FILTER (WHERE status <> 'delivered') AS last_error
            FROM alert_outbox GROUP BY status ORDER BY status
        """).pl() if "alert_outbox" in present else pl.DataFrame()
        followed = con.execute("""
            SELECT path, kind, status, read_offset, lag_bytes, lines, accepted, rejected, lines_per_s, last_close_at,
                   close_age_s, format, error, updated_at
            FROM follow_health ORDER BY status <> 'following', path
        """).pl() if "follow_state" in present else pl.DataFrame()
    return AlertData(True, states, history, silences, health, outbox, followed)


@reader()
def timeline(store: Store, start: datetime | None, end: datetime | None) -> tuple[int, pl.DataFrame]:
    """Closures per bucket and severity over [start, end): the backdrop a backtest is drawn on."""
    params: list = []
    where = range_sql(start, end, params)
    with reading(store) as con:
        _, _, bucket_s, frame = bucketed_counts(con, where, params, "severity")
    return bucket_s, frame.with_columns(bucket_to_time("bucket", bucket_s))


@dataclass
class AlertConfig:
    """The rules file and the scheduler's intervals, resolved the way `closewatch alerts` and `scheduler` do."""

    rules_path: Path
    ruleset: Any  # alerts.rules.RuleSet
    intervals: dict[str, float]  # job -> seconds between runs
    engine: Any  # alerts.model.EngineSettings


def alert_config() -> AlertConfig:
    """Load the rules (a broken file raises AlertError naming rule, line and field) and the job intervals."""
    from closewatch.alerts.rules import load_rules
    from closewatch.jobs.alerting import engine_settings, rules_path

    settings = get_settings()
    engine = engine_settings(settings)
    path = rules_path(settings)
    return AlertConfig(path, load_rules(path, engine.step_s), _intervals(settings.scheduler), engine)


def held_back(store: Store, states: pl.DataFrame, ruleset: Any) -> pl.DataFrame:
    """``states`` with ``inhibited_by``: the firing alert that keeps each group from notifying ([[inhibit]]), as `alerts status` shows it."""
    from closewatch.alerts.inhibition import held_back_now

    with reading(store) as con:
        return held_back_now(con, ruleset, states)


def default_intervals() -> dict[str, float]:
    """The scheduler's built-in intervals, for when the config cannot be read."""
    return _intervals(SchedulerSettings())


def _intervals(scheduler: SchedulerSettings) -> dict[str, float]:
    return {"ingest": scheduler.ingest_every_s, "analyze": scheduler.analyze_every_s,
            "evaluate": scheduler.evaluate_every_s, "deliver": scheduler.deliver_every_s}
