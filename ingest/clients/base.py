"""Building blocks every client module shares: the Pattern and Client types, the reason texts
closewatch knows, the SDKs' message tables and the log-line helpers the renderers use."""

import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# --------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """One client line shape. ``regex`` has named groups among: code, reason,
    session, aud, sdur, http, inst; ``anchor`` is a literal every matching
    line contains (the cheap pre-filter); ``marker`` (a regex) says "this is
    clearly a close line of this client": a marked line that ``regex`` cannot
    read, or whose code is not a number, is a reject."""

    name: str
    role: str
    regex: str
    anchor: str
    source: str
    quality: int = 2
    standalone: str = "always"
    code: int | None = None  # the code the pattern itself implies (e.g. 1006 for "no close frame")
    default_code: int | None = None  # used only when the whole event has no code (normal closes)
    marker: str | None = None
    forward: bool = True  # E/T: may fold into the next close (False where the client never closes after it)


@dataclass(frozen=True)
class Client:
    name: str
    description: str
    source: str
    patterns: tuple[Pattern, ...]
    signatures: tuple[str, ...]  # literals (logger names...) that say "this file is this client's"
    example: str
    render_timed: Callable[..., list[tuple[datetime | None, str]]]
    layouts: tuple[str, ...]


# Reason texts closewatch knows (reference/close-codes.md, both SDKs' message
# tables). STRONG ones identify a close on their own; WEAK ones are common
# words and count only next to a close code.
STRONG_REASONS: tuple[str, ...] = (
    "session expired", "session has expired", "maximum session duration exceeded",
    "input duration violation", "audio chunk duration violation", "audio transmission rate exceeded",
    "client sent audio too fast", "too many concurrent sessions", "missing authorization header",
    "unauthorized connection", "insufficient funds", "session cancelled", "invalid message type",
    "session idle for too long", "session is handled by another websocket", "session previously closed",
    "audio duration is too short", "audio duration is too long", "audio too small to transcode",
    "endpoint received invalid json", "endpoint received a message with an invalid schema",
    "exceeded the number of allowed streams", "session has been reconnected",
    "could not parse word boost", "sample rate must be a positive integer",
    "temporary server condition forced blocking", "reconnect attempts exhausted",
    "unique session violation", "session id does not exist", "this feature is paid-only",
)
WEAK_REASONS: tuple[str, ...] = (
    "invalid json", "invalid message", "not authorized", "session not found", "session timeout",
    "rate limited", "bad json", "bad schema", "too many streams", "server error", "input validation error",
    "audio too short", "audio too long", "session is closed", "policy violation", "going away",
    "abnormal closure", "internal error", "service restart", "try again later",
    # RFC 6455 / HTTP names a plain app may print instead of a reason
    "normal closure", "unauthorized", "forbidden", "too many requests", "bad gateway", "service unavailable",
)
# Network-level failures a client reports without a close code.
NETWORK_TEXTS: tuple[str, ...] = (
    "connection reset", "connection refused", "connection lost", "connection aborted", "timed out",
    "remote host was lost", "cannot connect", "econnreset", "econnrefused", "etimedout", "epipe", "socket hang up",
    "no close frame", "handshake", "unexpected server response", "errno", "keepalive ping timeout",
    "name or service not known", "getaddrinfo", "network is unreachable", "broken pipe",
)
#: A text naming a close closewatch knows (any of the above): what makes a structured line with a
#: reason but no close code a closure (a JSON line with only a message never is one).
KNOWN_REASON_REGEX = "(?i)(?:" + "|".join(re.escape(text) for text in STRONG_REASONS + WEAK_REASONS + NETWORK_TEXTS) + ")"
#: Reason texts that are a client's stand-in for "no reason": stored as NULL.
PLACEHOLDER_REASONS = r"^(?:|None|null|undefined|no reason given|Connection closed \(code=-?\d+\))$"
#: Reason texts that only point elsewhere: kept, but any other text in the event wins.
POOR_REASONS = r"^See Error message for details"
#: Code texts that mean "no code" rather than a malformed one.
NULL_CODES = ("None", "null", "undefined", "nil", "NaN", "-1", "")

# Traceback exception lines that carry the real status of the record they hang under.
# (sources: aiohttp client_exceptions.WSServerHandshakeError; python-websockets/websockets
#  src/websockets/exceptions.py InvalidStatus and ConnectionClosed.__str__; websocket-client
#  WebSocketBadStatusException; livekit/agents livekit-agents/livekit/agents/_exceptions.py APIStatusError)
EXCEPTION_CODE_REGEX = (
    r"(?:WSServerHandshakeError: (?P<http1>\d{3}),"
    r"|server rejected WebSocket connection: HTTP (?P<http2>\d{3})"
    r"|Handshake status (?P<http3>\d{3})"
    r"|APIStatusError: .*status_code=(?P<code1>-?\d+)"
    r"|ConnectionClosed\w*: received (?P<code2>\d{4}) )"
)

# websockets' own words for close codes, as its Close.__str__ prints them
# (python-websockets/websockets src/websockets/frames.py, CLOSE_CODE_EXPLANATIONS).
WEBSOCKETS_EXPLANATIONS = {
    1000: "OK", 1001: "going away", 1002: "protocol error", 1003: "unsupported data",
    1005: "no status received [internal]", 1006: "abnormal closure [internal]",
    1007: "invalid frame payload data", 1008: "policy violation", 1009: "message too big",
    1010: "mandatory extension", 1011: "internal error", 1012: "service restart",
    1013: "try again later", 1014: "bad gateway", 1015: "TLS handshake failure [internal]",
}

# The SDKs replace some close reasons by their own texts.
# AssemblyAI/assemblyai-python-sdk assemblyai/streaming/v3/models.py StreamingErrorCodes
PY_V3_MESSAGES = {
    3005: "Server error", 3006: "Input validation error", 3007: "Audio chunk duration violation",
    3008: "Session expired: maximum session duration exceeded", 3009: "Too many concurrent sessions",
    1013: "Temporary server condition forced blocking client's request",
}
# AssemblyAI/assemblyai-python-sdk assemblyai/types.py RealtimeErrorMapping
PY_V2_MESSAGES = {
    4000: "Sample rate must be a positive integer", 4001: "Not Authorized", 4002: "Insufficient Funds",
    4003: "This feature is paid-only and requires you to add a credit card.\n    Please visit https://app.assemblyai.com/ to add a credit card to your account",
    4004: "Session Not Found", 4008: "Session Expired", 4010: "Session Previously Closed",
    4029: "Client sent audio too fast", 4030: "Session is handled by another websocket",
    4031: "Session idle for too long", 4032: "Audio duration is too short", 4033: "Audio duration is too long",
    4034: "Audio too small to transcode", 4100: "Endpoint received invalid JSON",
    4101: "Endpoint received a message with an invalid schema",
    4102: "This account has exceeded the number of allowed streams",
    4103: "The session has been reconnected. This websocket is no longer valid.",
    4104: "Could not parse word boost parameter",
    1013: "Temporary server condition forced blocking client's request",
}
# AssemblyAI/assemblyai-node-sdk src/utils/errors/streaming.ts StreamingErrorMessages (a superset
# of src/utils/errors/realtime.ts RealtimeErrorMessages for the shared codes)
JS_MESSAGES = {
    3005: "Server error", 3006: "Input validation error", 3007: "Audio chunk duration violation",
    3008: "Session expired: maximum session duration exceeded", 3009: "Too many concurrent sessions",
    4000: "Sample rate must be a positive integer", 4001: "Not Authorized", 4002: "Insufficient funds",
    4003: "This feature is paid-only and requires you to add a credit card. Please visit https://app.assemblyai.com/ to add a credit card to your account.",
    4004: "Session ID does not exist", 4008: "Session has expired", 4010: "Session is closed",
    4029: "Rate limited", 4030: "Unique session violation", 4031: "Session Timeout",
    4032: "Audio too short", 4033: "Audio too long", 4034: "Audio too small to transcode",
    4101: "Bad schema", 4102: "Too many streams",
    4103: "This session has been reconnected. This WebSocket is no longer valid.",
}

# The standard library's logging layouts apps use (docs.python.org logging.BASIC_FORMAT and the
# cookbook's asctime layouts), plus LiveKit Agents' dev layout
# (livekit/agents livekit-agents/livekit/agents/cli/log.py setup_logging).
PY_LAYOUTS: dict[str, str] = {
    "default": "{levelname}:{name}:{message}",
    "dashes": "{asctime} - {name} - {levelname} - {message}",
    "spaces": "{asctime} {levelname} {name} {message}",
    "brackets": "{asctime} [{levelname}] {name}: {message}",
    "pipes": "{asctime} | {levelname:<8} | {name} | {message}",
    "thread": "{asctime} [{threadName}] {levelname} {name}: {message}",
    "livekit": "{asctime} - {levelname:<4} {name} - {message} {extra}",
}


def _seed(*parts: object) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def _asctime(ts: datetime | None) -> str:
    """logging's default asctime: local wall time with a comma before milliseconds (UTC here)."""
    ts = (ts or datetime(1970, 1, 1, tzinfo=UTC)).astimezone(UTC)
    return ts.strftime("%Y-%m-%d %H:%M:%S") + f",{ts.microsecond // 1000:03d}"


