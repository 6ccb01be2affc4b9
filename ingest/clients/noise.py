"""Unrelated lines: what the rest of an application's log looks like (the generator and samples mix them in)."""

from __future__ import annotations

from datetime import datetime
from random import Random

from closewatch.ingest.clients.base import (
    _iso,
    loguru_line,
    py_line,
)

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
