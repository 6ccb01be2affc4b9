"""Delivery under concurrency and a dead webhook: duplicates, run time, what the healthy channel got.

Everything runs here: two webhook endpoints on 127.0.0.1 served from threads
of this process ("hook" answers every POST in 50-100 ms; "dead" accepts TCP
connections and never answers), a real DuckDB file with ``--rows`` pending
notifications, and real ``closewatch alerts deliver`` / ``closewatch
scheduler`` subprocesses.

Scenarios (all by default):

* ``concurrent``: ``--deliverers`` ``closewatch alerts deliver`` processes
  started at once, each run until the outbox is empty, all rows on "hook":
  prints notifications that arrived twice (should be 0).
* ``dead``: half the rows on "dead" (timeout 1 s, 1 retry), half on "hook":
  prints how long one ``alerts deliver`` run took and how many of the healthy
  channel's notifications arrived.
* ``scheduler``: ``closewatch scheduler`` with the same outbox and a watched
  folder; a file is dropped in after 2 s; prints whether it was loaded while
  the dead webhook was being tried, and how long SIGTERM took to stop it.

Usage: python bench/bench_deliver.py [--rows 258] [--deliverers 2] [--scenario concurrent|dead|scheduler]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closewatch.store import Store

RULES = """
[channels.hook]
type = "webhook"
url_env = "BENCH_HOOK_URL"
timeout = "5s"
retries = 0

[channels.dead]
type = "webhook"
url_env = "BENCH_DEAD_URL"
timeout = "1s"
retries = 1
backoff = "10ms"

[[rules]]
name = "bench"
kind = "threshold"
window = "5m"
value = 1
channels = ["hook", "dead"]
"""
CONFIG = """
[alerts]
rules = "alerts.toml"

[scheduler]
watch = "incoming"
ingest_every = "1s"
analyze_every = "1h"
evaluate_every = "1s"
deliver_every = "1s"
settle = "0s"
"""


class SlowHook:
    """Answers every POST with 200 after 50-100 ms; counts the notification ids it accepted."""

    def __init__(self):
        self.ids: Counter[str] = Counter()
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(random.uniform(0.05, 0.1))
                with hook.lock:
                    hook.ids[json.loads(body)["id"]] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def dead_endpoint() -> tuple[socket.socket, str]:
    """A socket that accepts connections (the kernel does) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}/never"


def fill_outbox(db: Path, rows: int, channels: list[str]) -> None:
    store = Store(db)
    now = datetime.now(UTC) - timedelta(minutes=1)
    with store.transaction() as con:
        for number in range(rows):
            channel = channels[number % len(channels)]
            payload = json.dumps({"rule": "bench", "title": f"bench {number}", "text": f"bench {number}", "summary": "bench"})
            con.execute("""INSERT INTO alert_outbox (notification_id, rule, group_key, kind, event_time, channel, payload,
                           status, attempts, created_at, next_attempt_at) VALUES (?, 'bench', ?, 'firing', ?, ?, ?, 'pending', 0, ?, ?)""",
                        [f"n{number:05d}", f"g{number}", now, channel, payload, now, now])


def pending(db: Path) -> int:
    return Store(db).query("SELECT count(*) FROM alert_outbox WHERE status = 'pending'").item()


def cli(folder: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "closewatch.cli", "--config", str(folder / "closewatch.toml"), "--db", str(folder / "db.duckdb"), *args]


def concurrent(folder: Path, env: dict, hook: SlowHook, rows: int, deliverers: int) -> None:
    fill_outbox(folder / "db.duckdb", rows, ["hook"])
    clock = time.perf_counter()

    def loop() -> None:
        for _ in range(10):
            subprocess.run(cli(folder, "alerts", "deliver"), env=env, cwd=folder, capture_output=True)
            if pending(folder / "db.duckdb") == 0:
                return

    threads = [threading.Thread(target=loop) for _ in range(deliverers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    twice = sum(1 for n in hook.ids.values() if n > 1)
    print(f"concurrent: {deliverers} deliverers, {rows} notifications: {len(hook.ids)} arrived, {twice} arrived more than once, "
          f"{pending(folder / 'db.duckdb')} still pending, {time.perf_counter() - clock:.1f} s")


def dead(folder: Path, env: dict, hook: SlowHook, rows: int) -> None:
    fill_outbox(folder / "db.duckdb", rows, ["hook", "dead"])
    clock = time.perf_counter()
    done = subprocess.run(cli(folder, "alerts", "deliver"), env=env, cwd=folder, capture_output=True, text=True)
    took = time.perf_counter() - clock
    print(f"dead: one deliver run took {took:.1f} s (exit {done.returncode}); healthy channel got {len(hook.ids)} of {rows // 2}; "
          f"{pending(folder / 'db.duckdb')} rows still pending")
    print("   ", (done.stdout + done.stderr).strip().splitlines()[-1][:300] if (done.stdout + done.stderr).strip() else "")


def scheduler(folder: Path, env: dict, hook: SlowHook, rows: int) -> None:
    fill_outbox(folder / "db.duckdb", rows, ["hook", "dead"])
    (folder / "incoming").mkdir()
    log = open(folder / "scheduler.log", "w")
    proc = subprocess.Popen(cli(folder, "scheduler"), env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    time.sleep(8)  # started, and the deliver job is busy with the dead channel
    line = json.dumps({"ts": datetime.now(UTC).isoformat(), "session_id": "s1", "close_code": 1000, "client_id": "bench"})
    dropped = time.perf_counter()
    (folder / "incoming" / "late.jsonl").write_text(line + "\n")
    loaded_after = None
    while time.perf_counter() - dropped < 30:
        try:
            if Store(folder / "db.duckdb", lock_timeout_s=1).query("SELECT count(*) FROM ingest_batches").item():
                loaded_after = time.perf_counter() - dropped
                break
        except Exception:
            pass
        time.sleep(0.25)
    clock = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(300)
        stopped = f"{time.perf_counter() - clock:.1f} s"
    except subprocess.TimeoutExpired:
        proc.kill()
        stopped = "more than 300 s (killed)"
    loaded = f"{loaded_after:.1f} s after it was dropped" if loaded_after is not None else "not within 30 s"
    if os.environ.get("BENCH_LOG"):
        print((folder / "scheduler.log").read_text()[-6000:])
    print(f"scheduler: dropped file loaded {loaded}; SIGTERM stopped it in {stopped}; healthy channel got {len(hook.ids)} of {rows // 2}; "
          f"{pending(folder / 'db.duckdb')} rows still pending")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=258)
    parser.add_argument("--deliverers", type=int, default=2)
    parser.add_argument("--scenario", choices=["concurrent", "dead", "scheduler"], action="append")
    args = parser.parse_args()
    for scenario in args.scenario or ["concurrent", "dead", "scheduler"]:
        hook = SlowHook()
        sock, dead_url = dead_endpoint()
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "alerts.toml").write_text(RULES)
            (folder / "closewatch.toml").write_text(CONFIG)
            env = {**os.environ, "BENCH_HOOK_URL": hook.url, "BENCH_DEAD_URL": dead_url,
                   "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            if scenario == "concurrent":
                concurrent(folder, env, hook, args.rows, args.deliverers)
            elif scenario == "dead":
                dead(folder, env, hook, args.rows)
            else:
                scheduler(folder, env, hook, args.rows)
        hook.server.shutdown()
        sock.close()


if __name__ == "__main__":
    main()
