"""AssemblyAI JavaScript SDK (Node and browsers): its line shapes (patterns, each cited) and its renderer."""

from __future__ import annotations

from datetime import datetime

from closewatch.ingest.clients.base import (
    JS_MESSAGES,
    Client,
    Pattern,
    _begin_ts,
    _client_tag,
    _has_error_frame,
    _is_http,
    _iso,
    _reason,
)

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


CLIENT = Client("assemblyai-js", "AssemblyAI JavaScript SDK (Node/browser), realtime v2 and streaming v3 listeners",
                JS_SRC + "; " + JS_APP, JS, ("node_modules/assemblyai",),
                "Session closed: 4008 Session has expired", render_js, ("plain", "iso"))
