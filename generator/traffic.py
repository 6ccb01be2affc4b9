"""Realistic synthetic session-close logs, with a ground-truth manifest of injected incidents.

Two entry points share one vectorised core:

* ``generate(outdir, GeneratorConfig(...))`` writes N days of logs in every
  supported format (one file per client and format, as each application
  writes its own log) and ``OUTDIR/manifest.json``, which lists every
  injected incident (kind, client, UTC window, expected detector pattern,
  details). The pattern detectors use that manifest as their ground truth.
* ``generate_closures_frame(n, seed)`` returns exactly ``n`` canonical
  closures as a polars DataFrame in seconds, even for n = 10,000,000, and
  ``write_jsonl(frame, path)`` writes them as JSON lines: the fast path the
  ingest and analyze benchmarks use.

How the traffic is made (numpy, no per-session Python in the core):

1. A roster of clients: each an application with one log format (or more
   when there are fewer clients than formats), an API era (v3, v3-early,
   v2), a share of the traffic, a UTC offset and an audio chunk size.
2. Session closes are spread over clients and days by a multinomial draw
   (weekends quieter), and over the day by each client's diurnal curve
   (a morning and an afternoon peak in the client's local time).
3. Each close gets a (code, reason) "variant" drawn from its era's
   production-like mix (``BACKGROUND_MIX``): mostly normal closes, some
   network drops (1006), a few expiries, and rare everything else. Every
   background reason template appears on the first day, so a detector of
   new reasons has history to compare with.
4. Incidents (``INCIDENTS``) rewrite or add the sessions of one dedicated
   client inside one UTC window; that client never shows the incident's
   category outside it, so the ground truth is exact.

Same seed, same configuration: byte-identical files (gzip headers carry no
time or name, JSON keys have a fixed order, every random draw comes from a
generator seeded by the seed and the purpose of the draw).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import random
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from closewatch.generator.defaults import DEFAULT_CLIENTS, DEFAULT_DAYS, DEFAULT_SESSIONS_PER_DAY, DEFAULT_START, PLATFORM_CATEGORIES
from closewatch.ingest.errors import IngestError

MANIFEST_VERSION = 1

DAY_MS = 86_400_000
MAX_SESSION_S = 10_800  # the API closes sessions after 3 hours
STRUCTURED_FORMATS = ("jsonl", "api-messages", "csv")

# ---------------------------------------------------------------- the closure mix (data)

ERAS = ("v3", "v3-early", "v2")

#: Probability that a background session ends this way, per era (v3, v3-early, v2);
#: "normal" takes the rest. Rare categories stay rare and spread out, so that
#: background noise stays under what the pattern detectors flag.
BACKGROUND_MIX: dict[str, tuple[float, float, float]] = {
    "network_abnormal": (0.020, 0.022, 0.028),
    "going_away": (0.004, 0.004, 0.006),
    "session_expired": (0.0025, 0.0025, 0.003),
    "server_error": (0.0015, 0.002, 0.002),
    "concurrency_limit": (0.0008, 0.0008, 0.001),
    "invalid_message": (0.0003, 0.0004, 0.0005),
    "input_duration_violation": (0.0003, 0.0004, 0.0005),
    "audio_rate_exceeded": (0.0002, 0.0002, 0.0003),
    "auth_failed": (0.0002, 0.0002, 0.0002),
    "account_issue": (0.0001, 0.0001, 0.0001),
    "protocol_error": (0.0001, 0.0001, 0.0003),
    "idle_timeout": (0.0, 0.0, 0.004),
    "session_conflict": (0.0, 0.0, 0.0006),
}

_EXPIRED = "Session Expired: Maximum session duration exceeded"
_CANCELLED = "Session Cancelled: An error occurred"
_TOO_MANY = "Unauthorized Connection: Too many concurrent sessions"
_NO_AUTH = "Unauthorized Connection: Missing Authorization header"
_BALANCE = "Unauthorized Connection: Insufficient account balance"
_CHUNK = "Input duration violation: {chunk_ms} ms. Expected between 50 and 1000 ms"
_RATE = "Audio Transmission Rate Exceeded: Received {sent} sec. audio in {elapsed} sec"
#: The reason no catalog and no history knows: the ``new_reason`` incident.
NEW_REASON_CODE = 3010
NEW_REASON = "Model Deprecated: speech_model 'universal-streaming-beta' is no longer served, use 'universal-streaming-english'"


@dataclass(frozen=True)
class Variant:
    """One way a session closes in one era: code, reason (a template where it has numbers), weight in its category."""

    era: str
    category: str
    code: int | None
    reason: str | None
    weight: float = 1.0


def _v3_family(era: str, error_code: Callable[[int], int]) -> list[Variant]:
    """v3 and early v3 send the same texts; early v3 sent every error as 3005 (reference/close-codes.md)."""
    return [
        Variant(era, "normal", 1000, None),
        Variant(era, "network_abnormal", 1006, None),
        Variant(era, "going_away", 1001, None, 0.5),
        Variant(era, "going_away", 1012, None, 0.5),
        Variant(era, "session_expired", error_code(3008), _EXPIRED),
        Variant(era, "server_error", 3005, _CANCELLED, 0.85),
        Variant(era, "server_error", 1011, None, 0.15),
        Variant(era, "concurrency_limit", 3009 if era == "v3" else 1008, _TOO_MANY),
        Variant(era, "invalid_message", error_code(3006), "Invalid JSON: {body}", 0.4),
        Variant(era, "invalid_message", error_code(3006), "Invalid Message Type: {msg_type}", 0.4),
        Variant(era, "invalid_message", error_code(3006), "Invalid Message: []", 0.2),
        Variant(era, "input_duration_violation", error_code(3007), _CHUNK),
        Variant(era, "audio_rate_exceeded", error_code(3007), _RATE),
        Variant(era, "auth_failed", 1008, _NO_AUTH),
        Variant(era, "account_issue", 1008, _BALANCE),
        Variant(era, "protocol_error", 1002, None, 0.5),
        Variant(era, "protocol_error", 1009, None, 0.5),
        Variant(era, "unknown", NEW_REASON_CODE, NEW_REASON, 0.0),  # only ever injected
    ]


#: Every (era, category) -> (code, reason) the generator uses. v2 texts are the
#: legacy SDKs' message table (AssemblyAI/assemblyai-python-sdk
#: assemblyai/types.py RealtimeErrorMapping), v3 texts reference/close-codes.md.
VARIANTS: tuple[Variant, ...] = tuple(
    _v3_family("v3", lambda code: code)
    + _v3_family("v3-early", lambda code: 3005)
    + [
        Variant("v2", "normal", 1000, None),
        Variant("v2", "network_abnormal", 1006, None),
        Variant("v2", "going_away", 1001, None),
        Variant("v2", "session_expired", 4008, "Session Expired"),
        Variant("v2", "server_error", 1011, None),
        Variant("v2", "concurrency_limit", 4102, "This account has exceeded the number of allowed streams", 0.7),
        Variant("v2", "concurrency_limit", 1013, "Temporary server condition forced blocking client's request", 0.3),
        Variant("v2", "invalid_message", 4100, "Endpoint received invalid JSON", 0.6),
        Variant("v2", "invalid_message", 4101, "Endpoint received a message with an invalid schema", 0.4),
        Variant("v2", "input_duration_violation", 4032, "Audio duration is too short", 0.4),
        Variant("v2", "input_duration_violation", 4033, "Audio duration is too long", 0.6),
        Variant("v2", "audio_rate_exceeded", 4029, "Client sent audio too fast"),
        Variant("v2", "auth_failed", 4001, "Not Authorized"),
        Variant("v2", "account_issue", 4002, "Insufficient Funds"),
        Variant("v2", "idle_timeout", 4031, "Session idle for too long"),
        Variant("v2", "session_conflict", 4030, "Session is handled by another websocket", 0.5),
        Variant("v2", "session_conflict", 4103, "The session has been reconnected. This websocket is no longer valid.", 0.5),
        Variant("v2", "protocol_error", 4000, "Sample rate must be a positive integer"),
        Variant("v2", "unknown", NEW_REASON_CODE, NEW_REASON, 0.0),
    ]
)
_INVALID_BODIES = ('{"type": "Terminate"', "{'type': 'Terminate'}", "terminate",
                   '{"type": "UpdateConfiguration", "end_of_turn_confidence_threshold": .7}')
_MESSAGE_TYPES = ("ForceEndpoints", "SessionTermination", "Terminated", "KeepAlive", "UpdateConfig")

# ---------------------------------------------------------------- formats (what each can carry)

#: What a format's files can tell the ingest pipeline, which eras its clients speak and
#: which layouts the generator prints (timestamped ones: a log without times cannot place
#: an incident). ``client``/``ts``: the client id and close time survive parsing (incidents
#: need both); ``durations``: session_duration_s survives (the expiry leak needs it);
#: ``incidents``: unknown reasons survive too. Checked by tests/ingest/test_generator.py
#: against the parsers.
FORMAT_TRAITS: dict[str, dict] = {
    "jsonl": {"client": True, "ts": True, "durations": True, "eras": ERAS},
    "csv": {"client": True, "ts": True, "durations": True, "eras": ERAS},
    "api-messages": {"client": True, "ts": True, "durations": True, "eras": ("v3", "v3-early")},
    "assemblyai-python-v3": {"client": True, "ts": True, "eras": ("v3", "v3-early"),
                             "layouts": ("pipes", "dashes", "brackets", "spaces", "thread")},
    "assemblyai-python-v2": {"client": True, "ts": True, "eras": ("v2",),
                             "layouts": ("brackets", "dashes", "pipes", "spaces", "thread")},
    "assemblyai-js": {"client": True, "ts": True, "eras": ("v3", "v2", "v3-early"), "layouts": ("iso",)},
    # the API docs' websocket-client handlers print() without a time: its closes have no ts
    "websocket-client": {"client": True, "ts": False, "eras": ("v3", "v3-early"), "layouts": ("plain",)},
    "browser-js": {"client": True, "ts": True, "eras": ERAS, "layouts": ("dash", "kv")},
    "pipecat": {"client": True, "ts": True, "eras": ("v3", "v3-early"), "layouts": ("loguru",)},
    "livekit-agents": {"client": True, "ts": True, "eras": ("v3",),
                       "layouts": ("livekit", "dashes", "brackets", "pipes", "spaces")},
    # the fallback reads only known reason texts (a never-seen reason is invisible to it)
    "generic": {"client": True, "ts": True, "eras": ERAS, "layouts": ("plain",), "incidents": False},
}
_TRAIT_DEFAULTS = {"client": False, "ts": False, "durations": False, "eras": ERAS, "layouts": (), "incidents": True}

#: A fitting application name for a background client that writes this format.
FORMAT_CLIENT_NAMES: dict[str, str] = {
    "jsonl": "mobile-backend", "csv": "analytics-export", "api-messages": "stream-proxy",
    "assemblyai-python-v3": "dictation-service", "assemblyai-python-v2": "legacy-dictation",
    "assemblyai-js": "web-captions", "websocket-client": "transcribe-worker", "browser-js": "browser-widget",
    "pipecat": "pipecat-voicebot", "livekit-agents": "livekit-agent", "generic": "voice-gateway",
}

# ---------------------------------------------------------------- incidents (data)


@dataclass(frozen=True)
class IncidentSpec:
    """One kind of incident: what it looks like and where it goes.

    ``day_fraction`` places it in the period (so that there are days of
    history before it), ``at`` is its UTC start on that day, ``minutes`` its
    length (``days`` for multi-day incidents), ``formats`` the formats its
    client should preferably write, most telling first.
    """

    kind: str
    client: str
    era: str
    category: str
    expected_pattern: str
    day_fraction: float
    at: str
    minutes: int
    formats: tuple[str, ...]
    needs_durations: bool = False
    days: int = 0
    story: str = ""
    exclusive: bool = True  # the client never shows the category outside the window


INCIDENTS: tuple[IncidentSpec, ...] = (
    IncidentSpec("network_outage", "call-center-eu", "v3", "network_abnormal", "frequent_disconnects", 0.3, "09:35", 45,
                 ("pipecat", "livekit-agents", "assemblyai-python-v3", "jsonl", "api-messages", "csv"),
                 story="the client's network path fails: every session drops with 1006 and reconnects in a loop",
                 exclusive=False),
    IncidentSpec("chunks_too_long", "kiosk-recorder", "v3", "input_duration_violation", "repeated_violation", 0.4, "13:00", 240,
                 ("assemblyai-python-v3", "api-messages", "jsonl", "csv"),
                 story="a bad build sends 1200 ms audio chunks: every new session fails and is retried"),
    IncidentSpec("faster_than_realtime", "batch-transcriber", "v3-early", "audio_rate_exceeded", "repeated_violation", 0.65, "14:00", 150,
                 ("api-messages", "assemblyai-python-v3", "jsonl", "csv"),
                 story="recorded files are streamed about 2x faster than real time"),
    IncidentSpec("concurrency_burst", "sales-dialer", "v3-early", "concurrency_limit", "concurrency_saturation", 0.5, "08:55", 20,
                 ("csv", "browser-js", "jsonl", "api-messages"),
                 story="a dialer opens dozens of sessions at once; the excess is refused and retried with short backoff"),
    IncidentSpec("expiry_leak", "meeting-notes", "v3", "session_expired", "expiry_cost_leak", 0.45, "00:00", 0,
                 ("jsonl", "csv"), needs_durations=True, days=3,
                 story="sessions are never terminated and run into the 3-hour limit, billed in full"),
    IncidentSpec("revoked_key", "ivr-legacy", "v2", "auth_failed", "auth_failures", 0.6, "11:20", 105,
                 ("assemblyai-js", "assemblyai-python-v2", "jsonl", "csv"),
                 story="the client's API key is revoked; every connection attempt is refused until a new key is deployed"),
    IncidentSpec("new_reason", "captions-live", "v3", "unknown", "new_reason", 0.8, "16:10", 90,
                 ("livekit-agents", "websocket-client", "jsonl", "api-messages", "csv"),
                 story="the server starts closing sessions with a reason never seen before"),
)
INCIDENT_KINDS = tuple(spec.kind for spec in INCIDENTS)

#: The categories a platform-wide outage (``GeneratorConfig.platform_outage``) can have.
#: A platform-wide outage: every client at once (off by default, so the demo set and its manifest stay as they are).
PLATFORM_OUTAGE = IncidentSpec(
    "platform_outage", "*", "v3", "network_abnormal", "error_spike", 0.55, "15:00", 30, (), exclusive=False,
    story="the API or the network in front of it fails for everyone: every client's sessions drop and reconnect in loops",
)

# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate; the defaults make the committed demo set."""

    days: int = DEFAULT_DAYS
    sessions_per_day: int = DEFAULT_SESSIONS_PER_DAY
    clients: int = DEFAULT_CLIENTS
    seed: int = 0
    formats: tuple[str, ...] | None = None  # None: every registered format
    start: date = DEFAULT_START
    gzip: bool = False
    incidents: bool = True
    noise_per_event: float = 1.0  # unrelated application lines per close, in text formats
    envelope: str | None = None  # wrap every file in this envelope (ingest.envelopes: docker-json, cri, journald, ...)
    platform_outage: str | None = None  # a category of PLATFORM_CATEGORIES: every client drops that way at once

    def check(self) -> None:
        """Refuse impossible settings with one sentence naming the option."""
        if self.envelope is not None:
            from closewatch.ingest.envelopes import get_envelope

            get_envelope(self.envelope)  # an unknown name is one sentence listing the known ones
        if self.platform_outage is not None and self.platform_outage not in PLATFORM_CATEGORIES:
            raise IngestError(f"--platform-outage must be one of {', '.join(PLATFORM_CATEGORIES)}, not {self.platform_outage!r}.")
        if self.days < 1:
            raise IngestError(f"--days must be at least 1, not {self.days}.")
        if self.sessions_per_day < 1:
            raise IngestError(f"--sessions-per-day must be at least 1, not {self.sessions_per_day}.")
        if self.clients < 1:
            raise IngestError(f"--clients must be at least 1, not {self.clients}.")
        if not 0 <= self.seed < 2**63:
            raise IngestError(f"--seed must be a whole number from 0 to 2**63-1, not {self.seed}.")


