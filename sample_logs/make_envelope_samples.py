"""Write sample_logs/envelopes/: one small log per envelope closewatch reads.

Each sample is a client's log (its own renderer, ingest.clients) for a few
sessions of the demo week's first morning, wrapped as its collector ships it
(the envelope's own ``wrap``, ingest.envelopes): docker json-file, CRI,
journald, Loki, GCP, CloudWatch, OTLP, Elasticsearch, and the JSON loggers.
The text inside is the same as a plain log's, so each sample loads the same
closes as the plain one would, with the envelope's time and labels.

    python sample_logs/make_envelope_samples.py            # rewrite the samples
    python sample_logs/make_envelope_samples.py --check    # fail if a sample is stale
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closewatch.ingest.clients import RENDERERS_TIMED, noise_lines
from closewatch.ingest.envelopes import ENVELOPE_LIST

HERE = Path(__file__).resolve().parent / "envelopes"
START = datetime(2026, 11, 16, 8, 0, 0, 250_000, tzinfo=UTC)  # the demo week's first morning (README.md)
CLOSES = [
    (1000, ""), (3008, "Session Expired: Maximum session duration exceeded"), (1006, ""),
    (1008, "Unauthorized Connection: Missing Authorization header"), (1000, ""),
    (3007, "Input duration violation: 1200 ms. Expected between 50 and 1000 ms"),
]
#: The client whose log each envelope carries (a JSON logger carries what its language's apps print).
CLIENT_OF = {"livekit-json": ("livekit-agents", "default"), "python-json-logger": ("assemblyai-python-v3", "default"),
             "structlog": ("assemblyai-python-v3", "default"), "pino": ("assemblyai-js", "plain"),
             "winston": ("assemblyai-js", "plain"), "journald": ("assemblyai-python-v3", "default"),
             "syslog": ("websocket-client", "plain"), "loki": ("livekit-agents", "livekit"),
             "gcp-logging": ("assemblyai-python-v3", "default"), "otlp-json": ("pipecat", "loguru")}
EXTENSIONS = {"cri": ".log", "syslog": ".log", "gcp-logging": ".json", "cloudwatch": ".json", "elasticsearch": ".json"}


def sample(name: str) -> list[str]:
    client, layout = CLIENT_OF.get(name, ("websocket-client", "plain"))
    rng = Random(name)
    timed = []
    for number, (code, reason) in enumerate(CLOSES):
        at = START + timedelta(minutes=11 * number, seconds=number * 7)
        event = {"ts": at, "session_id": f"{rng.getrandbits(32):08x}-6b1d-4c55-9a3e-{rng.getrandbits(48):012x}",
                 "close_code": code, "close_reason": reason, "audio_duration_s": 41.5, "session_duration_s": 42.0}
        timed += [(at - timedelta(seconds=20), line) for line in noise_lines(client, rng, at - timedelta(seconds=20), layout)]
        timed += RENDERERS_TIMED[client](event, layout)
    envelope = next(e for e in ENVELOPE_LIST if e.name == name)
    return envelope.wrap(timed, {"app": "support-bot", "container": "support-bot", "service": "support-bot",
                                 "unit": "support-bot.service", "pod": "support-bot-7d9f8b6c5d-x2k4q",
                                 "log_stream": "support-bot/support-bot/4f7e2a9c", "log_group": "/ecs/support-bot"})


def files() -> dict[Path, str]:
    return {HERE / f"{e.name}{EXTENSIONS.get(e.name, '.jsonl')}": "\n".join(sample(e.name)) + "\n" for e in ENVELOPE_LIST}


def main() -> int:
    wanted = files()
    if "--check" in sys.argv:
        stale = [path.name for path, text in wanted.items() if not path.exists() or path.read_text(encoding="utf-8") != text]
        if stale:
            print(f"stale: {', '.join(stale)}; run python sample_logs/make_envelope_samples.py")
            return 1
        return 0
    HERE.mkdir(exist_ok=True)
    for path, text in wanted.items():
        path.write_text(text, encoding="utf-8")
    print(f"wrote {len(wanted)} samples under {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
