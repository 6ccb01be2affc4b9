"""Field aliases and the typing every structured format shares.

Structured parsers (JSON lines, CSV) bring each line into one relation of text
columns named after the fields logs use (``code``, ``close_msg``,
``@timestamp``...). ``TYPING_SQL`` then, in DuckDB and in one pass, picks each
canonical field from its aliases, checks its type, parses timestamps (in the
connection's TimeZone, which the parser sets to --tz), and says why a line is
rejected. A mapped field of the wrong type rejects its line, never the file.
"""

from __future__ import annotations

import duckdb
import polars as pl

from closewatch.ingest.clients.base import KNOWN_REASON_REGEX
from closewatch.ingest.formats import Parsed, conform

#: canonical field -> the names logs use for it, in order of preference.
ALIASES: dict[str, tuple[str, ...]] = {
    "close_code": ("close_code", "code", "status_code", "close_status_code", "error_code"),
    "close_reason": ("close_reason", "reason", "close_msg", "message", "error"),
    "ts": ("ts", "timestamp", "time", "@timestamp", "asctime"),
    "session_id": ("session_id", "session", "id"),
    "client_id": ("client_id", "client", "app", "service", "host"),
    "audio_duration_s": ("audio_duration_s", "audio_duration_seconds"),
    "session_duration_s": ("session_duration_s", "session_duration_seconds"),
    "event_id": ("event_id",),
    "type": ("type",),
}
ALL_NAMES = sorted({name for names in ALIASES.values() for name in names})


def _pick(field: str) -> str:
    return "coalesce(" + ", ".join(f'"{name}"' for name in ALIASES[field]) + ")"


def _is_structured(text: str) -> str:
    """True where a JSON field held an object or array instead of a scalar (starts_with: cheaper than text[1])."""
    return f"((starts_with({text}, '{{') OR starts_with({text}, '[')) AND json_valid({text}) AND json_type({text}) IN ('OBJECT', 'ARRAY'))"


def _number(text: str) -> str:
    return f"TRY_CAST({text} AS DOUBLE)"


def _epoch(number: str) -> str:
    """Epoch seconds, milliseconds or microseconds (told apart by magnitude) to TIMESTAMPTZ."""
    return f"""CASE WHEN abs({number}) < 1e11 THEN make_timestamptz(CAST(round({number} * 1e6) AS BIGINT))
                    WHEN abs({number}) < 1e14 THEN make_timestamptz(CAST(round({number} * 1e3) AS BIGINT))
                    WHEN abs({number}) < 1e17 THEN make_timestamptz(CAST(round({number}) AS BIGINT)) END"""


#: Text that holds ':' (every ISO time) is no number, so its number cast is skipped, and the ',' of a
#: decimal comma is replaced only where there is one: the two took a third of the typing (issue 16).
TYPING_SQL = f"""
WITH picked AS (
    SELECT source_line, raw, parse_error,
           {_pick("close_code")} AS code_text, {_pick("close_reason")} AS close_reason,
           {_pick("ts")} AS ts_text, {_pick("session_id")} AS session_id, {_pick("client_id")} AS client_id,
           {_pick("audio_duration_s")} AS audio_text, {_pick("session_duration_s")} AS session_text,
           {_pick("event_id")} AS event_id, {_pick("type")} AS type
    FROM rows
), numbered AS (
    SELECT *, CASE WHEN NOT contains(ts_text, ':') THEN {_number("ts_text")} END AS ts_number
    FROM picked
), typed AS (
    SELECT * EXCLUDE (ts_number),
           {_number("code_text")} AS code_number,
           CASE WHEN ts_number IS NOT NULL THEN {_epoch("ts_number")}
                ELSE TRY_CAST(CASE WHEN contains(ts_text, ',') THEN replace(ts_text, ',', '.') ELSE ts_text END AS TIMESTAMPTZ) END AS ts,
           {_number("audio_text")} AS audio_duration_s,
           {_number("session_text")} AS session_duration_s
    FROM numbered
), judged AS (
    SELECT *, CASE
        WHEN parse_error IS NOT NULL THEN parse_error
        WHEN code_text IS NOT NULL AND (code_number IS NULL OR code_number <> round(code_number) OR abs(code_number) > 2147483647)
            THEN 'close code ''' || left(code_text, 40) || ''' is not an integer'
        WHEN ts_text IS NOT NULL AND ts IS NULL
            THEN 'timestamp ''' || left(ts_text, 40) || ''' is neither ISO 8601 nor epoch seconds or milliseconds'
        WHEN {_is_structured("close_reason")} THEN 'close reason is not text'
        WHEN {_is_structured("session_id")} THEN 'session id is not text'
        WHEN {_is_structured("client_id")} THEN 'client id is not text'
        WHEN audio_text IS NOT NULL AND audio_duration_s IS NULL THEN 'audio duration is not a number'
        WHEN session_text IS NOT NULL AND session_duration_s IS NULL THEN 'session duration is not a number'
    END AS reject_reason
    FROM typed
)
SELECT source_line, reject_reason,
       CASE WHEN reject_reason IS NOT NULL THEN raw END AS raw,  -- whole: the pipeline redacts, then cuts
       TRY_CAST(code_number AS INTEGER) AS close_code, close_reason, ts, session_id, client_id,
       audio_duration_s, session_duration_s, event_id, type, NULL::VARCHAR AS labels
FROM judged
"""


