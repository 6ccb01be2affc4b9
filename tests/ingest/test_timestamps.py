"""Timestamps as text: every shape clients write reads as the same UTC instant; what is not a time reads as null."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from closewatch.ingest.timestamps import parse_text

NINE_UTC = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def parsed(text: str, tz: str = "UTC") -> datetime | None:
    return pl.select(parse_text(pl.lit(text, dtype=pl.String), tz)).item()


@pytest.mark.parametrize("text", [
    "2026-11-20T09:00:00Z", "2026-11-20 09:00:00z", "2026-11-20T10:00:00+01:00", "2026-11-20 10:00:00 +0100",
    "2026-11-20T09:00:00,000 UTC", "1795165200", "1795165200000", "1795165200.0",
])
def test_every_written_shape_is_the_same_instant(text):
    assert parsed(text) == NINE_UTC


def test_a_naive_time_is_read_in_the_given_zone():
    assert parsed("2026-11-20 10:00:00", "Europe/Berlin") == NINE_UTC


@pytest.mark.parametrize("text", ["+01:00", "-0500", "+100", "not a time", "", "-1795165200"])
def test_what_is_not_a_time_is_null_not_a_moment_in_1970(text):
    assert parsed(text) is None
