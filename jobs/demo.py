"""The demo that `closewatch up` starts: a week of traffic that ends now, and a live log the scheduler follows.

The week comes from ``sample_logs/demo/`` (the generator's output for fixed
dates). Loaded as it is, it would be weeks old, and rules such as
``logs-stopped`` would talk about a dead service; so after loading, every
closure is moved forward by whole days (the daily rhythm stays where it was)
until the week's last day ends after now, and what would lie in the future is
dropped: the week ends at the moment it is loaded. The live part is
``closewatch.generator.live`` writing to ``live_log(db)``, which the
scheduler follows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from closewatch.ingest.sources import expand_inputs
from closewatch.jobs.analysis import analyze
from closewatch.jobs.loading import ingest
from closewatch.settings import Settings
from closewatch.store import Store, scalar


@dataclass
class DemoLoad:
    files: int
    closures: int
    shifted_days: int
    dropped: int
    findings: int


def live_log(db: Path) -> Path:
    """Where the demo's live traffic is written: beside the database, with the other logs of `up`."""
    return db.with_name(db.name + "-logs") / "demo" / "live.log"


def is_demo_database(store: Store, db: Path) -> bool:
    """Whether this database already follows the demo's live log (so `up` starts its writer again)."""
    return bool(scalar_or_zero(store, "SELECT count(*) FROM follow_state WHERE path = ?", [str(live_log(db))]))


def scalar_or_zero(store: Store, sql: str, params: list) -> int:
    with store.connect(read_only=True) as con:
        return int(scalar(con, sql, params) or 0)


def load_demo(store: Store, settings: Settings, folder: Path, now: datetime | None = None) -> DemoLoad:
    """Load the demo week so that it ends at ``now``, then run the detectors over it."""
    now = now or datetime.now(UTC)
    results = ingest(store, expand_inputs([str(folder)]), catalog_path=settings.catalog, limits=settings.ingest_limits)
    end = datetime.fromisoformat(json.loads((folder / "manifest.json").read_text())["end"].replace("Z", "+00:00"))
    days = math.ceil((now - end) / timedelta(days=1))
    with store.transaction(lake=False) as con:
        con.execute(f"UPDATE closures SET ts = ts + INTERVAL {days} DAY")
        dropped = scalar(con, "DELETE FROM closures WHERE ts > ?", [now])
        closures = scalar(con, "SELECT count(*) FROM closures")
        con.execute("INSERT INTO data_changes (change, rows) VALUES ('demo moved to now', ?)", [closures])
    run = analyze(store, settings)
    return DemoLoad(len(results), closures, days, dropped, run.findings.height)