@dataclass(frozen=True)
class ClientSpec:
    """One application that opens sessions, and how it logs them."""

    client_id: str
    era: str
    formats: tuple[str, ...]
    share: float
    utc_offset_h: float
    chunk_ms: int
    incidents: tuple[str, ...] = ()
    layout: str | None = None
    dialect: str | None = None


def available_formats() -> list[str]:
    """Every format closewatch reads, in registry order (structured ones first)."""
    from closewatch.ingest.formats import all_formats

    return [fmt.name for fmt in all_formats()]


def resolve_formats(requested: Iterable[str] | None) -> tuple[str, ...]:
    """The formats to write: all by default; an unknown name is an error naming the known ones."""
    known = available_formats()
    if not requested:
        return tuple(known)
    chosen = []
    for name in requested:
        if name not in known:
            raise IngestError(f"Unknown format '{name}' in --formats; use some of: {', '.join(known)}.")
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen)


# ---------------------------------------------------------------- random streams


def _rng(seed: int, purpose: str) -> np.random.Generator:
    """An independent generator per purpose, so a change in one draw does not shift the others."""
    return np.random.default_rng([seed, zlib.crc32(purpose.encode())])


# ---------------------------------------------------------------- the roster


def format_traits(name: str) -> dict:
    """What the generator may rely on for a format; unknown (new) formats get background traffic only."""
    return {**_TRAIT_DEFAULTS, **FORMAT_TRAITS.get(name, {})}


