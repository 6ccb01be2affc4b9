"""Write the small structured samples (JSON lines, the API's messages, CSV, TSV) and the demo set.

Each structured sample holds one working morning of three clients, one per
era of the API's close codes (current v3, early v3 with every error as 3005,
legacy v2 with 4xxx codes), a few lines that are not closes (counted as
skipped), a secret that must be redacted, and a few deliberately bad lines
that the ingest must reject with a reason (listed in BAD_LINES below and in
sample_logs/README.md). The demo set is ``closewatch generate`` with its
defaults, gzip-compressed.

    python sample_logs/make_structured_samples.py           # rewrite the samples and demo/
    python sample_logs/make_structured_samples.py --check   # fail if any is stale

Deterministic: the same code writes the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closewatch.generator import traffic as generator

HERE = Path(__file__).resolve().parent
START = datetime(2026, 11, 16, 8, 0, 0, tzinfo=UTC)  # the first morning of the demo week (demo/)
FAKE_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZW1wLXRva2VuIn0.c2lnbmF0dXJlLWZha2U"  # a temporary token's shape (fake)
LONG_JSON = '{"type": "UpdateConfiguration", "keyterms_prompt": ["' + '", "'.join(f"term{n}" for n in range(14)) + '"'

# (client, code, reason) per era: a production-like morning, mostly normal closes.
CLIENTS = {"support-bot": "v3", "notes-app": "v3-early", "dictation-v2": "v2"}
MORNING = {
    "v3": [
        (1000, None), (1000, None), (1000, None), (1006, None), (1000, None),
        (3008, "Session Expired: Maximum session duration exceeded"),
        (3007, "Input duration violation: 1200 ms. Expected between 50 and 1000 ms"),
        (1000, None), (3009, "Unauthorized Connection: Too many concurrent sessions"),
        (3007, "Audio Transmission Rate Exceeded: Received 2.1 sec. audio in 1.0 sec"),
        (1008, f"Unauthorized Connection: temporary token expired token={FAKE_JWT}"),
        (3005, "Session Cancelled: An error occurred"), (3006, "Invalid Message Type: ForceEndpoints"),
        (1000, None), (1012, None),
    ],
    "v3-early": [
        (1000, None), (1000, None), (3005, "Session Expired: Maximum session duration exceeded"), (1000, None),
        (3005, "Input duration violation: 30 ms. Expected between 50 and 1000 ms"), (1006, None),
        (1008, "Unauthorized Connection: Too many concurrent sessions"), (1000, None),
        (3005, "Invalid JSON: {'type': 'Terminate'}"), (1000, None),
        (1008, "Unauthorized Connection: Missing Authorization header"),
    ],
    "v2": [
        (1000, None), (4008, "Session Expired"), (1000, None), (4031, "Session idle for too long"),
        (4029, "Client sent audio too fast"), (1000, None), (4001, "Not Authorized"), (1006, None),
        (4002, "Insufficient Funds"), (4102, "This account has exceeded the number of allowed streams"),
        (4033, "Audio duration is too long"), (1000, None),
    ],
}


def morning(seed: str) -> list[dict]:
    """The closes of the sample morning, in time order, each with a session id, start and durations."""
    rng = Random(seed)
    events = []
    for client, era in CLIENTS.items():
        t = START + timedelta(minutes=rng.randint(0, 20))
        for code, reason in MORNING[era]:
            duration = 10800.0 if "xpired" in (reason or "") else round(rng.uniform(20, 600), 1)
            if code not in (1000, 1006, 1012) and duration != 10800.0:
                duration = round(rng.uniform(0.3, 20), 1)
            begin = t + timedelta(seconds=rng.randint(5, 300))
            close = begin + timedelta(seconds=duration)
            events.append({
                "ts": close.replace(microsecond=close.microsecond // 1000 * 1000), "begin": begin, "client_id": client,
                "session_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "close_code": code,
                "close_reason": reason, "era": era,
                "audio_duration_s": round(duration * 0.93) if code == 1000 else None,
                "session_duration_s": round(duration) if code == 1000 or duration == 10800.0 else None,
            })
            t = close
    return sorted(events, key=lambda e: (e["ts"], e["session_id"]))


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _insert(lines: list[str], extra: list[tuple[int, str]]) -> list[str]:
    """Put extra lines (not closes, bad lines) at fixed positions, so their line numbers are stable."""
    result = list(lines)
    for position, line in sorted(extra, reverse=True):
        result.insert(min(position, len(result)), line)
    return result


#: The deliberate rejects: file -> the reasons the ingest must give, in line order.
BAD_LINES: dict[str, list[str]] = {
    "closures.jsonl": ["not valid JSON", "is not an integer", "neither ISO 8601", "not an object"],
    "aliases.jsonl": ["is not an integer", "close reason is not text", "session duration is not a number"],
    "api-messages.jsonl": ["not valid JSON", "is not an integer"],
    "closures.csv": ["row has 4 fields", "is not an integer", "neither ISO 8601"],
    "closures.tsv": ["row has 8 fields", "is not an integer"],
}


def closures_jsonl() -> list[str]:
    """closewatch's canonical field names, one close per line."""
    lines = []
    for e in morning("closures.jsonl"):
        record = {"ts": iso(e["ts"]), "session_id": e["session_id"], "client_id": e["client_id"],
                  "close_code": e["close_code"], "close_reason": e["close_reason"]}
        if e["session_duration_s"] is not None:
            record["audio_duration_s"] = e["audio_duration_s"]
            record["session_duration_s"] = e["session_duration_s"]
        lines.append(json.dumps(record))
    return _insert(lines, [
        (0, json.dumps({"ts": "2026-11-16T07:59:58.000Z", "level": "info", "msg": "stt worker started", "workers": 4})),
        (6, '{"ts": "2026-11-16T08:31:07.118Z", "client_id": "support-bot", "close_code": 3008, "close_reason": "Session Exp'),
        (12, json.dumps({"ts": "2026-11-16T08:52:40.000Z", "client_id": "notes-app", "close_code": "abc",
                         "close_reason": "Session Cancelled: An error occurred"})),
        (20, json.dumps({"ts": "yesterday at noon", "client_id": "dictation-v2", "close_code": 1000})),
        (27, json.dumps([1000, "normal"])),
        (33, json.dumps({"ts": "2026-11-16T10:02:11.000Z", "level": "debug", "msg": "heartbeat"})),
    ])


