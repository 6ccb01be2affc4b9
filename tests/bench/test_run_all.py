"""The benchmarks' result format and the runner's table (the benchmarks themselves are run by hand, not by tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import Result, parse, result
from bench.run_all import HERE, Bench, Outcome, load_benches, render, rows

ROOT = Path(__file__).resolve().parents[2]


def test_a_result_line_reads_back_with_its_ratio(capsys):
    slow = result("pages/overview/cold", 2.5, "s", 2.0)
    fast = result("ingest/text", 600_000, "lines/s", 500_000, higher_is_better=True)
    plain = result("analyze/peak-rss", 866, "MB")
    lines = capsys.readouterr().out.splitlines()
    assert [parse(line).line() for line in lines] == [slow.line(), fast.line(), plain.line()] == lines
    assert parse(lines[1]).met and not parse(lines[0]).met
    assert (slow.ratio, slow.met) == (1.25, False)
    assert fast.met and fast.ratio == pytest.approx(500_000 / 600_000)
    assert plain.ratio is None and plain.met is None


@pytest.mark.parametrize("line", ["RESULT x 1 s 1 1", "RESULT\tx\tone\ts\t-\t-", "progress: 10%", "RESULT\tx\t1\ts\t-"])
def test_free_text_and_malformed_lines_are_not_results(line):
    assert parse(line) is None


def test_a_name_with_a_space_is_refused():
    with pytest.raises(ValueError, match="without spaces"):
        result("overview cold", 1, "s")


def test_every_entry_of_benches_toml_names_a_script_in_bench():
    benches = load_benches()
    assert benches and all((HERE / b.script).is_file() for b in benches)


def test_the_table_shows_a_failed_script_beside_the_others_figures():
    ok = Outcome(Bench("bench_a.py", [], []), [Result("a/x", 0.5, "s", 1.0, 0.5), Result("a/y", 3.0, "s", 2.0, 1.5)])
    failed = Outcome(Bench("bench_b.py", [], []), status="failed (exit 1)")
    table = render(rows([ok, failed]), markdown=False).splitlines()
    assert table[1].split() == ["a/x", "0.5", "s", "1", "0.50", "met"]
    assert table[2].split() == ["a/y", "3", "s", "2", "1.50", "MISSED"]
    assert table[3].split()[0] == "bench_b.py" and table[3].endswith("failed (exit 1)")


def test_the_runner_runs_a_real_bench_and_prints_its_figure(tmp_path):
    done = subprocess.run([sys.executable, "bench/run_all.py", "--only", "bench_classify", "--quick", "--cache", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("\n=== 1 benches")[1]
    assert "classify/rows-per-s" in table and "rows/s" in table
