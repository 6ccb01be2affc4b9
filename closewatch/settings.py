"""Where things are and how long to wait: the one settings object every front end passes to the jobs.

``load_settings`` builds it once per command (or dashboard rerun) from, highest
first: command-line options, environment variables (``CLOSEWATCH_DB``,
``CLOSEWATCH_CONFIG``, ``CLOSEWATCH_LAKE``), the config file (``closewatch.toml`` in the working
directory, or the file named by ``--config`` / ``CLOSEWATCH_CONFIG``), and the
built-in defaults. A path is relative to whatever named it: paths in the
config file to the config file's folder, paths from options and the
environment to the working directory.

Every section is a pydantic model with ``extra="forbid"``, so a misspelled
key is an error naming the file, section and key, never silently ignored.
To add a setting, add a field to its section (the TOML key is the field's
alias); to add a section, add a model and a field of ``Settings``.

The CLI's quick commands (`info`, `sql`) read their few settings through
``closewatch.quick_settings`` instead, which imports none of this when there
is no config file; where the config file and the database are, and the
defaults those commands read, are decided there once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ByteSize, ConfigDict, Field, StrictInt, StrictStr, ValidationError, model_validator

from closewatch.durations import parse_duration
from closewatch.errors import ConfigError
from closewatch.quick_settings import (
    DEFAULT_CONFIG,
    DEFAULT_DB,
    LOCK_TIMEOUT_S,
    IngestLimits,
    Limits,
    config_file,
    lake_path,
    read_toml,
    resolve_db_path,
)
from closewatch.validation import problem_sentence


# -- value types ----------------------------------------------------------------------


def _duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds is None:
        raise ValueError(f'must be a duration like "30s", not {value!r}')
    return seconds


def _positive_duration(value: Any) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise ValueError(f'must be a duration longer than 0 like "30s", not {value!r}')
    return seconds


def _lock_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError("must be a number of seconds >= 0")
    return float(value)


#: A duration in seconds, written in the one grammar (closewatch.durations).
Seconds = Annotated[float, BeforeValidator(_duration)]
PositiveSeconds = Annotated[float, BeforeValidator(_positive_duration)]


class Section(BaseModel):
    """One [section] of closewatch.toml: unknown keys are errors; values are read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- the sections -----------------------------------------------------------------------


class StoreSettings(Section):
    """[store]: the database file's lock policy, and the Parquet lake whose closures it also reads (docs/spark.md)."""

    lock_timeout_s: Annotated[float, BeforeValidator(_lock_seconds)] = LOCK_TIMEOUT_S
    lake: Path | None = None


class SparkSettings(Section):
    """[spark]: where `ingest --engine spark` runs, and Spark settings passed to the session as they are."""

    master: StrictStr = "local[*]"
    conf: dict[str, StrictStr | int | float | bool] = {}


class AnalysisSettings(Section):
    """[analysis]: the user's catalog and thresholds files (None: the built-in ones only)."""

    catalog: Path | None = None
    thresholds: Path | None = None


class AlertsSettings(Section):
    """[alerts]: the rules file and the evaluation engine's timing (seconds)."""

    rules: Path | None = None
    step_s: PositiveSeconds = Field(60.0, alias="step")
    lateness_s: Seconds = Field(60.0, alias="lateness")
    initial_lookback_s: Seconds = Field(3600.0, alias="initial_lookback")
    retry_base_s: PositiveSeconds = Field(30.0, alias="retry_base")
    retry_max_s: PositiveSeconds = Field(3600.0, alias="retry_max")
    deliver_deadline_s: PositiveSeconds = Field(30.0, alias="deliver_deadline")
    deliver_failures: StrictInt = Field(3, alias="deliver_failures", ge=1)


