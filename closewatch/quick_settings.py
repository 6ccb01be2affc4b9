"""Where the config file and the database are, and the settings of the CLI's quick commands, without pydantic.

Importing pydantic and building the models of ``closewatch.settings`` costs
about 0.1 s, as much as Python importing duckdb and answering a query (issue
16, bench/bench_cli_start.py). `closewatch info` and `closewatch sql` need
four things: the database, its lock timeout, the lake and the [sql] limits.
Without a config file each of them is an option, an environment variable or
a default, and none needs validating by pydantic, so ``quick_settings``
builds them here. A config file is validated in full by
``closewatch.settings.load_settings``, so a mistake in any of its sections is
still one sentence naming the file, section and key.

The defaults live here once; ``closewatch.settings`` takes them from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from closewatch.errors import ConfigError

if TYPE_CHECKING:
    from closewatch.settings import Settings

DEFAULT_DB = "closewatch.duckdb"
DEFAULT_CONFIG = "closewatch.toml"
#: [store] lock_timeout: seconds to wait while another process holds the database.
LOCK_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Limits:
    """The [sql] section's bounds on a user's ad-hoc query (closewatch/sandbox.py); the defaults are [sql]'s."""

    timeout_s: float = 30.0
    memory_limit_mb: int = 1024
    max_rows: int = 100_000
    threads: int = 2

    @classmethod
    def from_settings(cls, settings: Settings | QuickSettings) -> Limits:
        sql = settings.sql
        return cls(sql.timeout_s, sql.memory_limit_mb, sql.max_rows, sql.threads)


@dataclass(frozen=True)
class StorePlace:
    """What the quick commands read of [store]."""

    lock_timeout_s: float = LOCK_TIMEOUT_S
    lake: Path | None = None


@dataclass(frozen=True)
class QuickSettings:
    """The part of ``Settings`` the quick commands read, with the same attribute names."""

    db: Path
    store: StorePlace = StorePlace()
    sql: Limits = Limits()

    @property
    def lock_timeout_s(self) -> float:
        return self.store.lock_timeout_s


def resolve_db_path(option: str | os.PathLike | None) -> Path:
    """--db, else CLOSEWATCH_DB, else ./closewatch.duckdb."""
    value = option or os.environ.get("CLOSEWATCH_DB") or DEFAULT_DB
    return Path(value).expanduser()


def config_file(option: str | os.PathLike | None) -> Path | None:
    """The config file to read: --config, else CLOSEWATCH_CONFIG, else ./closewatch.toml if it exists; None: no file.

    A file named by the option or the environment must exist.
    """
    explicit = option or os.environ.get("CLOSEWATCH_CONFIG")
    candidate = Path(explicit).expanduser() if explicit else Path(DEFAULT_CONFIG)
    if candidate.exists():
        return candidate
    if explicit:
        raise ConfigError(f"Config file {candidate} does not exist; check the path or unset CLOSEWATCH_CONFIG.")
    return None


def lake_path(option: str | os.PathLike | None) -> Path | None:
    """--lake, else CLOSEWATCH_LAKE (else, for the caller, [store] lake)."""
    value = option or os.environ.get("CLOSEWATCH_LAKE")
    return Path(value).expanduser() if value else None


def quick_settings(
    config: str | os.PathLike | None = None,
    *,
    db: str | os.PathLike | None = None,
    lock_timeout_s: float | None = None,
    lake: str | os.PathLike | None = None,
) -> Settings | QuickSettings:
    """The settings as ``load_settings`` gives them: without pydantic when there is no config file."""
    if config_file(config) is not None:
        from closewatch.settings import load_settings

        return load_settings(config, db=db, lock_timeout_s=lock_timeout_s, lake=lake)
    store = StorePlace(LOCK_TIMEOUT_S if lock_timeout_s is None else lock_timeout_s, lake_path(lake))
    return QuickSettings(resolve_db_path(db), store)
