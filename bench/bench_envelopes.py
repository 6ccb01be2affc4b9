"""What an envelope costs: the same application lines read plain and inside each envelope, in one run.

For every envelope the script writes a client's log of ``--lines`` lines
(closes and unrelated lines, as bench_textlogs.py does) plain and wrapped in
the envelope (its ``wrap``: docker json-file, CRI, journald, ... with labels),
reads both as the pipeline does (detection, ingest.lines batches from the
file, the envelope's reader, the client's parser), ``--repeat`` times each,
alternated, and prints the best lines/s of the application's lines for each,
the envelope's cost over plain in wall-clock time and in CPU seconds (user +
sys of this process, every thread: the figure a loaded machine disturbs
least; DuckDB's readers use both cores, so on a quiet machine the wall-clock
cost is the smaller), and the peak RSS. Whole-document envelopes (gcloud's array, the aws CLI's document) are
read whole, up to 512 MB: they are measured on as many lines as fit.

    python bench/bench_envelopes.py                      # every envelope, 2,000,000 lines each
    python bench/bench_envelopes.py --lines 200000 --envelopes cri,journald

Target: an envelope costs at most 30% over the plain lines (lines/s plain / lines/s enveloped <= 1.3);
one RESULT line per envelope holds the wall-clock ratio against 1.3, another the CPU ratio.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import result

from closewatch.ingest.clients import RENDERERS_TIMED, noise_lines
from closewatch.ingest.envelopes import ENVELOPE_LIST, get_envelope, reader_for_head
from closewatch.ingest.formats import ParseOptions
from closewatch.ingest.lines import head_lines_of, iter_line_batches

CODES = [(1000, "")] * 8 + [
    (3008, "Session Expired: Maximum session duration exceeded"),
    (3007, "Input duration violation: 1200 ms. Expected between 50 and 1000 ms"),
    (3009, "Unauthorized Connection: Too many concurrent sessions"),
    (1008, "Unauthorized Connection: Missing Authorization header"),
    (1006, ""), (1006, ""), (4008, "Session Expired"),
]
START = datetime(2026, 11, 16, tzinfo=UTC)
#: The client whose log each envelope carries: a JSON logger carries what its language's apps print.
CLIENT_OF = {"livekit-json": ("livekit-agents", "default"), "python-json-logger": ("assemblyai-python-v3", "default"),
             "structlog": ("assemblyai-python-v3", "default"), "pino": ("assemblyai-js", "plain"),
             "winston": ("assemblyai-js", "plain")}
DEFAULT_CLIENT = ("websocket-client", "plain")
#: Envelopes read as one document, and the most lines that keep such a document under the reader's bound.
DOCUMENTS = {"gcp-logging": 600_000, "cloudwatch": 1_000_000, "elasticsearch": 500_000}


def app_lines(client: str, layout: str, count: int, close_share: float = 0.1, seed: int = 7) -> list[tuple[datetime, str]]:
    """``count`` timed lines of one client's log: session stories and unrelated entries, times rising."""
    rng = random.Random(seed)
    pool = []
    for _ in range(2000):
        code, reason = rng.choice(CODES)
        event = {"ts": START, "session_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "close_code": code,
                 "close_reason": reason, "audio_duration_s": 30.0, "session_duration_s": 31.0}
        story = [line for _, line in RENDERERS_TIMED[client](event, layout)]
        noise = noise_lines(client, rng, START, layout if client.startswith(("assemblyai-python", "livekit")) else None)
        pool.append((story, noise))
    out: list[tuple[datetime, str]] = []
    second = 0
    while len(out) < count:
        story, noise = rng.choice(pool)
        block = story if rng.random() < close_share else noise
        at = START + timedelta(seconds=second, milliseconds=rng.randrange(1000))
        second += 3
        out.extend((at, _restamp(line, at)) for line in block)
    return out[:count]


