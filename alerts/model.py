"""The alert model: states, groups, transitions, notices, ids, engine settings and time on the evaluation grid.

Every other alerts module builds on these names and imports nothing else of
alerts but the rules; this module imports nothing of alerts at all.

Time is the logs' time, not the clock's, in integer microseconds since the
epoch (no float rounding). A rule is evaluated at *evaluation times* on a
fixed grid (every ``every``, default one minute, aligned to the epoch).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = 1_000_000
#: Evaluation times per query and transaction; long catch-ups and backtests are chunked.
MAX_TICKS = 20_000

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"
#: Notification kinds.
NOTIFY_FIRING, NOTIFY_REPEAT, NOTIFY_RESOLVED = "firing", "repeat", "resolved"


# -- settings ------------------------------------------------------------------


@dataclass(frozen=True)
class EngineSettings:
    """The [alerts] section of closewatch.toml (all durations in seconds)."""

    step_s: float = 60.0              # default evaluation step of every rule
    lateness_s: float = 60.0          # how far behind the frontier evaluation stays
    live_lateness_s: float = 10.0     # ... behind a live mark: how late a followed close line may be written ([follow] lateness)
    initial_lookback_s: float = 3600.0  # how far back a rule's first run starts
    retry_base_s: float = 30.0        # first delay after a failed delivery ...
    retry_max_s: float = 3600.0       # ... doubling up to this
    deliver_deadline_s: float = 30.0  # a deliver run starts no send after this long, and then stops
    deliver_failures: int = 3         # failures in a row after which a channel is left for the next run


# -- time on the grid ----------------------------------------------------------------


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


def from_us(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(micros))


def seconds_us(seconds: float) -> int:
    return int(round(seconds * US))


@dataclass(frozen=True)
class Grid:
    """Evaluation times first, first+step, ..., last (microseconds since the epoch)."""

    first: int
    last: int
    step: int

    def __len__(self) -> int:
        return 0 if self.last < self.first else (self.last - self.first) // self.step + 1

    def chunks(self, size: int = MAX_TICKS) -> Iterable[Grid]:
        start = self.first
        while start <= self.last:
            end = min(self.last, start + (size - 1) * self.step)
            yield Grid(start, end, self.step)
            start = end + self.step


def floor_to(micros: int, step: int) -> int:
    return (micros // step) * step


def ceil_to(micros: int, step: int) -> int:
    return -((-micros) // step) * step


# -- groups, transitions, notices -------------------------------------------------------


@dataclass
class GroupState:
    """Where one (rule, group) stands; times are microseconds since the epoch."""

    group_key: str
    group_values: dict[str, Any]
    state: str = INACTIVE
    pending_since: int | None = None
    fired_at: int | None = None
    resolved_at: int | None = None
    notified_at: int | None = None
    last_true: int | None = None
    value: float | None = None
    dirty: bool = False


@dataclass(frozen=True)
class Transition:
    group_key: str
    at: int
    from_state: str
    to_state: str
    value: float | None


@dataclass
class Notice:
    """A notification to send: what happened to which group, when, and what the message needs."""

    rule: str
    group_key: str
    group_values: dict[str, Any]
    kind: str
    at: int
    value: float | None
    fired_at: int | None
    resolved_at: int | None = None
    extra: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


# -- ids -------------------------------------------------------------------------------


def stable_id(*parts: Any) -> str:
    """A short deterministic id: re-evaluating the same range yields the same ids, so inserts are idempotent."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:24]
