"""The CLI starts without the heavy modules a command does not use (issue 16; bench/bench_cli_start.py times it).

Each case runs a command in a fresh interpreter and lists which of the heavy
modules it imported: a module-level import of polars, the generator or
pydantic's settings in any command module would show up here for every command.
`info` and `sql` also start without rich's console, tenacity, pydantic or the
other commands' modules (the CLI imports a command's module when it runs).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import write_lines

HEAVY = ["polars", "pandas", "pyarrow.dataset", "pyarrow.compute", "closewatch.generator.traffic", "closewatch.settings", "duckdb"]
#: What `info` and `sql` need not import either; `--help` lists every command, so it imports some of these.
QUICK = ["pydantic", "tenacity", "rich.console", "psutil", "closewatch.cli.alerts", "closewatch.cli.dashboard"]
#: What a small ingest (no progress bar, no config file, the built-in catalog) need not import either.
INGEST_LAZY = ["rich.progress", "pydantic", "closewatch.settings", "closewatch.analysis.catalog_entry"]

SCRIPT = """
import json, sys
from closewatch.cli.main import cli
try:
    cli(sys.argv[1:], prog_name="closewatch", obj={})
except SystemExit:
    pass
print(json.dumps(sorted(name for name in %r if name in sys.modules)), file=sys.stderr)
""" % (HEAVY + QUICK + INGEST_LAZY,)


def imported_by(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=120)
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_help_imports_none_of_the_heavy_modules():
    assert imported_by("--help") & set(HEAVY) == set()
    assert imported_by("generate", "--help") & set(HEAVY) == set()


def test_info_reads_the_store_without_polars_or_pandas(tmp_path):
    db = tmp_path / "small.duckdb"
    lines = [json.dumps({"ts": "2026-11-20T10:00:00Z", "code": 1006, "reason": "lost"})]
    subprocess.run([sys.executable, "-m", "closewatch.cli", "--db", str(db), "ingest", str(write_lines(tmp_path / "a.jsonl", lines))],
                   check=True, capture_output=True, timeout=120)
    assert imported_by("--db", str(db), "info") == {"duckdb"}, "no config file: no pydantic either"
    (tmp_path / "closewatch.toml").write_text("[sql]\nmax_rows = 5\n")
    assert imported_by("--config", str(tmp_path / "closewatch.toml"), "--db", str(db), "info") >= {"closewatch.settings"}


def test_a_small_ingest_imports_neither_pandas_nor_pyarrows_dataset_or_compute(tmp_path):
    lines = [json.dumps({"ts": f"2026-11-20T10:00:0{i}Z", "code": 1006, "reason": "lost"}) for i in range(5)]
    text = write_lines(tmp_path / "app.log", ["2026-11-20 10:00:00 INFO websocket closed: code=1006 reason=lost"])
    for path in (write_lines(tmp_path / "a.jsonl", lines), text):
        heavy = imported_by("--db", str(tmp_path / "new.duckdb"), "ingest", str(path))
        assert not heavy & {"pandas", "pyarrow.dataset", "pyarrow.compute", "closewatch.generator.traffic"}, path
        assert not heavy & set(INGEST_LAZY), f"{path}: no progress bar, no config file, no catalog file to validate"


def test_sql_runs_in_its_own_process_without_polars_pydantic_or_rich(tmp_path):
    db = tmp_path / "small.duckdb"
    lines = [json.dumps({"ts": "2026-11-20T10:00:00Z", "code": 1006, "reason": "lost"})]
    subprocess.run([sys.executable, "-m", "closewatch.cli", "--db", str(db), "ingest", str(write_lines(tmp_path / "a.jsonl", lines))],
                   check=True, capture_output=True, timeout=120)
    for output in ("table", "csv", "json"):
        assert imported_by("--db", str(db), "sql", "select count(*) from closures", "--format", output) == {"duckdb"}, output


GC_SCRIPT = """
import gc, json, sys
from closewatch.cli.main import cli
try:
    cli(sys.argv[1:], prog_name="closewatch", obj={})
except SystemExit:
    pass
print(json.dumps([gc.isenabled(), gc.get_freeze_count() > 10_000]), file=sys.stderr)
"""


def test_ingest_imports_its_modules_uncollected_and_collects_as_before_after(tmp_path):
    """kit.imports_uncollected: the modules' objects are frozen out of the collector's walks, which runs again after."""
    data = write_lines(tmp_path / "a.jsonl", [json.dumps({"ts": "2026-11-20T10:00:00Z", "code": 1006, "reason": "lost"})])
    done = subprocess.run([sys.executable, "-c", GC_SCRIPT, "--db", str(tmp_path / "new.duckdb"), "ingest", str(data)],
                          capture_output=True, text=True, timeout=120)
    assert json.loads(done.stderr.strip().splitlines()[-1]) == [True, True]


def test_imports_uncollected_leaves_a_paused_collector_paused():
    import gc

    from closewatch.cli.kit import imports_uncollected

    gc.disable()
    try:
        with imports_uncollected():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
    with imports_uncollected():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.unfreeze()
