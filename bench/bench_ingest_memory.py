"""Peak memory of `closewatch ingest` on the hostile inputs of issue 11 (reproduction 1).

Each input is small on disk and huge (or one enormous line) once read:

  reason-1gb.jsonl.gz   a ~1 MB gzip: one valid JSON close, then one with a 1 GB close_reason
  reason-1gb (stdin)    the same bytes through `closewatch ingest -`, as the Upload page gets them
  zeros-1gb.gz          1 GB of zero bytes, gzip-compressed, read with --format jsonl
  line-50mb.log         a 50 MB line, then sample_logs/websocket-client.log (the format must still be detected)
  reason-50mb.jsonl     a 50 MB close_reason, read with --format jsonl

Every run is a fresh subprocess on a fresh database. Its resident memory
(the process and its children) is sampled every 20 ms and the process is
killed when it passes --cap (default 4 GB), so a regression cannot take the
machine down; the printed peak is then "> cap". The peak of a finished run is
the kernel's (wait4's ru_maxrss). The last lines of the run's output show the
message the user got.

    python bench/bench_ingest_memory.py               # all inputs
    python bench/bench_ingest_memory.py --only zeros  # inputs whose name contains "zeros"
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

SAMPLE = Path(__file__).resolve().parents[1] / "sample_logs" / "websocket-client.log"
GB = 1 << 30
MB = 1 << 20
CLOSE = json.dumps({"ts": "2026-11-20T10:00:00Z", "session_id": "s1", "close_code": 3008,
                    "close_reason": "Session Expired: Maximum session duration exceeded", "client_id": "web"})


def write_gzip(path: Path, parts) -> None:
    """Write byte parts through gzip (level 6) without holding them in memory."""
    with gzip.open(path, "wb", compresslevel=6) as out:
        for part in parts:
            out.write(part)


def repeated(byte: bytes, total: int, chunk: int = 8 * MB):
    block = byte * chunk
    for start in range(0, total, chunk):
        yield block[: min(chunk, total - start)]


def make_inputs(folder: Path) -> list[tuple[str, list[str], Path | None]]:
    """(name, ingest arguments, file fed on stdin or None)."""
    reason_gz = folder / "reason-1gb.jsonl.gz"
    write_gzip(reason_gz, [CLOSE.encode() + b"\n", b'{"ts": "2026-11-20T10:00:01Z", "close_code": 1000, "close_reason": "',
                           *repeated(b"A", GB), b'"}\n'])
    zeros = folder / "zeros-1gb.gz"
    write_gzip(zeros, repeated(b"\0", GB))
    long_line = folder / "line-50mb.log"
    with long_line.open("wb") as out:
        out.write(b"x" * (50 * MB) + b"\n")
        out.write(SAMPLE.read_bytes())
    reason_50 = folder / "reason-50mb.jsonl"
    with reason_50.open("wb") as out:
        out.write(CLOSE.encode() + b"\n")
        out.write(b'{"ts": "2026-11-20T10:00:01Z", "close_code": 1000, "close_reason": "' + b"B" * (50 * MB) + b'"}\n')
    return [
        ("reason-1gb.jsonl.gz", [str(reason_gz)], None),
        ("reason-1gb (stdin)", ["-"], reason_gz),
        ("zeros-1gb.gz --format jsonl", [str(zeros), "--format", "jsonl"], None),
        ("line-50mb.log", [str(long_line)], None),
        ("reason-50mb.jsonl --format jsonl", [str(reason_50), "--format", "jsonl"], None),
    ]


def run_one(args: list[str], stdin_file: Path | None, db: Path, cap: int) -> tuple[int | None, float, int, str]:
    """(peak RSS bytes or None if killed at the cap, seconds, exit status, last output lines)."""
    command = [sys.executable, "-m", "closewatch", "--db", str(db), "ingest", *args]
    stdin = stdin_file.open("rb") if stdin_file else subprocess.DEVNULL
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "COLUMNS": "160"})
    watched = psutil.Process(proc.pid)
    killed = False
    output = bytearray()
    os.set_blocking(proc.stdout.fileno(), False)
    while True:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:
            break
        chunk = proc.stdout.read()
        if chunk:
            output += chunk
        if pid:
            break
        try:
            rss = watched.memory_info().rss + sum(c.memory_info().rss for c in watched.children(recursive=True))
        except psutil.Error:
            rss = 0
        if rss > cap:
            proc.kill()
            killed = True
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    rest = proc.stdout.read()
    if rest:
        output += rest
    if stdin_file:
        stdin.close()
    text = output.decode("utf-8", "replace").strip().splitlines()
    peak = None if killed else usage.ru_maxrss * 1024
    return peak, elapsed, os.waitstatus_to_exitcode(status), "\n      ".join(text[-4:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=4.0, help="kill a run above this many GB of RSS (default 4)")
    parser.add_argument("--only", default="", help="run only inputs whose name contains this text")
    options = parser.parse_args()
    cap = int(options.cap * GB)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
        base = Path(folder)
        print("writing the inputs...", flush=True)
        inputs = make_inputs(base)
        print(f"\n{'input':36} {'peak RSS':>12} {'seconds':>8} {'exit':>5}")
        for number, (name, args, stdin_file) in enumerate(inputs):
            if options.only not in name:
                continue
            peak, seconds, status, tail = run_one(args, stdin_file, base / f"run{number}.duckdb", cap)
            shown = f"> {options.cap:g} GB" if peak is None else f"{peak / MB:,.0f} MB"
            print(f"{name:36} {shown:>12} {seconds:8.1f} {status:5d}")
            print(f"      {tail}", flush=True)
        print("\nBound (issue 11): every peak under 1.5 GB, with a clear message about the input.")


if __name__ == "__main__":
    main()
