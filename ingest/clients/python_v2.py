"""AssemblyAI Python SDK, legacy realtime (v2): its line shapes (patterns, each cited) and its renderer."""

from __future__ import annotations

from datetime import datetime

from closewatch.ingest.clients.base import (
    PY_LAYOUTS,
    PY_V2_MESSAGES,
    Client,
    Pattern,
    _begin_ts,
    _client_tag,
    _is_http,
    _reason,
    _thread_of,
    py_line,
)

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


CLIENT = Client("assemblyai-python-v2", "AssemblyAI Python SDK, legacy realtime (v2) RealtimeTranscriber callbacks",
                PY_V2_SRC + "; " + PY_V2_APP, PY_V2, (),
                "An error occured: ('Session Expired', 4008)", render_python_v2, tuple(k for k in PY_LAYOUTS if k != "livekit"))
