"""Run every benchmark in bench/benches.toml and print one table of their figures.

Each script runs in a subprocess of its own (its output passes through as it
comes); the lines it prints in the RESULT format of bench/report.py are
gathered, and at the end one table lists every figure with its target and
ratio (at most 1.0: met). A script that fails, times out or prints no RESULT
line gets a row saying so; the others still run.

    python bench/run_all.py                      # every bench but the slow ones, full size
    python bench/run_all.py --quick              # smaller inputs, one run each (a loaded machine)
    python bench/run_all.py --only pages --only scheduler
    python bench/run_all.py --markdown           # the table as Markdown, for the README

Large inputs (the 10,000,000-closure store, generated files) are kept in
--cache (default ~/.cache/closewatch-bench) and reused by later runs.
The machine is usually shared: say how loaded it was next to any figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import Result, parse

HERE = Path(__file__).resolve().parent
BENCHES = HERE / "benches.toml"


@dataclass
class Bench:
    """One entry of benches.toml."""

    script: str
    args: list[str]
    quick: list[str]
    slow: bool = False


@dataclass
class Outcome:
    """What one script left: its figures, or why it has none."""

    bench: Bench
    results: list[Result] = field(default_factory=list)
    status: str = "ok"
    seconds: float = 0.0


def load_benches(path: Path = BENCHES) -> list[Bench]:
    """The entries of benches.toml, checked, so a typo is one sentence rather than a failure half an hour in."""
    with path.open("rb") as handle:
        entries = tomllib.load(handle).get("bench", [])
    benches = []
    for number, entry in enumerate(entries, 1):
        unknown = set(entry) - {"script", "args", "quick", "slow"}
        if "script" not in entry or unknown:
            raise SystemExit(f"{path.name}: bench {number} needs a script and knows only script, args, quick, slow (got {sorted(entry)}).")
        if not (HERE / entry["script"]).is_file():
            raise SystemExit(f"{path.name}: bench {number} names {entry['script']}, which is not a file in bench/.")
        args = [str(a) for a in entry.get("args", [])]
        benches.append(Bench(entry["script"], args, [str(a) for a in entry.get("quick", args)], bool(entry.get("slow", False))))
    return benches


def chosen(benches: list[Bench], only: list[str], include_slow: bool) -> list[Bench]:
    """The benches whose script names contain one of --only (all of them without it; slow ones only when asked)."""
    if only:
        return [b for b in benches if any(word in b.script for word in only)]
    return [b for b in benches if include_slow or not b.slow]


def run_one(bench: Bench, quick: bool, cache: Path, timeout_s: float) -> Outcome:
    """Run one script, echo its output and keep its RESULT lines."""
    args = [a.replace("{cache}", str(cache)) for a in (bench.quick if quick else bench.args)]
    argv = [sys.executable, str(HERE / bench.script), *args]
    print(f"\n=== {bench.script} {' '.join(args)}", flush=True)
    outcome = Outcome(bench)
    clock = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=HERE.parent, start_new_session=True)
    timer = threading.Timer(timeout_s, lambda: os.killpg(process.pid, 9))
    timer.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            figure = parse(line)
            if figure is not None:
                outcome.results.append(figure)
        code = process.wait()
    except KeyboardInterrupt:
        os.killpg(process.pid, 9)
        process.wait()
        raise
    finally:
        timer.cancel()
    outcome.seconds = time.perf_counter() - clock
    if code != 0:
        outcome.status = f"timed out after {timeout_s:g} s" if code == -9 and outcome.seconds >= timeout_s else f"failed (exit {code})"
    elif not outcome.results:
        outcome.status = "no RESULT lines"
    return outcome


def shown(number: float) -> str:
    """A figure as people read it: 4,349,000 rather than 4.349e+06, 0.842 rather than 0.8420000001."""
    return f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.3g}"


def rows(outcomes: list[Outcome]) -> list[tuple[str, ...]]:
    """One row a figure (name, value, unit, target, ratio, verdict); one row for a script without figures."""
    table = []
    for outcome in outcomes:
        for figure in outcome.results:
            target = "-" if figure.target is None else shown(figure.target)
            ratio = "-" if figure.ratio is None else f"{figure.ratio:.2f}"
            verdict = "" if figure.met is None else ("met" if figure.met else "MISSED")
            table.append((figure.name, shown(figure.value), figure.unit, target, ratio, verdict))
        if outcome.status != "ok":
            table.append((outcome.bench.script, "-", "-", "-", "-", outcome.status))
    return table


HEADER = ("name", "value", "unit", "target", "ratio", "")


def render(table: list[tuple[str, ...]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(HEADER[:5]) + " | verdict |", "|---|---:|---|---:|---:|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in table]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [HEADER, *table]) for i in range(len(HEADER))]
    right = {1, 3, 4}
    return "\n".join(
        "  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
        for row in [HEADER, *table]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the entries' quick arguments: smaller inputs, fewer runs")
    parser.add_argument("--only", action="append", default=[], help="run only scripts whose name contains this (repeatable)")
    parser.add_argument("--all", action="store_true", help="include the slow benches")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "closewatch-bench",
                        help="folder for large inputs kept between runs")
    parser.add_argument("--timeout", type=float, default=3600, help="stop a script after this many seconds (default 3600)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    benches = chosen(load_benches(), args.only, args.all)
    if not benches:
        raise SystemExit(f"No bench in {BENCHES.name} matches {args.only}.")
    load = os.getloadavg()[0]
    outcomes = [run_one(bench, args.quick, args.cache, args.timeout) for bench in benches]
    print(f"\n=== {len(outcomes)} benches{' (quick)' if args.quick else ''}; load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} cores\n")
    print(render(rows(outcomes), args.markdown))
    sys.exit(0 if all(o.status in ("ok", "no RESULT lines") for o in outcomes) else 1)


if __name__ == "__main__":
    main()