class SchedulerSettings(Section):
    """[scheduler]: the watched folder and the jobs' intervals (seconds)."""

    watch: Path | None = None
    ingest_every_s: PositiveSeconds = Field(30.0, alias="ingest_every")
    analyze_every_s: PositiveSeconds = Field(300.0, alias="analyze_every")
    evaluate_every_s: PositiveSeconds = Field(60.0, alias="evaluate_every")
    deliver_every_s: PositiveSeconds = Field(15.0, alias="deliver_every")
    misfire_grace_s: PositiveSeconds = Field(60.0, alias="misfire_grace")
    settle_s: Seconds = Field(5.0, alias="settle")
    analyze_window_s: PositiveSeconds = Field(86400.0, alias="analyze_window")
    format: StrictStr | None = None
    tz: StrictStr = "UTC"
    #: Globs of live log files the scheduler follows continuously (closewatch.ingest.follow), beside the watched folder.
    follow: list[StrictStr] = []


class FollowSettings(Section):
    """[follow]: how followed files and streams are read (`closewatch follow`, `ingest --follow`, [scheduler] follow).

    New complete lines are committed every ``flush``; a last line without its
    newline is read once its file has not grown for ``settle``; a close line
    is assumed written within ``lateness`` of its timestamp, so live rule
    evaluation judges a window that much after its end (closewatch.alerts).
    ``max_chunk`` bounds the bytes read from one file per commit.
    """

    flush_s: PositiveSeconds = Field(2.0, alias="flush")
    settle_s: Seconds = Field(5.0, alias="settle")
    lateness_s: Seconds = Field(10.0, alias="lateness")
    max_chunk: ByteSize = Field(ByteSize(32 * 1024 * 1024), ge=64 * 1024, le=1024**3)
    max_files: StrictInt = Field(500, alias="max_files", ge=1, le=100_000)


class SqlSettings(Section):
    """[sql]: the bounds of users' ad-hoc queries (`closewatch sql`, the dashboard's SQL page; closewatch/sandbox.py)."""

    timeout_s: PositiveSeconds = Field(Limits.timeout_s, alias="timeout")
    memory_limit_mb: StrictInt = Field(Limits.memory_limit_mb, alias="memory_limit_mb", ge=64)
    max_rows: StrictInt = Field(Limits.max_rows, alias="max_rows", ge=1)
    threads: StrictInt = Field(Limits.threads, alias="threads", ge=1, le=64)


class DashboardSettings(Section):
    """[dashboard]: how the app behaves."""

    alerts_refresh_s: Seconds = Field(10.0, alias="alerts_refresh")
    #: A finding is open while its window ends within this of the newest loaded closure (Patterns and Alerts pages).
    open_findings_s: PositiveSeconds = Field(7 * 86400.0, alias="open_findings")
    #: `up` and `dashboard` render a page this often ("0s" turns it off) and restart a dashboard that
    #: failed ``probe_failures`` probes in a row, each allowed ``probe_timeout`` (cli/probe.py).
    probe_every_s: Seconds = Field(30.0, alias="probe_every")
    probe_timeout_s: PositiveSeconds = Field(60.0, alias="probe_timeout")
    probe_failures: StrictInt = Field(2, alias="probe_failures", ge=1, le=100)


class IngestSettings(Section):
    """[ingest]: the bounds every input is read within (ingest's memory follows these, not the input).

    A line longer than ``max_line_length`` is rejected with its number and never
    held whole; a stored text field is cut to ``max_field_length`` characters
    after redaction; an input that decompresses to more than
    ``max_decompressed`` is refused; the DuckDB connections of an ingest use at
    most ``memory_limit`` and spill to the staging folder beyond it;
    timestamps outside ``earliest_year``..``latest_year`` are rejected with
    their line number (a year 1 or 10000 is a logging bug, not a close).
    Sizes are bytes or strings such as "1MiB", "16GiB".
    """

    max_line_length: ByteSize = Field(ByteSize(IngestLimits.max_line_length), ge=1024, le=256 * 1024 * 1024)
    max_field_length: int = Field(IngestLimits.max_field_length, ge=256, le=1024 * 1024)
    max_decompressed: ByteSize = Field(ByteSize(IngestLimits.max_decompressed), ge=1024)
    memory_limit: ByteSize = Field(ByteSize(IngestLimits.memory_limit), ge=64 * 1024 * 1024)
    earliest_year: int = Field(IngestLimits.earliest_year, ge=1971, le=9998)
    latest_year: int = Field(IngestLimits.latest_year, ge=1971, le=9998)

    @model_validator(mode="after")
    def _years_in_order(self) -> IngestSettings:
        if self.earliest_year > self.latest_year:
            raise ValueError("earliest_year must not be after latest_year")
        return self

    def limits(self) -> IngestLimits:
        """The validated section as the ingest stage reads it."""
        return IngestLimits(int(self.max_line_length), self.max_field_length, int(self.max_decompressed),
                            int(self.memory_limit), self.earliest_year, self.latest_year)


