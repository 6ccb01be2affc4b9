"""How long reading a rules file takes: the shipped defaults and a large file of ``--rules`` rules.

The rules file is read once per job run (every evaluation and deliver run of
the scheduler, every `closewatch alerts ...` command, each dashboard rerun
of the Alerts page), so its cost is paid often. Prints, per file, the median
time of one ``load_rules`` over ``--repeat`` loads, and the time to import
``closewatch.alerts.rules`` in a fresh interpreter that has imported the
settings (as every front end has when it reads rules).

Usage: python bench/bench_rules.py [--rules 200] [--repeat 50]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import result
from closewatch.alerts.rules import DEFAULT_RULES, load_rules


def large_file(folder: Path, count: int) -> Path:
    """The default rules repeated under new names until the file has ``count`` rules."""
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    head, *rules = text.split("[[rules]]")
    body = []
    for index in range(count):
        rule = rules[index % len(rules)]
        name = rule.split('name = "', 1)[1].split('"', 1)[0]
        body.append(rule.replace(f'name = "{name}"', f'name = "{name}-{index}"', 1))
    path = folder / "large.toml"
    path.write_text(head + "".join("[[rules]]" + rule for rule in body), encoding="utf-8")
    return path


def median_ms(path: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        load_rules(path)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def import_ms() -> float:
    # closewatch.settings first: every front end has imported it (and pydantic) before it reads a rules file.
    code = ("import closewatch.settings, time; t = time.perf_counter(); import closewatch.alerts.rules; "
            "print(time.perf_counter() - t)")
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
            for _ in range(3)]
    return statistics.median(runs) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=200, help="rules in the large file")
    parser.add_argument("--repeat", type=int, default=50, help="loads per file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        large = large_file(Path(folder), args.rules)
        print(f"one load of the default rules ({len(load_rules(DEFAULT_RULES).rules)} rules), then of {args.rules} rules:")
        result("rules/load-defaults", median_ms(DEFAULT_RULES, args.repeat), "ms")
        result(f"rules/load-{args.rules}-rules", median_ms(large, max(3, args.repeat // 10)), "ms")
    result("rules/import", import_ms(), "ms")


if __name__ == "__main__":
    main()
