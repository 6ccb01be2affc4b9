"""The one grammar of durations and points in time, for every file and flag.

A duration is a number of seconds (``90``, ``1.5``) or text made of
number-unit parts: ``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"``, ``"1w"``,
``"500ms"`` (spaces are ignored, ``"0"`` is zero). The same grammar is read
in closewatch.toml, the thresholds file, alert rules and command-line
options, so a value that works in one place works in all of them.

A point in time is an ISO 8601 time (UTC unless it carries an offset) or a
duration ago: ``"24h"``, ``"7d ago"``, ``"1h30m ago"``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from closewatch.errors import ConfigError

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: What an error message shows as examples of the grammar.
DURATION_EXAMPLES = '"30s", "10m", "1h30m", "1d"'


def parse_duration(value: Any) -> float | None:
    """Seconds from 90, 1.5, "90s", "15m", "1h30m", "2d", "1w", "500ms"; None if it is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip().lower().replace(" ", "")
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        position = match.end()
    return total if position == len(text) and position > 0 else None


def parse_timedelta(value: Any) -> timedelta | None:
    """``parse_duration`` as a ``timedelta`` (None when it is not a duration)."""
    seconds = parse_duration(value)
    return None if seconds is None else timedelta(seconds=seconds)


def format_duration(seconds: float) -> str:
    """The short human form: 90 -> '1m30s', 3600 -> '1h', 0.5 -> '500ms'; parse_duration reads it back."""
    if 0 < seconds < 1:
        return f"{seconds * 1000:g}ms"
    remaining = int(round(seconds))
    if remaining == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size:
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    return "".join(parts)


def parse_time(text: str, option: str, now: datetime | None = None) -> datetime:
    """A point in time: ISO 8601 (UTC unless it says otherwise) or a duration ago like '24h' or '7d ago'.

    ``option`` names where the text came from (``--since``), for the error.
    """
    stripped = text.strip()
    ago = parse_duration(stripped.removesuffix("ago").strip()) if isinstance(text, str) else None
    if ago is not None and stripped.removesuffix("ago").strip():
        return (now or datetime.now(UTC)) - timedelta(seconds=ago)
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise ConfigError(
            f"{option} {text!r} is not a time; write an ISO time like 2024-05-01 or 2024-05-01T14:00 (UTC), "
            "or a duration ago like 24h or 7d."
        ) from None
    return as_utc(moment)


def as_utc(moment: datetime) -> datetime:
    """Naive times are UTC; aware ones are converted to UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