def _restamp(line: str, at: datetime) -> str:
    """The pool's lines were rendered at START; give ISO-stamped ones their own time (a log's times rise)."""
    stamp = START.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return line.replace(stamp, at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z") if stamp in line else line


def write(path: Path, lines: list[str]) -> int:
    with open(path, "w", encoding="utf-8") as out:
        out.writelines("\n".join(lines[start:start + 100_000]) + "\n" for start in range(0, len(lines), 100_000))
    return path.stat().st_size


def read_seconds(path: Path) -> tuple[float, float, int, str]:
    """Wall and CPU seconds to detect and read the file as the pipeline does, the closes found, and the reader's name."""
    options = ParseOptions(reference_time=datetime.now(UTC))
    started, cpu = time.perf_counter(), time.process_time()
    with open(path, "rb") as stream:
        fmt = reader_for_head(head_lines_of(stream, 2000, 1 << 20), None, options)
    if fmt is None:
        raise SystemExit(f"{path.name}: nothing detected")
    closes = 0
    with open(path, "rb") as stream:
        for parsed in fmt.parse(iter_line_batches(stream), options):
            closes += parsed.events.height
    return time.perf_counter() - started, time.process_time() - cpu, closes, fmt.name


def best_of(plain: Path, wrapped: Path, repeat: int) -> tuple[tuple[float, float, int, str], tuple[float, float, int, str]]:
    """Both files read ``repeat`` times, alternated (so a burst of load hits both alike); the best wall and CPU of each."""
    runs: dict[Path, list[tuple[float, float, int, str]]] = {plain: [], wrapped: []}
    for _ in range(max(1, repeat)):
        for path in (plain, wrapped):
            runs[path].append(read_seconds(path))
    best = {path: (min(r[0] for r in got), min(r[1] for r in got), got[0][2], got[0][3]) for path, got in runs.items()}
    return best[plain], best[wrapped]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--envelopes", default="", help="comma-separated names (default: every envelope)")
    parser.add_argument("--repeat", type=int, default=2, help="reads of each file, alternated; the best counts")
    args = parser.parse_args()
    names = [n for n in args.envelopes.split(",") if n] or [e.name for e in ENVELOPE_LIST]
    import pyarrow.dataset  # noqa: F401  imported on DuckDB's first Arrow scan: a once-per-process cost, not per line
    print(f"{'envelope':<24}{'client':<22}{'lines':>10}{'plain l/s':>12}{'enveloped l/s':>15}{'cost':>8}"
          f"{'CPU cost':>10}{'closes':>9}  reader")
    with tempfile.TemporaryDirectory(prefix="bench-envelopes-") as folder:
        for name in names:
            envelope = get_envelope(name)
            client, layout = CLIENT_OF.get(name, DEFAULT_CLIENT)
            count = min(args.lines, DOCUMENTS.get(name, args.lines))
            timed = app_lines(client, layout, count)
            plain = Path(folder) / f"plain-{client}-{count}.log"
            if not plain.exists():
                write(plain, [line for _, line in timed])
            wrapped = Path(folder) / f"{name}.log"
            write(wrapped, envelope.wrap(timed, {}))
            del timed
            (p_wall, p_cpu, plain_closes, _), (e_wall, e_cpu, closes, reader) = best_of(plain, wrapped, args.repeat)
            wrapped.unlink()
            same = "" if closes == plain_closes else f" (plain: {plain_closes})"
            print(f"{name:<24}{client:<22}{count:>10,}{count / p_wall:>12,.0f}{count / e_wall:>15,.0f}{e_wall / p_wall - 1:>8.0%}"
                  f"{e_cpu / p_cpu - 1:>10.0%}{closes:>9,}{same}  {reader}", flush=True)
            result(f"envelopes/{name}/wall-ratio", e_wall / p_wall, "x", 1.3)
            result(f"envelopes/{name}/cpu-ratio", e_cpu / p_cpu, "x", 1.3)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
