"""LiveKit Agents' AssemblyAI plugin (Python logging): its line shapes (patterns, each cited) and its renderer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from closewatch.ingest.clients.base import (
    Client,
    Pattern,
    _begin_ts,
    _is_http,
    _num,
    _reason,
    py_line,
)

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


CLIENT = Client("livekit-agents", "LiveKit Agents' AssemblyAI plugin (Python logging)", LK_PLUGIN + "; " + LK_AGENTS, LIVEKIT,
                ("livekit.plugins.assemblyai", "livekit.agents"),
                "2025-06-01 12:00:00,000 - WARNING livekit.plugins.assemblyai - AssemblyAI WebSocket closed unexpectedly "
                "session=5f2c... code=3008 data=3008 extra=Session Expired: Maximum session duration exceeded",
                render_livekit, ("livekit", "dashes", "brackets", "pipes", "spaces"))
