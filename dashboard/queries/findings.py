"""The detectors' findings as both the Patterns and the Alerts page read them.

One query, so the two pages never disagree about which findings are open: a
finding is *open* when its window ends within ``[dashboard] open_findings``
(default 7 days) of the newest loaded closure. The anchor is the data, not the wall clock, so a log loaded
days after the fact (the demo, an incident's export) still shows its findings
as open; on a live feed the newest closure is a moment ago, so the two agree.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from closewatch.dashboard.queries.shared import get_settings, reader, reading
from closewatch.store import Store
from closewatch.vocabulary import SEVERITIES

#: Most severe first: the order an on-call engineer reads findings in.
SEVERITY_RANK = "CASE severity " + " ".join(
    f"WHEN '{name}' THEN {rank}" for rank, name in enumerate(reversed(SEVERITIES))) + f" ELSE {len(SEVERITIES)} END"
DETECTION_COLUMNS = ("detection_id, pattern, key, severity, count, window_start, window_end, explanation, action, "
                     "detected_at, len(evidence) AS evidence_events")


@reader("detections", warm=lambda: (open_window(),))
def detections(store: Store, open_for: timedelta) -> pl.DataFrame:
    """Every stored detection (findings, not events: a small table), most severe first, then newest window first.

    ``open`` marks the findings whose window ends within ``open_for`` of the newest loaded closure.
    """
    with reading(store) as con:
        return con.execute(f"""
            SELECT {DETECTION_COLUMNS},
                   coalesce(window_end >= (SELECT max(ts) FROM closures) - ?, FALSE) AS open
            FROM detections
            ORDER BY {SEVERITY_RANK}, window_start DESC, pattern, key
        """, [open_for]).pl()


def open_window() -> timedelta:
    """How long after its window a finding stays open: ``[dashboard] open_findings`` in closewatch.toml."""
    return timedelta(seconds=get_settings().dashboard.open_findings_s)


def open_only(found: pl.DataFrame) -> pl.DataFrame:
    """The open findings of ``detections``' result."""
    return found.filter(pl.col("open"))
