"""Incremental detection stores what a full run stores, row for row, on the generator's week fed in batches.

The week (every incident of the generator) is cut into batches by time and
ingested one batch at a time with the real pipeline; after each batch the
incremental run brings the findings up to date. One batch arrives late: the
closures of two days held back, ingested after the rest. At the end a copy
of the store is analysed once in full, and both detections tables must be
equal in every column but ``detected_at``.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from closewatch import jobs
from closewatch.analysis.detection import CLIENT_PATTERNS, DETECTION_COLUMNS, detect
from closewatch.analysis.incremental import detect_incremental
from closewatch.generator.traffic import generate_closures_frame, write_jsonl
from closewatch.ingest.sources import expand_inputs
from closewatch.store import Store
from closewatch.vocabulary import Pattern
from tests.analysis.test_detectors import DAY, MINUTE, T0, background, frame, violations

COMPARED = [name for name in DETECTION_COLUMNS if name != "detected_at"]


def ingest_frame(store: Store, frame: pl.DataFrame, path: Path) -> None:
    write_jsonl(frame, path)
    jobs.ingest(store, expand_inputs([str(path)]))


def detections(store: Store) -> pl.DataFrame:
    return store.query(f"SELECT {', '.join(COMPARED)} FROM detections ORDER BY detection_id")


def full_run_of_a_copy(store: Store, tmp_path: Path, since: datetime | None = None) -> pl.DataFrame:
    copy = tmp_path / "full.duckdb"
    shutil.copy(store.path, copy)
    full = Store(copy)
    with full.transaction() as con:
        con.execute("DELETE FROM detections; DELETE FROM analysis_marks")
    run = detect(full, since=since)
    assert run.mode == "full"
    return detections(full)


def assert_same_findings(incremental: pl.DataFrame, full: pl.DataFrame) -> None:
    missing = full.join(incremental, on=COMPARED, how="anti")
    extra = incremental.join(full, on=COMPARED, how="anti")
    assert missing.is_empty() and extra.is_empty(), f"only in the full run:\n{missing}\nonly in the incremental runs:\n{extra}"
    assert incremental.height == full.height


@pytest.fixture(scope="module")
def week() -> pl.DataFrame:
    """The generator's week with its incidents, as canonical closures in time order."""
    return generate_closures_frame(21_000, seed=3).sort("ts", "session_id")


@pytest.mark.slow
def test_incremental_runs_after_each_batch_store_what_one_full_run_stores(week, tmp_path):
    start = week["ts"].min()
    day = lambda n: start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=n)
    late = week.filter(pl.col("ts").is_between(day(3), day(5), closed="left"))
    on_time = week.filter(~pl.col("ts").is_between(day(3), day(5), closed="left"))
    # cuts at odd times, so batches end inside episodes, spikes and days
    cuts = [day(1) + timedelta(hours=13, minutes=7), day(2) + timedelta(hours=2), day(2) + timedelta(hours=16, minutes=45),
            day(5) + timedelta(hours=9), day(6) + timedelta(hours=11, minutes=30), day(8)]
    store = Store(tmp_path / "closewatch.duckdb")
    runs, begin = [], start
    for number, cut in enumerate(cuts):
        ingest_frame(store, on_time.filter(pl.col("ts").is_between(begin, cut, closed="left")), tmp_path / f"batch-{number}.jsonl")
        runs.append(detect_incremental(store))
        begin = cut
    ingest_frame(store, late, tmp_path / "late.jsonl")
    runs.append(detect_incremental(store))

    assert [run.mode for run in runs] == ["full"] + ["incremental"] * len(cuts), [run.why_full for run in runs]
    assert runs[-1].new_closures == late.height
    full = full_run_of_a_copy(store, tmp_path)
    assert set(full["pattern"]) >= {"repeated_violation", "frequent_disconnects", "concurrency_saturation",
                                    "auth_failures", "expiry_cost_leak", "new_reason"}
    assert_same_findings(detections(store), full)


@pytest.mark.slow
def test_a_late_batch_from_before_the_window_start_is_handled_incrementally(week, tmp_path):
    """The scheduler's window starts at a midnight: closures from before it still change its spikes and known reasons."""
    start = week["ts"].min()
    day = lambda n: start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=n)
    since = day(2).astimezone(UTC)
    held = pl.col("ts").is_between(day(1), day(4)) & (pl.col("session_id").hash(7) % 2 == 0)
    late, on_time = week.filter(held), week.filter(~held)
    store = Store(tmp_path / "closewatch.duckdb")
    begin, runs = start, []
    for number, cut in enumerate([day(3), day(5) + timedelta(hours=7), day(8)]):
        ingest_frame(store, on_time.filter(pl.col("ts").is_between(begin, cut, closed="left")), tmp_path / f"batch-{number}.jsonl")
        runs.append(detect_incremental(store, since=since))
        begin = cut
    ingest_frame(store, late, tmp_path / "late.jsonl")
    runs.append(detect_incremental(store, since=since))

    assert [run.mode for run in runs] == ["full", "incremental", "incremental", "incremental"], [run.why_full for run in runs]
    assert_same_findings(detections(store), full_run_of_a_copy(store, tmp_path, since))