def aliases_jsonl() -> list[str]:
    """The same kind of closes under the field names other loggers use, one dialect per line in turn."""
    lines = []
    for n, e in enumerate(morning("aliases.jsonl")):
        kind = n % 5
        if kind == 0:  # a Python logging JSON formatter
            record = {"asctime": e["ts"].strftime("%Y-%m-%d %H:%M:%S,") + f"{e['ts'].microsecond // 1000:03d}",
                      "levelname": "WARNING", "client": e["client_id"], "session": e["session_id"],
                      "code": e["close_code"], "reason": e["close_reason"] or ""}
        elif kind == 1:  # websocket-client's on_close arguments, logged as they are
            record = {"@timestamp": iso(e["ts"]), "service": e["client_id"], "close_status_code": e["close_code"],
                      "close_msg": e["close_reason"]}
        elif kind == 2:  # epoch milliseconds and the API's own field names
            record = {"time": int(e["ts"].timestamp() * 1000), "app": e["client_id"], "id": e["session_id"],
                      "status_code": e["close_code"], "message": e["close_reason"],
                      "audio_duration_seconds": e["audio_duration_s"], "session_duration_seconds": e["session_duration_s"]}
        elif kind == 3:  # epoch seconds with a fraction, an Error-frame-like shape
            record = {"timestamp": round(e["ts"].timestamp(), 3), "host": e["client_id"], "session_id": e["session_id"],
                      "error_code": e["close_code"], "error": e["close_reason"]}
        else:  # ISO 8601 with an offset, canonical names
            local = e["ts"].astimezone(datetime.strptime("+0100", "%z").tzinfo)
            record = {"ts": local.isoformat(timespec="milliseconds"), "client_id": e["client_id"],
                      "session_id": e["session_id"], "close_code": e["close_code"], "close_reason": e["close_reason"]}
        lines.append(json.dumps({k: v for k, v in record.items() if v is not None}))
    return _insert(lines, [
        (4, json.dumps({"time": 1762679700000, "app": "notes-app", "code": 3.5, "reason": "Session Cancelled: An error occurred"})),
        (15, json.dumps({"@timestamp": "2026-11-16T09:30:00.000Z", "service": "support-bot", "close_status_code": 1000,
                         "close_msg": {"text": "bye"}})),
        (24, json.dumps({"time": 1762685000000, "app": "dictation-v2", "code": 1000, "session_duration_seconds": "long"})),
    ])


def api_messages_jsonl() -> list[str]:
    """The API's frames (Begin, Turn, Termination, Error) and the closes after them, as an app logs them.

    v2-era sessions had no such frames: their closes appear as close lines alone.
    """
    entries: list[tuple[datetime, int, str]] = []

    def add(at: datetime, e: dict, body: dict) -> None:
        record = {"ts": iso(at), "client": e["client_id"], "session_id": e["session_id"], **body}
        entries.append((at, len(entries), json.dumps(record)))

    for n, e in enumerate(morning("api-messages.jsonl")):
        code, reason, close = e["close_code"], e["close_reason"], e["ts"]
        if e["era"] != "v2":
            add(e["begin"], e, {"type": "Begin", "id": e["session_id"], "expires_at": int(e["begin"].timestamp()) + 10800})
        if code == 1000:
            if n % 3 == 0:
                add(close - timedelta(seconds=2), e, {"type": "Turn", "turn_order": 3, "end_of_turn": True,
                                                       "transcript": "thanks, that is all"})
            add(close - timedelta(milliseconds=40), e, {"type": "Termination", "audio_duration_seconds": e["audio_duration_s"],
                                                         "session_duration_seconds": e["session_duration_s"]})
            add(close, e, {"event": "websocket_closed", "code": 1000})
        elif reason and e["era"] != "v2":
            if n == 7:  # a reason longer than a close frame may carry (123 bytes): only the Error frame has it
                reason = f"Invalid JSON: {LONG_JSON}"
                code = 3006 if e["era"] == "v3" else 3005
            add(close - timedelta(milliseconds=5), e, {"type": "Error", "error_code": code, "error": reason})
            shown = reason if len(reason.encode()) <= 123 else "See Error message for details"
            add(close, e, {"event": "websocket_closed", "code": code, "reason": shown})
        else:
            body = {"event": "websocket_closed", "code": code}
            if reason:
                body["reason"] = reason
            add(close, e, body)
    lines = [line for _, _, line in sorted(entries)]
    return _insert(lines, [
        (10, '{"ts": "2026-11-16T08:40:00.000Z", "client": "support-bot", "type": "Termination", "audio_duration_sec'),
        (30, json.dumps({"ts": "2026-11-16T09:10:00.000Z", "client": "notes-app", "session_id": "f" * 8 + "-0000-4000-8000-" + "0" * 12,
                         "type": "Error", "error_code": "oops", "error": "Session Cancelled: An error occurred"})),
    ])


