"""What the alert tests share: closures written straight into a store, and a scriptable webhook receiver."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from closewatch.alerts.model import EngineSettings
from closewatch.alerts.rules import load_rules

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
SEVERITY = {"normal": "info", "input_duration_violation": "error", "network_abnormal": "warning", "auth_failed": "critical"}
REASON = {"normal": "", "input_duration_violation": "Input duration violation: 1200 ms. Expected between 50 and 1000 ms",
          "network_abnormal": "", "auth_failed": "Unauthorized Connection: Missing Authorization header"}
CODE = {"normal": 1000, "input_duration_violation": 3007, "network_abnormal": 1006, "auth_failed": 1008}


def at(minutes: float, origin: datetime = T0) -> datetime:
    return origin + timedelta(minutes=minutes)


def add(store, rows) -> None:
    """Insert closures (ts, client_id, category) straight into the store."""
    with store.transaction() as con:
        for ts, client, category in rows:
            con.execute(
                "INSERT INTO closures (event_id, ts, client_id, category, severity, close_code, close_reason, action) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [uuid.uuid4().hex, ts, client, category, SEVERITY[category], CODE[category], REASON[category], f"fix {category}"],
            )


def steady(client: str, start: float, end: float, category: str = "normal", origin: datetime = T0) -> list:
    """One closure a minute, at :30, for minutes start .. end-1."""
    return [(at(m + 0.5, origin), client, category) for m in range(int(start), int(end))]


def rules(tmp_path: Path, text: str, name: str = "alerts.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_rules(path)


def jsonl(rows) -> str:
    """Closures as canonical JSON lines, for the real ingest pipeline."""
    lines = []
    for ts, client, category in rows:
        lines.append(json.dumps({"ts": ts.isoformat(), "session_id": uuid.uuid4().hex[:12], "close_code": CODE[category],
                                 "close_reason": REASON[category] or None, "client_id": client}))
    return "\n".join(lines) + "\n"


class Receiver:
    """A webhook endpoint on 127.0.0.1, served from a thread of the test process.

    ``script`` lists what the next requests get, in order: "500" (an error
    status), "timeout" (no answer for ``stall_s``, then 503: never a 2xx),
    "hold" (no answer until ``release()``, then the connection is dropped).
    When the script is used up, requests get 200 and count as accepted.
    A notification is accepted when the receiver answered it with a 2xx.
    """

    def __init__(self, script: list[str] | None = None, stall_s: float = 1.0, delay_s: tuple[float, float] = (0.0, 0.0)):
        self.script = list(script or [])
        self.stall_s = stall_s
        self.delay_s = delay_s  # an accepted request is answered after a random delay in this range
        self.accepted: list[dict] = []
        self.requests = 0
        self.lock = threading.Lock()
        self.held = threading.Event()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests += 1
                    action = receiver.script.pop(0) if receiver.script else "ok"
                if action == "hold":
                    receiver.held.set()
                    receiver._release.wait(30)
                    self.close_connection = True
                    return
                if action == "timeout":
                    time.sleep(receiver.stall_s)
                    self._answer(503)
                    return
                if action == "500":
                    self._answer(500)
                    return
                payload = json.loads(body or b"{}")
                time.sleep(random.uniform(*receiver.delay_s))
                with receiver.lock:
                    receiver.accepted.append({"payload": payload, "headers": dict(self.headers), "path": self.path})
                self._answer(200)

            def _answer(self, status: int) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up (timeout): nothing was accepted

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def release(self) -> None:
        self._release.set()

    def ids(self) -> list[str]:
        with self.lock:
            return [a["payload"].get("id") for a in self.accepted]

    def duplicates(self) -> dict[str, int]:
        return {k: n for k, n in Counter(self.ids()).items() if n > 1}

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


class DeadEndpoint:
    """An address on 127.0.0.1 that accepts TCP connections (the kernel does) and never answers a request."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/never"

    def __enter__(self) -> DeadEndpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


# -- what the evaluation tests share ----------------------------------------------------

#: Microseconds in a minute, the grid step of the tests' rules.
MINUTE = 60 * 1_000_000
#: Live evaluation that judges a window at once and starts an hour back.
LIVE = EngineSettings(lateness_s=0, initial_lookback_s=3600)

VIOLATIONS = """
[[rules]]
name = "violations"
kind = "threshold"
where = { category = ["input_duration_violation"] }
group_by = ["client_id"]
window = "5m"
value = 3
resolve = true
runbook = "fix the chunks"
"""


def outbox_rows(store) -> list[tuple]:
    return store.query("SELECT rule, group_key, kind, epoch_us(event_time) AS t, channel FROM alert_outbox ORDER BY event_time, kind").rows()


def events(store) -> list[tuple]:
    return store.query("SELECT group_key, to_state, event_time FROM alert_events ORDER BY event_time, to_state").rows()
