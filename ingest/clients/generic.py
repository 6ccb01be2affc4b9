"""The generic fallback: any line naming a close reason closewatch knows, with a code when one is near."""

from __future__ import annotations

from datetime import datetime

from closewatch.ingest.clients.base import (
    STRONG_REASONS,
    WEAK_REASONS,
    Client,
    Pattern,
    _client_tag,
    _iso,
    _reason,
)

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


CLIENT = Client("generic", "Fallback: any line naming a known close reason, with or without a code",
                 GENERIC_SRC, GENERIC, (), "ERROR myapp: STT stopped: Session Expired: Maximum session duration exceeded",
                 render_generic, ("plain",))

