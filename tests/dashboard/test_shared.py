"""The dashboard's shared cache: results keyed on the data, no connection on unchanged data, warmed first views."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from closewatch import jobs
from closewatch.dashboard.queries import explorer, overview, shared, timespan
from closewatch.ingest.sources import expand_inputs

SAMPLE = Path(__file__).resolve().parents[2] / "sample_logs" / "closures.jsonl"
LINE = '{"ts": "2026-11-20T10:00:00Z", "session_id": "s-new-%d", "close_code": 3009, "close_reason": "Too many concurrent sessions", "client_id": "late"}\n'


class CountingStore(shared.DashboardStore):
    """The real store, counting the connections it opens."""

    opened = 0

    @contextmanager
    def connect(self, read_only: bool = False, lake: bool = True):
        CountingStore.opened += 1
        with super().connect(read_only=read_only, lake=lake) as con:
            yield con


@pytest.fixture
def loaded(tmp_path, monkeypatch) -> CountingStore:
    """A store with the sample closures, which the cached readers (and the warmer) read."""
    store = CountingStore(tmp_path / "dash.duckdb")
    jobs.ingest(store, expand_inputs([str(SAMPLE)]))
    monkeypatch.setattr(shared, "get_store", lambda: store)
    shared.clear_cache()
    yield store
    shared.clear_cache()


def add_closures_in_another_process(path: Path, count: int, tmp_path: Path) -> None:
    log = tmp_path / f"more-{count}.jsonl"
    log.write_text("".join(LINE % n for n in range(count)))
    subprocess.run([sys.executable, "-m", "closewatch.cli", "--db", str(path), "ingest", str(log)], check=True, capture_output=True)


def test_a_rerun_on_unchanged_data_opens_no_connection(loaded):
    first = shared.cached(overview.overview, None, None)
    opened = CountingStore.opened
    again = shared.cached(overview.overview, None, None)
    assert again is first  # one shared result, not a copy per rerun
    assert CountingStore.opened == opened


def test_a_load_by_another_process_is_seen_on_the_next_call(loaded, tmp_path):
    before = shared.cached(timespan.span).closures
    add_closures_in_another_process(loaded.path, 3, tmp_path)
    assert shared.cached(timespan.span).closures == before + 3
    assert shared.cached(overview.overview, None, None).closures == before + 3


def test_sessions_asking_at_once_run_the_query_once(loaded):
    calls, entered, release = [], threading.Event(), threading.Event()

    @shared.reader()
    def slow_count(store):
        calls.append(1)
        entered.set()
        release.wait(10)
        return store.query("SELECT count(*) FROM closures").item()

    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(shared.cached(slow_count))) for _ in range(3)]
    threads[0].start()
    entered.wait(10)
    for thread in threads[1:]:
        thread.start()
    time.sleep(0.2)  # let the others reach the cache and wait there (not a timing assertion)
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1 and len(answers) == 3 and len(set(answers)) == 1


def test_a_failed_read_is_not_cached(loaded):
    failures = []

    @shared.reader()
    def flaky(store):
        if not failures:
            failures.append(1)
            raise RuntimeError("busy")
        return "answer"

    with pytest.raises(RuntimeError):
        shared.cached(flaky)
    assert shared.cached(flaky) == "answer"


def test_the_warmer_computes_first_views_before_anyone_asks_and_again_after_a_load(loaded, tmp_path):
    warmer = shared.Warmer(store_of=lambda: loaded, min_gap_s=0)
    assert warmer.warm_once() > 0
    opened = CountingStore.opened
    view = shared.cached(overview.overview, None, None)
    rows = shared.cached(explorer.explorer_rows, explorer.Filters())
    assert CountingStore.opened == opened, "the first views were not warmed"
    assert warmer.warm_once() == 0  # nothing new: nothing run

    add_closures_in_another_process(loaded.path, 2, tmp_path)
    assert warmer.warm_once() > 0
    opened = CountingStore.opened
    assert shared.cached(overview.overview, None, None).closures == view.closures + 2
    assert shared.cached(explorer.explorer_rows, explorer.Filters()).total == rows.total + 2
    assert CountingStore.opened == opened


def test_the_warmer_keeps_running_when_the_store_is_missing(tmp_path):
    warmer = shared.Warmer(store_of=lambda: shared.DashboardStore(tmp_path / "absent.duckdb"), every_s=0.05).start()
    time.sleep(0.2)
    assert warmer.thread.is_alive()
    warmer.stop.set()
    warmer.thread.join(5)
    assert not (tmp_path / "absent.duckdb").exists()


def test_after_the_start_the_warmer_refreshes_only_for_active_users_and_not_on_every_load(loaded, tmp_path, monkeypatch):
    warmer = shared.Warmer(store_of=lambda: loaded, min_gap_s=3600)
    assert warmer.warm_once() > 0  # the start: always
    shared.cached(timespan.span)
    add_closures_in_another_process(loaded.path, 1, tmp_path)
    assert warmer.warm_once() == 0  # a live feed: not within the gap
    warmer.min_gap_s = 0
    monkeypatch.setattr(shared, "_LAST_VIEW", [time.monotonic() - shared.WARM_ACTIVE_S - 1])
    assert warmer.warm_once() == 0  # nobody looking: nothing run
    shared.cached(timespan.span)
    assert warmer.warm_once() > 0


def test_the_warmer_reads_for_the_default_page_first(loaded, monkeypatch):
    """A visitor arriving right at the start opens the Overview: its reads are not queued behind the other pages'."""
    asked = []
    call = shared._call
    monkeypatch.setattr(shared, "_call", lambda name, store, args: asked.append(name) or call(name, store, args))
    assert shared.Warmer(store_of=lambda: loaded).warm_once() == len(asked) > 2
    assert asked[0].startswith(shared.WARM_FIRST) and asked[0] == shared._name(overview.overview)
    assert not any(name.startswith(shared.WARM_FIRST) for name in asked[1:])