def py_line(layout: str, ts: datetime | None, level: str, name: str, message: str,
            thread: str = "MainThread", extra: dict | None = None) -> str:
    """One record as Python logging formats it with ``layout``."""
    text = PY_LAYOUTS[layout].format(
        asctime=_asctime(ts), levelname=level, name=name, message=message, threadName=thread,
        extra=json.dumps(extra) if extra else "",
    )
    return text.rstrip()


def loguru_line(ts: datetime | None, level: str, where: str, message: str) -> str:
    """loguru's default layout (Delgan/loguru loguru/_defaults.py LOGURU_FORMAT, colours off)."""
    ts = (ts or datetime(1970, 1, 1, tzinfo=UTC)).astimezone(UTC)
    stamp = ts.strftime("%Y-%m-%d %H:%M:%S") + f".{ts.microsecond // 1000:03d}"
    return f"{stamp} | {level:<8} | {where} - {message}"


def _iso(ts: datetime | None) -> str:
    ts = (ts or datetime(1970, 1, 1, tzinfo=UTC)).astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _begin_ts(event: dict) -> datetime | None:
    """When the session began: ``began_at`` if the event says, else its duration (or 30 s) before the close."""
    if event.get("began_at") is not None:
        return event["began_at"]
    ts = event.get("ts")
    if ts is None:
        return None
    return ts - timedelta(seconds=float(event.get("session_duration_s") or 30.0))


def _client_tag(event: dict) -> str:
    """Apps that serve several tenants add who they are to their own lines."""
    return f" client={event['client_id']}" if event.get("client_id") else ""


def _reason(event: dict) -> str:
    return event.get("close_reason") or ""


def _num(value: float | None) -> str:
    if value is None:
        return "None"
    return str(int(value)) if float(value).is_integer() else str(value)


def _is_http(code: int | None) -> bool:
    return code is not None and 100 <= code < 600


def _has_error_frame(code: int | None) -> bool:
    """v3 errors arrive as an Error frame before the close (reference: 'How a session ends')."""
    return code is not None and (3000 <= code < 4000 or code == 1008)


def _thread_of(event: dict) -> str:
    n = _seed(event.get("session_id"), event.get("client_id")) % 40 + 2
    return f"Thread-{n} (_read_message)"

