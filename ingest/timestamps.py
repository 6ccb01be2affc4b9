"""Timestamps as logs write them, vectorised into UTC.

Accepted: ISO 8601 with or without a zone ("T" or a space between date and
time, "." or "," before the fraction, "Z" or an offset), and epoch numbers in
seconds, milliseconds or microseconds (told apart by magnitude). A timestamp
without a zone is read in ``tz`` (UTC unless the user says otherwise).
"""

from __future__ import annotations

import zoneinfo

import polars as pl

from closewatch.ingest.errors import IngestError

UTC_US = pl.Datetime("us", "UTC")
_ISO_ZONED = "%Y-%m-%dT%H:%M:%S%.f%z"
_ISO_NAIVE = "%Y-%m-%dT%H:%M:%S%.f"
_ISO_MINUTES = "%Y-%m-%dT%H:%M"


def check_zone(tz: str) -> str:
    """Validate a zone name before any work starts, so a typo fails fast."""
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise IngestError(f"Unknown time zone '{tz}'; use an IANA name such as UTC or Europe/Berlin.") from None
    return tz


def parse_text(values: pl.Expr, tz: str = "UTC") -> pl.Expr:
    """Strings to UTC datetimes; anything unreadable becomes null."""
    text = (
        values.str.strip_chars()
        .str.replace(r"^(\d{4}-\d\d-\d\d)[ T]", "${1}T")
        .str.replace(r"(T\d\d:\d\d:\d\d),(\d)", "${1}.${2}")
        .str.replace(r"[Zz]$", "+00:00")
        .str.replace(r" ?(UTC|GMT)$", "+00:00")
        .str.replace(r" ?([+-]\d\d):?(\d\d)$", "${1}${2}")
    )
    zoned = text.str.to_datetime(_ISO_ZONED, strict=False, time_unit="us").dt.convert_time_zone("UTC")
    naive = pl.coalesce(
        text.str.to_datetime(_ISO_NAIVE, strict=False, time_unit="us"),
        text.str.to_datetime(_ISO_MINUTES, strict=False, time_unit="us"),
    )
    local = naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")
    # Only unsigned digits are an epoch number: a bare offset ("+01:00" -> "+0100") would read as 100 s after 1970.
    numeric = pl.when(text.str.contains(r"^\d+(\.\d+)?$")).then(parse_epoch(text.cast(pl.Float64, strict=False)))
    return pl.coalesce(zoned, local, numeric).cast(UTC_US)


def parse_epoch(seconds_or_ms: pl.Expr) -> pl.Expr:
    """Epoch numbers to UTC datetimes: < 1e11 is seconds, < 1e14 milliseconds, else microseconds."""
    value = seconds_or_ms.cast(pl.Float64, strict=False)
    micros = (
        pl.when(value.abs() < 1e11)
        .then(value * 1e6)
        .when(value.abs() < 1e14)
        .then(value * 1e3)
        .when(value.abs() < 1e17)
        .then(value)
        .otherwise(None)
    )
    return micros.round(0).cast(pl.Int64, strict=False).cast(UTC_US)
