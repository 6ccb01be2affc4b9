"""Where the config file and the database are, and the settings of the CLI's quick commands, without pydantic.

Importing pydantic and building the models of ``closewatch.settings`` costs
about 0.1 s, as much as Python importing duckdb and answering a query (issue
16, bench/bench_cli_start.py). `closewatch info` and `closewatch sql` need
four things: the database, its lock timeout, the lake and the [sql] limits;
`closewatch ingest` needs those of the store, the catalog file and the
[ingest] bounds. Without a config file each of them is an option, an
environment variable or a default, and none needs validating by pydantic, so
``quick_settings`` builds them here. A config file is validated in full by
``closewatch.settings.load_settings``, so a mistake in any of its sections is
still one sentence naming the file, section and key.

The defaults live here once; ``closewatch.settings`` takes them from here.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from closewatch.errors import ClosewatchError, ConfigError

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
class IngestLimits:
    """The [ingest] bounds every input is read within, as the ingest stage reads them (bytes, characters, years).

    ``closewatch.settings.IngestSettings`` validates the section of a config
    file and gives its values as these; without a config file these defaults
    are the bounds, and an ingest imports no pydantic (issue 16).
    """

    max_line_length: int = 1024 * 1024
    max_field_length: int = 8192
    max_decompressed: int = 16 * 1024**3
    memory_limit: int = 1024**3
    earliest_year: int = 2000
    latest_year: int = 2100

    @property
    def duckdb_memory_limit(self) -> str:
        """memory_limit as DuckDB's SET memory_limit reads it."""
        return f"{self.memory_limit // (1024 * 1024)}MiB"


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

    @property
    def catalog(self) -> Path | None:
        """No config file names a catalog."""
        return None

    @property
    def ingest_limits(self) -> IngestLimits:
        return IngestLimits()


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


def read_toml(path: Path, error: type[ClosewatchError], what: str) -> dict[str, Any]:
    """A TOML file as a dict, or one sentence (raised as ``error``) naming the file and what is wrong."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist; check the path and run again.") from None
    except tomllib.TOMLDecodeError as problem:
        raise error(f"{path} is not valid TOML ({problem}); fix the file and run again.") from None


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