def to_events(con: duckdb.DuckDBPyConnection) -> Parsed:
    """Events, rejects and the count of other lines, from the relation ``rows`` on ``con``.

    ``rows`` has ``source_line``, ``raw``, ``parse_error`` (why the line is not
    a record, or null) and text columns named like the fields of ALIASES
    (only those present; the rest are added as nulls).
    """
    typed = con.execute(TYPING_SQL).pl().with_columns(pl.col("ts").dt.convert_time_zone("UTC"))
    rejected = pl.col("reject_reason").is_not_null()
    rejects = typed.filter(rejected).select("source_line", "raw", pl.col("reject_reason").alias("reason"))
    good = typed.filter(~rejected)
    is_event = pl.col("close_code").is_not_null() | known_reason(pl.col("close_reason")) | _is_frame()
    events = good.filter(is_event)
    return Parsed(events=events, rejects=rejects, skipped=good.height - events.height)


def known_reason(reason: pl.Expr) -> pl.Expr:
    """A line with a reason but no close code is a closure only when the reason names a close closewatch
    knows: a JSON logger's line with nothing but a message is not one (it is skipped)."""
    return reason.str.contains(KNOWN_REASON_REGEX).fill_null(False)


#: The same test in DuckDB's SQL (the fast path of JSON-lines files).
KNOWN_REASON_SQL = f"coalesce(regexp_matches(close_reason, '{KNOWN_REASON_REGEX.replace(chr(39), chr(39) * 2)}'), false)"


def missing_names(present: set[str]) -> str:
    """SELECT-list fragment adding every alias column a source lacks, as NULL text."""
    return "".join(f', NULL::VARCHAR AS "{name}"' for name in ALL_NAMES if name not in present)


def frame_events(events: pl.DataFrame) -> pl.DataFrame:
    """Join the API's own messages per session into one close event each.

    Begin lines give the session id to what follows (per client); an Error
    frame and the close after it make one event with the Error's full text
    (the close frame's reason is cut to 123 bytes); a Termination is a normal
    close (1000) carrying its durations, merged with a close that follows it.
    """
    kind = pl.col("type").str.to_lowercase()
    frames = events.with_columns(
        kind=pl.when(kind.is_in(["begin", "error", "termination"])).then(kind).otherwise(pl.lit("close")),
        client_key=pl.col("client_id").fill_null(""),
    ).sort("source_line")
    begin_session = pl.when(pl.col("kind") == "begin").then(pl.col("session_id"))
    frames = frames.with_columns(
        session_id=pl.coalesce(pl.col("session_id"), begin_session.forward_fill().over("client_key"))
    ).filter(pl.col("kind") != "begin")
    frames = frames.with_columns(session_key=pl.col("session_id").fill_null("") + "\x00" + pl.col("client_key"))

    def before(name: str) -> pl.Expr:
        return pl.col(name).shift(1).over("session_key")

    after_error = (pl.col("kind") == "close") & (before("kind") == "error")
    after_termination = (pl.col("kind") == "close") & (before("kind") == "termination")
    merged = frames.with_columns(
        close_reason=pl.when(after_error).then(before("close_reason")).otherwise(pl.col("close_reason")),
        close_code=pl.when(pl.col("kind") == "termination")
        .then(pl.coalesce(pl.col("close_code"), pl.lit(1000)))
        .otherwise(pl.col("close_code"))
        .cast(pl.Int32),
        audio_duration_s=pl.coalesce(pl.col("audio_duration_s"), pl.when(after_termination).then(before("audio_duration_s"))),
        session_duration_s=pl.coalesce(pl.col("session_duration_s"), pl.when(after_termination).then(before("session_duration_s"))),
        absorbed=(pl.col("kind").is_in(["error", "termination"]) & (pl.col("kind").shift(-1).over("session_key") == "close")).fill_null(False),
    )
    return merged.filter(~pl.col("absorbed"))


def finish(parsed: Parsed, with_frames: bool) -> Parsed:
    events = frame_events(parsed.events) if with_frames else parsed.events
    return Parsed(events=conform(events), rejects=parsed.rejects, skipped=parsed.skipped)


def has_frames(events: pl.DataFrame) -> bool:
    return events.height > 0 and events.select(_is_frame().any()).item()


def _is_frame() -> pl.Expr:
    return pl.col("type").str.to_lowercase().is_in(["begin", "error", "termination"]).fill_null(False)
