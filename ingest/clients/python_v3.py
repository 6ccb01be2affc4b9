"""AssemblyAI Python SDK, Universal Streaming (v3): its line shapes (patterns, each cited) and its renderer."""

from __future__ import annotations

from datetime import datetime

from closewatch.ingest.clients.base import (
    PY_LAYOUTS,
    PY_V3_MESSAGES,
    Client,
    Pattern,
    _begin_ts,
    _client_tag,
    _has_error_frame,
    _is_http,
    _num,
    _reason,
    _thread_of,
    py_line,
)

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


CLIENT = Client("assemblyai-python-v3", "AssemblyAI Python SDK, Universal Streaming (v3), Python logging", PY_V3_SRC + "; " + PY_V3_APP,
                PY_V3, ("assemblyai.streaming.v3",),
                "ERROR:assemblyai.streaming.v3.client:Streaming error: Session Expired: Maximum session duration exceeded (code=3008)",
                render_python_v3, tuple(k for k in PY_LAYOUTS if k != "livekit"))
