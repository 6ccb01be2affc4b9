"""Live traffic for the demo: session closes appended to a log as they happen, with an incident every few minutes.

``closewatch up`` runs this beside the scheduler, which follows the log, so a
new user sees the dashboard move and an alert fire and resolve within
minutes. Lines are canonical JSON (the ``jsonl`` format) with the current
time; most closes are normal, a few expire or lose the network, and every
``incident_every`` one client misbehaves for ``incident_for``: its chunks are
too long (``repeated-violations``), then, next time, another opens more
sessions than its account allows (``concurrency-saturation``), then a key is
revoked (``auth-failures``); the same client has the same incident again only
an hour later, after its alert resolved. The log is rotated by rename past
``max_bytes``.

Run it as ``python -m closewatch.generator.live LOG [--rate N] [--incident-every S]``;
SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

CLIENTS = ("web-app", "mobile-backend", "call-center-eu", "kiosk-fleet")
#: (code, reason, share) of the everyday closes.
BACKGROUND = ((1000, None, 0.9), (3008, "Session Expired: Maximum session duration exceeded", 0.05),
              (1006, None, 0.05))
#: Each incident's close (code, reason); one kind after another, round and round ...
INCIDENTS = (
    (3007, "Input duration violation: 1200 ms. Expected between 50 and 1000 ms"),
    (1008, "Too many concurrent sessions"),
    (1008, "Unauthorized connection: Invalid API key"),
)
#: ... each time from the next client of this list, so one (kind, client) comes back only every 12 incidents
#: (an hour by default): long enough for its alert to resolve (keep_firing_for) before it fires again.
INCIDENT_CLIENTS = ("kiosk-fleet", "mobile-backend", "web-app", "call-center-eu")


def incident(number: int) -> tuple[str, int, str]:
    """The ``number``-th incident (from 0): its client, code and reason."""
    kind = number % len(INCIDENTS)
    client = INCIDENT_CLIENTS[(number // len(INCIDENTS) + kind) % len(INCIDENT_CLIENTS)]
    return (client, *INCIDENTS[kind])


@dataclass(frozen=True)
class LiveTraffic:
    """What the writer writes: closes per second, how often an incident starts and how long it lasts."""

    rate_per_s: float = 2.0
    incident_every_s: float = 300.0
    incident_for_s: float = 60.0
    incident_per_s: float = 1.0
    max_bytes: int = 20 * 1024 * 1024
    seed: int | None = None


def close_line(rng: random.Random, now: datetime, client: str, code: int, reason: str | None) -> str:
    audio = round(rng.uniform(5, 600), 1)
    return json.dumps({"ts": now.isoformat(timespec="milliseconds"), "session_id": uuid.UUID(int=rng.getrandbits(128)).hex[:20],
                       "close_code": code, "close_reason": reason, "client_id": client,
                       "audio_duration_s": audio, "session_duration_s": round(audio + rng.uniform(0.5, 5), 1)}) + "\n"


def next_line(rng: random.Random, traffic: LiveTraffic, started: float, clock: float) -> str:
    """One close at the clock's time: an incident's if one is under way and its turn came, else background."""
    elapsed = clock - started
    number, into = divmod(elapsed, traffic.incident_every_s)
    share = traffic.incident_per_s / (traffic.incident_per_s + traffic.rate_per_s)
    now = datetime.fromtimestamp(clock, UTC)
    if number >= 1 and into < traffic.incident_for_s and rng.random() < share:  # the first comes after one interval
        client, code, reason = incident(int(number) - 1)
        return close_line(rng, now, client, code, reason)
    code, reason = rng.choices([(c, r) for c, r, _ in BACKGROUND], weights=[w for _, _, w in BACKGROUND])[0]
    return close_line(rng, now, rng.choice(CLIENTS), code, reason)


def run(path: Path, traffic: LiveTraffic = LiveTraffic(), stop: threading.Event | None = None) -> int:
    """Append closes to ``path`` until ``stop`` is set; returns the number written."""
    stop = stop or threading.Event()
    rng = random.Random(traffic.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pause = 1.0 / (traffic.rate_per_s + traffic.incident_per_s)
    started, written = time.time(), 0
    out = open(path, "a", encoding="utf-8")
    try:
        while not stop.is_set():
            out.write(next_line(rng, traffic, started, time.time()))
            out.flush()
            written += 1
            if out.tell() > traffic.max_bytes:
                out.close()
                os.replace(path, path.with_name(path.name + ".1"))  # rotation by rename: the follower finishes the old file
                out = open(path, "a", encoding="utf-8")
            stop.wait(rng.expovariate(1.0 / pause))
    finally:
        out.close()
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m closewatch.generator.live", description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--rate", type=float, default=2.0, help="background closes per second")
    parser.add_argument("--incident-every", type=float, default=300.0, help="seconds between incidents")
    parser.add_argument("--incident-for", type=float, default=60.0, help="seconds an incident lasts")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(args.log, LiveTraffic(rate_per_s=args.rate, incident_every_s=args.incident_every, incident_for_s=args.incident_for), stop)


if __name__ == "__main__":
    main()
