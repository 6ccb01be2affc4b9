"""pipecat's AssemblyAISTTService (loguru): its line shapes (patterns, each cited) and its renderer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from closewatch.ingest.clients.base import (
    WEBSOCKETS_EXPLANATIONS,
    Client,
    Pattern,
    _begin_ts,
    _is_http,
    _num,
    _reason,
    _seed,
    loguru_line,
)

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


CLIENT = Client("pipecat", "pipecat's AssemblyAISTTService (loguru default layout)",
                f"{PIPECAT_STT}; {PIPECAT_WS}; {PIPECAT_FP}; {PIPECAT_OLD}", PIPECAT,
                ("pipecat.services.assemblyai", "pipecat.services.websocket_service", "AssemblyAISTTService"),
                "2025-06-01 12:00:00.000 | WARNING  | pipecat.services.websocket_service:_maybe_try_reconnect:212 - "
                "AssemblyAISTTService#0 connection closed, but with an error: received 3008 (registered) Session Expired: "
                "Maximum session duration exceeded; then sent 3008 (registered) Session Expired: Maximum session duration exceeded",
                render_pipecat, ("loguru",))
