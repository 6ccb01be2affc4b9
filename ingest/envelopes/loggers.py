"""JSON application loggers: LiveKit Agents' production layout, python-json-logger, structlog, pino, winston.

Each record's message becomes a text line as Python's ``logging.BASIC_FORMAT``
would print it (``LEVEL:logger:message``, its traceback on the lines after),
so the client parsers read it exactly as they read the client's plain log,
and the logger's time is the line's time. A record that carries a close code
field of its own is handed on as the JSON it is, for the structured reader.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime

import polars as pl
from closewatch.ingest.envelopes.base import (
    Envelope,
    UnwrapContext,
    duck,
    fill_times,
    iso,
    json_spec,
    share,
    sql_records,
    zone_sql,
)

_CODE_KEYS = ("close_code", "code", "status_code", "close_status_code", "error_code")  # each ends in "code"
#: pino's numeric levels (pinojs/pino lib/constants.js DEFAULT_LEVELS).
PINO_LEVELS = {10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL"}


def _logger_sql(message: str, level: str, logger: str | None, time_text: str, time_number: str | None,
                labels: dict[str, str], extra: str | None, fields: dict[str, str], numeric_levels: bool = False) -> str:
    """SQL reading one logger's records: ``message``, ``level``, ``logger`` and the label fields name JSON
    keys (json_transform), ``extra`` a key whose text (a traceback) follows the message on its own lines."""
    spec = json_spec(**fields)
    level_text = f"CAST(j.{level} AS VARCHAR)"
    if numeric_levels:
        level_text = f"CASE j.{level} " + " ".join(f"WHEN '{n}' THEN '{name}'" for n, name in PINO_LEVELS.items()) + \
                     f" ELSE j.{level} END"
    prefix = f"upper({level_text}) || ':' || coalesce(j.{logger}, '') || ':'" if logger else f"upper({level_text}) || '::'"
    tail = f" || CASE WHEN j.{extra} IS NOT NULL THEN chr(10) || j.{extra} ELSE '' END" if extra else ""
    # every code key ends in 'code"' unless it is written with an escape: only such lines pay for the JSON lookups
    # (a CASE, because DuckDB evaluates both sides of an AND)
    has_code = "CASE WHEN contains(raw, 'code\"') OR contains(raw, '\\u') THEN (" + " OR ".join(
        f"coalesce(try(json_exists(raw, '$.{key}')), false)" for key in _CODE_KEYS) + ") ELSE false END"
    time_sql = f"TRY_CAST({time_text} AS TIMESTAMPTZ)"
    if time_number:
        time_sql = (f"CASE WHEN TRY_CAST({time_number} AS DOUBLE) IS NOT NULL "
                    f"THEN try(make_timestamptz(TRY_CAST(TRY_CAST({time_number} AS DOUBLE) * 1000 AS BIGINT))) ELSE {time_sql} END")
    label_sql = ", ".join(f"'{name}', j.{key}" for name, key in labels.items())
    return f"""
