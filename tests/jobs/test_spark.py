"""The Spark engine against the local path, on the generator's week, with Spark in local[2].

One week is read both ways (the local path into a DuckDB file, Spark into a
lake); the other tests build on that lake: a second run adds nothing,
`closewatch --lake ... analyze` finds the manifest's incidents, and a Spark job
killed (SIGKILL, a real subprocess) half-way leaves the lake as it was.
Marked ``spark``: `pytest -m "not spark"` skips them; CI runs them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from closewatch.generator.traffic import DEFAULT_START, GeneratorConfig, generate
from closewatch.ingest.sources import expand_inputs

from closewatch import jobs
from closewatch.store import Store
from tests.analysis.test_quality import incidents_of, overlapping

pyspark = pytest.importorskip("pyspark")
pytestmark = [
    pytest.mark.spark,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime (apt-get install openjdk-17-jre-headless)"),
]

MASTER = "local[2]"
CONF = {"spark.sql.shuffle.partitions": "2"}
KILL_DEADLINE_S = 300


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """The generator's week, read by the local path and by Spark: (folder, manifest, local store, lake, report)."""
    from closewatch.jobs.spark import ingest_to_lake

    folder = tmp_path_factory.mktemp("spark-week")
    manifest = generate(folder / "logs", GeneratorConfig(seed=1))
    local = Store(folder / "local.duckdb")
    jobs.ingest(local, expand_inputs([str(folder / "logs")]))
    report = ingest_to_lake(folder / "lake", expand_inputs([str(folder / "logs")]), MASTER, conf=CONF)
    yield folder, manifest, local, folder / "lake", report
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


def lake_state(lake: Path) -> dict[str, str]:
    """Every file readers see (closures, rejects, the manifest) with its content hash."""
    files = [lake / "_manifest.json", *sorted((lake / "closures").rglob("*")), *sorted((lake / "rejects").rglob("*"))]
    return {str(f.relative_to(lake)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def test_spark_and_the_local_path_give_the_same_closures(week):
    folder, _, local, lake, report = week
    columns = "event_id, ts, session_id, close_code, close_reason, client_id, source_format, source_line, category, severity, retry_safe, era, chunk_ms, audio_rate_ratio, labels"
    query = f"SELECT {columns} FROM closures ORDER BY event_id"
    from_local = local.query(query)
    from_lake = Store(folder / "state.duckdb", lake=lake).query(query)
    assert from_local.height > 10_000
    assert from_lake.height == from_local.height == report.added
    assert from_lake.equals(from_local)
    counts = "SELECT category, count(*) AS n FROM closures GROUP BY 1 ORDER BY 1"
    assert Store(folder / "state.duckdb", lake=lake).query(counts).equals(local.query(counts))
    local_rejects = local.query("SELECT count(*) FROM rejects").item()
    assert report.rejects_added == local_rejects
    manifest = json.loads((lake / "_manifest.json").read_text())
    loaded = {Path(entry["source_file"]).name: entry["sha256"] for entry in manifest["jobs"][0]["inputs"]}
    stored = dict(local.query("SELECT source_file, sha256 FROM ingest_batches").iter_rows())
    assert loaded == {Path(name).name: sha for name, sha in stored.items()}


def test_a_second_spark_run_adds_nothing(week):
    from closewatch.jobs.spark import ingest_to_lake

    folder, _, _, lake, first = week
    before = lake_state(lake)
    again = ingest_to_lake(lake, expand_inputs([str(folder / "logs")]), MASTER, conf=CONF)
    assert (again.added, again.rejects_added, again.partitions) == (0, 0, [])
    assert again.duplicates == first.added
    after = lake_state(lake)
    assert {k: v for k, v in after.items() if k != "_manifest.json"} == {k: v for k, v in before.items() if k != "_manifest.json"}
    jobs_logged = json.loads((lake / "_manifest.json").read_text())["jobs"]
    assert [job["closures_added"] for job in jobs_logged[-2:]] == [first.added, 0]


def test_analyze_with_the_lake_finds_the_manifests_incidents(week, run):
    """A fresh state file and the lake: analyze reads the lake's closures through the store."""
    _, manifest, _, lake, _ = week
    assert not run.db.exists()
    result = run("--lake", str(lake), "analyze", "--format", "json")
    assert result.exit_code == 0, result.output
    findings = pl.DataFrame(json.loads(result.stdout)).with_columns(
        pl.col("window_start", "window_end").str.to_datetime(time_zone="UTC")
    )
    incidents = incidents_of(manifest)
    hits = overlapping(findings, incidents).filter(
        (pl.col("pattern") == pl.col("expected_pattern")) & (pl.col("key") == pl.col("ikey"))
    )
    required = incidents.filter(pl.col("required"))
    missed = required.filter(~pl.col("incident").is_in(hits["incident"].implode()))
    assert missed.is_empty(), missed.select("kind", "client", "expected_pattern").rows()
    stored = Store(run.db, lake=lake).query("SELECT count(*) FROM detections").item()
    assert stored == findings.height  # the findings are state: they live in the DuckDB file


def test_a_killed_spark_job_leaves_the_lake_unchanged(week, tmp_path):
    """SIGKILL the whole job (driver, JVM, Python workers) while it writes; then the next run recovers."""
    from closewatch.jobs.spark import ingest_to_lake

    _, _, _, lake, _ = week
    more = tmp_path / "more"
    generate(more, GeneratorConfig(seed=7, days=2, sessions_per_day=400, start=DEFAULT_START))  # the week's first days: the job replaces live partitions
    before = lake_state(lake)
    job = subprocess.Popen(
        [sys.executable, "-m", "closewatch.cli", "ingest", "--engine", "spark", "--lake", str(lake), "--master", MASTER, str(more)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        writing = _wait_for(lambda: list((lake / "_staging").glob("*/closures")), job)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    assert writing, "the job ended before it started writing its partitions"
    assert lake_state(lake) == before
    assert list((lake / "_staging").iterdir())  # the killed job's staging is left for the next job to clear

    report = ingest_to_lake(lake, expand_inputs([str(more)]), MASTER, conf=CONF)
    assert report.added > 0 and report.partitions
    assert not list((lake / "_staging").iterdir())
    added = Store(tmp_path / "state.duckdb", lake=lake).query(
        "SELECT count(*) FROM closures WHERE source_file LIKE ?", [f"{more}%"]
    ).item()
    assert added == report.added


def _wait_for(condition, process: subprocess.Popen):
    deadline = time.monotonic() + KILL_DEADLINE_S
    while time.monotonic() < deadline and process.poll() is None:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    return None
