"""How long the CLI takes to start and answer, against Python importing duckdb and running the same query.

Times, each as a fresh subprocess, the median of --runs (the commands take turns in each round):
  * the baseline: ``python -c "import duckdb; duckdb.connect(db, read_only=True).execute(Q).fetchall()"``
    with Q the count of closures (and, for ``info``, info's own query);
  * ``closewatch --help``, ``closewatch sql "select count(*) from closures"`` and ``closewatch info``.
Prints each one's seconds and its ratio to the baseline (issue 16's target: at most 1.5), then the same for
CPU seconds (user + system of the process), which a loaded machine disturbs less than wall time.
Every command runs in an empty temporary folder, so no closewatch.toml (or checkout) of the caller's folder
changes what is measured.

Bytecode: an installed closewatch runs from compiled bytecode, but a checkout run with
PYTHONDONTWRITEBYTECODE=1 (as on the team's machine) compiles every closewatch module at every start, about
0.1 s more than an installed copy pays. So by default every command (the baseline too) runs with its bytecode
cached in a private folder (PYTHONPYCACHEPREFIX, written in the unmeasured first round, nothing written into
the checkout); --source measures with the caller's environment as it is.

    python bench/bench_cli_start.py                 # a store of 100,000 closures, 7 runs each
    python bench/bench_cli_start.py --rows 1000000 --runs 9
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import result

COUNT = "select count(*) from closures"
#: closewatch info's query (cli/core.py), so the baseline does the same work.
INFO = """SELECT (SELECT max(version) FROM schema_version), (SELECT count(*) FROM closures), (SELECT count(*) FROM ingest_batches),
          (SELECT count(*) FROM rejects), (SELECT min(ts) FROM closures), (SELECT max(ts) FROM closures),
          (SELECT count(DISTINCT client_id) FROM closures)"""
TARGET = 1.5


def baseline(db: Path, query: str) -> list[str]:
    code = f"import duckdb; print(duckdb.connect({str(db)!r}, read_only=True).execute({query!r}).fetchall())"
    return [sys.executable, "-c", code]


def closewatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "closewatch.cli", *args]


def median_seconds(commands: dict[str, list[str]], runs: int, cwd: Path,
                   env: dict[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    """The median wall time and CPU time of each command over ``runs`` rounds, the commands taking turns within a
    round (so a change in the machine's load hits them all alike), after one unmeasured round that warms the caches."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for run in range(runs + 1):
        for name, argv in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            clock = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd, env=env)
            seconds = time.perf_counter() - clock
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if run:
                times[name].append(seconds)
                cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    median = statistics.median
    return {name: median(values) for name, values in times.items()}, {name: median(values) for name, values in cpu.items()}


def build_store(db: Path, rows: int) -> None:
    from bench.stores import build_closures_store
    from closewatch.store import Store

    build_closures_store(Store(db), rows, seed=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="closures in the store the commands read")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--db", type=Path, help="an existing store to read (default: one built in a temporary folder)")
    parser.add_argument("--source", action="store_true",
                        help="run with the caller's environment as it is (no private bytecode cache; see above)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = (args.db or Path(tmp) / "cli.duckdb").resolve()
        if not db.exists():
            build_store(db, args.rows)
        folder = Path(tmp) / "cwd"
        folder.mkdir()
        env = dict(os.environ)
        if not args.source:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        commands = {
            "baseline-count": baseline(db, COUNT),
            "baseline-info": baseline(db, INFO),
            "help": closewatch("--help"),
            "sql": closewatch("--db", str(db), "sql", COUNT),
            "info": closewatch("--db", str(db), "info"),
        }
        seconds, cpu = median_seconds(commands, args.runs, folder, env)
        result("cli-start/baseline-count", seconds["baseline-count"], "s")
        result("cli-start/baseline-info", seconds["baseline-info"], "s")
        for name, base in (("help", "baseline-count"), ("sql", "baseline-count"), ("info", "baseline-info")):
            result(f"cli-start/{name}", seconds[name], "s")
            result(f"cli-start/{name}/ratio", seconds[name] / seconds[base], "x", TARGET)
        result("cli-start/baseline-count/cpu", cpu["baseline-count"], "cpu-s")
        for name, base in (("help", "baseline-count"), ("sql", "baseline-count"), ("info", "baseline-info")):
            result(f"cli-start/{name}/cpu-ratio", cpu[name] / cpu[base], "x", TARGET)
    print(f"baseline: python importing duckdb and running the same query; load average {os.getloadavg()[0]:.1f} "
          f"(machine load makes these figures noisy); {'source as the environment has it' if args.source else 'compiled bytecode'}")


if __name__ == "__main__":
    main()