SELECT source_line,
       CASE WHEN {has_code} THEN raw
            WHEN j.{message} IS NULL THEN NULL
            WHEN {level_text} IS NULL THEN j.{message}{tail}
            ELSE {prefix} || j.{message}{tail} END AS text,
       {time_sql} AS env_ts, {zone_sql(time_text)} AS zone,
       {f"CAST(json_object({label_sql}) AS VARCHAR)" if labels else "NULL"} AS labels,
       CASE WHEN j IS NULL THEN 'line is not a JSON object'
            WHEN {time_text} IS NOT NULL AND {time_sql} IS NULL THEN 'its time ''' || left({time_text}, 40) || ''' cannot be read'
       END AS reject
FROM (SELECT source_line, raw, try(json_transform(raw, {spec})) AS j FROM lines)
"""


def _unwrapper(make_sql):
    def unwrap(batches: Iterator[pl.DataFrame], ctx: UnwrapContext) -> Iterator[pl.DataFrame]:
        sql = make_sql()
        with duck(ctx.tz) as con:  # a time written without a zone is read in --tz
            for lines in batches:
                yield sql_records(con, lines, sql)
    return unwrap


# --------------------------------------------------------------------------
# Python: splitting a rendered log back into records (for the renderers)
# --------------------------------------------------------------------------

_BASIC = re.compile(r"^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):(?P<name>[^:\s]*):(?P<message>.*)$")


def python_records(lines: list[tuple[datetime | None, str]]) -> list[dict]:
    """A log written with logging.BASIC_FORMAT (and print()s) as records: level, name, message, time,
    and the traceback under a record as its exc_info, which is how a JSON formatter receives them."""
    records: list[dict] = []
    in_traceback = False
    for ts, text in fill_times(lines):
        continuation = text.startswith((" ", "\t", "Traceback")) or (in_traceback and records)
        if text.startswith("Traceback"):
            in_traceback = True
        if continuation and records:
            records[-1]["exc_info"] = (records[-1].get("exc_info", "") + "\n" + text).lstrip("\n")
            if in_traceback and not text.startswith((" ", "\t", "Traceback")):
                in_traceback = False
            continue
        if not text.strip():
            continue
        got = _BASIC.match(text)
        records.append({"ts": ts, "level": got["level"] if got else "INFO", "name": got["name"] if got else "root",
                        "message": got["message"] if got else text})
    return records


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


# --------------------------------------------------------------------------
# LiveKit Agents (production mode)
# --------------------------------------------------------------------------

# livekit/agents livekit-agents/livekit/agents/cli/log.py JsonFormatter, set up by setup_logging() outside dev mode:
# the fields of logging.PercentStyle.default_format ("%(message)s"), then "level" (levelname) and "name", the
# record's extras, exc_info, and "timestamp" (datetime.fromtimestamp(record.created, tz=timezone.utc), ISO 8601);
# livekit/agents PR 4169 shows a record: {"message": ..., "level": "INFO", "name": "livekit.agents", "pid": ..., "timestamp": ...}.
LIVEKIT_SRC = ("livekit/agents livekit-agents/livekit/agents/cli/log.py (JsonFormatter: message, level, name, extras, "
               "exc_info, timestamp in UTC ISO 8601; livekit/agents pull request 4169)")

_LIVEKIT_FIELDS = {"message": "VARCHAR", "level": "VARCHAR", "name": "VARCHAR", "timestamp": "VARCHAR", "exc_info": "VARCHAR"}


def _wrap_livekit(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    out = []
    for record in python_records(lines):
        entry = {"message": record["message"], "level": record["level"], "name": record["name"], "pid": meta.get("pid", 31)}
        if record.get("exc_info"):
            entry["exc_info"] = record["exc_info"]
        entry["timestamp"] = record["ts"].isoformat()
        out.append(_dumps(entry))
    return out


LIVEKIT = Envelope(
    name="livekit-json",
    description="LiveKit Agents' production logs (JsonFormatter): {message, level, name, ..., timestamp}, exc_info with the traceback.",
    example='{"message": "AssemblyAI WebSocket closed unexpectedly session=5f2c code=3008 data=3008 extra=Session Expired: '
            'Maximum session duration exceeded", "level": "WARNING", "name": "livekit.plugins.assemblyai", "timestamp": "2026-11-20T10:00:03.300000+00:00"}',
    source=LIVEKIT_SRC, wrap=_wrap_livekit, kind="logger",
    unwrap=_unwrapper(lambda: _logger_sql("message", "level", "name", "j.timestamp", None, {}, "exc_info", _LIVEKIT_FIELDS)),
    sniff=lambda head: 0.97 * share(head, lambda o: {"message", "level", "name", "timestamp"} <= o.keys()),
)

# --------------------------------------------------------------------------
# python-json-logger
# --------------------------------------------------------------------------

# nhairs/python-json-logger src/pythonjsonlogger/core.py BaseJsonFormatter: the keys are the LogRecord attributes
# the format names (e.g. "%(asctime)s %(levelname)s %(name)s %(message)s" -> asctime, levelname, name, message),
# plus extras, exc_info (the formatted traceback) and, with timestamp=True, "timestamp" (ISO 8601, UTC);
# asctime is logging's default "YYYY-MM-DD HH:MM:SS,mmm" in local time.
PJL_SRC = ("nhairs/python-json-logger src/pythonjsonlogger/core.py (BaseJsonFormatter: format fields asctime, levelname, "
           "name, message; exc_info; timestamp=True)")

_PJL_FIELDS = {"message": "VARCHAR", "levelname": "VARCHAR", "name": "VARCHAR", "asctime": "VARCHAR", "timestamp": "VARCHAR", "exc_info": "VARCHAR"}


def _wrap_pjl(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    out = []
    for record in python_records(lines):
        ts = record["ts"]
        entry = {"asctime": ts.strftime("%Y-%m-%d %H:%M:%S") + f",{ts.microsecond // 1000:03d}",
                 "levelname": record["level"], "name": record["name"], "message": record["message"]}
        if record.get("exc_info"):
            entry["exc_info"] = record["exc_info"]
        out.append(_dumps(entry))
    return out


PYTHON_JSON_LOGGER = Envelope(
    name="python-json-logger",
    description="python-json-logger's JsonFormatter: {asctime, levelname, name, message, exc_info} (asctime in local time: --tz).",
    example='{"asctime": "2026-11-20 10:00:03,300", "levelname": "ERROR", "name": "assemblyai.streaming.v3.client", '
            '"message": "Connection closed: Session Expired: Maximum session duration exceeded (code=3008)"}',
    source=PJL_SRC, wrap=_wrap_pjl, kind="logger",
    unwrap=_unwrapper(lambda: _logger_sql("message", "levelname", "name", "coalesce(j.timestamp, replace(j.asctime, ',', '.'))",
                                          None, {}, "exc_info", _PJL_FIELDS)),
    sniff=lambda head: 0.97 * share(head, lambda o: "message" in o and ("levelname" in o or "asctime" in o)),
)

# --------------------------------------------------------------------------
# structlog
# --------------------------------------------------------------------------

# hynek/structlog src/structlog/processors.py: JSONRenderer (json.dumps of the event dict), TimeStamper(fmt="iso")
# ("timestamp", ISO 8601, UTC with a Z by default), add_log_level ("level"), format_exc_info ("exception");
# src/structlog/stdlib.py add_logger_name ("logger"); the message is the "event" key.
STRUCTLOG_SRC = ("hynek/structlog src/structlog/processors.py (JSONRenderer; event; TimeStamper fmt=iso: timestamp; "
                 "add_log_level: level; format_exc_info: exception) and src/structlog/stdlib.py (add_logger_name: logger)")

_STRUCTLOG_FIELDS = {"event": "VARCHAR", "level": "VARCHAR", "logger": "VARCHAR", "timestamp": "VARCHAR", "exception": "VARCHAR"}


def _wrap_structlog(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    out = []
    for record in python_records(lines):
        entry = {"event": record["message"], "logger": record["name"], "level": record["level"].lower(),
                 "timestamp": iso(record["ts"])}
        if record.get("exc_info"):
            entry["exception"] = record["exc_info"]
        out.append(_dumps(entry))
    return out


STRUCTLOG = Envelope(
    name="structlog",
    description="structlog's JSONRenderer: {event, level, logger, timestamp, exception}.",
    example='{"event": "Connection closed: Session Expired: Maximum session duration exceeded (code=3008)", '
            '"logger": "assemblyai.streaming.v3.client", "level": "error", "timestamp": "2026-11-20T10:00:03.300000Z"}',
    source=STRUCTLOG_SRC, wrap=_wrap_structlog, kind="logger",
    unwrap=_unwrapper(lambda: _logger_sql("event", "level", "logger", "j.timestamp", None, {}, "exception", _STRUCTLOG_FIELDS)),
    sniff=lambda head: 0.97 * share(head, lambda o: "event" in o and ("level" in o or "timestamp" in o) and "message" not in o),
)

# --------------------------------------------------------------------------
# pino (Node)
# --------------------------------------------------------------------------

# pinojs/pino docs/api.md and lib/tools.js: {"level": 30, "time": <epoch ms>, "pid", "hostname", "name"?, "msg"};
# lib/constants.js: levels 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal; errors go under "err".
PINO_SRC = "pinojs/pino docs/api.md and lib/tools.js (level number, time in epoch ms, pid, hostname, name, msg); lib/constants.js (levels)"

_PINO_FIELDS = {"msg": "VARCHAR", "level": "VARCHAR", "name": "VARCHAR", "time": "VARCHAR", "hostname": "VARCHAR"}


def _pino_sql() -> str:
    return _logger_sql("msg", "level", "name", "j.time", "j.time", {"host": "hostname"}, None, _PINO_FIELDS, numeric_levels=True)


def _wrap_pino(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    out: list[dict] = []
    for ts, text in fill_times(lines):
        if text.startswith((" ", "\t")) and out:  # a stack frame: part of the error logged just before
            out[-1].setdefault("err", {"type": "Error", "stack": ""})["stack"] += text + "\n"
            continue
        if not text.strip():
            continue
        level = 50 if text.startswith("Error") else 30
        out.append({"level": level, "time": int(ts.timestamp() * 1000), "pid": meta.get("pid", 41),
                    "hostname": meta.get("host", "voice-01"), "msg": text})
    return [json.dumps(entry, separators=(",", ":"), ensure_ascii=False) for entry in out]


PINO = Envelope(
    name="pino",
    description="pino (Node): {level (number), time (epoch ms), pid, hostname, msg}.",
    example='{"level":30,"time":1763632803300,"pid":41,"hostname":"voice-01","msg":"Session closed: 4008 Session has expired"}',
    source=PINO_SRC, wrap=_wrap_pino, kind="logger", unwrap=_unwrapper(_pino_sql),
    sniff=lambda head: 0.97 * share(head, lambda o: "msg" in o and isinstance(o.get("level"), int) and "time" in o),
)

# --------------------------------------------------------------------------
# winston (Node)
# --------------------------------------------------------------------------

# winstonjs/winston README (format.json(), format.timestamp(), defaultMeta: { service }) and winstonjs/logform
# json.js / timestamp.js / errors.js: {"level": "info", "message": ..., "timestamp": <ISO 8601>, "service"?, "stack"?}.
WINSTON_SRC = ("winstonjs/winston README (format.combine(format.timestamp(), format.json()), defaultMeta service); "
               "winstonjs/logform json.js, timestamp.js, errors.js (level, message, timestamp, stack)")

_WINSTON_FIELDS = {"message": "VARCHAR", "level": "VARCHAR", "timestamp": "VARCHAR", "service": "VARCHAR"}


def _wrap_winston(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    out: list[dict] = []
    for ts, text in fill_times(lines):
        if text.startswith((" ", "\t")) and out:
            out[-1]["stack"] = out[-1].get("stack", out[-1]["message"]) + "\n" + text
            continue
        if not text.strip():
            continue
        level = "error" if text.startswith("Error") else "info"
        out.append({"level": level, "message": text, "service": meta.get("service", "voicebot"), "timestamp": iso(ts)[:-4] + "Z"})
    return [_dumps(entry) for entry in out]


WINSTON = Envelope(
    name="winston",
    description="winston's json format (Node): {level, message, timestamp, service}.",
    example='{"level":"info","message":"Session closed: 4008 Session has expired","service":"voicebot","timestamp":"2026-11-20T10:00:03.300Z"}',
    source=WINSTON_SRC, wrap=_wrap_winston, kind="logger",
    unwrap=_unwrapper(lambda: _logger_sql("message", "level", None, "j.timestamp", None, {"service": "service"}, None, _WINSTON_FIELDS)),
    sniff=lambda head: 0.96 * share(head, lambda o: "message" in o and isinstance(o.get("level"), str)
                                    and not {"name", "levelname", "asctime"} & o.keys()),
)

ENVELOPES = (LIVEKIT, PYTHON_JSON_LOGGER, STRUCTLOG, PINO, WINSTON)
