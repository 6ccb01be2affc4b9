"""Detection thresholds: the documented defaults in ``thresholds.toml``, overridable by a user file.

Thresholds are data, not code: the built-in file documents every key, and a
user file overrides any subset of them. Each value is checked against the type
of its default when the file is loaded, so a typo fails at start-up with a
sentence naming the file, section and key rather than deep inside a detector.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

from closewatch.analysis.catalog import CATEGORIES
from closewatch.analysis.errors import AnalysisError
from closewatch.durations import DURATION_EXAMPLES, parse_timedelta
from closewatch.settings import read_toml

BUILTIN_PATH = Path(__file__).with_name("thresholds.toml")



class Section:
    """One [section] of thresholds with attribute access; durations are ``timedelta``."""

    def __init__(self, name: str, values: dict[str, Any]):
        self._name = name
        self._values = dict(values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"[{self._name}] has no threshold {key!r}") from None

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


class Thresholds:
    """Every detector's thresholds, by section name (``thresholds["error_spike"].k``)."""

    def __init__(self, sections: dict[str, dict[str, Any]], origin: str):
        self.origin = origin
        self._sections = {name: Section(name, values) for name, values in sections.items()}

    def __getitem__(self, name: str) -> Section:
        return self._sections[name]

    def sections(self) -> list[str]:
        return list(self._sections)


def load_thresholds(path: str | Path | None = None) -> Thresholds:
    """The built-in defaults, overridden key by key by the user's file if one is given."""
    defaults = _read_toml(BUILTIN_PATH)
    merged = {section: dict(values) for section, values in defaults.items()}
    origin = "builtin"
    if path is not None:
        user = _read_toml(Path(path))
        _merge(merged, defaults, user, Path(path))
        origin = str(path)
    typed = {section: _typed(section, values, defaults[section], origin) for section, values in merged.items()}
    return Thresholds(typed, origin)


def _read_toml(path: Path) -> dict[str, Any]:
    return read_toml(path, AnalysisError, "thresholds file")


def _merge(merged: dict, defaults: dict, user: dict, path: Path) -> None:
    """Copy the user's values over the defaults, refusing anything the defaults do not know."""
    for section, values in user.items():
        if section not in defaults:
            raise AnalysisError(
                f"{path}: [{section}] is not a thresholds section (the sections are {', '.join(defaults)}); "
                "fix the file and run again."
            )
        if not isinstance(values, dict):
            raise AnalysisError(f"{path}: {section} must be a [{section}] table; fix the file and run again.")
        for key, value in values.items():
            if key not in defaults[section]:
                _fail(path, section, key, f"is not a threshold (the keys are {', '.join(defaults[section])})")
            _check(path, section, key, value, defaults[section][key])
            merged[section][key] = value


def _check(path: Path | str, section: str, key: str, value: Any, default: Any) -> None:
    """The value must have the default's type and a sensible range."""
    if isinstance(default, list):
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            _fail(path, section, key, f"{value!r} must be a non-empty list of category names")
        unknown = [v for v in value if v not in CATEGORIES]
        if unknown:
            _fail(path, section, key, f"names unknown category {unknown[0]!r} (see `closewatch catalog`)")
    elif isinstance(default, str):
        duration = parse_timedelta(value)
        if duration is None or duration <= timedelta(0):
            _fail(path, section, key, f"{value!r} must be a positive duration like {DURATION_EXAMPLES}")
    elif isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            _fail(path, section, key, f"{value!r} must be a whole number of at least 1")
    elif isinstance(default, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            _fail(path, section, key, f"{value!r} must be a number greater than 0")
        if key.endswith("share") and value > 1:
            _fail(path, section, key, f"{value!r} is a share and must be at most 1 (0.5 means half)")


def _typed(section: str, values: dict[str, Any], defaults: dict[str, Any], origin: str) -> dict[str, Any]:
    """Durations become timedeltas, and a 5 written for a decimal 5.0, so detectors need no parsing."""
    typed = {}
    for key, value in values.items():
        if isinstance(defaults[key], str):
            value = parse_timedelta(value)
            if value is None:  # only reachable if the built-in file itself is wrong
                _fail(origin, section, key, "is not a duration")
        elif isinstance(defaults[key], float):
            value = float(value)
        typed[key] = value
    return typed


def _fail(path: Path | str, section: str, key: str, problem: str) -> NoReturn:
    raise AnalysisError(f"{path}: [{section}] {key} {problem}; fix the file and run again.")

