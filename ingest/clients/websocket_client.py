"""websocket-client apps written after the API docs: its line shapes (patterns, each cited) and its renderer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from closewatch.ingest.clients.base import (
    Client,
    Pattern,
    _begin_ts,
    _client_tag,
    _is_http,
    _num,
    _reason,
)

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


CLIENT = Client("websocket-client", "websocket-client (Python) or ws (Node) apps written after the API docs' example",
                WSC_SRC, WEBSOCKET_CLIENT, (),
                "WebSocket Disconnected: Status=3008, Msg=Session Expired: Maximum session duration exceeded",
                render_websocket_client, ("plain",))
