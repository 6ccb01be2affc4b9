"""The detection job through a real DuckDB store, and `closewatch analyze` as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from closewatch.analysis.detection import DETECTION_COLUMNS, detect, detection_id
from closewatch.analysis.errors import AnalysisError
from closewatch.analysis.thresholds import load_thresholds
from closewatch.store import Store
from tests.analysis.test_detectors import DAY, HOUR, MINUTE, T0, background, closure, drops, every, frame, violations



def write_closures(store: Store, rows: list[dict], source_file: str = "app.jsonl") -> None:
    """Append hand-built closures to the store the way ingest does: one transaction, UTC timestamps."""
    closures = frame(rows).with_columns(
        pl.col("ts").dt.replace_time_zone("UTC"),
        source_format=pl.lit("test"),
        source_file=pl.lit(source_file),
        event_id=pl.col("event_id") + pl.lit(f"@{source_file}"),
    )
    with store.transaction() as con:
        con.register("staged", closures.to_arrow())
        con.execute("INSERT INTO closures BY NAME SELECT * FROM staged")
        con.unregister("staged")


def stored(store: Store) -> pl.DataFrame:
    return store.query("SELECT * FROM detections ORDER BY pattern, key, window_start")


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "closewatch.duckdb")


@pytest.fixture
def incident_store(store) -> Store:
    """Three quiet days, a chunk-violation episode on day 2 and a disconnect storm on day 3."""
    rows = background(days=3)
    rows += violations(T0 + DAY + 10 * HOUR, 12)
    rows += drops(T0 + 2 * DAY + 5 * HOUR, 40, duration_s=5.0)
    write_closures(store, rows)
    return store


def patterns(findings: pl.DataFrame) -> list[tuple[str, str]]:
    return findings.select("pattern", "key").sort("pattern", "key").rows()


def test_detect_stores_the_findings_with_the_contract_columns(incident_store):
    run = detect(incident_store)
    assert ("repeated_violation", "web-7") in patterns(run.findings)
    assert ("frequent_disconnects", "call-center") in patterns(run.findings)
    table = stored(incident_store)
    assert table.columns == DETECTION_COLUMNS
    assert table.height == run.findings.height
    assert run.closures == 2 * 432 + 12 + 40
    row = table.filter(pl.col("pattern") == "repeated_violation").row(0, named=True)
    assert row["window_start"] == datetime(2024, 5, 2, 10, tzinfo=UTC)
    assert row["evidence"] == [f"e{n:04d}@app.jsonl" for n in range(864, 876)]  # all 12, under the limit of 20
    assert row["detection_id"] == detection_id("repeated_violation", "web-7", row["window_start"].replace(tzinfo=UTC), row["window_end"].replace(tzinfo=UTC))


def test_running_again_over_the_same_window_replaces_and_never_duplicates(incident_store):
    first = detect(incident_store)
    second = detect(incident_store)
    assert second.replaced == first.findings.height
    assert stored(incident_store).height == first.findings.height
    assert sorted(second.findings["detection_id"]) == sorted(first.findings["detection_id"])


def test_a_window_replaces_only_its_own_findings(incident_store, tmp_path):
    whole = detect(incident_store)
    day_two = detect(incident_store, since=T0 + DAY, until=T0 + 2 * DAY)
    chunk_template = "Input duration violation: <n> ms. Expected between <n> and <n> ms"
    assert patterns(day_two.findings) == [("new_reason", chunk_template), ("repeated_violation", "web-7")]
    assert day_two.replaced == 2
    assert stored(incident_store).height == whole.findings.height
    strict = tmp_path / "strict.toml"
    strict.write_text("[repeated_violation]\nmin_count = 50\n", encoding="utf-8")
    nothing_left = detect(incident_store, since=T0 + DAY, until=T0 + 2 * DAY, thresholds=load_thresholds(strict))
    assert patterns(nothing_left.findings) == [("new_reason", chunk_template)]
    assert ("repeated_violation", "web-7") not in patterns(stored(incident_store))
    assert ("frequent_disconnects", "call-center") in patterns(stored(incident_store))


def test_history_before_the_window_feeds_new_reason_and_the_spike_baseline(store):
    rows = background(days=9)
    for day in range(8):  # a known reason every day, three server errors every hour
        rows += [closure(T0 + day * DAY + 6 * HOUR, client="app-a", category="server_error", reason="Session Cancelled: An error occurred")]
        rows += every(T0 + day * DAY, HOUR / 3, 72, client="app-b", category="server_error")
    rows += every(T0 + 8 * DAY + 14 * HOUR, MINUTE, 50, client="app-b", category="server_error")
    rows += [closure(T0 + 8 * DAY + 15 * HOUR, client="app-a", category="server_error", reason="Session Cancelled: An error occurred")]
    rows += [closure(T0 + 8 * DAY + 16 * HOUR, client="app-a", category="unknown", reason="Quota 7 exhausted")]
    write_closures(store, rows)
    run = detect(store, since=T0 + 8 * DAY, until=T0 + 9 * DAY)
    found = patterns(run.findings)
    assert ("error_spike", "server_error") in found
    assert [key for pattern, key in found if pattern == "new_reason"] == ["Quota <n> exhausted"]
    spike = run.findings.filter(pl.col("pattern") == "error_spike").row(0, named=True)
    assert "same hour on the previous 7 days" in spike["explanation"]


def test_a_log_without_client_ids_is_keyed_by_its_file(store):
    write_closures(store, violations(T0, 8, client=None), source_file="/logs/pipecat/bot.log")
    run = detect(store)
    assert patterns(run.findings) == [("repeated_violation", "(no client id) bot.log")]


def test_unnamed_lines_of_a_one_client_log_belong_to_that_client(store):
    """Some formats name the client only on error lines; the file's healthy lines still count for it."""
    healthy = every(T0, timedelta(seconds=3), 200, client=None, duration_s=60.0)
    write_closures(store, violations(T0, 8, client="kiosk") + healthy, source_file="/logs/kiosk.log")
    run = detect(store)
    assert patterns(run.findings) == []  # 8 violations among 208 closures: under min_share
    assert run.closures == 208