def build_roster(clients: int, formats: tuple[str, ...], with_incidents: bool = True) -> list[ClientSpec]:
    """The clients, their formats and eras: incident clients first, then one client per remaining format.

    Deterministic from the arguments alone (not the seed), so the same
    command always produces the same cast. When there are fewer clients
    than formats, clients write several formats (their sessions are split).
    """
    specs = INCIDENTS if with_incidents else ()
    incident_of: dict[int, list[IncidentSpec]] = {}
    for number, spec in enumerate(specs):
        incident_of.setdefault(number % clients, []).append(spec)
    primary: dict[int, str] = {}
    used: set[str] = set()
    for index, own in incident_of.items():
        primary[index] = _incident_format(own, formats, used)
        used.add(primary[index])
    uncovered = [name for name in formats if name not in used]
    for index in range(clients):
        if index in primary:
            continue
        primary[index] = uncovered.pop(0) if uncovered else formats[index % len(formats)]
    extra: dict[int, list[str]] = {index: [] for index in range(clients)}
    background = [index for index in range(clients) if index not in incident_of] or list(range(clients))
    for number, name in enumerate(uncovered):
        extra[background[number % len(background)]].append(name)
    return [_client_spec(index, primary[index], extra[index], incident_of.get(index, []), clients) for index in range(clients)]


def _incident_format(specs: list[IncidentSpec], formats: tuple[str, ...], used: set[str]) -> str:
    """The first preferred format that is selected, able to carry the client's incidents, and not yet taken.

    With fewer clients than incidents a client carries several; the first one's preferences lead.
    """
    def able(name: str) -> bool:
        traits = format_traits(name)
        durations = traits["durations"] or not any(spec.needs_durations for spec in specs)
        return (traits["client"] and traits["ts"] and traits["incidents"] and durations
                and specs[0].era in traits["eras"])

    preferred = [name for name in specs[0].formats if name in formats]
    for pool in ([n for n in preferred if able(n) and n not in used], [n for n in preferred if able(n)],
                 [n for n in formats if able(n)], list(formats)):
        if pool:
            return pool[0]
    raise AssertionError("formats cannot be empty")


_ERA_CYCLE = ("v3", "v3", "v3-early", "v2", "v3", "v3-early", "v3", "v2")
_UTC_OFFSETS = (1.0, -5.0, 0.0, 5.5, -8.0, 9.0, 1.0, -3.0, 2.0, 8.0, -6.0, 0.0)
_CHUNK_SIZES = (100, 50, 200, 250, 100, 500)


def _client_spec(index: int, fmt: str, extra: list[str], incidents: list[IncidentSpec], clients: int) -> ClientSpec:
    """One client: an incident's named client, or a background application named after its log format."""
    eras = format_traits(fmt)["eras"]
    if incidents:
        name, era = incidents[0].client, incidents[0].era if incidents[0].era in eras else eras[0]
    else:
        name = FORMAT_CLIENT_NAMES.get(fmt, "client")
        era = next(e for e in (_ERA_CYCLE[(index + k) % len(_ERA_CYCLE)] for k in range(len(_ERA_CYCLE))) if e in eras)
    # A Zipf-like share over a fixed shuffle, so incident clients are neither all big nor all small.
    rank = (index * 7 + 3) % clients
    return ClientSpec(
        client_id=name, era=era, formats=(fmt, *extra), share=1.0 / (rank + 1) ** 0.6,
        utc_offset_h=_UTC_OFFSETS[index % len(_UTC_OFFSETS)], chunk_ms=_CHUNK_SIZES[index % len(_CHUNK_SIZES)],
        incidents=tuple(spec.kind for spec in incidents),
    )


def _unique_names(roster: list[ClientSpec]) -> list[ClientSpec]:
    seen: dict[str, int] = {}
    result = []
    for spec in roster:
        count = seen.get(spec.client_id, 0)
        seen[spec.client_id] = count + 1
        if count:
            spec = _replace(spec, client_id=f"{spec.client_id}-{count + 1}")
        result.append(spec)
    return result


def _replace(spec: ClientSpec, **changes) -> ClientSpec:
    values = {name: getattr(spec, name) for name in spec.__dataclass_fields__}
    values.update(changes)
    return ClientSpec(**values)


# ---------------------------------------------------------------- the variant table


def _variant_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "variant": list(range(len(VARIANTS))),
            "era": [v.era for v in VARIANTS],
            "category": [v.category for v in VARIANTS],
            "close_code": [v.code for v in VARIANTS],
            "template": [v.reason for v in VARIANTS],
        },
        schema={"variant": pl.Int32, "era": pl.String, "category": pl.String, "close_code": pl.Int32, "template": pl.String},
    )


def _variant_id(era: str, category: str, template_contains: str = "") -> int:
    """The first variant of an era and category (optionally whose reason contains a text)."""
    for number, v in enumerate(VARIANTS):
        if v.era == era and v.category == category and template_contains in (v.reason or ""):
            return number
    raise KeyError((era, category))


def _era_distribution(era: str) -> tuple[np.ndarray, np.ndarray]:
    """Variant ids of an era and the cumulative probability of each (category share x variant weight)."""
    column = ERAS.index(era)
    ids, probs = [], []
    normal = 1.0 - sum(shares[column] for shares in BACKGROUND_MIX.values())
    for category in ("normal", *BACKGROUND_MIX):
        share = normal if category == "normal" else BACKGROUND_MIX[category][column]
        members = [(n, v) for n, v in enumerate(VARIANTS) if v.era == era and v.category == category and v.weight > 0]
        total = sum(v.weight for _, v in members)
        for number, variant in members:
            ids.append(number)
            probs.append(share * variant.weight / total)
    cumulative = np.cumsum(probs)
    return np.array(ids, dtype=np.int32), cumulative / cumulative[-1]


# ---------------------------------------------------------------- background traffic

#: Relative traffic by weekday (Monday first): weekends are quieter.
WEEKDAY_FACTOR = (1.0, 1.05, 1.05, 1.0, 0.95, 0.5, 0.4)


def diurnal_weights(utc_offset_h: float) -> np.ndarray:
    """Relative traffic for each UTC minute of the day: a night floor, a morning and an afternoon peak, local time."""
    local_hour = (np.arange(1440) / 60.0 + utc_offset_h) % 24.0
    return (0.08 + np.exp(-0.5 * ((local_hour - 10.5) / 2.0) ** 2)
            + 0.85 * np.exp(-0.5 * ((local_hour - 15.5) / 2.3) ** 2))


def _background(roster: list[ClientSpec], start: date, days: int, total: int, seed: int) -> pl.DataFrame:
    """``total`` background closes: columns ts_ms, client, variant, duration_ms, p1 (a number the reason needs), p2."""
    rng = _rng(seed, "background")
    shares = np.array([spec.share for spec in roster])
    weekday = np.array([WEEKDAY_FACTOR[(start + timedelta(days=d)).weekday()] for d in range(days)])
    cells = np.outer(shares, weekday)
    counts = rng.multinomial(total, (cells / cells.sum()).ravel()).reshape(len(roster), days)
    client = np.repeat(np.arange(len(roster), dtype=np.int32), counts.sum(axis=1))
    day = np.repeat(np.tile(np.arange(days, dtype=np.int64), len(roster)), counts.ravel())
    minute = np.empty(total, dtype=np.int64)
    uniform = rng.random(total)
    bounds = np.concatenate([[0], np.cumsum(counts.sum(axis=1))])
    for index, spec in enumerate(roster):
        cdf = np.cumsum(diurnal_weights(spec.utc_offset_h))
        part = slice(bounds[index], bounds[index + 1])
        minute[part] = np.minimum(np.searchsorted(cdf / cdf[-1], uniform[part], side="right"), 1439)
    start_ms = _epoch_ms(start)
    ts = start_ms + day * DAY_MS + minute * 60_000 + rng.integers(0, 60_000, total)
    variant = _draw_variants(roster, client, rng)
    frame = pl.DataFrame({"ts_ms": ts, "client": client, "variant": variant})
    frame = _ensure_templates_seen(frame, roster, start_ms, seed)
    return _with_numbers(frame, roster, seed)


