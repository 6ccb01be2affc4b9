"""The demo of `closewatch up`: the week ends when it is loaded, and the live writer's incidents fire alerts."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from closewatch.alerts.evaluation import evaluate
from closewatch.alerts.rules import load_rules
from closewatch.generator.live import LiveTraffic, run
from closewatch.ingest.follow import FileFollower, ReadOptions, write_mark
from closewatch.jobs.alerting import engine_settings
from closewatch.jobs.demo import is_demo_database, live_log, load_demo
from closewatch.jobs.following import enrich_with_catalog
from closewatch.settings import Settings

DEMO = Path(__file__).resolve().parents[2] / "sample_logs" / "demo"


@pytest.mark.slow
def test_the_demo_week_ends_at_the_moment_it_is_loaded(store):
    now = datetime.now(UTC)
    loaded = load_demo(store, Settings(), DEMO, now=now)
    first, last = store.query("SELECT min(ts), max(ts) FROM closures").row(0)
    assert last <= now and now - last < timedelta(hours=1), "the newest close is from the last hour, not weeks ago"
    assert now - first > timedelta(days=6), "a whole week of history"
    assert loaded.closures > 10_000 and loaded.findings > 0 and loaded.shifted_days > 0


def test_the_live_writer_appends_traffic_whose_incidents_fire_the_default_rules(store, tmp_path):
    log = live_log(store.path)
    stop = threading.Event()
    traffic = LiveTraffic(rate_per_s=20, incident_every_s=1, incident_for_s=3, incident_per_s=20, seed=7)
    writer = threading.Thread(target=run, args=(log, traffic, stop))
    began = time.monotonic()
    writer.start()
    follower = FileFollower(store, [str(log)], enrich_with_catalog(None), ReadOptions())
    try:
        follower.tick()  # following while the writer writes (incidents: kiosk's chunks 1-2 s in, then another kind)
        stop.wait(max(0.0, 3.5 - (time.monotonic() - began)))
    finally:
        stop.set()
        writer.join()
    follower.tick()
    clients = dict(store.query("SELECT client_id, count(*) FROM closures WHERE category = 'input_duration_violation' GROUP BY 1").rows())
    assert clients.get("kiosk-fleet", 0) >= 5, clients  # the first incident
    assert is_demo_database(store, store.path)
    follower.close()
    later = datetime.now(UTC) + timedelta(minutes=2)  # two quiet minutes on: the follower has read up to then
    with store.transaction() as con:
        write_mark(con, "files@test", later, 2.0)
    report = evaluate(store, load_rules(), engine_settings(Settings()), now=later)
    assert "client_id=kiosk-fleet" in report.firing["repeated-violations"], report.firing
