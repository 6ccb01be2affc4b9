"""Following a live file: throughput, and the latency from a line written to its row stored.

Real processes only: ``closewatch follow`` (defaults: flush 2 s) follows a
file in a temporary folder while a writer process appends JSON close lines.

* ``throughput``: the writer appends ``--lines`` lines as fast as it can;
  prints how long after the writer stopped everything was stored, and the
  lines per second from the first write to the last row stored.
* ``latency``: the writer appends ``--rate`` lines a second for
  ``--seconds``, noting when it wrote each; once all are stored, each row's
  ``ingested_at`` (the storing transaction's start) minus its write time:
  median and p95.

Usage: python bench/bench_follow.py [--lines 200000] [--rate 20] [--seconds 30] [--scenario throughput|latency]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import result
from closewatch.store import Store

ROOT = Path(__file__).resolve().parents[1]

WRITER = r"""
import json, sys, time, uuid
from datetime import datetime, timezone
path, count, rate, ledger = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
reason = "Input duration violation: 1200 ms. Expected between 50 and 1000 ms"
with open(path, "a") as out, open(ledger, "w") as notes:
    batch = []
    for n in range(count):
        now = time.time()
        session = f"s{n:09d}"
        line = json.dumps({"ts": datetime.fromtimestamp(now, timezone.utc).isoformat(), "session_id": session,
                           "close_code": 3007 if n % 10 == 0 else 1000, "close_reason": reason if n % 10 == 0 else None,
                           "client_id": f"client-{n % 50}"}) + "\n"
        if rate > 0:
            out.write(line); out.flush()
            notes.write(f"{session} {now}\n")
            time.sleep(1 / rate)
        else:
            batch.append(line)
            if len(batch) == 5000:
                out.write("".join(batch)); out.flush(); batch = []
    out.write("".join(batch))
"""


def stored(store: Store) -> int:
    try:
        return store.query("SELECT count(*) FROM closures").item()
    except Exception:  # the follower holds the file this instant
        return -1


def follower(folder: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "closewatch", "--db", str(folder / "db.duckdb"), "follow", str(log)],
                            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_stored(store: Store, count: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while stored(store) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {stored(store):,} of {count:,} lines stored after {timeout:g} s")
        time.sleep(0.25)
    return time.time()


def start(folder: Path, count: int, rate: float) -> tuple[Path, Store, subprocess.Popen]:
    log = folder / "app.log"
    log.touch()
    store = Store(folder / "db.duckdb", lock_timeout_s=60)
    process = follower(folder, log)
    deadline = time.monotonic() + 60
    while (store.path.exists() and stored(store) >= 0 and store.query("SELECT count(*) FROM follow_marks").item()) == 0:
        if time.monotonic() > deadline:
            raise SystemExit("closewatch follow did not start within 60 s")
        time.sleep(0.25)
    return log, store, process


def throughput(lines: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-follow-") as tmp:
        folder = Path(tmp)
        log, store, process = start(folder, lines, 0)
        try:
            began = time.time()
            subprocess.run([sys.executable, "-c", WRITER, str(log), str(lines), "0", str(folder / "ledger")], check=True)
            wrote = time.time()
            megabytes = log.stat().st_size / 1e6
            done = wait_stored(store, lines, 600)
        finally:
            process.terminate()
            process.wait(60)
    print(f"{lines:,} lines ({megabytes:.0f} MB) written in {wrote - began:.1f} s; "
          f"all stored {done - wrote:.1f} s after the writer stopped")
    result("follow/throughput", lines / (done - began), "lines/s", higher_is_better=True)
    result("follow/drain-after-writer", done - wrote, "s")


def latency(rate: float, seconds: float) -> None:
    count = int(rate * seconds)
    with tempfile.TemporaryDirectory(prefix="bench-follow-") as tmp:
        folder = Path(tmp)
        log, store, process = start(folder, count, rate)
        try:
            subprocess.run([sys.executable, "-c", WRITER, str(log), str(count), str(rate), str(folder / "ledger")], check=True)
            wait_stored(store, count, 120)
            written = dict(line.split() for line in (folder / "ledger").read_text().splitlines())
            rows = store.query("SELECT session_id, epoch_us(ingested_at) / 1e6 AS at FROM closures").rows()
        finally:
            process.terminate()
            process.wait(60)
    delays = sorted(at - float(written[session]) for session, at in rows)
    p95 = delays[int(0.95 * (len(delays) - 1))]
    print(f"{count:,} lines at {rate:g}/s: write to stored row median {statistics.median(delays):.2f} s, "
          f"p95 {p95:.2f} s, max {delays[-1]:.2f} s (flush 2 s)")
    result("follow/latency-median", statistics.median(delays), "s")
    result("follow/latency-p95", p95, "s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--scenario", choices=["throughput", "latency"])
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    if args.scenario in (None, "throughput"):
        throughput(args.lines)
    if args.scenario in (None, "latency"):
        latency(args.rate, args.seconds)


if __name__ == "__main__":
    main()