def _draw_variants(roster: list[ClientSpec], client: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each close's variant from its client's era mix; an incident client never shows its incident's category."""
    eras = np.array([ERAS.index(spec.era) for spec in roster], dtype=np.int8)[client]
    variant = np.empty(len(client), dtype=np.int32)
    uniform = rng.random(len(client))
    for number, era in enumerate(ERAS):
        rows = eras == number
        ids, cumulative = _era_distribution(era)
        variant[rows] = ids[np.minimum(np.searchsorted(cumulative, uniform[rows], side="right"), len(ids) - 1)]
    for index, spec in enumerate(roster):
        rows = (client == index) & _variants_of(_excluded(spec))[variant]
        variant[rows] = _variant_id(spec.era, "normal")
    return variant


def _excluded(spec: ClientSpec) -> list[str]:
    """Categories an incident client never shows outside its incidents (so their ground truth is exact)."""
    return [_incident_spec(kind).category for kind in spec.incidents if _incident_spec(kind).exclusive]


def _variants_of(categories: list[str]) -> np.ndarray:
    """A lookup table: True for the variant ids whose category is listed (integer work, not strings, on big frames)."""
    return np.array([v.category in categories for v in VARIANTS])


def _ensure_templates_seen(frame: pl.DataFrame, roster: list[ClientSpec], start_ms: int, seed: int) -> pl.DataFrame:
    """Every background variant occurs on the first day in every group of clients that log alike.

    History for new-reason detection: a later rare close must not look like
    a never-seen reason. Text clients print their own stand-in for an empty
    reason (pipecat's "no close frame received or sent"), so the guarantee
    holds per (log format, era). A missing variant replaces one normal close
    of the group on day one, never with a category an incident client keeps
    for its incident.
    """
    rng = _rng(seed, "first-day")
    variant = frame["variant"].to_numpy().copy()
    day_one = np.flatnonzero(frame["ts_ms"].to_numpy() < start_ms + DAY_MS)
    client = frame["client"].to_numpy()[day_one]
    groups: dict[tuple[str, str], list[int]] = {}
    for index, spec in enumerate(roster):
        groups.setdefault((spec.formats[0], spec.era), []).append(index)
    for (_, era), members in sorted(groups.items()):
        normal = _variant_id(era, "normal")
        for number in _era_distribution(era)[0].tolist():
            owners = [i for i in members if VARIANTS[number].category not in _excluded(roster[i])]
            rows = day_one[np.isin(client, owners)]
            if len(rows) == 0 or (variant[rows] == number).any():
                continue
            candidates = rows[variant[rows] == normal]
            if len(candidates):
                variant[candidates[rng.integers(len(candidates))]] = number
    return frame.with_columns(variant=pl.Series(variant, dtype=pl.Int32))


def _with_numbers(frame: pl.DataFrame, roster: list[ClientSpec], seed: int) -> pl.DataFrame:
    """Durations (ms) by how the session ended, and the numbers reason templates need."""
    rng = _rng(seed, "numbers")
    n = frame.height
    variant = frame["variant"].to_numpy()
    duration = np.clip(rng.lognormal(np.log(150.0), 1.0, n), 2.0, MAX_SESSION_S - 60) * 1000
    dropped = _variants_of(["network_abnormal", "going_away", "server_error"])[variant]
    duration[dropped] *= rng.uniform(0.05, 1.0, dropped.sum())
    at_connect = _variants_of(["concurrency_limit", "auth_failed", "account_issue", "protocol_error",
                               "session_conflict", "unknown"])[variant]
    duration[at_connect] = rng.uniform(150, 900, at_connect.sum())
    early = _variants_of(["input_duration_violation", "audio_rate_exceeded", "invalid_message"])[variant]
    duration[early] = rng.uniform(1_000, 60_000, early.sum())
    idle = _variants_of(["idle_timeout"])[variant]
    duration[idle] = rng.uniform(60_000, 600_000, idle.sum())
    duration[_variants_of(["session_expired"])[variant]] = MAX_SESSION_S * 1000
    rate = _variants_of(["audio_rate_exceeded"])[variant]
    # chunk lengths of violations: mostly too long (1010-1600 ms), some too short (10-49 ms)
    p1 = np.where(rng.random(n) < 0.7, rng.integers(101, 161, n) * 10, rng.integers(10, 50, n)).astype(np.float64)
    p1[rate] = np.round(rng.uniform(1.3, 3.0, rate.sum()), 1)
    return frame.with_columns(
        duration_ms=pl.Series(np.round(duration).astype(np.int64)),
        p1=pl.Series(p1),
        p2=pl.Series(rng.integers(0, 20, n).astype(np.int32)),
        incident=pl.lit(None, pl.String),
    )


def _epoch_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


# ---------------------------------------------------------------- incidents


def _incident_spec(kind: str) -> IncidentSpec:
    return next(spec for spec in INCIDENTS if spec.kind == kind)


@dataclass
class Window:
    """An incident's UTC window, in epoch milliseconds."""

    start_ms: int
    end_ms: int

    def iso(self) -> tuple[str, str]:
        """ISO 8601 UTC, whole seconds without a fraction (windows start on the minute)."""
        return _iso_window(self.start_ms), _iso_window(self.end_ms)


def incident_window(spec: IncidentSpec, start: date, days: int) -> Window:
    """Where an incident sits: a day chosen by its fraction of the period, at its UTC time."""
    day = min(days - 1, int(spec.day_fraction * days))
    hours, minutes = (int(part) for part in spec.at.split(":"))
    begin = _epoch_ms(start) + day * DAY_MS + (hours * 60 + minutes) * 60_000
    if spec.days:
        span = max(1, min(spec.days, days - day))
        return Window(begin, begin + span * DAY_MS)
    return Window(begin, begin + spec.minutes * 60_000)


_ROW_SCHEMA = {"ts_ms": pl.Int64, "client": pl.Int32, "variant": pl.Int32, "duration_ms": pl.Int64,
               "p1": pl.Float64, "p2": pl.Int32, "incident": pl.String}


def _rows(ts_ms, client: int, variant: int, duration_ms, p1=0.0, p2=0, incident: str | None = None) -> pl.DataFrame:
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    n = len(ts_ms)
    return pl.DataFrame(
        {"ts_ms": ts_ms, "client": np.full(n, client, np.int32), "variant": np.full(n, variant, np.int32),
         "duration_ms": np.broadcast_to(np.asarray(duration_ms, dtype=np.int64), (n,)).copy(),
         "p1": np.broadcast_to(np.asarray(p1, dtype=np.float64), (n,)).copy(),
         "p2": np.broadcast_to(np.asarray(p2, dtype=np.int32), (n,)).copy(),
         "incident": [incident] * n},
        schema=_ROW_SCHEMA,
    )


@dataclass
class Traffic:
    """The background as numpy arrays, for incident injectors: they read it and say which rows they replace."""

    ts_ms: np.ndarray
    client: np.ndarray
    duration_ms: np.ndarray

    @classmethod
    def of(cls, frame: pl.DataFrame) -> Traffic:
        return cls(frame["ts_ms"].to_numpy(), frame["client"].to_numpy(), frame["duration_ms"].to_numpy())

    def starts_in(self, client: int, window: Window, margin_ms: int = 0) -> np.ndarray:
        """Rows of a client whose session started inside the window (minus a margin at its end)."""
        started = self.ts_ms - self.duration_ms
        return (self.client == client) & (started >= window.start_ms) & (started < window.end_ms - margin_ms)

    def overlaps(self, client: int, window: Window) -> np.ndarray:
        """Rows of a client whose session was open at some point inside the window."""
        started = self.ts_ms - self.duration_ms
        return (self.client == client) & (started < window.end_ms) & (self.ts_ms >= window.start_ms)


def _attempt_chains(starts: np.ndarray, window: Window, rng: np.random.Generator, life_ms: tuple[int, int],
                    gaps_ms: list[int], retry_p: float) -> np.ndarray:
    """Close times of failing sessions and their retries: each attempt lives a little, then the app waits and retries."""
    closes = []
    for begin in np.sort(starts):
        at = int(begin)
        for gap in [0, *gaps_ms]:
            if gap and rng.random() > retry_p:
                break
            at += gap + int(rng.integers(0, 1_500))
            close = at + int(rng.integers(*life_ms))
            if close >= window.end_ms:
                break
            closes.append(close)
            at = close
    return np.array(closes, dtype=np.int64)


def _fill_to(starts: np.ndarray, minimum: int, window: Window, rng: np.random.Generator, margin_ms: int) -> np.ndarray:
    """Add attempt starts spread over the window until there are ``minimum`` (quiet clients still show the incident)."""
    missing = minimum - len(starts)
    if missing <= 0:
        return starts
    extra = rng.integers(window.start_ms, max(window.start_ms + 1, window.end_ms - margin_ms), missing)
    return np.concatenate([starts, extra])


Injected = tuple[np.ndarray | None, pl.DataFrame, dict]  # rows replaced (or None), new rows, manifest details


def _failing_sessions(traffic: Traffic, index, spec, window, rng, variant, life_ms, gaps_ms, retry_p, minimum, p1) -> Injected:
    """The shared shape of chunk, rate and revoked-key incidents: sessions started in the window fail and retry."""
    margin = 120_000
    hit = traffic.starts_in(index, window, margin)
    starts = (traffic.ts_ms - traffic.duration_ms)[hit]
    starts = _fill_to(starts, minimum, window, rng, margin)
    closes = _attempt_chains(starts, window, rng, life_ms, gaps_ms, retry_p)
    life = rng.integers(*life_ms, len(closes))
    numbers = p1(len(closes)) if callable(p1) else p1
    events = _rows(closes, index, variant, life, numbers, rng.integers(0, 20, len(closes)), spec.kind)
    return hit, events, {"sessions_started": len(starts)}


def _chunks_too_long(traffic, index, spec, window, client, rng) -> Injected:
    variant = _variant_id(client.era, spec.category)

    def chunk(n: int) -> np.ndarray:
        return np.where(rng.random(n) < 0.85, 1200.0, 1280.0)

    hit, events, details = _failing_sessions(traffic, index, spec, window, rng, variant, (800, 3_000), [2_000, 5_000],
                                             0.7, 15, chunk)
    details |= {"chunk_ms": 1200, "client_chunk_ms_before": client.chunk_ms, "limit_ms": "50-1000"}
    return hit, events, details


def _faster_than_realtime(traffic, index, spec, window, client, rng) -> Injected:
    variant = _variant_id(client.era, spec.category)

    def ratio(n: int) -> np.ndarray:
        return np.round(rng.uniform(2.0, 2.6, n), 1)

    hit, events, details = _failing_sessions(traffic, index, spec, window, rng, variant, (2_000, 20_000),
                                             [3_000, 10_000], 0.5, 15, ratio)
    details |= {"audio_rate_ratio": "2.0-2.6"}
    return hit, events, details


def _revoked_key(traffic, index, spec, window, client, rng) -> Injected:
    variant = _variant_id(client.era, spec.category)
    gaps = [2_000, 4_000, 8_000, 16_000, 32_000]
    hit, events, details = _failing_sessions(traffic, index, spec, window, rng, variant, (150, 700), gaps, 0.9, 20, 0.0)
    details |= {"retries_per_session": "up to 5, exponential backoff from 2 s"}
    return hit, events, details


def _new_reason(traffic, index, spec, window, client, rng) -> Injected:
    """About 40% of the sessions started in the window close at once with the never-seen reason (8 to 30 of them)."""
    variant = _variant_id(client.era, "unknown")
    margin = 120_000
    rows = np.flatnonzero(traffic.starts_in(index, window, margin))
    rows = rows[rng.random(len(rows)) < 0.4][:30]
    chosen = np.zeros(len(traffic.ts_ms), dtype=bool)
    chosen[rows] = True
    starts = _fill_to((traffic.ts_ms - traffic.duration_ms)[rows], 8, window, rng, margin)
    life = rng.integers(400, 2_000, len(starts))
    events = _rows(starts + life, index, variant, life, incident=spec.kind)
    return chosen, events, {"close_code": NEW_REASON_CODE, "reason": NEW_REASON}


def _network_outage(traffic, index, spec, window, client, rng) -> Injected:
    """Sessions open or starting during the outage are replaced by reconnect loops that drop again and again."""
    hit = traffic.overlaps(index, window)
    replaced = int(hit.sum())
    loops = int(np.clip(replaced // 3, 3, 6))
    variant = _variant_id(client.era, spec.category)
    closes, lives = [], []
    for _ in range(loops):
        first = window.start_ms + int(rng.integers(0, 90_000))
        closes.append(first)
        lives.append(int(rng.integers(30_000, 600_000)))  # the session that was open when the network failed
        at, attempt = first, 0
        while True:
            attempt += 1
            wait = min(2 ** attempt, 30) * 1000 + int(rng.integers(0, 2_000))
            life = int(rng.integers(2_000, 25_000))
            at += wait + life
            if at >= window.end_ms - 30_000:
                break
            closes.append(at)
            lives.append(life)
    events = _rows(closes, index, variant, lives, incident=spec.kind)
    return hit, events, {"reconnect_loops": loops, "sessions_replaced": replaced}


def _concurrency_burst(traffic, index, spec, window, client, rng) -> Injected:
    """A batch job opens many sessions in a few minutes; refusals (most at first) are retried with short backoff."""
    variant = _variant_id(client.era, spec.category)
    normal = _variant_id(client.era, "normal")
    jobs = window.start_ms + np.minimum(rng.gamma(3.0, 45_000, 70), (window.end_ms - window.start_ms) * 0.5).astype(np.int64)
    refused, accepted = [], []
    for begin in np.sort(jobs):
        at = int(begin)
        for backoff in (1_000, 2_000, 4_000, 8_000, 16_000, None):
            elapsed_min = (at - window.start_ms) / 60_000
            if rng.random() < 0.9 * np.exp(-elapsed_min / 6.0) and at + 1_000 < window.end_ms:
                refused.append(at + int(rng.integers(100, 600)))
                if backoff is None:
                    break
                at += backoff + int(rng.integers(0, 500))
            else:
                accepted.append(at)
                break
    refused_ms = np.array(refused, dtype=np.int64)
    accepted_ms = np.array(accepted, dtype=np.int64)
    life = np.clip(rng.lognormal(np.log(240_000), 0.7, len(accepted_ms)), 20_000, 3_000_000).astype(np.int64)
    events = pl.concat([
        _rows(refused_ms, index, variant, rng.integers(100, 600, len(refused_ms)), incident=spec.kind),
        _rows(accepted_ms + life, index, normal, life),
    ])
    per_minute = np.bincount((refused_ms - window.start_ms) // 60_000) if len(refused_ms) else np.zeros(1, np.int64)
    details = {"jobs": len(jobs), "peak_minute": _iso_window(window.start_ms + int(per_minute.argmax()) * 60_000),
               "peak_minute_count": int(per_minute.max())}
    return None, events, details


def _expiry_leak(traffic, index, spec, window, client, rng) -> Injected:
    """About ten sessions a day are never terminated: each closes at exactly 3 hours, billed in full."""
    variant = _variant_id(client.era, spec.category)
    limit = MAX_SESSION_S * 1000
    days = max(1, (window.end_ms - window.start_ms) // DAY_MS)
    starts = []
    for day in range(days):
        day_start = window.start_ms + day * DAY_MS
        last_start = min(day_start + DAY_MS, window.end_ms) - limit - 60_000
        wanted = int(rng.integers(9, 13))
        starts.append(rng.integers(day_start, max(day_start + 1, last_start), wanted))
    starts_ms = np.sort(np.concatenate(starts))
    events = _rows(starts_ms + limit, index, variant, limit, incident=spec.kind)
    return None, events, {"session_duration_s": MAX_SESSION_S, "per_day": "9-12",
                          "billed_hours": round(len(starts_ms) * MAX_SESSION_S / 3600, 1)}


_INJECTORS: dict[str, Callable] = {
    "network_outage": _network_outage,
    "chunks_too_long": _chunks_too_long,
    "faster_than_realtime": _faster_than_realtime,
    "concurrency_burst": _concurrency_burst,
    "expiry_leak": _expiry_leak,
    "revoked_key": _revoked_key,
    "new_reason": _new_reason,
}


def _inject(frame: pl.DataFrame, roster: list[ClientSpec], start: date, days: int, seed: int) -> tuple[pl.DataFrame, list[dict]]:
    """Apply every incident to its client; returns the frame and the manifest's incident entries (without counts).

    Injectors only read the background (as numpy arrays) and return the rows
    they replace and the rows they add, so a big frame is filtered once.
    """
    traffic = Traffic.of(frame)
    replaced = np.zeros(frame.height, dtype=bool)
    added, incidents = [], []
    for spec in INCIDENTS:
        index = next((i for i, client in enumerate(roster) if spec.kind in client.incidents), None)
        if index is None:
            continue
        client = roster[index]
        window = incident_window(spec, start, days)
        hit, events, details = _INJECTORS[spec.kind](traffic, index, spec, window, client, _rng(seed, f"incident:{spec.kind}"))
        if hit is not None:
            replaced |= hit
        added.append(events)
        incidents.append({"spec": spec, "client": client, "window": window, "details": details})
    if not added:
        return frame, incidents
    return pl.concat([frame.filter(pl.Series(~replaced)), *added]), incidents


def _platform_outage(frame: pl.DataFrame, roster: list[ClientSpec], config: GeneratorConfig) -> tuple[pl.DataFrame, dict]:
    """Every client's sessions in the window drop with one category and reconnect in loops (as a network outage each).

    A client whose own incident keeps that category exclusive is left out, so
    its incident's ground truth stays exact. Returns the frame and the
    manifest item (its ``clients`` lists who was hit).
    """
    spec = replace(PLATFORM_OUTAGE, category=config.platform_outage or PLATFORM_OUTAGE.category)
    window = incident_window(spec, config.start, config.days)
    traffic = Traffic.of(frame)
    replaced = np.zeros(frame.height, dtype=bool)
    added, hit_clients = [], []
    rng = _rng(config.seed, f"platform:{spec.category}")
    for index, client in enumerate(roster):
        if spec.category in _excluded(client) or spec.category not in _categories_of(client.era):
            continue
        hit, events, _ = _network_outage(traffic, index, spec, window, client, rng)
        replaced |= hit
        added.append(events)
        hit_clients.append(client.client_id)
    frame = pl.concat([frame.filter(pl.Series(~replaced)), *added]) if added else frame
    return frame, {"spec": spec, "window": window, "details": {"clients": hit_clients}}


def _categories_of(era: str) -> set[str]:
    """The categories an era's variants can close with."""
    variants = _variant_frame()
    return set(variants.filter(pl.col("era") == era)["category"].to_list())


# ---------------------------------------------------------------- the plan: canonical closures with truth


def plan(config: GeneratorConfig, roster: list[ClientSpec] | None = None) -> tuple[pl.DataFrame, list[ClientSpec], list[dict]]:
    """Every close of the period, in time order, with the truth columns the writers and the manifest need."""
    config.check()
    formats = resolve_formats(config.formats)
    roster = roster or _unique_names(build_roster(config.clients, formats, config.incidents))
    total = config.sessions_per_day * config.days
    frame = _background(roster, config.start, config.days, total, config.seed)
    incidents: list[dict] = []
    if config.incidents:
        frame, incidents = _inject(frame, roster, config.start, config.days, config.seed)
    if config.platform_outage:
        frame, outage = _platform_outage(frame, roster, config)
        incidents.append(outage)
    return _finish(frame, roster, config.seed), roster, incidents


def _finish(frame: pl.DataFrame, roster: list[ClientSpec], seed: int) -> pl.DataFrame:
    """Sort by time (stable), give every session an id, write the reasons, attach the variant's truth."""
    frame = frame.sort("ts_ms", maintain_order=True)

    def lookup(values: list, dtype: pl.DataType, key: str = "variant") -> pl.Expr:
        return pl.lit(pl.Series(values, dtype=dtype)).gather(pl.col(key))

    frame = frame.with_columns(
        category=lookup([v.category for v in VARIANTS], pl.String),
        close_code=lookup([v.code for v in VARIANTS], pl.Int32),
        template=lookup([v.reason for v in VARIANTS], pl.String),
    )
    frame = frame.with_columns(
        ts=pl.from_epoch(pl.col("ts_ms"), time_unit="ms").dt.cast_time_unit("us").dt.replace_time_zone("UTC"),
        session_id=session_ids(frame.height, seed),
        client_id=lookup([spec.client_id for spec in roster], pl.String, "client"),
        close_reason=_reasons(frame),
    )
    duration_s = (pl.col("duration_ms") / 1000).round(0)
    normal = pl.col("category") == "normal"
    return frame.with_columns(
        session_duration_s=pl.when(normal | (pl.col("category") == "session_expired")).then(duration_s),
        audio_duration_s=pl.when(normal).then((duration_s * (0.9 + (pl.col("p2") % 10) / 100)).round(0)),
    ).drop("template")


def _reasons(frame: pl.DataFrame) -> pl.Series:
    """Reason texts; only the few templated rows are formatted, the rest are gathered."""
    reasons = frame["template"].clone()
    templated = frame.select(pl.col("template").str.contains("{", literal=True).fill_null(False)).to_series()
    rows = templated.arg_true()
    if rows.len():
        subset = frame[rows]
        texts = [_fill(template, p1, p2) for template, p1, p2 in subset.select("template", "p1", "p2").iter_rows()]
        reasons = reasons.scatter(rows, texts)
    return reasons


def _fill(template: str, p1: float, p2: int) -> str:
    elapsed = (1.0, 1.0, 1.0, 2.0)[p2 % 4]
    return template.format(
        chunk_ms=int(p1), sent=f"{round(p1 * elapsed, 1):.1f}", elapsed=f"{elapsed:.1f}",
        body=_INVALID_BODIES[p2 % len(_INVALID_BODIES)], msg_type=_MESSAGE_TYPES[p2 % len(_MESSAGE_TYPES)],
    )


def session_ids(n: int, seed: int) -> pl.Series:
    """``n`` random (version 4) UUIDs as text, built in numpy and handed to Arrow without a Python loop."""
    rng = _rng(seed, "session-ids")
    lut = np.array([int.from_bytes(f"{i:02x}".encode(), "little") for i in range(256)], dtype=np.uint16)
    out = np.empty((n, 36), dtype=np.uint8)
    out[:, [8, 13, 18, 23]] = ord("-")
    step = 1 << 19
    for first in range(0, n, step):
        m = min(step, n - first)
        raw = np.frombuffer(rng.bytes(16 * m), dtype=np.uint8).reshape(m, 16).copy()
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
        hexes = lut[raw].view(np.uint8)
        part = out[first:first + m]
        for begin, end, source in ((0, 8, 0), (9, 13, 8), (14, 18, 12), (19, 23, 16), (24, 36, 20)):
            part[:, begin:end] = hexes[:, source:source + end - begin]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int64)
    array = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))
    return pl.Series("session_id", pl.from_arrow(array), dtype=pl.String)


# ---------------------------------------------------------------- the fast path

CANONICAL_COLUMNS = ["ts", "session_id", "close_code", "close_reason", "client_id", "audio_duration_s", "session_duration_s"]


def generate_closures_frame(
    n: int,
    seed: int = 0,
    *,
    days: int = DEFAULT_DAYS,
    clients: int = DEFAULT_CLIENTS,
    start: date = DEFAULT_START,
    incidents: bool = True,
    truth: bool = False,
) -> pl.DataFrame:
    """Exactly ``n`` canonical closures (the columns of ``CANONICAL_COLUMNS``), fast: for benchmarks.

    The same traffic model, mix and incidents as ``generate``; ``truth``
    adds ``expected_category``, ``era`` and ``incident``. Categories are not
    computed here (classification is analysis's job): run
    ``analysis.catalog.classify`` on the frame for them.
    """
    if n < 1:
        raise IngestError(f"n must be at least 1, not {n}.")
    config = GeneratorConfig(days=days, sessions_per_day=max(1, n // days), clients=clients, seed=seed,
                             formats=STRUCTURED_FORMATS, start=start, incidents=incidents)
    roster = _unique_names(build_roster(clients, STRUCTURED_FORMATS, incidents))
    frame = _background(roster, start, days, n, seed)
    if incidents:
        frame, _ = _inject(frame, roster, start, days, seed)
    frame = _exactly(frame, n, seed)
    frame = _finish(frame, roster, config.seed)
    if not truth:
        return frame.select(CANONICAL_COLUMNS)
    eras = pl.lit(pl.Series([spec.era for spec in roster])).gather(pl.col("client"))
    return frame.select(*CANONICAL_COLUMNS, pl.col("category").alias("expected_category"), eras.alias("era"), "incident")


def _exactly(frame: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """Drop random rows so that exactly ``n`` remain: background rows first, incident rows only if n is tiny."""
    surplus = frame.height - n
    if surplus <= 0:
        return frame
    rng = _rng(seed, "exactly")
    background = frame.select(pl.col("incident").is_null()).to_series().to_numpy()
    pool = np.flatnonzero(background) if background.sum() >= surplus else np.arange(frame.height)
    keep = np.ones(frame.height, dtype=bool)
    keep[rng.choice(pool, size=surplus, replace=False)] = False
    return frame.filter(pl.Series(keep))


def write_jsonl(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write canonical closures as JSON lines (gzip when the name ends in .gz); timestamps ISO 8601 UTC with ms."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = frame.with_columns(pl.col("ts").dt.convert_time_zone("UTC").dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ"))
    if path.name.endswith(".gz"):
        with _deterministic_gzip(path) as handle:
            out.write_ndjson(handle)
    else:
        out.write_ndjson(path)
    return path


# ---------------------------------------------------------------- writers, one per format

EventRows = list[dict]


def _iso_ms(ms: int) -> str:
    seconds, millis = divmod(int(ms), 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def _iso_window(ms: int) -> str:
    text = _iso_ms(ms)
    return text.replace(".000Z", "Z")


def _clean(value):
    """Whole-number floats as ints (JSON shows 12, not 12.0), NaN and None as None."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else value
    return value


_JSONL_DIALECTS: dict[str, tuple[tuple[str, str], ...]] = {
    # canonical closewatch names
    "canonical": (("ts", "ts"), ("session_id", "session_id"), ("client_id", "client_id"), ("close_code", "close_code"),
                  ("close_reason", "close_reason"), ("audio_duration_s", "audio_duration_s"),
                  ("session_duration_s", "session_duration_s")),
    # an ELK-style logger around websocket-client's on_close(ws, close_status_code, close_msg)
    "websocket-client": (("@timestamp", "ts"), ("service", "client_id"), ("session", "session_id"),
                         ("close_status_code", "close_code"), ("close_msg", "close_reason")),
    # epoch milliseconds and the API's own duration names
    "epoch-ms": (("time", "ts_ms"), ("app", "client_id"), ("id", "session_id"), ("code", "close_code"),
                 ("reason", "close_reason"), ("audio_duration_seconds", "audio_duration_s"),
                 ("session_duration_seconds", "session_duration_s")),
}


def write_jsonl_events(rows: EventRows, dialect: str) -> Iterable[str]:
    """JSON lines in one of the dialects (``_JSONL_DIALECTS``); absent values are left out, as loggers do."""
    fields = _JSONL_DIALECTS[dialect]
    for row in rows:
        record = {}
        for key, source in fields:
            value = _iso_ms(row["ts_ms"]) if source == "ts" else _clean(row[source])
            if value is not None:
                record[key] = value
        if dialect == "websocket-client":
            record["level"] = "info" if row["close_code"] == 1000 else "warning"
        yield json.dumps(record, ensure_ascii=False)


_CSV_HEADERS = {
    ",": ("ts", "session_id", "client_id", "close_code", "close_reason", "audio_duration_s", "session_duration_s"),
    "\t": ("timestamp", "session", "app", "code", "reason", "audio_duration_seconds", "session_duration_seconds"),
}


def write_csv_events(rows: EventRows, delimiter: str) -> Iterable[str]:
    """CSV (canonical header) or TSV (alias header), quoted only where needed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(_CSV_HEADERS[delimiter])
    for row in rows:
        writer.writerow([_iso_ms(row["ts_ms"]), row["session_id"], row["client_id"], _blank(row["close_code"]),
                         _blank(row["close_reason"]), _blank(_clean(row["audio_duration_s"])),
                         _blank(_clean(row["session_duration_s"]))])
    return buffer.getvalue().splitlines()


def _blank(value) -> str:
    return "" if value is None else str(value)


_TRANSCRIPTS = ("thanks for calling how can I help", "I'd like to check my order", "yes that works for me",
                "can you repeat that please", "okay goodbye")


def _api_frame_writer(lines: list[tuple[int, int, str]], order: int, row: dict) -> Callable[[int, dict, int], None]:
    """Appends one frame of a session: its time, then the app's context (client, session), then the frame."""
    def frame(at_ms: int, body: dict, step: int) -> None:
        record = {"ts": _iso_ms(at_ms), "client": row["client_id"], "session_id": row["session_id"], **body}
        lines.append((at_ms, order * 8 + step, json.dumps(record, ensure_ascii=False)))
    return frame


def write_api_message_events(rows: EventRows) -> Iterable[str]:
    """The API's frames as an app logs them (one JSON object per frame, with its time, client and session).

    A session is its Begin, sometimes a Turn, then how it ended: Termination
    and a 1000 close; an Error frame and a close with the same code (the
    close frame's reason cut to 123 bytes, as the API does); or only a close
    (1006 and other codes that come without an Error frame).
    """
    lines: list[tuple[int, int, str]] = []
    for order, row in enumerate(rows):
        close_ms, begin_ms = row["ts_ms"], row["ts_ms"] - row["duration_ms"]
        frame = _api_frame_writer(lines, order, row)
        frame(begin_ms, {"type": "Begin", "id": row["session_id"], "expires_at": (begin_ms // 1000) + MAX_SESSION_S}, 0)
        code, reason = row["close_code"], row["close_reason"]
        if code == 1000:
            if row["p2"] % 5 == 0:
                frame(max(begin_ms, close_ms - 900), {"type": "Turn", "turn_order": 0, "end_of_turn": True,
                                                      "transcript": _TRANSCRIPTS[row["p2"] % len(_TRANSCRIPTS)]}, 1)
            frame(close_ms - 40, {"type": "Termination", "audio_duration_seconds": _clean(row["audio_duration_s"]),
                                  "session_duration_seconds": _clean(row["session_duration_s"])}, 2)
            frame(close_ms, {"event": "websocket_closed", "code": 1000}, 3)
        elif reason is not None and (code is None or 3000 <= code < 5000 or code == 1008):
            frame(close_ms - 5, {"type": "Error", "error_code": code, "error": reason}, 2)
            shown = reason if len(reason.encode()) <= 123 else "See Error message for details"
            frame(close_ms, {"event": "websocket_closed", "code": code, "reason": shown}, 3)
        else:
            body = {"event": "websocket_closed", "code": code}
            if reason:
                body["reason"] = reason
            frame(close_ms, body, 3)
    lines.sort(key=lambda item: (item[0], item[1]))
    return [line for _, _, line in lines]


def _text_renderers() -> tuple[dict[str, Callable], bool]:
    """The text renderers of ingest.textlogs (timed ones when offered, so sessions interleave by time)."""
    try:
        from closewatch.ingest import textlogs
    except ModuleNotFoundError as error:
        if error.name != "ingest.textlogs":
            raise
        return {}, False
    timed = getattr(textlogs, "RENDERERS_TIMED", None)
    if timed:
        return dict(timed), True
    return dict(getattr(textlogs, "RENDERERS", {})), False


def write_text_events(rows: EventRows, fmt: str, layout: str | None, noise_per_event: float, seed: int) -> Iterable[str]:
    """A client's text log: its renderer's lines per close, plus unrelated application lines, in time order."""
    return [line for _, line in timed_text_events(rows, fmt, layout, noise_per_event, seed)]


def timed_text_events(rows: EventRows, fmt: str, layout: str | None, noise_per_event: float,
                      seed: int) -> list[tuple[int, str]]:
    """``write_text_events`` with each line's time (epoch ms), which an envelope around the log records."""
    renderers, timed = _text_renderers()
    render = renderers[fmt]
    noise = _noise_function()
    rng = random.Random(zlib.crc32(f"{seed}:{fmt}:{rows[0]['client_id'] if rows else ''}".encode()))
    entries: list[tuple[int, int, list[str]]] = []
    for order, row in enumerate(rows):
        event = _render_event(row, layout)
        if timed:
            for step, (at, line) in enumerate(render(event, layout)):
                at_ms = row["ts_ms"] if at is None else int(at.timestamp() * 1000)
                entries.append((at_ms, order * 64 + step, [line]))
        else:
            entries.append((row["ts_ms"], order * 64, list(render(event))))
        if noise is not None:
            count = int(noise_per_event) + (rng.random() < noise_per_event % 1)
            for extra in range(count):
                at_ms = row["ts_ms"] - rng.randint(1_000, 300_000)
                at = datetime.fromtimestamp(at_ms / 1000, UTC)
                entries.append((at_ms, order * 64 + 32 + extra,
                                noise(fmt, rng, at, layout=layout, secrets=rng.random() < 0.02)))
    entries.sort(key=lambda item: (item[0], item[1]))
    return [(at_ms, line) for at_ms, _, lines in entries for line in lines]


def _noise_function() -> Callable | None:
    """Unrelated application lines in a client's layout (ingest.clients noise_lines), if offered."""
    try:
        from closewatch.ingest import clients, textlogs
    except ModuleNotFoundError:
        return None
    return getattr(textlogs, "noise_lines", None) or getattr(clients, "noise_lines", None)


def _render_event(row: dict, layout: str | None) -> dict:
    """The event dict the text renderers take (ingest.textlogs RENDERERS)."""
    return {
        "ts": datetime.fromtimestamp(row["ts_ms"] / 1000, UTC),
        "session_id": row["session_id"],
        "close_code": row["close_code"],
        "close_reason": row["close_reason"],
        "client_id": row["client_id"],
        "audio_duration_s": _clean(row["audio_duration_s"]),
        "session_duration_s": _clean(row["session_duration_s"]) if row["session_duration_s"] is not None
        else round(row["duration_ms"] / 1000, 1),
        "layout": layout,
    }


# ---------------------------------------------------------------- generate: files + manifest


def text_layouts(fmt: str) -> tuple[str, ...]:
    """The layouts the generator prints for a text format (timestamped ones; see FORMAT_TRAITS)."""
    return tuple(format_traits(fmt)["layouts"])


def _file_plan(roster: list[ClientSpec], formats: tuple[str, ...]) -> list[ClientSpec]:
    """Give each client the layout (text) or dialect (structured) its file uses."""
    counters: dict[str, int] = {}
    result = []
    for spec in roster:
        fmt = spec.formats[0]
        number = counters.get(fmt, 0)
        counters[fmt] = number + 1
        dialect = layout = None
        if fmt == "jsonl":
            dialects = list(_JSONL_DIALECTS)
            dialect = "canonical" if "expiry_leak" in spec.incidents else dialects[number % len(dialects)]
        elif fmt == "csv":
            dialect = "csv" if number % 2 == 0 else "tsv"
        else:
            layouts = text_layouts(fmt)
            layout = layouts[number % len(layouts)] if layouts else None
        result.append(_replace(spec, layout=layout, dialect=dialect))
    del formats
    return result


def _file_name(spec: ClientSpec, fmt: str, compress: bool, envelope: str | None = None) -> str:
    if envelope is not None:
        ext = {"cri": ".log", "syslog": ".log", "gcp-logging": ".json", "cloudwatch": ".json", "elasticsearch": ".json"}.get(envelope, ".jsonl")
        return f"{envelope}/{fmt}/{spec.client_id}{ext}" + (".gz" if compress else "")
    if fmt == "csv":
        ext = ".tsv" if spec.dialect == "tsv" and fmt == spec.formats[0] else ".csv"
    elif fmt in ("jsonl", "api-messages"):
        ext = ".jsonl"
    else:
        ext = ".log"
    return f"{fmt}/{spec.client_id}{ext}" + (".gz" if compress else "")


def _lines_for(fmt: str, spec: ClientSpec, rows: EventRows, config: GeneratorConfig) -> Iterable[str]:
    if config.envelope is None:
        return [line for _, line in _timed_lines_for(fmt, spec, rows, config)]
    return _enveloped(config.envelope, spec, _timed_lines_for(fmt, spec, rows, config))


def _enveloped(name: str, spec: ClientSpec, timed: list[tuple[int | None, str]]) -> list[str]:
    """The file as its collector writes it: every line in the envelope, labelled with the client's name
    (its container, unit, service, log stream), so a close without a client of its own gets it back."""
    from closewatch.ingest.envelopes import get_envelope

    meta = {"app": spec.client_id, "container": spec.client_id, "service": spec.client_id, "unit": f"{spec.client_id}.service",
            "pod": f"{spec.client_id}-7d9f8b6c5d-x2k4q", "log_stream": spec.client_id, "log_group": f"/ecs/{spec.client_id}",
            "host": "voice-01"}
    lines = [(datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None, line) for ms, line in timed]
    return get_envelope(name).wrap(lines, meta)


def _timed_lines_for(fmt: str, spec: ClientSpec, rows: EventRows, config: GeneratorConfig) -> list[tuple[int | None, str]]:
    """The file's lines with their time where the line has one of its own (text logs, one-row lines)."""
    primary = fmt == spec.formats[0]
    if fmt in ("jsonl", "api-messages", "csv"):
        lines = list(_structured_lines_for(fmt, spec, rows, primary))
        times = [row["ts_ms"] for row in rows]
        if fmt == "csv" and len(lines) == len(rows) + 1:
            times = [times[0] if times else None, *times]
        if len(times) != len(lines):
            times = [None] * len(lines)
        return list(zip(times, lines, strict=True))
    layout = spec.layout if primary else (text_layouts(fmt) or (None,))[0]
    return timed_text_events(rows, fmt, layout, config.noise_per_event, config.seed)


def _structured_lines_for(fmt: str, spec: ClientSpec, rows: EventRows, primary: bool) -> Iterable[str]:
    if fmt == "jsonl":
        return write_jsonl_events(rows, spec.dialect if primary and spec.dialect else "canonical")
    if fmt == "api-messages":
        return write_api_message_events(rows)
    return write_csv_events(rows, "\t" if primary and spec.dialect == "tsv" else ",")


def _assign_formats(frame: pl.DataFrame, roster: list[ClientSpec], seed: int) -> pl.DataFrame:
    """Which file each close goes to: a client's incident closes go to its first format, the rest are split evenly."""
    picks = _rng(seed, "formats").random(frame.height)
    client = frame["client"].to_numpy()
    incident = frame.select(pl.col("incident").is_not_null()).to_series().to_numpy()
    chosen = np.empty(frame.height, dtype=object)
    for index, spec in enumerate(roster):
        rows = client == index
        slot = np.minimum((picks[rows] * len(spec.formats)).astype(np.int64), len(spec.formats) - 1)
        slot[incident[rows]] = 0
        chosen[rows] = np.array(spec.formats, dtype=object)[slot]
    return frame.with_columns(format=pl.Series(chosen.tolist(), dtype=pl.String))


def generate(outdir: str | Path, config: GeneratorConfig = GeneratorConfig()) -> dict:
    """Write the logs and ``manifest.json`` under ``outdir``; returns the manifest."""
    outdir = Path(outdir)
    formats = resolve_formats(config.formats)
    roster = _file_plan(_unique_names(build_roster(config.clients, formats, config.incidents)), formats)
    frame, roster, incidents = plan(config, roster)
    frame = _assign_formats(frame, roster, config.seed)
    files = _write_files(outdir, frame, roster, config)
    manifest = build_manifest(config, formats, roster, frame, incidents, files)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


_ROW_COLUMNS = ["ts_ms", "duration_ms", "session_id", "client_id", "close_code", "close_reason",
                "audio_duration_s", "session_duration_s", "p2"]


def _write_files(outdir: Path, frame: pl.DataFrame, roster: list[ClientSpec], config: GeneratorConfig) -> list[dict]:
    files = []
    for index, spec in enumerate(roster):
        own = frame.filter(pl.col("client") == index)
        for fmt in spec.formats:
            part = own.filter(pl.col("format") == fmt)
            rows = part.select(_ROW_COLUMNS).to_dicts()
            lines = list(_lines_for(fmt, spec, rows, config))
            data = ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
            relative = _file_name(spec, fmt, config.gzip, config.envelope)
            path = outdir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_bytes(path, data, config.gzip)
            files.append({"path": relative, "format": fmt, "client": spec.client_id, "events": part.height,
                          "lines": len(lines), "sha256": hashlib.sha256(data).hexdigest(),
                          "layout": spec.layout if fmt == spec.formats[0] else None,
                          "dialect": spec.dialect if fmt == spec.formats[0] else None})
    return files


def _write_bytes(path: Path, data: bytes, compress: bool) -> None:
    if compress:
        with _deterministic_gzip(path) as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


class _deterministic_gzip:
    """A gzip file whose header carries no name and no time, so equal content gives equal bytes."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.raw = open(self.path, "wb")
        self.handle = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, mtime=0, compresslevel=9)
        return self.handle

    def __exit__(self, *exc):
        self.handle.close()
        self.raw.close()


# ---------------------------------------------------------------- the manifest


def build_manifest(config: GeneratorConfig, formats: tuple[str, ...], roster: list[ClientSpec], frame: pl.DataFrame,
                   incidents: list[dict], files: list[dict]) -> dict:
    """The ground truth: the period, the cast, the files, the incidents and the background noise levels."""
    start_ms = _epoch_ms(config.start)
    entries = []
    for item in incidents:
        entries += _platform_entries(item, frame) if item["spec"].kind == PLATFORM_OUTAGE.kind else _incident_entries(item, frame, files)
    return {
        "generator": "closewatch.generator.traffic",
        "version": MANIFEST_VERSION,
        "seed": config.seed,
        "start": _iso_window(start_ms),
        "end": _iso_window(start_ms + config.days * DAY_MS),
        "days": config.days,
        "sessions_per_day": config.sessions_per_day,
        "formats": list(formats),
        "events": frame.height,
        "clients": [
            {"client": spec.client_id, "era": spec.era, "formats": list(spec.formats), "share": round(spec.share, 4),
             "utc_offset_h": spec.utc_offset_h, "chunk_ms": spec.chunk_ms, "incidents": list(spec.incidents),
             "events": int(frame.filter(pl.col("client_id") == spec.client_id).height)}
            for spec in roster
        ],
        "files": files,
        "incidents": entries,
        "background": background_levels(frame),
        "notes": [
            ("Times are UTC. An incident's events all lie in [start, end) and are all its client's events of that category "
             "in that window; details.exclusive = true: the client has none of that category outside the window either."),
            "Entries with details.required = false may fire but need not (error_spike follows from every incident).",
            ("Every background reason template occurs on the first day in every (log format, era) group of clients, "
             "so new_reason has history to compare with."),
        ],
    }


def _incident_entries(item: dict, frame: pl.DataFrame, files: list[dict]) -> list[dict]:
    spec: IncidentSpec = item["spec"]
    client: ClientSpec = item["client"]
    window: Window = item["window"]
    mine = frame.filter((pl.col("client_id") == client.client_id) & (pl.col("incident") == spec.kind))
    start, end = window.iso()
    codes = sorted({code for code in mine["close_code"].to_list() if code is not None})
    example = next((reason for reason in mine["close_reason"].to_list() if reason), None)
    paths = sorted({f["path"] for f in files if f["client"] == client.client_id and f["format"] == client.formats[0]})
    details = {
        "category": spec.category, "events": mine.height, "sessions": mine["session_id"].n_unique(),
        "close_codes": codes, "reason_example": example, "era": client.era, "format": client.formats[0],
        "files": paths, "story": spec.story, "required": True, "exclusive": spec.exclusive, **item["details"],
    }
    main = {"kind": spec.kind, "client": client.client_id, "start": start, "end": end,
            "expected_pattern": spec.expected_pattern, "details": details}
    spike = {"kind": "error_spike", "client": client.client_id, "start": start, "end": end,
             "expected_pattern": "error_spike",
             "details": {"category": spec.category, "key": spec.category, "events": mine.height,
                         "implied_by": spec.kind, "required": False, "exclusive": spec.exclusive}}
    return [main, spike]


def _platform_entries(item: dict, frame: pl.DataFrame) -> list[dict]:
    """The platform outage's manifest entry: its window, category and every client it hit (``client`` is "*")."""
    spec: IncidentSpec = item["spec"]
    start, end = item["window"].iso()
    mine = frame.filter(pl.col("incident") == spec.kind)
    per_client = {client: int(n) for client, n in mine.group_by("client_id").len().sort("client_id").iter_rows()}
    details = {"category": spec.category, "events": mine.height, "sessions": mine["session_id"].n_unique(),
               "clients": item["details"]["clients"], "events_per_client": per_client, "story": spec.story,
               "required": True, "exclusive": False}
    return [{"kind": spec.kind, "client": "*", "start": start, "end": end, "expected_pattern": spec.expected_pattern,
             "details": details}]


def background_levels(frame: pl.DataFrame) -> dict:
    """The most closes of each category one client had in any 10 minutes, hour and day, outside incidents.

    Detector thresholds must sit above these to stay quiet on background noise.
    """
    background = frame.filter(pl.col("incident").is_null() & (pl.col("category") != "normal"))
    levels: dict[str, dict] = {}
    for every, label in (("10m", "max_per_client_10min"), ("1h", "max_per_client_hour"), ("1d", "max_per_client_day")):
        counts = (background.group_by("category", "client_id", pl.col("ts").dt.truncate(every).alias("bucket"))
                  .len().group_by("category").agg(pl.col("len").max()))
        for category, count in counts.iter_rows():
            levels.setdefault(category, {})[label] = int(count)
    totals = background.group_by("category").len()
    for category, count in totals.iter_rows():
        levels[category]["events"] = int(count)
    normal = frame.filter(pl.col("category") == "normal").height
    return {"normal_events": normal, "by_category": dict(sorted(levels.items()))}
