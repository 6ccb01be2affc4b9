"""The Spark engine against the local path on the same 2,000,000-line text log.

Writes the mixed application log of bench_textlogs.py (closes of every client
among unrelated lines), then times, each in a fresh subprocess:

  1. local: `closewatch --db NEW ingest FILE` (parse, redact, classify, load);
  2. spark, one file: `ingest --engine spark --lake NEW --master local[2] FILE`;
  3. spark, the same lines cut into --parts files (logs arrive as many files:
     rotated, per host, per pod; Spark runs one task per file).

For each it prints the wall time (for Spark including the JVM's start), the
job's own time, lines/s, and for Spark the per-core rate: lines divided by
the seconds the tasks spent parsing (the figure docs/spark.md scales to a
cluster).

    python bench/bench_spark.py                # 2,000,000 lines, local[2], 4 parts
    python bench/bench_spark.py --lines 500000 --parts 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
from closewatch.ingest.clients import CLIENTS

from bench.bench_textlogs import write_log

SPARK_RUN = """
import json, sys
from closewatch.ingest.sources import expand_inputs
from closewatch.jobs.spark import ingest_to_lake
report = ingest_to_lake(sys.argv[1], expand_inputs(sys.argv[3:]), sys.argv[2], conf={"spark.sql.shuffle.partitions": "2"})
print(json.dumps({"seconds": report.seconds, "added": report.added, "phases": report.phases,
                  "parse_s": sum(row["parse_s"] for row in report.inputs),
                  "lines": sum(row["lines_read"] for row in report.inputs)}))
"""

LOCAL_RUN = """
import json, sys, time
from closewatch import jobs
from closewatch.ingest.sources import expand_inputs
from closewatch.store import Store
clock = time.perf_counter()
results = jobs.ingest(Store(sys.argv[1]), expand_inputs(sys.argv[2:]))
print(json.dumps({"seconds": time.perf_counter() - clock, "added": sum(r.accepted for r in results),
                  "lines": sum(r.lines_read for r in results)}))
"""


def timed(argv: list[str]) -> tuple[float, dict]:
    clock = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - clock
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} failed:\n{done.stderr[-3000:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def split(path: Path, parts: int, folder: Path) -> list[Path]:
    """The same lines in ``parts`` files of about equal size, cut at line ends."""
    lines = path.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // parts)
    files = []
    for number in range(parts):
        part = folder / f"part-{number}.log"
        part.write_bytes(b"".join(lines[number * size:(number + 1) * size]))
        files.append(part)
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="closewatch-bench-spark-") as name:
        folder = Path(name)
        log = folder / "mixed.log"
        total = write_log(log, args.lines, list(CLIENTS), close_share=0.08)
        print(f"generated {total:,} lines ({log.stat().st_size / 1e6:.0f} MB); {psutil.cpu_count()} cores, "
              f"load average {psutil.getloadavg()[0]:.1f}")
        (folder / "parts").mkdir()
        parts = split(log, args.parts, folder / "parts")

        wall, local = timed([sys.executable, "-c", LOCAL_RUN, str(folder / "local.duckdb"), str(log)])
        print(f"local path, one file:        {wall:6.1f} s wall  {local['seconds']:6.1f} s ingest  "
              f"{total / local['seconds']:>9,.0f} lines/s  ({local['added']:,} closures)")
        for label, inputs, lake in [("one file", [log], "lake-1"), (f"{args.parts} files", parts, "lake-n")]:
            wall, spark = timed([sys.executable, "-c", SPARK_RUN, str(folder / lake), args.master, *map(str, inputs)])
            print(f"spark {args.master}, {label + ':':9s} {wall:6.1f} s wall  {spark['seconds']:6.1f} s job     "
                  f"{total / spark['seconds']:>9,.0f} lines/s  ({spark['added']:,} closures); per core "
                  f"{spark['lines'] / spark['parse_s']:,.0f} lines/s ({spark['parse_s']:.1f} task-s parsing)")
            print("    phases: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in spark["phases"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
