"""Write one small, realistic sample log per text format into sample_logs/.

Each file is built with the format's own renderer (ingest.clients), so it
uses the client's real format strings: a morning of sessions one after
another, unrelated application lines between them, the SDK's error line
followed by the app's echo of it, Begin / session-started lines, a
traceback under an error, one pair of overlapping sessions (whose ids must
stay unattached), one close line a client garbled (a reject), and a few
secrets that must be redacted before anything is stored.

    python sample_logs/make_text_samples.py            # rewrite the samples
    python sample_logs/make_text_samples.py --check    # fail if they are stale

Deterministic: the same code writes the same bytes.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closewatch.ingest.clients import CLIENTS, FAKE_JWT, FAKE_KEY, RENDERERS_TIMED, noise_lines

HERE = Path(__file__).resolve().parent
START = datetime(2026, 11, 16, 8, 0, 0, tzinfo=UTC)  # the first morning of the demo week (sample_logs/demo)

FILES = {
    "assemblyai-python-v3": ("assemblyai-python-v3.log", "pipes"),
    "assemblyai-python-v2": ("assemblyai-python-v2.log", "default"),
    "assemblyai-js": ("assemblyai-js.log", "plain"),
    "websocket-client": ("websocket-client.log", "plain"),
    "browser-js": ("browser-js.log", "dash"),
    "pipecat": ("pipecat-loguru.log", "loguru"),
    "livekit-agents": ("livekit-agents.log", "livekit"),
    "generic": ("generic-app.log", "plain"),
}

# (close_code, reason) of a production-like morning, per era.
V3_MIX = [
    (1000, ""), (1000, ""), (1000, ""), (1000, ""), (1000, ""), (1000, ""),
    (3008, "Session Expired: Maximum session duration exceeded"),
    (3007, "Input duration violation: 1200 ms. Expected between 50 and 1000 ms"),
    (3007, "Audio Transmission Rate Exceeded: Received 2.1 sec. audio in 1.0 sec"),
    (3009, "Unauthorized Connection: Too many concurrent sessions"),
    (1008, "Unauthorized Connection: Missing Authorization header"),
    (3005, "Session Cancelled: An error occurred"),
    (3006, "Invalid Message Type: ForceEndpointt"),
    (1006, ""), (1006, ""), (401, ""), (1011, "Internal server error"),
    (1008, f"Unauthorized Connection: temporary token rejected token={FAKE_JWT}"),
]
V2_MIX = [
    (1000, ""), (1000, ""), (1000, ""), (1000, ""), (1000, ""),
    (4008, "Session Expired"), (4029, "Client sent audio too fast"), (4031, "Session idle for too long"),
    (4001, "Not Authorized"), (4002, "Insufficient Funds"), (4102, "This account has exceeded the number of allowed streams"),
    (4033, "Audio duration is too long"), (1006, ""), (None, "timed out during opening handshake"),
]
MIXES = {"assemblyai-python-v2": V2_MIX}

# A close line the client clearly wrote, with its code garbled (and a key in it): one reject per file.
GARBLED = {
    "assemblyai-python-v3": "{py} | ERROR    | assemblyai.streaming.v3.client | "
                            "Connection closed: Unauthorized Connection: invalid key {key} (code=1OO8)",
    "assemblyai-python-v2": "An error occured: ('Not Authorized: key {key}', 4OO1)",
    "assemblyai-js": "Session closed: 1OO8 invalid key {key}",
    "websocket-client": "WebSocket Disconnected: Status=1OO8, Msg=Unauthorized Connection: invalid key {key}",
    "browser-js": "{iso} Connection closed: 1OO8 - invalid key {key}",
    "pipecat": "{loguru} | WARNING  | pipecat.services.websocket_service:_maybe_try_reconnect:212 - "
               "AssemblyAISTTService#0 connection closed, but with an error: received garbage from Authorization: {key}",
    "livekit-agents": "{py} - WARNING livekit.plugins.assemblyai - AssemblyAI WebSocket closed unexpectedly "
                      "session=None code=1OO8 data=1008 extra=invalid key {key}",
    "generic": "{iso} WARN voice-gateway: transcription stream ended code=1OO8: Session Expired (key {key})",
}
# An app error with a traceback, written with the format's layout where it has one.
TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/srv/app/stt.py", line 57, in on_error',
    "    metrics.increment(f\"stt.errors.{error.code}\")",
    '  File "/srv/app/metrics.py", line 12, in increment',
    "    raise ConnectionError(\"statsd unreachable\")",
    "ConnectionError: statsd unreachable",
]
PYTHON_LAYOUTS = ("assemblyai-python-v3", "assemblyai-python-v2", "livekit-agents")


def _session_id(rng: Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def timeline(fmt: str, rng: Random) -> list[dict]:
    """A morning of sessions one after another (so each close can claim its Begin line), with one
    overlapping pair in the middle (whose closes must not)."""
    mix = MIXES.get(fmt, V3_MIX)
    events, t = [], START
    clients = ["callbot-eu", "callbot-us", None, None]
    for number in range(22):
        if number == 12:
            pair = [(3008, "Session Expired: Maximum session duration exceeded"), (1006, "")]
            if fmt == "assemblyai-python-v2":
                pair = [(4008, "Session Expired"), (4031, "Session idle for too long")]
            for offset, (code, reason) in enumerate(pair):
                events.append({"began_at": t + timedelta(seconds=5 + 5 * offset), "ts": t + timedelta(seconds=40 + 20 * offset),
                               "session_id": _session_id(rng), "close_code": code, "close_reason": reason,
                               "client_id": None, "overlapping": True})
            t += timedelta(seconds=70)
        code, reason = mix[number % len(mix)] if number < len(mix) else rng.choice(mix)
        began = t + timedelta(seconds=rng.uniform(5, 30))
        duration = rng.uniform(20, 240)
        close = began + timedelta(seconds=duration)
        close = close.replace(microsecond=(close.microsecond // 1000) * 1000)
        refused = code is None or 100 <= code < 600
        events.append({
            "began_at": began, "ts": close, "session_id": None if refused else _session_id(rng),
            "close_code": code, "close_reason": reason, "client_id": rng.choice(clients),
            "audio_duration_s": round(duration * 0.9) if code == 1000 else None,
            "session_duration_s": round(duration) if code == 1000 else None,
        })
        t = close
    return events


def build(fmt: str) -> list[str]:
    """All entries of the sample, in time order; multi-line entries stay together."""
    rng = Random(f"closewatch-sample-{fmt}")
    _, layout = FILES[fmt]
    render = RENDERERS_TIMED[fmt]
    noise_layout = layout if fmt in PYTHON_LAYOUTS else None
    entries: list[tuple[datetime, int, list[str]]] = []

    def add(ts: datetime, lines: list[str]) -> None:
        entries.append((ts, len(entries), lines))

    for number, event in enumerate(timeline(fmt, rng)):
        began, close = event["began_at"], event["ts"]
        for _ in range(rng.randint(1, 4)):
            at = began + (close - began) * rng.random()
            add(at, noise_lines(fmt, rng, at, noise_layout))
        for at, lines in _blocks(render(event, layout)):
            add(at or close, lines)
        if number == 3:
            add(close + timedelta(seconds=1), noise_lines(fmt, rng, close + timedelta(seconds=1), noise_layout, secrets=True))
        if number == 5:
            add(close + timedelta(milliseconds=500), _app_error_with_traceback(fmt, layout, close + timedelta(milliseconds=500)))
        if number == 9:
            add(close + timedelta(seconds=2), [_garbled(fmt, close + timedelta(seconds=2))])
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    return [line for _, _, lines in entries for line in lines]


def _blocks(timed: list[tuple[datetime | None, str]]) -> list[tuple[datetime | None, list[str]]]:
    """Consecutive rendered lines with one timestamp form one entry (a message and its stack)."""
    blocks: list[tuple[datetime | None, list[str]]] = []
    for at, line in timed:
        if blocks and blocks[-1][0] == at:
            blocks[-1][1].append(line)
        else:
            blocks.append((at, [line]))
    return blocks


def _garbled(fmt: str, ts: datetime) -> str:
    from closewatch.ingest.clients import _asctime, _iso
    loguru = ts.strftime("%Y-%m-%d %H:%M:%S") + f".{ts.microsecond // 1000:03d}"
    return GARBLED[fmt].format(py=_asctime(ts), iso=_iso(ts), loguru=loguru, key=FAKE_KEY)


def _app_error_with_traceback(fmt: str, layout: str, ts: datetime) -> list[str]:
    """An unrelated handler error: its traceback is part of its record, never a close."""
    from closewatch.ingest.clients import loguru_line, py_line
    message = "on_error handler raised"
    if fmt == "pipecat":
        head = loguru_line(ts, "ERROR", "bot:on_error:57", message)
    elif fmt in PYTHON_LAYOUTS:
        head = py_line(layout, ts, "ERROR", "app.stt", message)
    elif fmt in ("browser-js", "generic"):
        head = f"{ts.strftime('%Y-%m-%dT%H:%M:%S.000Z')} ERROR {message}"
    else:
        head = message
    return [head, *TRACEBACK]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed samples are current")
    args = parser.parse_args()
    stale = []
    for fmt, (name, _) in FILES.items():
        text = "\n".join(build(fmt)) + "\n"
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)} ({text.count(chr(10))} lines)")
    if stale:
        print("stale samples: " + ", ".join(stale) + "; run python sample_logs/make_text_samples.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    assert set(FILES) == set(CLIENTS) | {"generic"}
    raise SystemExit(main())