@pytest.mark.slow
def test_closures_older_than_the_store_make_a_full_run(week, tmp_path):
    start = week["ts"].min()
    store = Store(tmp_path / "closewatch.duckdb")
    ingest_frame(store, week.filter(pl.col("ts") >= start + timedelta(days=2)), tmp_path / "recent.jsonl")
    assert detect_incremental(store).mode == "full"
    ingest_frame(store, week.filter(pl.col("ts") < start + timedelta(days=2)), tmp_path / "older.jsonl")
    run = detect_incremental(store)
    assert run.mode == "full" and "older than the store's first" in (run.why_full or "")
    assert_same_findings(detections(store), full_run_of_a_copy(store, tmp_path))


def test_every_pattern_has_an_incremental_rule():
    """A new pattern must say how an incremental run recomputes it (analysis/incremental.py)."""
    assert set(Pattern) == {*CLIENT_PATTERNS, Pattern.ERROR_SPIKE, Pattern.NEW_REASON}


def test_nothing_new_reads_nothing(week, tmp_path):
    store = Store(tmp_path / "closewatch.duckdb")
    ingest_frame(store, week.head(3000), tmp_path / "first.jsonl")
    detect_incremental(store)
    before = detections(store)
    run = detect_incremental(store)
    assert (run.mode, run.new_closures, run.closures) == ("incremental", 0, 0)
    assert_same_findings(detections(store), before)


def test_other_thresholds_make_a_full_run(week, tmp_path):
    from closewatch.analysis.thresholds import load_thresholds

    store = Store(tmp_path / "closewatch.duckdb")
    ingest_frame(store, week.head(3000), tmp_path / "first.jsonl")
    detect_incremental(store)
    stricter = tmp_path / "strict.toml"
    stricter.write_text("[repeated_violation]\nmin_count = 50\n")
    run = detect_incremental(store, thresholds=load_thresholds(stricter))
    assert run.mode == "full" and run.why_full == "the thresholds changed"


def append(store: Store, rows: list[dict]) -> None:
    """Store hand-built closures as ingest does, stamped with the storing transaction's time."""
    closures = frame(rows).with_columns(pl.col("ts").dt.replace_time_zone("UTC"), source_format=pl.lit("test"),
                                        source_file=pl.lit("app.jsonl"))
    with store.transaction() as con:
        con.register("staged", closures.to_arrow())
        con.execute("INSERT INTO closures BY NAME SELECT *, now() AS ingested_at FROM staged")
        con.unregister("staged")


def test_an_episode_across_midnight_is_recomputed_whole(tmp_path):
    """Violations from 23:50 to 00:19: the batch that brings the rest must not cut the episode at midnight."""
    rows = background(days=3) + violations(T0 + DAY - 10 * MINUTE, 30)
    for number, row in enumerate(rows):
        row["event_id"] = f"e{number:05d}"
    cut = T0 + DAY + 5 * MINUTE
    store = Store(tmp_path / "closewatch.duckdb")
    append(store, [row for row in rows if row["ts"] < cut])
    detect_incremental(store)
    append(store, [row for row in rows if row["ts"] >= cut])
    run = detect_incremental(store)
    assert run.mode == "incremental"
    found = detections(store).filter(pl.col("pattern") == "repeated_violation")
    assert found.height == 1 and found["count"][0] == 30
    assert_same_findings(detections(store), full_run_of_a_copy(store, tmp_path))


def test_new_closures_of_too_many_clients_make_a_full_run(week, tmp_path, monkeypatch):
    store = Store(tmp_path / "closewatch.duckdb")
    ingest_frame(store, week.head(3000), tmp_path / "first.jsonl")
    detect_incremental(store)
    ingest_frame(store, week.slice(3000, 3000), tmp_path / "second.jsonl")
    monkeypatch.setattr("closewatch.analysis.incremental.MAX_CHANGED", 1)
    run = detect_incremental(store)
    assert run.mode == "full" and "more than 1 clients" in (run.why_full or "")
    assert_same_findings(detections(store), full_run_of_a_copy(store, tmp_path))
