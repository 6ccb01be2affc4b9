"""The host's own logs: syslog files (RFC 3164 and RFC 5424, as rsyslog writes them) and journald's JSON export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
from closewatch.ingest.envelopes.base import (
    UTC_US,
    Envelope,
    UnwrapContext,
    conform_records,
    duck,
    epoch_sql,
    fill_times,
    json_spec,
    nonblank,
    now_utc,
    share,
    sql_records,
)
from closewatch.ingest.timestamps import parse_text

# --------------------------------------------------------------------------
# syslog
# --------------------------------------------------------------------------

# RFC 3164 section 4.1.2 (HEADER: TIMESTAMP "Mmm dd hh:mm:ss", no year, no zone; HOSTNAME; MSG: TAG[pid]: CONTENT),
# as rsyslog's default RSYSLOG_TraditionalFileFormat writes it (no <PRI> in files); rsyslog's RSYSLOG_FileFormat
# puts an RFC 3339 time in its place. RFC 5424 section 6 (<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
# STRUCTURED-DATA [MSG], "-" for a missing value, an optional BOM before MSG).
SYSLOG_SRC = ("RFC 3164 section 4.1.2 (Mmm dd hh:mm:ss host tag[pid]: msg; rsyslog RSYSLOG_TraditionalFileFormat and "
              "RSYSLOG_FileFormat); RFC 5424 section 6 (<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG)")

_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
BSD = (rf"^(?:<\d{{1,3}}>)?(?P<mon>{_MONTHS}) +(?P<day>\d{{1,2}}) (?P<time>\d\d:\d\d:\d\d) (?P<host>\S+) "
       r"(?P<tag>[^\s\[:]+)(?:\[(?P<pid>[^\]]*)\])?: ?(?P<msg>.*)$")
# rsyslog's date-rfc3339: microseconds and a numeric offset, never "Z" (which tells it from an app's own ISO stamp)
ISO = (r"^(?:<\d{1,3}>)?(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d) (?P<host>\S+) "
       r"(?P<tag>[^\s\[:]+)(?:\[(?P<pid>[^\]]*)\])?: ?(?P<msg>.*)$")
RFC5424 = (r"^(?:<\d{1,3}>)?1 (?P<ts>\S+) (?P<host>\S+) (?P<tag>\S+) (?P<pid>\S+) \S+ "
           r"(?:-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?:\x{FEFF})?(?P<msg>.*))?$")
_SHAPES = (BSD, ISO, RFC5424)
_FIELDS = ("mon", "day", "time", "ts", "host", "tag", "pid", "msg")


def _parse_shapes(lines: pl.DataFrame) -> pl.DataFrame:
    """The first of the three shapes each line matches (each regex only sees the lines before it missed)."""
    rest = lines.with_columns(matched=pl.lit(False))
    parts = []
    for shape in _SHAPES:
        if rest.height == 0:
            break
        got = rest.with_columns(g=pl.col("raw").str.extract_groups(shape)).unnest("g")
        hit = got.filter(pl.col("msg").is_not_null() | pl.col("host").is_not_null())
        parts.append(hit.select("source_line", "raw", *[pl.col(f) if f in hit.columns else pl.lit(None, pl.String).alias(f)
                                                        for f in _FIELDS]))
        rest = rest.filter(~pl.col("source_line").is_in(hit["source_line"].implode()))
    parts.append(rest.select("source_line", "raw", *[pl.lit(None, pl.String).alias(f) for f in _FIELDS]))
    return pl.concat(parts).sort("source_line")


def _bsd_times(ctx: UnwrapContext) -> pl.Expr:
    """RFC 3164 times carry no year: the year that puts the line no later than a day after the file was
    last written (its modification time; now for an upload), read in the user's zone."""
    reference = (ctx.reference_time or now_utc()).astimezone(ZoneInfo(ctx.tz))
    latest = reference + timedelta(days=1)

    def at(year: int) -> pl.Expr:
        text = pl.lit(str(year)) + " " + pl.col("mon") + " " + pl.col("day").str.zfill(2) + " " + pl.col("time")
        naive = text.str.to_datetime("%Y %b %d %H:%M:%S", strict=False, time_unit="us")
        return naive.dt.replace_time_zone(ctx.tz, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")

    this_year, last_year = at(reference.year), at(reference.year - 1)
    return pl.when(this_year > pl.lit(latest.astimezone(UTC))).then(last_year).otherwise(this_year).cast(UTC_US)


def _syslog_records(lines: pl.DataFrame, ctx: UnwrapContext) -> pl.DataFrame:
    lines = nonblank(lines)
    if lines.height == 0:
        return conform_records(lines)
    frame = _parse_shapes(lines)
    iso_ts = parse_text(pl.col("ts"), "UTC")
    env_ts = pl.when(pl.col("mon").is_not_null()).then(_bsd_times(ctx)).otherwise(iso_ts)
    nil = lambda name: pl.when(pl.col(name) != "-").then(pl.col(name))
    labels = pl.struct(host=nil("host"), app=nil("tag")).struct.json_encode()
    return frame.select(
        "source_line", pl.col("msg").fill_null("").alias("text"), env_ts.alias("env_ts"),
        pl.col("ts").str.extract(r"([+-]\d\d:\d\d|Z)$").replace({"Z": "+00:00"}).alias("zone"),
        pl.when(pl.col("host").is_not_null()).then(labels).alias("labels"),
        pl.when(pl.col("host").is_null()).then(pl.lit("not a syslog line (RFC 3164 'Mmm dd hh:mm:ss host tag: msg' or RFC 5424)"))
        .when(env_ts.is_null()).then(pl.lit("its time cannot be read as a date"))
        .alias("reject"),
    )


def _unwrap_syslog(batches: Iterator[pl.DataFrame], ctx: UnwrapContext) -> Iterator[pl.DataFrame]:
    for lines in batches:
        yield conform_records(_syslog_records(lines, ctx))


def _sniff_syslog(head: list[str]) -> float:
    lines = [line for line in head if line.strip()]
    if not lines:
        return 0.0
    series = pl.Series(lines, dtype=pl.String)
    matched = int((series.str.contains(BSD) | series.str.contains(ISO) | series.str.contains(RFC5424)).sum())
    return 0.94 * matched / len(lines)


def _wrap_syslog(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    """rsyslog's traditional file format (``layout`` ``3164``, local time in ``tz``) or RFC 5424 (``5424``)."""
    host, app, pid = meta.get("host", "voice-01"), meta.get("app", "voicebot"), meta.get("pid", 2211)
    zone = ZoneInfo(meta.get("tz", "UTC"))
    out = []
    for ts, text in fill_times(lines):
        if meta.get("layout") == "5424":
            stamp = ts.astimezone(zone).isoformat(timespec="microseconds")
            out.append(f"<14>1 {stamp} {host} {app} {pid} - - {text}")
        else:
            local = ts.astimezone(zone)
            out.append(f"{local.strftime('%b')} {local.day:>2} {local.strftime('%H:%M:%S')} {host} {app}[{pid}]: {text}")
    return out


SYSLOG = Envelope(
    name="syslog",
    description="syslog files: RFC 3164 (rsyslog's default; the year inferred so no line is after the file's "
                "modification time, local time read in --tz), rsyslog's RFC 3339 file format, and RFC 5424.",
    example="Nov 18 07:32:58 voice-01 voicebot[2211]: WebSocket Disconnected: Status=3005, Msg=Session Cancelled: An error occurred",
    source=SYSLOG_SRC, sniff=_sniff_syslog, unwrap=_unwrap_syslog, wrap=_wrap_syslog, kind="system",
)

# --------------------------------------------------------------------------
# journald: journalctl -o json
# --------------------------------------------------------------------------

# systemd.io/JOURNAL_EXPORT_FORMATS "Journal JSON Format": one object per entry; values are strings, a field
# with several values an array, a binary (non-UTF-8 or control character) value an array of byte numbers,
# and a value over the size limit null unless --all; __REALTIME_TIMESTAMP in microseconds since the epoch.
# man systemd.journal-fields(7): MESSAGE, _SOURCE_REALTIME_TIMESTAMP, _HOSTNAME, _SYSTEMD_UNIT, SYSLOG_IDENTIFIER.
JOURNALD_SRC = ("systemd.io/JOURNAL_EXPORT_FORMATS (Journal JSON Format: strings, arrays of bytes for binary values, "
                "null over the size limit; __REALTIME_TIMESTAMP in microseconds); man systemd.journal-fields(7)")

_BYTES = "try(decode(unhex(array_to_string(list_transform(CAST(j.MESSAGE AS BIGINT[]), x -> printf('%02x', x)), ''))))"
_JOURNALD_SQL = f"""
WITH j AS (
    SELECT source_line, try(json_transform(raw, {json_spec(MESSAGE="JSON", __REALTIME_TIMESTAMP="VARCHAR",
                                                            _SOURCE_REALTIME_TIMESTAMP="VARCHAR", _HOSTNAME="VARCHAR",
                                                            _SYSTEMD_UNIT="VARCHAR", SYSLOG_IDENTIFIER="VARCHAR",
                                                            __CURSOR="VARCHAR")})) AS j,
           CASE WHEN contains(raw, 'null')  -- one search a line; the three spellings only where it is found
                THEN contains(raw, '"MESSAGE" : null') OR contains(raw, '"MESSAGE": null') OR contains(raw, '"MESSAGE":null')
                ELSE false END AS null_message
    FROM lines
)
SELECT source_line,
       CASE json_type(j.MESSAGE)
            WHEN 'VARCHAR' THEN j.MESSAGE->>'$'
            WHEN 'ARRAY' THEN CASE WHEN json_type(j.MESSAGE, '$[0]') IN ('UBIGINT', 'BIGINT') THEN {_BYTES}
                                   ELSE j.MESSAGE->>'$[0]' END
       END AS text,
       {epoch_sql("coalesce(j._SOURCE_REALTIME_TIMESTAMP, j.__REALTIME_TIMESTAMP)", "us")} AS env_ts,
       NULL AS zone,
       CAST(json_object('host', j._HOSTNAME, 'unit', j._SYSTEMD_UNIT, 'app', j.SYSLOG_IDENTIFIER) AS VARCHAR) AS labels,
       CASE WHEN j IS NULL THEN 'line is not a JSON object'
            WHEN j.__REALTIME_TIMESTAMP IS NULL AND j.__CURSOR IS NULL THEN 'not a journal entry (no __REALTIME_TIMESTAMP)'
            WHEN null_message AND (j.MESSAGE IS NULL OR json_type(j.MESSAGE) = 'NULL')
                THEN 'journalctl wrote MESSAGE as null (over its field size limit); export again with journalctl -o json --all'
            WHEN json_type(j.MESSAGE) = 'ARRAY' AND json_type(j.MESSAGE, '$[0]') IN ('UBIGINT', 'BIGINT') AND {_BYTES} IS NULL
                THEN 'MESSAGE is binary and not UTF-8 text'
       END AS reject
FROM j
"""


def _unwrap_journald(batches: Iterator[pl.DataFrame], ctx: UnwrapContext) -> Iterator[pl.DataFrame]:
    with duck() as con:
        for lines in batches:
            yield sql_records(con, lines, _JOURNALD_SQL)


def _sniff_journald(head: list[str]) -> float:
    return 0.97 * share(head, lambda o: "__REALTIME_TIMESTAMP" in o or "__CURSOR" in o)


def _wrap_journald(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    """journalctl -o json; ``binary`` in meta writes MESSAGE as an array of bytes, as journalctl does for
    a message with a control character (colour codes)."""
    out = []
    for index, (ts, text) in enumerate(fill_times(lines)):
        micros = int(ts.timestamp() * 1_000_000)
        binary = meta.get("binary") or "\x1b" in text
        message: object = list(text.encode()) if binary else text
        entry = {
            "__CURSOR": f"s=6c0d4a7a1b2c4d5e8f90a1b2c3d4e5f6;i={index + 1:x};b=0f1e2d3c4b5a69788796a5b4c3d2e1f0;m={index:x};t={micros:x};x=0",
            "__REALTIME_TIMESTAMP": str(micros), "__MONOTONIC_TIMESTAMP": str(1_000_000 + index),
            "_BOOT_ID": "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "PRIORITY": "6", "_PID": str(meta.get("pid", 2211)),
            "_HOSTNAME": meta.get("host", "voice-01"), "SYSLOG_IDENTIFIER": meta.get("app", "voicebot"),
            "_SYSTEMD_UNIT": meta.get("unit", "voicebot.service"), "_TRANSPORT": "stdout", "MESSAGE": message,
        }
        out.append(json.dumps(entry, separators=(", ", " : "), ensure_ascii=False))
    return out


JOURNALD = Envelope(
    name="journald",
    description="journalctl -o json: MESSAGE (text, or an array of bytes), __REALTIME_TIMESTAMP (microseconds), host, unit.",
    example='{"__REALTIME_TIMESTAMP" : "1763632803300000", "_HOSTNAME" : "voice-01", "_SYSTEMD_UNIT" : "voicebot.service", '
            '"MESSAGE" : "ERROR:assemblyai.streaming.v3.client:Connection closed: Session Expired (code=3008)"}',
    source=JOURNALD_SRC, sniff=_sniff_journald, unwrap=_unwrap_journald, wrap=_wrap_journald, kind="system",
)

ENVELOPES = (SYSLOG, JOURNALD)