def _delimited(rows: list[list[str]], delimiter: str) -> list[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue().splitlines()


def _text(value) -> str:
    return "" if value is None else str(value)


def closures_csv() -> list[str]:
    """A spreadsheet export: canonical header, reasons quoted where they hold a comma or a quote."""
    rows = [["ts", "session_id", "client_id", "close_code", "close_reason", "audio_duration_s", "session_duration_s"]]
    for n, e in enumerate(morning("closures.csv")):
        reason = e["close_reason"]
        if n == 9 and reason and reason.startswith("Invalid"):
            reason = 'Invalid JSON: {"type": "Terminate", "reason": "done"'
        rows.append([iso(e["ts"]), e["session_id"], e["client_id"], _text(e["close_code"]), _text(reason),
                     _text(e["audio_duration_s"]), _text(e["session_duration_s"])])
    return _insert(_delimited(rows, ","), [
        (7, "2026-11-16T08:30:00.000Z,support-bot,1000,"),
        (14, "2026-11-16T08:55:00.000Z,0b8f2a6e-1c1d-4c55-9d0e-5e9a7d1c2b3a,notes-app,n/a,Session Cancelled: An error occurred,,"),
        (21, "31/11/2026 10:00,5c0e3a3b-8b8e-4f55-a1b0-3d1f6b3c9e21,dictation-v2,4008,Session Expired,,"),
    ])


def closures_tsv() -> list[str]:
    """A tab-separated export with other column names (the same aliases as JSON lines)."""
    rows = [["timestamp", "session", "app", "code", "reason", "audio_duration_seconds", "session_duration_seconds"]]
    for e in morning("closures.tsv"):
        rows.append([e["ts"].strftime("%Y-%m-%d %H:%M:%S.") + f"{e['ts'].microsecond // 1000:03d}", e["session_id"],
                     e["client_id"], _text(e["close_code"]), _text(e["close_reason"]), _text(e["audio_duration_s"]),
                     _text(e["session_duration_s"])])
    return _insert(_delimited(rows, "\t"), [
        (9, "2026-11-16 08:40:00.000\t9e1c7f0a-2b3c-4d5e-8f90-a1b2c3d4e5f6\tnotes-app\t1000\t\t10\t12\textra"),
        (18, "2026-11-16 09:05:00.000\t1a2b3c4d-5e6f-4a0b-9c1d-2e3f4a5b6c7d\tdictation-v2\t4OO8\tSession Expired\t\t"),
    ])


SAMPLES = {
    "closures.jsonl": closures_jsonl,
    "aliases.jsonl": aliases_jsonl,
    "api-messages.jsonl": api_messages_jsonl,
    "closures.csv": closures_csv,
    "closures.tsv": closures_tsv,
}
DEMO = HERE / "demo"


def demo_config() -> generator.GeneratorConfig:
    """The committed demo set: the generator's defaults, compressed."""
    return generator.GeneratorConfig(gzip=True)


def _same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed files are current")
    parser.add_argument("--no-demo", action="store_true", help="leave sample_logs/demo/ alone")
    args = parser.parse_args()
    stale = []
    for name, build in SAMPLES.items():
        text = "\n".join(build()) + "\n"
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote sample_logs/{name} ({text.count(chr(10))} lines)")
    if not args.no_demo:
        with tempfile.TemporaryDirectory() as folder:
            fresh = Path(folder) / "demo"
            generator.generate(fresh, demo_config())
            if args.check:
                if not DEMO.exists() or not _same_tree(fresh, DEMO):
                    stale.append("demo/")
            else:
                shutil.rmtree(DEMO, ignore_errors=True)
                shutil.copytree(fresh, DEMO)
                size = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
                print(f"wrote sample_logs/demo/ ({size / 1e6:.2f} MB)")
    if stale:
        print("stale: " + ", ".join(stale) + "; run python sample_logs/make_structured_samples.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
