"""What each client prints when a streaming session ends: patterns as data, and renderers.

One ``Client`` per text format closewatch reads. Its ``patterns`` are the
client's own format strings turned into regular expressions (Rust syntax, as
polars uses: no look-around, no back-references), each cited beside it with
the repository and file it was read from. The same format strings drive the
``render`` functions, which the tests, the sample files and the log generator
use, so a parser and its fixtures cannot drift apart.

Roles say what a line means in a session's story, because one close is often
logged several times (an SDK line, the app's echo, the close itself):

``E``  an error report that comes *before* the close of the same session
       (the server's Error frame, an ``on_error`` callback): folded into the
       next close line when one follows, else an event of its own;
``C``  the close itself: always one event;
``A``  an application's echo of the report just logged: folded into the
       preceding E or C line, else into the next close, else an event;
``B``  a session began, carrying its id (attached to the following close
       only when unambiguous);
``T``  the Termination message (durations): folded into the next close, or,
       where the client logs nothing for a normal close, the event itself
       (close code 1000).
``G``  (generic fallback only) a line naming a known reason text.

``standalone`` says when an E/A/T line that found no close becomes an event:
``always``, ``known`` (only if it carries a close/HTTP code or a reason text
closewatch knows), or ``never`` (pure echoes such as "retrying in 2s").
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from random import Random

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


# --------------------------------------------------------------------------
# AssemblyAI Python SDK, Universal Streaming (v3)
# --------------------------------------------------------------------------

PY_V3_SRC = "AssemblyAI/assemblyai-python-sdk assemblyai/streaming/v3/client.py (and async_client.py)"
PY_V3_APP = "AssemblyAI/assemblyai-api-spec fern/snippets/getting-started/transcribe-streaming-audio/python-sdk-3.py"
PY_V3_LOGGER = "assemblyai.streaming.v3.client"

PY_V3 = (
    # logger.error("Streaming error: %s (code=%s)", error.error, error.error_code)   [_report_server_error]
    Pattern("streaming_error", "E", r"Streaming error: (?P<reason>.*) \(code=(?P<code>[^)]*)\)$",
            "Streaming error: ", PY_V3_SRC, quality=3, marker=r"Streaming error: "),
    # logger.error("Connection closed: %s (code=%s)", reason, error.code); reason = error.reason or "no reason given"
    Pattern("connection_closed", "C", r"Connection closed: (?P<reason>.*) \(code=(?P<code>[^)]*)\)$",
            "Connection closed: ", PY_V3_SRC, quality=2, marker=r"Connection closed: .*\(code="),
    # logger.error("Connection failed: %s (code=%s)", streaming_error, streaming_error.code);
    # streaming_error is "WebSocket handshake rejected (HTTP n)" or f"Connection failed: {error}"
    Pattern("connection_failed", "C",
            r"Connection failed: (?:Connection failed: )?(?P<reason>.*?(?:\(HTTP (?P<http>\d{3})\))?) \(code=(?P<code>[^)]*)\)$",
            "Connection failed: ", PY_V3_SRC, quality=2, marker=r"Connection failed: .*\(code="),
    # app: def on_error(self, error): print(f"Error occurred: {error}")   [docs snippet]
    # str(StreamingError) is its message, e.g. "Connection closed (code=1006)" for an unmapped close
    Pattern("app_error_echo", "A", r"Error occurred: (?P<reason>.*?(?:\(code=(?P<code>\d+)\)|\(HTTP (?P<http>\d{3})\))?)$",
            "Error occurred: ", PY_V3_APP, quality=1, standalone="known"),
    # app: def on_begin(self, event): print(f"Session started: {event.id}")
    Pattern("app_session_started", "B", r"Session started: (?P<session>[\w-]+)$", "Session started: ", PY_V3_APP),
    # app: print(f"Session terminated: {event.audio_duration_seconds} seconds of audio processed")
    Pattern("app_session_terminated", "T", r"Session terminated: (?P<aud>[\d.]+|None) seconds of audio processed",
            "Session terminated: ", PY_V3_APP, quality=0, default_code=1000),
)


def render_python_v3(event: dict, layout: str | None = None) -> list[tuple[datetime | None, str]]:
    """The lines a StreamingClient app writes for one session (SDK logger + the docs' print handlers).

    In the ``default`` layout the app's own lines are print()s, as in the docs;
    in asctime layouts they go through the app's logger. A normal close (1000)
    leaves only the app's Termination line: the SDK logs nothing for it.
    """
    layout = layout or event.get("layout") or "default"
    ts, code, reason, tag = event.get("ts"), event.get("close_code"), _reason(event), _client_tag(event)
    thread = _thread_of(event)

    def sdk(level: str, message: str, at: datetime | None = ts) -> tuple[datetime | None, str]:
        return at, py_line(layout, at, level, PY_V3_LOGGER, message, thread)

    def app(level: str, message: str, at: datetime | None = ts) -> tuple[datetime | None, str]:
        if layout == "default":
            return at, message
        return at, py_line(layout, at, level, "app.stt", message, thread)

    lines = []
    if event.get("session_id"):
        lines.append(app("INFO", f"Session started: {event['session_id']}{tag}", _begin_ts(event)))
    if code == 1000:
        lines.append(app("INFO", f"Session terminated: {_num(event.get('audio_duration_s'))} seconds of audio processed{tag}"))
        return lines
    if _is_http(code):
        text = f"WebSocket handshake rejected (HTTP {code})"
        lines += [sdk("ERROR", f"Connection failed: {text} (code={code})"), app("ERROR", f"Error occurred: {text}{tag}")]
        return lines
    if code is None:
        text = f"Connection failed: {reason or '[Errno 104] Connection reset by peer'}"
        lines += [sdk("ERROR", f"Connection failed: {text} (code=None)"), app("ERROR", f"Error occurred: {text}{tag}")]
        return lines
    if _has_error_frame(code):
        frame_reason = reason if len(reason.encode()) <= 123 else "See Error message for details"
        lines += [
            sdk("ERROR", f"Streaming error: {reason} (code={code})"),
            app("ERROR", f"Error occurred: {reason}{tag}"),
            sdk("ERROR", f"Connection closed: {frame_reason or 'no reason given'} (code={code})"),
        ]
        return lines
    echo = PY_V3_MESSAGES.get(code) or reason or f"Connection closed (code={code})"
    lines += [sdk("ERROR", f"Connection closed: {reason or 'no reason given'} (code={code})"),
              app("ERROR", f"Error occurred: {echo}{tag}")]
    return lines


# --------------------------------------------------------------------------
# AssemblyAI Python SDK, legacy realtime (v2): RealtimeTranscriber
# --------------------------------------------------------------------------

PY_V2_SRC = "AssemblyAI/assemblyai-python-sdk assemblyai/transcriber.py (_RealtimeTranscriberImpl._handle_error / connect / _handle_message)"
# The app callbacks below are the SDK's former README realtime example, copied verbatim by many
# public apps (e.g. smashpro26/SustainaRide speech_recognizer.py). The README.md now stored for
# AssemblyAI/assemblyai-python-sdk no longer shows that section, so the wording was checked on copies.
PY_V2_APP = "former AssemblyAI/assemblyai-python-sdk README realtime example (on_open/on_error/on_close prints)"

PY_V2 = (
    # on_error(RealtimeError(error_message, error.code)) -> str() of a 2-arg exception is the tuple repr
    Pattern("error_tuple", "C",
            r"An error occurr?ed: \(['\"](?P<reason>.*)['\"], (?P<code>[^)]*)\)$",
            "An error occur", PY_V2_SRC, quality=2, marker=r"An error occurr?ed: \(['\"]"),
    # on_error(RealtimeError(f"Could not connect to the real-time service: {exc}")): connect() returns, no close follows
    Pattern("could_not_connect", "E",
            r"An error occurr?ed: Could not connect to the real-time service: (?P<reason>.*?(?:HTTP (?P<http>\d{3}))?)$",
            "Could not connect to the real-time service", PY_V2_SRC, quality=3, standalone="always", forward=False),
    # on_error(RealtimeError(message["error"])): the server's error message, before its close
    Pattern("error_text", "E", r"An error occurr?ed: (?P<reason>.+)$",
            "An error occur", PY_V2_SRC, quality=3, standalone="known"),
    # app: def on_open(session_opened): print("Session ID:", session_opened.session_id)
    Pattern("session_id", "B", r"Session ID: (?P<session>[\w-]+)$", "Session ID: ", PY_V2_APP),
    # app: def on_close(): print("Closing Session")   (close() calls on_close after every end)
    Pattern("closing_session", "A", r"Closing Session$", "Closing Session", PY_V2_APP,
            quality=0, standalone="always", default_code=1000),
)


def render_python_v2(event: dict, layout: str | None = None) -> list[tuple[datetime | None, str]]:
    """A RealtimeTranscriber app's prints for one session.

    The SDK reports a 4xxx close with its own message table, so the server's
    text is kept in a first ``on_error`` line, as the SDK does for the server's
    ``{"error": ...}`` message; every end goes through ``on_close``.
    """
    layout = layout or event.get("layout") or "default"
    ts, code, reason, tag = event.get("ts"), event.get("close_code"), _reason(event), _client_tag(event)

    def app(message: str, at: datetime | None = ts, level: str = "INFO") -> tuple[datetime | None, str]:
        if layout == "default":
            return at, message
        return at, py_line(layout, at, level, "app.realtime", message, _thread_of(event))

    lines = []
    if event.get("session_id"):
        lines.append(app(f"Session ID: {event['session_id']}{tag}", _begin_ts(event)))
    if code is None or _is_http(code):
        cause = f"server rejected WebSocket connection: HTTP {code}" if code else (reason or "timed out during opening handshake")
        lines.append(app(f"An error occured: Could not connect to the real-time service: {cause}{tag}", level="ERROR"))
        return lines
    if code != 1000:
        shown = PY_V2_MESSAGES.get(code) if 4000 <= code <= 4999 and code in PY_V2_MESSAGES else reason
        if reason and reason != shown:
            lines.append(app(f"An error occured: {reason}{tag}", level="ERROR"))
        lines.append(app(f"An error occured: {(shown or '', code)!r}{tag}", level="ERROR"))
    lines.append(app(f"Closing Session{tag}"))
    return lines


# --------------------------------------------------------------------------
# AssemblyAI JavaScript SDK (Node and browsers): realtime (v2) and streaming (v3)
# --------------------------------------------------------------------------

JS_SRC = ("AssemblyAI/assemblyai-node-sdk src/services/realtime/service.ts and src/services/streaming/service.ts "
          "(onclose -> listeners.close(code, reason), reason from src/utils/errors/*.ts when empty)")
JS_APP = ("AssemblyAI/assemblyai-api-spec fern/snippets/getting-started/transcribe-streaming-audio/javascript-sdk-*.js "
          "(transcriber.on('open'|'error'|'close') console.log examples)")

JS = (
    # app: transcriber.on("close", (code, reason) => console.log("Session closed:", code, reason))
    Pattern("session_closed", "C", r"Session closed: (?P<code>\S+)(?: (?P<reason>.*))?$",
            "Session closed: ", JS_APP, quality=2, marker=r"Session closed: "),
    # SDK: reject(new Error(`Realtime connection closed before session started: ${code} ${reason ?? ""}`.trim()))
    Pattern("closed_before_start", "A",
            r"Realtime connection closed before session started: (?P<code>\S+)(?: (?P<reason>.*))?$",
            "connection closed before session started", JS_SRC, quality=2, standalone="always"),
    # app: transcriber.on("error", (error) => console.error("Error:", error)); Node prints the Error's stack,
    # whose first line is `${name}: ${message}` (RealtimeError/StreamingError keep the name "Error")
    Pattern("error_listener", "E",
            r"Error: (?:Realtime|Streaming)?Error: (?P<reason>.*?(?:Unexpected server response: (?P<http>\d{3}))?)$",
            "Error: ", JS_APP, quality=3, standalone="known"),
    # app: transcriber.on("open", ({ sessionId | id }) => console.log(`Session opened with ID: ${id}`))
    Pattern("session_opened", "B", r"Session opened with ID: ?(?P<session>[\w-]+)", "Session opened with ID:", JS_APP),
)

NODE_STACK = (
    "    at RealtimeTranscriber.socket.onmessage (file:///srv/app/node_modules/assemblyai/dist/node.mjs:1187:40)",
    "    at WebSocket.onMessage (/srv/app/node_modules/ws/lib/event-target.js:199:18)",
    "    at WebSocket.emit (node:events:519:28)",
)


def render_js(event: dict, layout: str | None = None) -> list[tuple[datetime | None, str]]:
    """A Node app's console output for one session, as the SDK's examples print it.

    ``layout`` ``iso`` prefixes each line with an ISO timestamp (apps that
    stamp their console); the default prints bare lines as console.log does.
    """
    layout = layout or event.get("layout") or "plain"
    ts, code, reason, tag = event.get("ts"), event.get("close_code"), _reason(event), _client_tag(event)

    def out(text: str, at: datetime | None = ts) -> tuple[datetime | None, str]:
        return at, (f"[{_iso(at)}] {text}" if layout == "iso" and not text.startswith("    at ") else text)

    lines = []
    if event.get("session_id"):
        lines.append(out(f"Session opened with ID: {event['session_id']}{tag}", _begin_ts(event)))
    if _is_http(code) or code is None:
        cause = f"Unexpected server response: {code}" if code else (reason or "read ECONNRESET")
        lines += [out(f"Error: Error: {cause}{tag}"), *(out(s) for s in NODE_STACK[1:])]
        lines.append(out(f"Session closed: 1006{tag}"))
        return lines
    if _has_error_frame(code) and reason:
        lines += [out(f"Error: Error: {reason}{tag}"), *(out(s) for s in NODE_STACK)]
    shown = reason or JS_MESSAGES.get(code, "")
    lines.append(out(f"Session closed: {code} {shown}{tag}".replace("  ", " ").rstrip()))
    return lines


# --------------------------------------------------------------------------
# websocket-client apps written after the API docs (Python), and Node `ws` apps from the same docs
# --------------------------------------------------------------------------

WSC_SRC = ("AssemblyAI/assemblyai-api-spec fern/snippets/getting-started/transcribe-streaming-audio/python-5.py "
           "(websocket-client on_close(ws, close_status_code, close_msg) / on_error / on_message prints; "
           "javascript-5.js prints the same strings)")

WEBSOCKET_CLIENT = (
    # print(f"\nWebSocket Disconnected: Status={close_status_code}, Msg={close_msg}")
    Pattern("disconnected", "C", r"WebSocket Disconnected: Status=(?P<code>[^,]*), Msg=(?P<reason>.*)$",
            "WebSocket Disconnected: ", WSC_SRC, quality=2, marker=r"WebSocket Disconnected: "),
    # print(f"\nWebSocket Error: {error}")  (websocket-client calls on_error before on_close);
    # WebSocketBadStatusException reads "Handshake status 401 Unauthorized -+-+- {headers} -+-+- b'body'"
    Pattern("ws_error", "E", r"WebSocket Error: (?P<reason>.*?(?:Handshake status (?P<http>\d{3})[^-]*)?)(?: -\+-\+- .*)?$",
            "WebSocket Error: ", WSC_SRC, quality=3, standalone="known"),
    # print(f"\nSession began: ID={session_id}, ExpiresAt={datetime.fromtimestamp(expires_at)}")
    Pattern("session_began", "B", r"Session began: ID=(?P<session>[\w-]+)", "Session began: ID=", WSC_SRC),
    # print(f"\nSession Terminated: Audio Duration={audio_duration}s, Session Duration={session_duration}s")
    Pattern("session_terminated", "T",
            r"Session Terminated: Audio Duration=(?P<aud>[\d.]+|None)s, Session Duration=(?P<sdur>[\d.]+|None)s",
            "Session Terminated: Audio Duration=", WSC_SRC, quality=0, default_code=1000),
)


def render_websocket_client(event: dict, layout: str | None = None) -> list[tuple[datetime | None, str]]:
    """The docs' websocket-client handlers' prints (each begins with a newline, so a blank line precedes).

    websocket-client passes ``None, None`` to on_close when no close frame
    arrived, so a lost connection or a refused handshake reads Status=None.
    """
    ts, code, reason, tag = event.get("ts"), event.get("close_code"), _reason(event), _client_tag(event)
    lines: list[tuple[datetime | None, str]] = []

    def out(text: str, at: datetime | None = ts) -> None:
        lines.extend([(at, ""), (at, text)])

    if event.get("session_id"):
        begin = _begin_ts(event)
        expires = (begin or ts or datetime(1970, 1, 1, tzinfo=UTC)) + timedelta(hours=3)
        out(f"Session began: ID={event['session_id']}, ExpiresAt={expires.strftime('%Y-%m-%d %H:%M:%S')}{tag}", begin)
    if code == 1000:
        out(f"Session Terminated: Audio Duration={_num(event.get('audio_duration_s'))}s, "
            f"Session Duration={_num(event.get('session_duration_s'))}s{tag}")
        out(f"WebSocket Disconnected: Status=1000, Msg={reason}{tag}")
    elif _is_http(code):
        out(f"WebSocket Error: Handshake status {code} {_HTTP_WORDS.get(code, 'Error')} -+-+- "
            "{'content-type': 'application/json'} -+-+- b'{\"error\": \"rejected\"}'" + tag)
        out(f"WebSocket Disconnected: Status=None, Msg=None{tag}")
    elif code is None or code == 1006:
        out(f"WebSocket Error: {reason or 'Connection to remote host was lost.'}{tag}")
        out(f"WebSocket Disconnected: Status=None, Msg=None{tag}")
    else:
        frame_reason = reason if len(reason.encode()) <= 123 else "See Error message for details"
        out(f"WebSocket Disconnected: Status={code}, Msg={frame_reason}{tag}")
    return lines


_HTTP_WORDS = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests", 500: "Internal Server Error",
               502: "Bad Gateway", 503: "Service Unavailable"}

# --------------------------------------------------------------------------
# Browser / Node apps with their own onclose handler
# --------------------------------------------------------------------------

# No single public source: `console.log(\`Connection closed: ${event.code} - ${event.reason}\`)` and
# "code=... reason=..." are the common hand-written onclose idioms (found in many public repos via
# the code index, none canonical). The Begin line follows the API docs' own browser/Node example.
BROWSER_SRC = "common application idiom (no canonical source); Begin line per AssemblyAI/assemblyai-api-spec javascript-5.js"

BROWSER = (
    # ws.onclose = (event) => console.log(`Connection closed: ${event.code} - ${event.reason}`)
    Pattern("connection_closed_dash", "C", r"[Cc]onnection [Cc]losed: (?P<code>\S+) - ?(?P<reason>.*)$",
            "losed: ", BROWSER_SRC, quality=2, marker=r"[Cc]onnection [Cc]losed: [^ ]+ -"),
    # ws.onclose = (e) => console.log(`WebSocket closed code=${e.code} reason=${e.reason}`)
    Pattern("closed_kv", "C",
            r"(?i:clos(?:e|ed|ing)|disconnect(?:ed)?)\b[^=]*\bcode[=:] ?(?P<code>[^\s,]*),? reason[=:] ?(?P<reason>.*)$",
            "reason", BROWSER_SRC, quality=2, marker=r"(?i:clos(?:e|ed)|disconnected)\b[^=]*\bcode[=:]"),
    # ws.onerror = (e) => console.error("WebSocket error:", e): browsers give no detail, never an event alone
    Pattern("ws_error", "E", r"WebSocket error:", "ebSocket error", BROWSER_SRC, quality=0, standalone="never"),
    # console.log(`Session began: ID=${sessionId}, ExpiresAt=${formatTimestamp(expiresAt)}`)
    Pattern("session_began", "B", r"Session began: ID=(?P<session>[\w-]+)", "Session began: ID=", BROWSER_SRC),
)


def render_browser(event: dict, layout: str | None = None) -> list[tuple[datetime | None, str]]:
    """An app's own onclose logging; ``kv`` layout prints ``code=... reason=...``, ``dash`` the template string."""
    layout = layout or event.get("layout") or "dash"
    ts, code, reason, tag = event.get("ts"), event.get("close_code"), _reason(event), _client_tag(event)

    def out(text: str, at: datetime | None = ts) -> tuple[datetime | None, str]:
        return at, f"{_iso(at)} {text}"

    lines = []
    if event.get("session_id"):
        lines.append(out(f"Session began: ID={event['session_id']}, ExpiresAt={_iso(_begin_ts(event))}{tag}", _begin_ts(event)))
    if code is None or code == 1006 or _is_http(code):
        lines.append(out("WebSocket error: [object Event]"))
    # a browser's CloseEvent always has a code, and a refused handshake reads 1006
    shown = 1006 if code is None or _is_http(code) else code
    if layout == "kv":
        lines.append(out(f"WebSocket closed code={shown} reason={reason}{tag}"))
    else:
        lines.append(out(f"Connection closed: {shown} - {reason}{tag}"))
    return lines


# --------------------------------------------------------------------------
# pipecat: AssemblyAISTTService (loguru)
# --------------------------------------------------------------------------

PIPECAT_WS = "pipecat-ai/pipecat src/pipecat/services/websocket_service.py (_receive_task_handler / _try_reconnect)"
PIPECAT_STT = "pipecat-ai/pipecat src/pipecat/services/assemblyai/stt.py"
PIPECAT_FP = "pipecat-ai/pipecat src/pipecat/processors/frame_processor.py (push_error_frame)"
PIPECAT_OLD = "pipecat-ai/pipecat src/pipecat/services/assemblyai.py (older service on aai.RealtimeTranscriber, v2)"
# {e} of a websockets ConnectionClosed: python-websockets/websockets src/websockets/exceptions.py __str__
_RCVD = r"received (?P<code>\d+) \([^)]*\)(?: (?P<reason>.*?))?; (?:then sent .*|no close frame sent)$"
_SENT_RCVD = r"sent \d+ \([^)]*\)(?: .*?)?; then received (?P<code>\d+) \([^)]*\)(?: (?P<reason>.*))?$"
_CLOSED = r"(?P<inst>\S+) connection closed(?:, but with an error| normally): "

PIPECAT = (
    # logger.warning(f"{self} connection closed, but with an error: {e}") / logger.debug(f"{self} connection closed normally: {e}")
    Pattern("closed_received", "C", _CLOSED + _RCVD, " connection closed", PIPECAT_WS, quality=2,
            marker=r"connection closed, but with an error: "),
    Pattern("closed_sent_received", "C", _CLOSED + _SENT_RCVD, " connection closed", PIPECAT_WS, quality=2),
    Pattern("closed_no_frame", "C",
            _CLOSED + r"(?P<reason>no close frame received or sent|sent \d+ \([^)]*\).*; no close frame received)$",
            " connection closed", PIPECAT_WS, quality=1, code=1006),
    # message = f"{self} connection closed by server" (a clean close frame; pipecat does not print its code)
    Pattern("closed_by_server", "C", r"(?P<inst>\S+) (?P<reason>connection closed by server)$",
            "connection closed by server", PIPECAT_WS, quality=1),
    # message = f"{self} error receiving messages: {e}"
    Pattern("receive_error", "C", r"(?P<inst>\S+) error receiving messages: (?P<reason>.*)$",
            "error receiving messages", PIPECAT_WS, quality=2),
    # push_error(error_msg=f"Unable to connect to AssemblyAI: {e}") logged by push_error_frame as
    # f"{processor} exception ({file}:{line}): {error}" or f"{processor} error: {error}"
    Pattern("unable_to_connect", "E",
            r"(?P<inst>\S+) (?:exception \([^)]*\)|error): Unable to connect to AssemblyAI: (?P<reason>.*?(?:HTTP (?P<http>\d{3}))?)$",
            "Unable to connect to AssemblyAI", PIPECAT_STT + "; " + PIPECAT_FP, quality=3, standalone="always",
            forward=False),
    # logger.error(f"{self} reconnection attempt {attempt} failed: {e}") -- an echo of the failure above
    Pattern("reconnect_failed", "A", r"reconnection attempt \d+ failed: (?P<reason>.*?(?:HTTP (?P<http>\d{3}))?)$",
            "reconnection attempt", PIPECAT_WS, quality=1, standalone="known"),
    Pattern("reconnect_gave_up", "A", r"failed to reconnect after \d+ attempts", "failed to reconnect after",
            PIPECAT_WS, quality=0, standalone="never"),
    # logger.debug(f"Session Begin: {parsed_message.id} (expires at {parsed_message.expires_at})")
    Pattern("session_begin", "B", r"Session Begin: (?P<session>[\w-]+)", "Session Begin: ", PIPECAT_STT),
    # logger.info(f"Session Terminated: Audio Duration={...}s, Session Duration={...}s")
    Pattern("session_terminated", "T",
            r"Session Terminated: Audio Duration=(?P<aud>[\d.]+|None)s, Session Duration=(?P<sdur>[\d.]+|None)s",
            "Session Terminated: Audio Duration=", PIPECAT_STT, quality=0, default_code=1000),
    # older v2 service: logger.error(f"{self}: An error occurred: {error}") / logger.info(f"{self}: Disconnected from AssemblyAI")
    Pattern("v2_error_tuple", "C", r"(?P<inst>\S+): An error occurred: \(['\"](?P<reason>.*)['\"], (?P<code>[^)]*)\)$",
            ": An error occurred: ", PIPECAT_OLD, quality=2),
    Pattern("v2_error_text", "E", r"(?P<inst>\S+): An error occurred: (?P<reason>.+)$", ": An error occurred: ",
            PIPECAT_OLD, quality=3, standalone="known"),
    Pattern("v2_disconnected", "A", r"(?P<inst>\S+): Disconnected from AssemblyAI$", "Disconnected from AssemblyAI",
            PIPECAT_OLD, quality=0, standalone="always", default_code=1000),
)

_PIPECAT_WHERE = {
    "ws": "pipecat.services.websocket_service:_receive_task_handler:{n}",
    "reconnect": "pipecat.services.websocket_service:_try_reconnect:{n}",
    "warn": "pipecat.services.websocket_service:_maybe_try_reconnect:{n}",
    "begin": "pipecat.services.assemblyai.stt:_handle_message:{n}",
    "term": "pipecat.services.assemblyai.stt:_handle_termination:{n}",
    "error": "pipecat.processors.frame_processor:push_error_frame:{n}",
}


def _ws_close_text(code: int, reason: str) -> str:
    """websockets' ConnectionClosed text when the server closed first and we echoed its frame."""
    if 3000 <= code < 4000:
        word = "registered"
    elif 4000 <= code < 5000:
        word = "private use"
    else:
        word = WEBSOCKETS_EXPLANATIONS.get(code, "unknown")
    frame = f"{code} ({word})" + (f" {reason}" if reason else "")
    return f"received {frame}; then sent {frame}"


def render_pipecat(event: dict, layout: str | None = None) -> list[tuple[datetime | None, str]]:
    """A pipecat bot's log for one AssemblyAI session. The service's name is the app's client id
    when one is given (FrameProcessor(name=...)), else pipecat's default ``AssemblyAISTTService#0``."""
    ts, code, reason = event.get("ts"), event.get("close_code"), _reason(event)
    me = event.get("client_id") or "AssemblyAISTTService#0"
    n = 200 + _seed(event.get("session_id")) % 300

    def line(level: str, where: str, text: str, at: datetime | None = ts) -> tuple[datetime | None, str]:
        return at, loguru_line(at, level, _PIPECAT_WHERE[where].format(n=n), text)

    lines = []
    if event.get("session_id"):
        begin = _begin_ts(event)
        expires = int(((begin or ts or datetime(1970, 1, 1, tzinfo=UTC)) + timedelta(hours=3)).timestamp())
        lines.append(line("DEBUG", "begin", f"Session Begin: {event['session_id']} (expires at {expires})", begin))
    if code == 1000:
        lines.append(line("INFO", "term", f"Session Terminated: Audio Duration={_num(event.get('audio_duration_s'))}s, "
                                          f"Session Duration={_num(event.get('session_duration_s'))}s"))
    elif _is_http(code):
        lines.append(line("ERROR", "error", f"{me} exception (/srv/bot/.venv/lib/python3.12/site-packages/pipecat/services/"
                                            f"assemblyai/stt.py:{n}): Unable to connect to AssemblyAI: "
                                            f"server rejected WebSocket connection: HTTP {code}"))
    elif code is None:
        lines.append(line("WARNING", "warn", f"{me} error receiving messages: {reason or 'Connection reset by peer'}"))
    elif code == 1006:
        lines.append(line("WARNING", "warn", f"{me} connection closed, but with an error: no close frame received or sent"))
    else:
        frame_reason = reason if len(reason.encode()) <= 123 else "See Error message for details"
        lines.append(line("WARNING", "warn", f"{me} connection closed, but with an error: {_ws_close_text(code, frame_reason)}"))
    if code not in (1000, None) and not _is_http(code):
        lines.append(line("WARNING", "reconnect", f"{me} reconnecting, attempt 1"))
    return lines


# --------------------------------------------------------------------------
# LiveKit Agents: livekit-plugins-assemblyai (Python logging)
# --------------------------------------------------------------------------

LK_PLUGIN = "livekit/agents livekit-plugins/livekit-plugins-assemblyai/livekit/plugins/assemblyai/stt.py (logger livekit.plugins.assemblyai, log.py)"
LK_AGENTS = "livekit/agents livekit-agents/livekit/agents/stt/stt.py (RecognizeStream._main_task, logger livekit.agents)"

LIVEKIT = (
    # logger.warning("AssemblyAI WebSocket closed unexpectedly session=%s code=%s data=%s extra=%s",
    #                self._session_id, ws.close_code, msg.data, msg.extra)   [aiohttp: data=close code, extra=reason]
    Pattern("closed_unexpectedly", "C",
            r"AssemblyAI WebSocket closed unexpectedly session=(?P<session>\S+) code=(?P<code>\S+) data=\S* extra=(?P<reason>.*)$",
            "AssemblyAI WebSocket closed unexpectedly", LK_PLUGIN, quality=2,
            marker=r"AssemblyAI WebSocket closed unexpectedly"),
    # logger.warning(f"failed to recognize speech, retrying in {retry_interval}s", exc_info=e, extra={...})
    # an echo of the close above, or (with the traceback's status) a refused handshake
    Pattern("retrying", "A", r"failed to recognize speech, retrying in [\d.]+s", "failed to recognize speech",
            LK_AGENTS, quality=0, standalone="known"),
    Pattern("gave_up", "A", r"failed to recognize speech after \d+ attempts", "failed to recognize speech",
            LK_AGENTS, quality=0, standalone="never"),
    # logger.info("AssemblyAI session started id=%s expires_at=%s", self._session_id, self._expires_at)
    Pattern("session_started", "B", r"AssemblyAI session started id=(?P<session>[\w-]+)",
            "AssemblyAI session started", LK_PLUGIN),
    # logger.debug("AssemblyAI session terminated session=%s audio_duration=%ss session_duration=%ss", ...)
    Pattern("session_terminated", "T",
            r"AssemblyAI session terminated session=(?P<session>\S+) audio_duration=(?P<aud>[\d.]+|None)s session_duration=(?P<sdur>[\d.]+|None)s",
            "AssemblyAI session terminated", LK_PLUGIN, quality=0, default_code=1000),
)

LK_TRACEBACK = (
    "Traceback (most recent call last):",
    '  File "/srv/agent/.venv/lib/python3.12/site-packages/livekit/agents/stt/stt.py", line 262, in _main_task',
    "    return await self._run()",
    '  File "/srv/agent/.venv/lib/python3.12/site-packages/livekit/plugins/assemblyai/stt.py", line 611, in _run',
    "    await asyncio.gather(*tasks)",
)


def render_livekit(event: dict, layout: str | None = None) -> list[tuple[datetime | None, str]]:
    """A LiveKit agent's dev-mode log (``livekit`` layout) for one session; other Python layouts work too."""
    layout = layout or event.get("layout") or "livekit"
    ts, code, reason = event.get("ts"), event.get("close_code"), _reason(event)
    sid = event.get("session_id")

    def rec(level: str, name: str, text: str, at: datetime | None = ts, extra: dict | None = None) -> tuple[datetime | None, str]:
        return at, py_line(layout, at, level, name, text, extra=extra)

    retry = {"tts": "livekit.plugins.assemblyai.STT", "attempt": 1, "streamed": True}
    if event.get("client_id"):
        retry["client"] = event["client_id"]
    lines = []
    if sid:
        begin = _begin_ts(event)
        expires = int(((begin or ts or datetime(1970, 1, 1, tzinfo=UTC)) + timedelta(hours=3)).timestamp())
        lines.append(rec("INFO", "livekit.plugins.assemblyai", f"AssemblyAI session started id={sid} expires_at={expires}", begin))
    if code == 1000:
        lines.append(rec("DEBUG", "livekit.plugins.assemblyai", f"AssemblyAI sending close message session={sid}"))
        lines.append(rec("DEBUG", "livekit.plugins.assemblyai", f"AssemblyAI session terminated session={sid} "
                                                              f"audio_duration={_num(event.get('audio_duration_s'))}s "
                                                              f"session_duration={_num(event.get('session_duration_s'))}s"))
        return lines
    if _is_http(code) or code is None:
        exc = (f"aiohttp.client_exceptions.WSServerHandshakeError: {code}, message='Invalid response status', "
               "url='wss://streaming.assemblyai.com/v3/ws?sample_rate=16000&encoding=pcm_s16le'") if code else \
            f"aiohttp.client_exceptions.ClientConnectorError: {reason or 'Cannot connect to host streaming.assemblyai.com:443'}"
        lines.append(rec("WARNING", "livekit.agents", "failed to recognize speech, retrying in 0.1s", extra=retry))
        lines += [(ts, t) for t in LK_TRACEBACK] + [(ts, exc)]
        return lines
    data, extra = (code, reason) if code != 1006 else ("None", "None")
    lines.append(rec("WARNING", "livekit.plugins.assemblyai",
                     f"AssemblyAI WebSocket closed unexpectedly session={sid} code={code} data={data} extra={extra}"))
    lines.append(rec("WARNING", "livekit.agents", "failed to recognize speech, retrying in 0.1s", extra=retry))
    lines += [(ts, t) for t in LK_TRACEBACK]
    exception = (f"livekit.agents._exceptions.APIStatusError: AssemblyAI connection closed unexpectedly "
                 f"(status_code={code}, request_id=None, body=msg.data={data} msg.extra={extra!r}, retryable=True)")
    lines.append((ts, exception))
    return lines


# --------------------------------------------------------------------------
# Generic fallback
# --------------------------------------------------------------------------

GENERIC_SRC = "closewatch's fallback: a known reason text (reference/close-codes.md), with a close code when one is near"

_STRONG = "|".join(STRONG_REASONS)
_WEAK = "|".join(WEAK_REASONS)
GENERIC = (
    Pattern("known_reason", "G", rf"(?i)(?P<reason>(?:{_STRONG})[^\"'}}\]|]*)", "", GENERIC_SRC,
            quality=1, standalone="always"),
    Pattern("weak_reason_with_code", "G",
            rf"(?i)\b(?:close[ _]?code|status[ _]?code|error[ _]?code|code|status)[\"']?\s*[=:]?\s*[\"']?(?P<code>[134]\d{{3}}|[45]\d\d)\b.*?(?P<reason>(?:{_WEAK})[^\"'}}\]|]*)",
            "", GENERIC_SRC, quality=1, standalone="always"),
)
# Where the generic fallback finds a code and a session id near the reason.
# (a code token that starts with a digit but is not a number, "1OO8", makes the line a reject)
GENERIC_CODE = r"(?i)\b(?:close[ _]?code|status[ _]?code|error[ _]?code|code|status)[\"']?\s*[=:]?\s*[\"']?(?P<code>\d[^\s,;:)\"']*)"
GENERIC_SESSION = r"(?i)\bsession(?:[ _]?id)?[\"']?\s*[=:]\s*[\"']?(?P<session>[0-9a-f]{8}-[0-9a-f-]{27,}|[0-9a-f]{16,})"


#: The standard name a plain app prints when the close frame had no reason (RFC 6455 section 7.4.1, HTTP).
STANDARD_NAMES = {1000: "normal closure", 1001: "going away", 1006: "abnormal closure", 1011: "internal error",
                  1012: "service restart", 1013: "try again later", 1014: "bad gateway", 1008: "policy violation",
                  401: "unauthorized", 403: "forbidden", 429: "too many requests", 502: "bad gateway",
                  503: "service unavailable"}


def render_generic(event: dict, layout: str | None = None) -> list[tuple[datetime | None, str]]:
    """A plain application line naming the close: what the fallback is for. Without a reason the
    line names the code's standard meaning, which is what comes back as the reason."""
    ts, code, reason = event.get("ts"), event.get("close_code"), _reason(event)
    sid = f" session={event['session_id']}" if event.get("session_id") else ""
    text = reason or STANDARD_NAMES.get(code, "abnormal closure")
    code_part = f" code={code}" if code is not None else ""
    return [(ts, f"{_iso(ts)} WARN voice-gateway: transcription stream ended{sid}{code_part}: {text}{_client_tag(event)}")]


# --------------------------------------------------------------------------
# The table of clients
# --------------------------------------------------------------------------

CLIENTS: dict[str, Client] = {
    c.name: c
    for c in (
        Client("assemblyai-python-v3", "AssemblyAI Python SDK, Universal Streaming (v3), Python logging", PY_V3_SRC + "; " + PY_V3_APP,
               PY_V3, ("assemblyai.streaming.v3",),
               "ERROR:assemblyai.streaming.v3.client:Streaming error: Session Expired: Maximum session duration exceeded (code=3008)",
               render_python_v3, tuple(k for k in PY_LAYOUTS if k != "livekit")),
        Client("assemblyai-python-v2", "AssemblyAI Python SDK, legacy realtime (v2) RealtimeTranscriber callbacks",
               PY_V2_SRC + "; " + PY_V2_APP, PY_V2, (),
               "An error occured: ('Session Expired', 4008)", render_python_v2, tuple(k for k in PY_LAYOUTS if k != "livekit")),
        Client("assemblyai-js", "AssemblyAI JavaScript SDK (Node/browser), realtime v2 and streaming v3 listeners",
               JS_SRC + "; " + JS_APP, JS, ("node_modules/assemblyai",),
               "Session closed: 4008 Session has expired", render_js, ("plain", "iso")),
        Client("websocket-client", "websocket-client (Python) or ws (Node) apps written after the API docs' example",
               WSC_SRC, WEBSOCKET_CLIENT, (),
               "WebSocket Disconnected: Status=3008, Msg=Session Expired: Maximum session duration exceeded",
               render_websocket_client, ("plain",)),
        Client("browser-js", "Browser or Node apps logging their WebSocket onclose event", BROWSER_SRC, BROWSER, (),
               "Connection closed: 1006 - ", render_browser, ("dash", "kv")),
        Client("pipecat", "pipecat's AssemblyAISTTService (loguru default layout)",
               f"{PIPECAT_STT}; {PIPECAT_WS}; {PIPECAT_FP}; {PIPECAT_OLD}", PIPECAT,
               ("pipecat.services.assemblyai", "pipecat.services.websocket_service", "AssemblyAISTTService"),
               "2025-06-01 12:00:00.000 | WARNING  | pipecat.services.websocket_service:_maybe_try_reconnect:212 - "
               "AssemblyAISTTService#0 connection closed, but with an error: received 3008 (registered) Session Expired: "
               "Maximum session duration exceeded; then sent 3008 (registered) Session Expired: Maximum session duration exceeded",
               render_pipecat, ("loguru",)),
        Client("livekit-agents", "LiveKit Agents' AssemblyAI plugin (Python logging)", LK_PLUGIN + "; " + LK_AGENTS, LIVEKIT,
               ("livekit.plugins.assemblyai", "livekit.agents"),
               "2025-06-01 12:00:00,000 - WARNING livekit.plugins.assemblyai - AssemblyAI WebSocket closed unexpectedly "
               "session=5f2c... code=3008 data=3008 extra=Session Expired: Maximum session duration exceeded",
               render_livekit, ("livekit", "dashes", "brackets", "pipes", "spaces")),
    )
}

GENERIC_CLIENT = Client("generic", "Fallback: any line naming a known close reason, with or without a code",
                        GENERIC_SRC, GENERIC, (), "ERROR myapp: STT stopped: Session Expired: Maximum session duration exceeded",
                        render_generic, ("plain",))


def _untimed(fn: Callable[..., list[tuple[datetime | None, str]]]) -> Callable[..., list[str]]:
    def render(event: dict, layout: str | None = None) -> list[str]:
        return [line for _, line in fn(event, layout)]
    render.__doc__ = fn.__doc__
    render.__name__ = fn.__name__.replace("render_", "render_lines_")
    return render


#: format name -> render(event, layout=None) -> list of (ts, line): ts lets a generator interleave sessions.
RENDERERS_TIMED: dict[str, Callable[..., list[tuple[datetime | None, str]]]] = {
    **{name: c.render_timed for name, c in CLIENTS.items()}, "generic": render_generic,
}

# --------------------------------------------------------------------------
# Unrelated lines: what the rest of an application's log looks like
# --------------------------------------------------------------------------

FAKE_KEY = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"  # 32 hex: the shape of an AssemblyAI API key (fake)
FAKE_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZW1wLXRva2VuIn0.c2lnbmF0dXJlLWZha2U"  # a temporary-token shape (fake)

_PY_NOISE = (
    ("INFO", "httpx", 'HTTP Request: POST https://api.openai.com/v1/chat/completions "HTTP/1.1 200 OK"'),
    ("DEBUG", "assemblyai.streaming.v3.client", "Connected to WebSocket server"),
    ("INFO", "app.stt", "Turn: I'd like to check the status of my order (True)"),
    ("DEBUG", "websockets.client", "= connection is OPEN"),
    ("WARNING", "assemblyai.streaming.v3.client", "Streaming warning (code=1001): Audio is silent"),
    ("INFO", "app.calls", "call 4471 answered by agent 12"),
    ("DEBUG", "urllib3.connectionpool", "https://api.example.com:443 \"GET /v1/users/42 HTTP/1.1\" 200 512"),
    ("ERROR", "app.db", "database connection closed unexpectedly; reconnecting pool"),
    ("INFO", "app.session", "HTTP session closed for user 42"),
)
_PY_SECRET_NOISE = (
    ("DEBUG", "websockets.client", f"> Authorization: {FAKE_KEY}"),
    ("DEBUG", "app.stt", f"connecting to wss://streaming.assemblyai.com/v3/ws?sample_rate=16000&token={FAKE_JWT}"),
)
_PY_TRACEBACK = (
    "Traceback (most recent call last):",
    '  File "/srv/app/handlers.py", line 88, in on_turn',
    "    reply = await llm.complete(turn.transcript)",
    '  File "/srv/app/llm.py", line 41, in complete',
    "    raise TimeoutError(\"LLM did not answer in 10s\")",
    "TimeoutError: LLM did not answer in 10s",
)
_NODE_NOISE = (
    "Turn: I'd like to check the status of my order",
    "Partial: I'd like to",
    "Connecting to streaming transcript service",
    "Starting recording",
    "GET /health 200 1.204 ms - 2",
    "Error: ENOENT: no such file or directory, open '/srv/app/config.local.json'",
)
_WSC_NOISE = (  # the docs' own prints (python-5.py)
    "WebSocket connection opened.",
    "Connected to: wss://streaming.assemblyai.com/v3/ws?sample_rate=16000&format_turns=True",
    "Starting audio streaming...",
    "Audio streaming stopped.",
    "I'd like to check the status of my order",
    "Error handling message: 'NoneType' object has no attribute 'get'",
)
_LOGURU_NOISE = (
    ("DEBUG", "pipecat.processors.frame_processor:link:523", "Linking PipelineSource#0 -> DailyInputTransport#0"),
    ("INFO", "pipecat.pipeline.runner:run:71", "Runner PipelineRunner#0 started running PipelineTask#0"),
    ("DEBUG", "pipecat.services.assemblyai.stt:_connect_websocket:402", "Connecting to AssemblyAI WebSocket"),
    ("DEBUG", "pipecat.services.openai.base_llm:_stream_chat_completions:331", "OpenAILLMService#0: Generating chat [[{\"role\": \"user\"}]]"),
    ("INFO", "pipecat.transports.daily.transport:on_participant_left:1803", "Participant left 7a1c..."),
    ("DEBUG", "pipecat.services.assemblyai.stt:_disconnect_websocket:431", "Disconnecting from AssemblyAI WebSocket"),
)
_LIVEKIT_NOISE = (
    ("INFO", "livekit.agents", "registered worker"),
    ("DEBUG", "livekit.plugins.assemblyai", "connecting to AssemblyAI model=universal-3-5-pro base_url=wss://streaming.assemblyai.com"),
    ("DEBUG", "livekit.plugins.assemblyai", "AssemblyAI WebSocket connected status=101"),
    ("INFO", "livekit.agents", "received job request"),
    ("DEBUG", "livekit.agents", "http_session(): creating a new httpclient ctx"),
    ("WARNING", "livekit.plugins.assemblyai", "AssemblyAI no messages received for 15s session=None"),
)


def noise_lines(fmt: str, rng: Random, ts: datetime | None, layout: str | None = None, secrets: bool = False) -> list[str]:
    """One unrelated entry in the layout of ``fmt`` (sometimes with a traceback, or a secret to redact)."""
    if fmt in ("pipecat",):
        level, where, text = rng.choice(_LOGURU_NOISE)
        return [loguru_line(ts, level, where, text)]
    if fmt == "websocket-client":
        return [rng.choice(_WSC_NOISE)]
    if fmt in ("assemblyai-js", "browser-js", "generic"):
        text = rng.choice(_NODE_NOISE)
        if fmt in ("browser-js", "generic"):
            return [f"{_iso(ts)} {text}"]
        return [text]
    layout = layout or ("livekit" if fmt == "livekit-agents" else "default")
    table = _LIVEKIT_NOISE if fmt == "livekit-agents" else _PY_NOISE
    if fmt == "assemblyai-python-v2":  # a v2 app has no v3 SDK logger; it prints transcripts
        table = tuple(row for row in _PY_NOISE if "streaming.v3" not in row[1]) + (
            ("INFO", "app.realtime", "I'd like to check the status of my order"),)
    if secrets:
        table = _PY_SECRET_NOISE
    level, name, text = rng.choice(table)
    lines = [py_line(layout, ts, level, name, text)]
    if rng.random() < 0.05:
        lines[0] = py_line(layout, ts, "ERROR", "app.handlers", "on_turn handler raised")
        lines += list(_PY_TRACEBACK)
    return lines
