"""Browser or Node apps with their own onclose handler: its line shapes (patterns, each cited) and its renderer."""

from __future__ import annotations

from datetime import datetime

from closewatch.ingest.clients.base import (
    Client,
    Pattern,
    _begin_ts,
    _client_tag,
    _is_http,
    _iso,
    _reason,
)

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


CLIENT = Client("browser-js", "Browser or Node apps logging their WebSocket onclose event", BROWSER_SRC, BROWSER, (),
                "Connection closed: 1006 - ", render_browser, ("dash", "kv"))
