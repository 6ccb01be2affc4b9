"""The scheduler's steady cost on a large store: CPU seconds per minute of wall time, and each job's share.

A real `closewatch scheduler --watch DIR` runs as a subprocess on a copy of a
store of ``--rows`` closures (default 10,000,000; built by bench/stores.py,
kept at --db and reused) with its default intervals (ingest 30 s, analyze
5 min, evaluate 1 min, deliver 15 s) and the shipped rules. While it runs, a
small new log file (``--lines`` closures, newer than everything stored) is
dropped into the watched folder every ``--file-every`` seconds (default 60: one a cycle), as a service
that writes its logs out in pieces would. After the first cycle (start-up:
imports, the first analyze and evaluate), the scheduler's CPU time (user +
system, every thread) is measured over ``--minutes`` of wall time.

Target (issue 16): at most 2 s of CPU per minute of wall time. The machine is
shared: the load average is printed with the figures. Keep --minutes short
while others work.

Usage: python bench/bench_scheduler.py [--db PATH] [--rows 10000000] [--minutes 3] [--lines 2000] [--file-every 60]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import result
from bench.stores import ensure_store
from closewatch.store import Store

TARGET_CPU_S_PER_MIN = 2.0
JOB_LINE = re.compile(r"closewatch\.scheduler: (ingest|analyze|evaluate|deliver) (ok|error|skipped)\w* in ([\d.]+) s \(CPU ([\d.]+) s\)")
REASONS = [(1000, "")] * 90 + [(1006, "connection lost")] * 4 + [
    (3007, "Input duration violation: 1200 ms. Expected between 50 and 1000 ms"),
    (3008, "Session Expired: Maximum session duration exceeded"),
    (3009, "Unauthorized Connection: Too many concurrent sessions"),
    (1008, "Unauthorized Connection: Missing Authorization header"),
    (3005, "Session Cancelled: An error occurred"),
    (4008, "session expired"),
]


def write_piece(folder: Path, number: int, lines: int, start: datetime) -> Path:
    """One small log of ``lines`` closures spread over a minute from ``start``, written whole then renamed in."""
    path = folder / f"piece-{number:04d}.jsonl"
    rows = []
    for i in range(lines):
        code, reason = REASONS[(i * 7 + number) % len(REASONS)]
        moment = start + timedelta(seconds=60 * i / lines)
        rows.append(json.dumps({"ts": moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", "session_id": f"bench-{number}-{i}",
                                "close_code": code, "close_reason": reason, "client_id": f"client-{i % 12}"}))
    partial = folder / f".{path.name}.part"
    partial.write_text("\n".join(rows) + "\n")
    os.replace(partial, path)
    return path


class Log:
    """The scheduler's output, read in a thread: each job run's outcome and wall seconds."""

    def __init__(self, stream, copy: Path):
        self.runs: list[tuple[float, str, str, float, float]] = []  # (when, job, outcome, wall seconds, CPU seconds)
        self.copy = copy.open("w")
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.copy.write(line)
            self.copy.flush()
            found = JOB_LINE.search(line)
            if found:
                self.runs.append((time.monotonic(), found.group(1), found.group(2), float(found.group(3)), float(found.group(4))))

    def ran(self, job: str) -> bool:
        return any(run[1] == job for run in self.runs)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="Keep the store here (built if missing, reused if present); the scheduler runs on a copy.")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--minutes", type=float, default=3.0, help="wall time measured after the first cycle")
    parser.add_argument("--lines", type=int, default=2000, help="closures per dropped file")
    parser.add_argument("--file-every", type=float, default=60.0, help="seconds between dropped files")
    parser.add_argument("--keep-log", type=Path, help="copy the scheduler's log here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="closewatch-scheduler-") as tmp:
        folder = Path(tmp)
        source = ensure_store(args.db or folder / "source.duckdb", args.rows)
        db = folder / "scheduler.duckdb"
        clock = time.perf_counter()
        shutil.copy(source, db)
        print(f"copied the store for the scheduler in {time.perf_counter() - clock:.1f} s", flush=True)
        newest = Store(db).query("SELECT max(ts) AS t FROM closures").item()
        watch = folder / "watch"
        watch.mkdir()
        env = {key: value for key, value in os.environ.items() if not key.startswith("CLOSEWATCH_")}
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "closewatch.cli", "--db", str(db), "scheduler", "--watch", str(watch)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=folder, start_new_session=True,
        )
        log = Log(scheduler.stdout, folder / "scheduler.log")
        process = psutil.Process(scheduler.pid)
        pieces = 0
        try:
            started = time.monotonic()
            write_piece(watch, pieces, args.lines, newest + timedelta(seconds=1))
            pieces += 1
            while not all(log.ran(job) for job in ("ingest", "analyze", "evaluate")):  # the first cycle: start-up
                if scheduler.poll() is not None or time.monotonic() - started > 600:
                    raise SystemExit(f"the scheduler's first cycle did not finish; its log:\n{(folder / 'scheduler.log').read_text()[-3000:]}")
                time.sleep(0.5)
            first_cycle_cpu = cpu_seconds(process)
            first_cycle_s = time.monotonic() - started
            print(f"first cycle (start-up, first analyze and evaluate): {first_cycle_s:.1f} s wall, {first_cycle_cpu:.1f} s CPU", flush=True)

            load_before = os.getloadavg()[0]
            begin, cpu_begin = time.monotonic(), cpu_seconds(process)
            runs_before = len(log.runs)
            next_piece = begin
            while time.monotonic() - begin < args.minutes * 60:
                if time.monotonic() >= next_piece:
                    write_piece(watch, pieces, args.lines, newest + timedelta(minutes=pieces, seconds=1))
                    pieces += 1
                    next_piece += args.file_every
                if scheduler.poll() is not None:
                    raise SystemExit("the scheduler stopped during the measurement; see its log")
                time.sleep(0.5)
            wall_min = (time.monotonic() - begin) / 60
            cpu = cpu_seconds(process) - cpu_begin
            measured = log.runs[runs_before:]
        finally:
            os.killpg(scheduler.pid, signal.SIGTERM)
            try:
                scheduler.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(scheduler.pid, signal.SIGKILL)
                scheduler.wait()
        loaded = Store(db).query("SELECT count(*) FROM ingest_batches WHERE source_file LIKE '%piece-%'").item()
        if args.keep_log:
            shutil.copy(folder / "scheduler.log", args.keep_log)

    per_job: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _, job, _, seconds, used in measured:
        per_job[job].append((seconds, used))
    print(f"\n{args.rows:,} closures; {pieces} files of {args.lines:,} lines dropped, {loaded} loaded; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores")
    for job in ("ingest", "analyze", "evaluate", "deliver"):
        runs = per_job.get(job, [])
        if runs:
            print(f"  {job:<9} {len(runs):3d} runs, wall {sum(w for w, _ in runs):6.2f} s in all, longest {max(w for w, _ in runs):5.2f} s; "
                  f"CPU {sum(c for _, c in runs):5.2f} s ({sum(c for _, c in runs) / wall_min:.2f} s per minute)")
    print(f"CPU {cpu:.1f} s over {wall_min:.2f} min of wall time: {cpu / wall_min:.2f} s per minute (target <= {TARGET_CPU_S_PER_MIN:g})")
    result("scheduler/cpu-per-minute", cpu / wall_min, "cpu-s/min", TARGET_CPU_S_PER_MIN)
    result("scheduler/first-cycle-cpu", first_cycle_cpu, "cpu-s")
    for job, runs in sorted(per_job.items()):
        result(f"scheduler/{job}/cpu-per-minute", sum(c for _, c in runs) / wall_min, "cpu-s/min")


if __name__ == "__main__":
    main()