def test_an_empty_store_says_to_ingest_first(store):
    with pytest.raises(AnalysisError, match="ingest logs first"):
        detect(store)


def test_a_reversed_window_is_refused(incident_store):
    with pytest.raises(AnalysisError, match="is not before --until"):
        detect(incident_store, since=T0 + DAY, until=T0)


def test_a_window_beyond_the_data_says_where_the_data_is(incident_store):
    with pytest.raises(AnalysisError, match=r"--since 2030-01-01 00:00:00 is after the last stored closure \(2024-05-03 23:50:07 UTC\)"):
        detect(incident_store, since=datetime(2030, 1, 1))
    with pytest.raises(AnalysisError, match=r"--until 2020-01-01 00:00:00 is before the first stored closure \(2024-05-01 00:00:00 UTC\)"):
        detect(incident_store, until=datetime(2020, 1, 1))
    empty = detect(incident_store, since=datetime(2030, 1, 1), until=datetime(2030, 1, 2))
    assert (empty.closures, empty.findings.height) == (0, 0)


# ---------------------------------------------------------------- the command


def closewatch(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "closewatch.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.slow
def test_analyze_command_prints_json_findings_and_a_summary(incident_store):
    result = closewatch("--db", str(incident_store.path), "analyze", "--format", "json")
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)
    assert {(f["pattern"], f["key"]) for f in findings} >= {("repeated_violation", "web-7"), ("frequent_disconnects", "call-center")}
    assert all(len(f["detection_id"]) == 32 and f["evidence"] for f in findings)
    assert f"{len(findings)} findings in 2024-05-01 00:00:00" in result.stderr
    again = closewatch("--db", str(incident_store.path), "analyze", "--format", "csv")
    assert f"replaced {len(findings)} earlier findings" in again.stderr.replace("\n", " ")


@pytest.mark.slow
def test_analyze_command_reports_bad_input_in_one_sentence(incident_store, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[error_spike]\nk = -1\n", encoding="utf-8")
    result = closewatch("--db", str(incident_store.path), "analyze", "--thresholds", str(bad))
    assert result.returncode == 1
    assert "[error_spike] k -1 must be a number greater than 0" in result.stderr
    assert "Traceback" not in result.stderr
    result = closewatch("--db", str(incident_store.path), "analyze", "--since", "last tuesday")
    assert result.returncode == 1
    assert "--since 'last tuesday' is not a time" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_analyze_reads_the_thresholds_file_named_in_the_config(incident_store, tmp_path):
    (tmp_path / "quiet.toml").write_text("[repeated_violation]\nmin_count = 100\n", encoding="utf-8")
    (tmp_path / "closewatch.toml").write_text('[analysis]\nthresholds = "quiet.toml"\n', encoding="utf-8")
    result = closewatch("--db", str(incident_store.path), "analyze", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    keys = {(f["pattern"], f["key"]) for f in json.loads(result.stdout)}
    assert ("repeated_violation", "web-7") not in keys
    assert ("frequent_disconnects", "call-center") in keys


def test_a_window_starting_inside_a_stored_finding_replaces_it_whole(incident_store):
    """No clipped twin: a run whose --since falls inside a finding recomputes that finding from its start."""
    whole = detect(incident_store)
    storm = whole.findings.filter(pl.col("pattern") == "frequent_disconnects").row(0, named=True)
    middle = storm["window_start"].replace(tzinfo=UTC) + (storm["window_end"] - storm["window_start"]) / 2
    rerun = detect(incident_store, since=middle)
    assert rerun.since == storm["window_start"].replace(tzinfo=UTC)
    storms = stored(incident_store).filter(pl.col("pattern") == "frequent_disconnects")
    assert storms.height == 1
    assert storms.row(0, named=True)["detection_id"] == storm["detection_id"]


def test_a_null_category_is_unknown_in_the_spike_baseline_and_the_reason_history(store):
    """Rows inserted by hand may have no category: before the window they count as unknown, as inside it.

    Steady NULL-category traffic is no spike, and a reason first seen on such a row before the window is not new.
    """
    rows = background(days=9)
    rows += every(T0, 2 * MINUTE, 9 * 24 * 30, client="app-c", category=None)
    rows += [closure(T0 + DAY, client="app-c", category=None, reason="Quota 7 exhausted")]
    rows += [closure(T0 + 8 * DAY + 16 * HOUR, client="app-a", category="unknown", reason="Quota 9 exhausted")]
    write_closures(store, rows)
    run = detect(store, since=T0 + 8 * DAY, until=T0 + 9 * DAY)
    assert run.closures > 0 and patterns(run.findings) == []
