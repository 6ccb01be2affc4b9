"""What the alert jobs need from the settings: the rules file and the engine's timing.

The CLI (`closewatch alerts ...`, `scheduler`), the dashboard's Alerts page
and the scheduler's evaluate and deliver jobs resolve both here, the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from closewatch.alerts.model import EngineSettings
from closewatch.alerts.rules import resolve_rules_path
from closewatch.settings import Settings


def engine_settings(settings: Settings) -> EngineSettings:
    """The evaluation engine's timing from [alerts] (already validated, in seconds)."""
    alerts = settings.alerts
    return EngineSettings(step_s=alerts.step_s, lateness_s=alerts.lateness_s, live_lateness_s=settings.follow.lateness_s,
                          initial_lookback_s=alerts.initial_lookback_s,
                          retry_base_s=alerts.retry_base_s, retry_max_s=alerts.retry_max_s,
                          deliver_deadline_s=alerts.deliver_deadline_s, deliver_failures=alerts.deliver_failures)


def rules_path(settings: Settings, option: str | os.PathLike | None = None) -> Path:
    """--rules, else `rules` under [alerts] (relative to the config file), else ./alerts.toml, else the shipped defaults."""
    return resolve_rules_path(option or settings.alerts.rules)
