"""Text log parsing speed: a 2,000,000-line mixed application log through the text parsers.

The log is written with the formats' own renderers (ingest.clients): closes of
every client in every layout, with unrelated application lines (DEBUG chatter,
HTTP requests, tracebacks, secrets) making up most of it, as in a real log.
It is parsed the way the pipeline does it (ingest.lines batches from the
file), ``--repeat`` times; the script prints the best lines/s (wall clock),
the best lines per CPU-second (user + sys of this process, all its threads:
the figure that survives a loaded machine) and the peak RSS of the process.

    python bench/bench_textlogs.py                       # mixed log, the generic (all-client) parser
    python bench/bench_textlogs.py --format pipecat      # one client's log, its own parser
    python bench/bench_textlogs.py --lines 500000 --close-share 0.2

Target on the 2-core dev machine: >= 500,000 lines/s (issue 16; issue 2 asked for 300,000). Lines per
CPU-second >= 500,000 meets it with one core to spare whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from bench.report import result

from closewatch.ingest.clients import CLIENTS, RENDERERS_TIMED, noise_lines
from closewatch.ingest.formats import Format, ParseOptions, get_format
from closewatch.ingest.lines import iter_line_batches

CODES = [(1000, "")] * 8 + [
    (3008, "Session Expired: Maximum session duration exceeded"),
    (3007, "Input duration violation: 1200 ms. Expected between 50 and 1000 ms"),
    (3007, "Audio Transmission Rate Exceeded: Received 2.1 sec. audio in 1.0 sec"),
    (3009, "Unauthorized Connection: Too many concurrent sessions"),
    (1008, "Unauthorized Connection: Missing Authorization header"),
    (3005, "Session Cancelled: An error occurred"), (1006, ""), (1006, ""), (401, ""), (4008, "Session Expired"),
]
START = datetime(2025, 6, 1, tzinfo=UTC)


def _blocks(formats: list[str], rng: random.Random, count: int) -> tuple[list[list[str]], list[list[str]]]:
    """A pool of distinct session stories and of unrelated entries to draw the big file from."""
    stories, noise = [], []
    for number in range(count):
        fmt = formats[number % len(formats)]
        layouts = CLIENTS[fmt].layouts if fmt in CLIENTS else ("plain",)
        code, reason = rng.choice(CODES)
        ts = START + timedelta(seconds=number * 7.3)
        event = {"ts": ts, "session_id": None if code < 1000 else str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                 "close_code": code, "close_reason": reason, "client_id": rng.choice(["acme", "globex", None]),
                 "audio_duration_s": 30.0, "session_duration_s": 31.0}
        stories.append([line for _, line in RENDERERS_TIMED[fmt](event, rng.choice(layouts))])
        for _ in range(4):
            layout = rng.choice(layouts) if fmt in ("assemblyai-python-v3", "assemblyai-python-v2", "livekit-agents") else None
            noise.append(noise_lines(fmt, rng, ts, layout, secrets=rng.random() < 0.02))
    return stories, noise


def write_log(path: Path, lines: int, formats: list[str], close_share: float, seed: int = 7) -> int:
    """Write about ``lines`` lines; returns the exact count. Memory stays small: chunks are flushed."""
    rng = random.Random(seed)
    stories, noise = _blocks(formats, rng, 4000)
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        chunk: list[str] = []
        while written < lines:
            block = rng.choice(stories) if rng.random() < close_share else rng.choice(noise)
            chunk.extend(block)
            written += len(block)
            if len(chunk) > 50_000:
                out.write("\n".join(chunk) + "\n")
                chunk.clear()
        if chunk:
            out.write("\n".join(chunk) + "\n")
    return written


def parse_once(fmt: Format, path: Path) -> tuple[float, float, tuple[int, int, int]]:
    """Wall and CPU seconds (user + sys, every thread) to read and parse the file; events, rejects, skipped."""
    clock, cpu = time.perf_counter(), time.process_time()
    events = rejects = skipped = 0
    with open(path, "rb") as stream:
        for parsed in fmt.parse(iter_line_batches(stream), ParseOptions()):
            events += parsed.events.height
            rejects += parsed.rejects.height
            skipped += parsed.skipped
    return time.perf_counter() - clock, time.process_time() - cpu, (events, rejects, skipped)


def peak_rss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--format", default=None, help="one text format; default: a mix of all, parsed as generic")
    parser.add_argument("--close-share", type=float, default=0.08, help="share of entries that are session stories")
    parser.add_argument("--keep", type=Path, default=None, help="write the log here and keep it")
    parser.add_argument("--repeat", type=int, default=3, help="parse this many times; the best run counts")
    args = parser.parse_args()

    formats = [args.format] if args.format and args.format != "generic" else list(CLIENTS)
    parser_name = args.format or "generic"
    with tempfile.TemporaryDirectory(prefix="closewatch-bench-") as folder:
        path = args.keep or Path(folder) / "mixed.log"
        clock = time.perf_counter()
        total = write_log(path, args.lines, formats, args.close_share)
        size_mb = path.stat().st_size / 1e6
        print(f"generated {total:,} lines ({size_mb:.0f} MB) in {time.perf_counter() - clock:.1f}s "
              f"[{'+'.join(formats) if len(formats) < 3 else 'all clients'}]")
        rss_before = psutil.Process().memory_info().rss / 2**20
        fmt = get_format(parser_name)
        runs = [parse_once(fmt, path) for _ in range(max(1, args.repeat))]
    elapsed, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    events, rejects, skipped = runs[0][2]
    print(f"parser {parser_name}: {total:,} lines, best of {len(runs)}: {elapsed:.2f}s = {total / elapsed:,.0f} lines/s; "
          f"{cpu:.2f} CPU-s = {total / cpu:,.0f} lines per CPU-second "
          f"({psutil.cpu_count()} cores; load average {psutil.getloadavg()[0]:.1f})")
    print("  runs (wall s, CPU s): " + ", ".join(f"({r[0]:.2f}, {r[1]:.2f})" for r in runs))
    print(f"events {events:,}  rejects {rejects:,}  skipped {skipped:,}  (sum {events + rejects + skipped:,})")
    print(f"peak RSS {peak_rss_mb():.0f} MB (RSS before parsing {rss_before:.0f} MB)")
    result(f"textlogs/{parser_name}/lines-per-s", total / elapsed, "lines/s", 500_000, higher_is_better=True)
    result(f"textlogs/{parser_name}/lines-per-cpu-s", total / cpu, "lines/cpu-s", 500_000, higher_is_better=True)
    result(f"textlogs/{parser_name}/peak-rss", peak_rss_mb(), "MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
