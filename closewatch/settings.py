"""Where things are and how long to wait: the settings every command shares.

Precedence, highest first: command-line option, environment variable, the
config file (``closewatch.toml`` in the working directory, or the file named by
``CLOSEWATCH_CONFIG``), built-in default.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closewatch.errors import ClosewatchError, ConfigError

DEFAULT_DB = "closewatch.duckdb"
DEFAULT_CONFIG = "closewatch.toml"


@dataclass(frozen=True)
class Settings:
    """The parsed config file. Sections other stages read are kept as plain dicts."""

    path: Path | None = None
    lock_timeout_s: float = 30.0
    catalog: Path | None = None
    sections: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        value = self.sections.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{self.path}: [{name}] must be a table; fix the config file.")
        return value


def resolve_db_path(option: str | os.PathLike | None) -> Path:
    """--db, else CLOSEWATCH_DB, else ./closewatch.duckdb."""
    value = option or os.environ.get("CLOSEWATCH_DB") or DEFAULT_DB
    return Path(value).expanduser()


def read_toml(path: Path, error: type[ClosewatchError], what: str) -> dict[str, Any]:
    """A TOML file as a dict, or one sentence (raised as ``error``) naming the file and what is wrong."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist; check the path and run again.") from None
    except tomllib.TOMLDecodeError as problem:
        raise error(f"{path} is not valid TOML ({problem}); fix the file and run again.") from None


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Read the config file if there is one; no file means defaults."""
    explicit = path or os.environ.get("CLOSEWATCH_CONFIG")
    candidate = Path(explicit) if explicit else Path(DEFAULT_CONFIG)
    if not candidate.exists():
        if explicit:
            raise ConfigError(f"Config file {candidate} does not exist; check the path or unset CLOSEWATCH_CONFIG.")
        return Settings()
    return _settings_from(candidate, read_toml(candidate, ConfigError, "config file"))


def _settings_from(path: Path, data: dict[str, Any]) -> Settings:
    store = data.get("store", {})
    timeout = store.get("lock_timeout_s", 30.0)
    if not isinstance(timeout, (int, float)) or timeout < 0:
        raise ConfigError(f"{path}: [store] lock_timeout_s must be a number of seconds >= 0.")
    catalog = data.get("analysis", {}).get("catalog")
    return Settings(
        path=path,
        lock_timeout_s=float(timeout),
        catalog=(path.parent / catalog) if catalog else None,
        sections=data,
    )
