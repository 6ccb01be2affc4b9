"""The domain's closed sets of names, defined once for every stage.

These names are a contract: SQL users, alert rules, catalog files and tests
use them (see shared/reference/close-codes.md). Each is a ``StrEnum`` so that
a member compares equal to its text and prints as it, and the tuples beside
them keep the documented order (severities from least to most severe).
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    """What kind of closure a (code, reason) pair is."""

    NORMAL = "normal"
    SESSION_EXPIRED = "session_expired"
    INPUT_DURATION_VIOLATION = "input_duration_violation"
    AUDIO_RATE_EXCEEDED = "audio_rate_exceeded"
    INVALID_MESSAGE = "invalid_message"
    SERVER_ERROR = "server_error"
    CONCURRENCY_LIMIT = "concurrency_limit"
    AUTH_FAILED = "auth_failed"
    ACCOUNT_ISSUE = "account_issue"
    IDLE_TIMEOUT = "idle_timeout"
    SESSION_CONFLICT = "session_conflict"
    NETWORK_ABNORMAL = "network_abnormal"
    GOING_AWAY = "going_away"
    PROTOCOL_ERROR = "protocol_error"
    UNKNOWN = "unknown"


class Severity(StrEnum):
    """How bad a closure or a finding is, least severe first."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class RetrySafe(StrEnum):
    """Whether a client may simply open a new session after this closure."""

    YES = "yes"
    WITH_BACKOFF = "with_backoff"
    NO = "no"


class Era(StrEnum):
    """Which generation of the API (or protocol) a catalog entry describes."""

    V3 = "v3"
    V3_EARLY = "v3-early"
    V2 = "v2"
    WEBSOCKET = "websocket"
    HTTP = "http"
    ANY = "any"


class Pattern(StrEnum):
    """What the detectors look for (docs/patterns.md); a finding's ``pattern`` and a pattern rule's."""

    REPEATED_VIOLATION = "repeated_violation"
    FREQUENT_DISCONNECTS = "frequent_disconnects"
    CONCURRENCY_SATURATION = "concurrency_saturation"
    AUTH_FAILURES = "auth_failures"
    EXPIRY_COST_LEAK = "expiry_cost_leak"
    ERROR_SPIKE = "error_spike"
    NEW_REASON = "new_reason"


CATEGORIES: tuple[str, ...] = tuple(Category)
SEVERITIES: tuple[str, ...] = tuple(Severity)
#: The severities that count as errors everywhere (dashboard, summary views): warning and above.
ERROR_SEVERITIES: tuple[str, ...] = SEVERITIES[SEVERITIES.index(Severity.WARNING):]
RETRY_SAFE: tuple[str, ...] = tuple(RetrySafe)
ERAS: tuple[str, ...] = tuple(Era)
PATTERNS: tuple[str, ...] = tuple(Pattern)
