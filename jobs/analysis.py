"""The analysis job: detect patterns with the thresholds the settings name, and store the findings.

Every front end runs detection through here (`closewatch analyze`, the
scheduler's analyze job, the dashboard's "Run detection now" and the demo
load of `closewatch up`), so all of them honour ``[analysis] thresholds`` in
closewatch.toml the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from closewatch.analysis.detection import DetectionRun, detect
from closewatch.analysis.incremental import detect_incremental
from closewatch.analysis.thresholds import load_thresholds
from closewatch.settings import Settings
from closewatch.store import Store, scalar


def analyze(store: Store, settings: Settings, since: datetime | None = None, until: datetime | None = None) -> DetectionRun:
    """Run every detector over [since, until) (default: everything stored) and replace the window's findings."""
    thresholds = load_thresholds(settings.analysis.thresholds)
    return detect(store, since=since, until=until, thresholds=thresholds)


def recent_window_start(newest: datetime, window_s: float) -> datetime:
    """The start of the UTC day ``window_s`` before ``newest``: a stable window, so findings keep their ids."""
    since = newest - timedelta(seconds=window_s)
    return since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def analyze_recent(store: Store, settings: Settings) -> DetectionRun | None:
    """The scheduler's run: the last ``[scheduler] analyze_window`` of data; None when the store is empty.

    Incremental (analysis.incremental): only what the closures stored since the last run change is
    recomputed, with the same results as a full run; the whole window is analysed when the window's
    day moves, the thresholds change, closures were reclassified, and the other cases it names.
    """
    with store.transaction() as con:
        newest = scalar(con, "SELECT max(ts) FROM closures")
    if newest is None:
        return None
    since = recent_window_start(newest, settings.scheduler.analyze_window_s)
    return detect_incremental(store, since=since, thresholds=load_thresholds(settings.analysis.thresholds))


def describe(run: DetectionRun) -> str:
    """One line for the scheduler's job_runs: what was analysed and how."""
    window = f"since {run.since:%Y-%m-%d %H:%M} UTC"
    if run.mode == "incremental":
        return (f"incremental: {run.new_closures} new closures, {run.findings.height} findings rewritten "
                f"({run.replaced} replaced) from {run.closures} closures read, {window}")
    why = f" (full: {run.why_full})" if run.why_full else ""
    return f"{run.findings.height} findings from {run.closures} closures {window}{why}"
