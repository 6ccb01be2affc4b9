"""The one grammar of durations and points in time, shared by every file and flag."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closewatch.durations import format_duration, parse_duration, parse_time, parse_timedelta
from closewatch.errors import ConfigError

NOW = datetime(2024, 5, 10, 12, tzinfo=UTC)


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("1h30m", 5400), ("500ms", 0.5),
    ("1.5h", 5400), (" 2 h ", 7200), ("0", 0), (45, 45), (1.5, 1.5),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_timedelta(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "5", "10", "m5", "5x", "-5m", "-1h", "5m5", "ten minutes", True, None, [], -1])
def test_not_durations(text):
    assert parse_duration(text) is None
    assert parse_timedelta(text) is None


@given(st.integers(min_value=0, max_value=10 * 365 * 86400))
def test_format_and_parse_round_trip(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text, expected", [
    ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
    ("2024-05-01T14:30", datetime(2024, 5, 1, 14, 30, tzinfo=UTC)),
    ("2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
    ("2024-05-01T14:30:00Z", datetime(2024, 5, 1, 14, 30, tzinfo=UTC)),
    ("24h", datetime(2024, 5, 9, 12, tzinfo=UTC)),
    ("90m ago", datetime(2024, 5, 10, 10, 30, tzinfo=UTC)),
    ("1h30m ago", datetime(2024, 5, 10, 10, 30, tzinfo=UTC)),
    ("7d", datetime(2024, 5, 3, 12, tzinfo=UTC)),
    ("1w ago", datetime(2024, 5, 3, 12, tzinfo=UTC)),
])
def test_points_in_time_are_iso_or_a_duration_ago(text, expected):
    assert parse_time(text, "--since", now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "ago", "", "2024-13-01", "5"])
def test_a_point_in_time_that_is_neither_names_the_option_and_the_forms(text):
    with pytest.raises(ConfigError, match=r"--until .* is not a time; write an ISO time like 2024-05-01"):
        parse_time(text, "--until", now=NOW)