#: The sections whose paths are relative to the config file.
_PATH_KEYS = {"store": ("lake",), "analysis": ("catalog", "thresholds"), "alerts": ("rules",), "scheduler": ("watch",)}


class Settings(Section):
    """Everything a job needs to know about where things are and how long to wait."""

    path: Path | None = None  # the config file read, if any
    db: Path = Path(DEFAULT_DB)
    store: StoreSettings = StoreSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    alerts: AlertsSettings = AlertsSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    dashboard: DashboardSettings = DashboardSettings()
    sql: SqlSettings = SqlSettings()
    spark: SparkSettings = SparkSettings()
    ingest: IngestSettings = IngestSettings()
    follow: FollowSettings = FollowSettings()

    @property
    def lock_timeout_s(self) -> float:
        return self.store.lock_timeout_s

    @property
    def catalog(self) -> Path | None:
        return self.analysis.catalog

    @property
    def ingest_limits(self) -> IngestLimits:
        """[ingest] as the ingest stage reads it."""
        return self.ingest.limits()

    @property
    def origin(self) -> str:
        """The config file's name for messages."""
        return str(self.path or DEFAULT_CONFIG)

    def overriding(self, section: str, **values: Any) -> Settings:
        """A copy with some keys of one section replaced (command-line options); None leaves a key as it is."""
        given = {key: value for key, value in values.items() if value is not None}
        if not given:
            return self
        current: Section = getattr(self, section)
        return self.model_copy(update={section: current.model_copy(update=given)})


# -- building it -----------------------------------------------------------------------------


def load_settings(
    config: str | os.PathLike | None = None,
    *,
    db: str | os.PathLike | None = None,
    lock_timeout_s: float | None = None,
    lake: str | os.PathLike | None = None,
) -> Settings:
    """The settings from the options given, the environment and the config file (no file means defaults)."""
    path = config_file(config)
    settings = settings_from(path, read_toml(path, ConfigError, "config file")) if path is not None else Settings()
    settings = settings.model_copy(update={"db": resolve_db_path(db)})
    # --lake, else $CLOSEWATCH_LAKE, else [store] lake
    return settings.overriding("store", lock_timeout_s=lock_timeout_s, lake=lake_path(lake))


def settings_from(path: Path, data: dict[str, Any]) -> Settings:
    """Validate a parsed config file; relative paths in it become relative to its folder."""
    known = [name for name in Settings.model_fields if name not in ("path", "db")]
    for name, value in data.items():
        if name not in known:
            raise ConfigError(f"{path}: there is no [{name}] section (the sections are {', '.join(known)}); fix the config file.")
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{name}] must be a table; fix the config file.")
    try:
        settings = Settings.model_validate({**data, "path": path})
    except ValidationError as error:
        raise ConfigError(f"{path}: {problem_sentence(error, Settings)}; fix the config file.") from None
    return _relative_to(settings, path.parent)


def _relative_to(settings: Settings, folder: Path) -> Settings:
    for section, keys in _PATH_KEYS.items():
        values = getattr(settings, section)
        moved = {}
        for key in keys:
            value = getattr(values, key)
            if value is not None:
                value = value.expanduser()
                moved[key] = value if value.is_absolute() else folder / value
        settings = settings.overriding(section, **moved)
    globs = [str(folder / Path(glob).expanduser()) for glob in settings.scheduler.follow]  # an absolute glob stays as it is
    return settings.overriding("scheduler", follow=globs) if globs else settings
