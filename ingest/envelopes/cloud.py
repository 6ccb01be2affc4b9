"""Log services' exports: Loki (logcli), GCP Cloud Logging, AWS CloudWatch Logs, OpenTelemetry OTLP JSON,
Elasticsearch/OpenSearch hits.

Line-shaped exports are read with DuckDB's JSON functions batch by batch.
Whole-document exports (gcloud's JSON array, the aws CLI's {"events": [...]},
an Elasticsearch search response) are read whole, up to a bound, and each
entry becomes a record numbered by the line it starts on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime

import numpy as np
import polars as pl
from closewatch.ingest.envelopes.base import (
    MAX_DOCUMENT_BYTES,
    Envelope,
    UnwrapContext,
    conform_records,
    duck,
    epoch_sql,
    fill_times,
    iso,
    json_objects,
    json_spec,
    query_frame,
    register_lines,
    share,
    sql_records,
    zone_sql,
)
from closewatch.ingest.errors import IngestError


def _lines_unwrapper(sql: str) -> Callable[[Iterator[pl.DataFrame], UnwrapContext], Iterator[pl.DataFrame]]:
    def unwrap(batches: Iterator[pl.DataFrame], ctx: UnwrapContext) -> Iterator[pl.DataFrame]:
        with duck() as con:
            for lines in batches:
                yield sql_records(con, lines, sql)
    return unwrap


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------
# Whole JSON documents
# --------------------------------------------------------------------------


def document_entries(batches: Iterator[pl.DataFrame], array_key: str | None, own_text: bool = True
                     ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The entries of the JSON array of a whole document (top-level, or the first array under ``array_key``)
    as JSON texts numbered by the line each starts on, and the rejects (a document that is not
    JSON, or is cut off: the entries before the fault still load).

    Python's decoder says what is valid; each entry is handed to DuckDB as its own text where DuckDB reads
    that as it reads what json.dumps writes back (see _Strict), which spares encoding every entry again
    (about two thirds of the time this took); ``own_text=False`` always re-encodes (the tests' reference)."""
    parts, size = [], 0
    for batch in batches:
        size += int(batch["raw"].str.len_bytes().sum()) + batch.height
        if size > MAX_DOCUMENT_BYTES:
            raise IngestError(f"This JSON document is larger than {MAX_DOCUMENT_BYTES >> 20} MB, the most read as one "
                              "document; export it as JSON lines (one entry per line) or in smaller pieces.")
        parts.append(batch)
    if not parts:
        return pl.DataFrame(schema={"source_line": pl.Int64, "raw": pl.String}), _reject_frame([])
    frame = pl.concat(parts)
    first_line = int(frame["source_line"][0])
    text = frame["raw"].str.join("\n").item()
    # where each line starts in the text (characters, as Python indexes a str): an entry's line by one search
    starts = np.zeros(frame.height, dtype=np.int64)
    np.cumsum(frame["raw"].str.len_chars().to_numpy()[:-1] + 1, out=starts[1:])

    def line_of(offset: int) -> int:
        return first_line + int(np.searchsorted(starts, offset, side="right")) - 1

    position = _array_start(text, array_key)
    if position is None:
        where = f'a "{array_key}" array' if array_key else "a JSON array"
        return (pl.DataFrame(schema={"source_line": pl.Int64, "raw": pl.String}),
                _reject_frame([(first_line, text[:65536], f"the document has no {where} of log entries")]))
    found = _entry_spans(text, position, _Strict(frame["raw"])) if own_text else None
    # None: an entry DuckDB would read otherwise than Python; every entry is handed over re-encoded
    spans, rejects = found or _entry_spans(text, position, None) or ([], [])
    offsets = np.fromiter((span[0] for span in spans), dtype=np.int64, count=len(spans))
    lines = first_line + np.searchsorted(starts, offsets, side="right") - 1
    entries = pl.DataFrame({"source_line": lines, "raw": [span[2] for span in spans]},
                           schema={"source_line": pl.Int64, "raw": pl.String})
    return entries, _reject_frame([(line_of(offset), raw, why) for offset, raw, why in rejects])


class _Strict:
    """Decodes entries as json does, and says when DuckDB would read an entry's own text otherwise than
    the text json.dumps writes back: a key repeated in one object (Python keeps the last value, DuckDB the
    first), a number Python writes back in other digits (1.10, 1E5, 1e400, -0), an escaped surrogate."""

    def __init__(self, lines: pl.Series):
        # the document's lines, searched in polars (Python's re takes ~40 ns a character here)
        self.plain = not lines.str.contains(r"[:\[,]\s*-0(?:[^.\deE]|$)|\\u[dD][89a-fA-F]").any()
        self.decoder = json.JSONDecoder(object_pairs_hook=self._object, parse_float=self._float)

    def _object(self, pairs: list[tuple[str, object]]) -> dict:
        value = dict(pairs)
        if len(value) != len(pairs):
            self.plain = False
        return value

    def _float(self, digits: str) -> float:
        value = float(digits)
        if repr(value) != digits:
            self.plain = False
        return value


def _entry_spans(text: str, position: int, strict: _Strict | None
                 ) -> tuple[list[tuple[int, int, str]], list[tuple[int, str, str]]] | None:
    """(start, end, JSON text) of each entry of the array opening at ``position``, and the rejects (offset, text, why).
    With ``strict``, an entry's text is its own, or None if DuckDB would read one otherwise; without, json.dumps'."""
    if strict is not None and not strict.plain:
        return None
    decoder = strict.decoder if strict is not None else json.JSONDecoder()
    spans: list[tuple[int, int, str]] = []
    rejects: list[tuple[int, str, str]] = []
    index = position + 1
    while True:
        index = _skip(text, index)
        if index >= len(text):
            rejects.append((len(text) - 1, "", f"the document is cut off after {len(spans)} entries"))
            break
        if text[index] == "]":
            break
        try:
            value, end = decoder.raw_decode(text, index)
        except (json.JSONDecodeError, RecursionError) as error:
            why = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
            rejects.append((index, text[index:index + 65536], f"entry {len(spans) + 1} is not valid JSON ({why})"))
            break
        if strict is not None and not strict.plain:
            return None
        spans.append((index, end, text[index:end] if strict is not None else _reencoded(value)))
        index = _skip(text, end)
        if index < len(text) and text[index] == ",":
            index += 1
    return spans, rejects


def _reencoded(value: object) -> str:
    """An entry as compact JSON; a lone surrogate (``"\\ud800"``, which Python decodes and no UTF-8 text can
    hold) stays escaped, so DuckDB rejects that entry with its line instead of the whole input failing."""
    text = _dumps(value)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"))
    return text


def _array_start(text: str, key: str | None) -> int | None:
    if key is None:
        index = _skip(text, 0)
        return index if index < len(text) and text[index] == "[" else None
    # inside a JSON string a quote is escaped, so "key": [ only matches a real key
    found = re.search(rf'"{re.escape(key)}"\s*:\s*\[', text)
    return found.end() - 1 if found else None


def _skip(text: str, index: int) -> int:
    return _SPACE.match(text, index).end()  # type: ignore[union-attr]  # matches empty at worst


_SPACE = re.compile(r"[ \t\r\n]*")


def _reject_frame(rows: list[tuple[int, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"source_line": pl.Int64, "raw": pl.String, "reject": pl.String}, orient="row")


def _document_unwrapper(sql: str, array_key: str | None, line_shaped: Callable[[str], bool] | None = None):
    """Read a whole document's entries with ``sql``; when ``line_shaped`` says the first line is already one
    entry (JSON lines: a bucket sink's files, NDJSON hits), read line by line instead."""
    lines_unwrap = _lines_unwrapper(sql)

    def unwrap(batches: Iterator[pl.DataFrame], ctx: UnwrapContext) -> Iterator[pl.DataFrame]:
        first = next(batches, None)
        if first is None:
            return
        head = first.filter(pl.col("raw").str.strip_chars() != "").head(1)["raw"].to_list()
        rest = _chain(first, batches)
        if line_shaped and head and line_shaped(head[0]):
            yield from lines_unwrap(rest, ctx)
            return
        entries, rejects = document_entries(rest, array_key)
        if rejects.height:
            yield conform_records(rejects)
        for start in range(0, entries.height, 200_000):
            yield from lines_unwrap(iter([entries.slice(start, 200_000)]), ctx)
    return unwrap


def _chain(first: pl.DataFrame, rest: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    yield first
    yield from rest


def _one_object(line: str, test: Callable[[dict], bool]) -> bool:
    objects = json_objects([line])
    return bool(objects) and test(objects[0])


def _head_text(head: list[str]) -> str:
    return "\n".join(head)


# --------------------------------------------------------------------------
# Loki: logcli query --output=jsonl
# --------------------------------------------------------------------------

# grafana/loki pkg/logcli/output/jsonl.go JSONLOutput.FormatAndPrintln: json.Marshal of {"labels": <stream labels>,
# "line": <line>, "timestamp": <time in --timezone>} (Go's RFC 3339 with nanoseconds and the zone's offset).
LOKI_SRC = "grafana/loki pkg/logcli/output/jsonl.go (JSONLOutput: labels, line, timestamp)"

_LOKI_SQL = f"""
SELECT source_line, j.line AS text, TRY_CAST(j.timestamp AS TIMESTAMPTZ) AS env_ts, {zone_sql('j.timestamp')} AS zone,
       CAST(j.labels AS VARCHAR) AS labels,
       CASE WHEN j IS NULL THEN 'line is not a JSON object'
            WHEN j.line IS NULL THEN 'a logcli jsonl entry has a "line" field; this line has none'
            WHEN TRY_CAST(j.timestamp AS TIMESTAMPTZ) IS NULL THEN 'its "timestamp" is missing or not an RFC 3339 time'
       END AS reject
FROM (SELECT source_line, try(json_transform(raw, {json_spec(labels="JSON", line="VARCHAR", timestamp="VARCHAR")})) AS j FROM lines)
"""


def _wrap_loki(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    labels = {"app": meta.get("app", "voicebot"), "container": meta.get("container", "voicebot"),
              "namespace": meta.get("namespace", "voice"), "pod": meta.get("pod", "voicebot-7d9f8b6c5d-x2k4q")}
    return [_dumps({"labels": labels, "line": text, "timestamp": iso(ts)[:-1] + "000Z"}) for ts, text in fill_times(lines)]


LOKI = Envelope(
    name="loki",
    description="Grafana Loki: logcli query --output=jsonl ({labels, line, timestamp}); the stream's labels are kept.",
    example='{"labels":{"app":"voicebot","pod":"voicebot-7d9f8b6c5d-x2k4q"},"line":"Session closed: 4008 Session has expired",'
            '"timestamp":"2026-11-20T11:00:03.3+01:00"}',
    source=LOKI_SRC, unwrap=_lines_unwrapper(_LOKI_SQL), wrap=_wrap_loki, kind="cloud",
    sniff=lambda head: 0.96 * share(head, lambda o: "line" in o and "timestamp" in o and "labels" in o),
)

# --------------------------------------------------------------------------
# GCP Cloud Logging: LogEntry
# --------------------------------------------------------------------------

# cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry: textPayload | jsonPayload | protoPayload,
# timestamp (RFC 3339 UTC), resource {type, labels}, labels, logName, severity; gcloud logging read
# --format=json prints the entries as one JSON array; a Cloud Storage sink writes them as JSON lines.
GCP_SRC = ("cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry (textPayload, jsonPayload.message, timestamp, "
           "resource.labels, labels); gcloud logging read --format=json (one JSON array); Cloud Storage sinks (JSON lines)")

_CODE_KEYS = ("close_code", "code", "status_code", "close_status_code", "error_code")
_HAS_CODE = " OR ".join(f"json_exists(j.jsonPayload, '$.{key}')" for key in _CODE_KEYS)
_GCP_SQL = f"""
SELECT source_line,
       CASE WHEN j.textPayload IS NOT NULL THEN j.textPayload
            WHEN j.jsonPayload IS NULL OR json_type(j.jsonPayload) <> 'OBJECT' THEN NULL
            WHEN j.jsonPayload->>'$.message' IS NOT NULL AND NOT ({_HAS_CODE}) THEN j.jsonPayload->>'$.message'
            ELSE CAST(j.jsonPayload AS VARCHAR) END AS text,
       TRY_CAST(coalesce(j.timestamp, j.receiveTimestamp) AS TIMESTAMPTZ) AS env_ts,
       {zone_sql('coalesce(j.timestamp, j.receiveTimestamp)')} AS zone,
       CAST(json_merge_patch(coalesce(j.resource->'$.labels', '{{}}'), coalesce(j.labels, '{{}}')) AS VARCHAR) AS labels,
       CASE WHEN j IS NULL THEN 'not a JSON object'
            WHEN j.logName IS NULL AND j.insertId IS NULL THEN 'not a Cloud Logging LogEntry (no logName or insertId)'
            WHEN coalesce(j.timestamp, j.receiveTimestamp) IS NOT NULL
                 AND TRY_CAST(coalesce(j.timestamp, j.receiveTimestamp) AS TIMESTAMPTZ) IS NULL
                THEN 'its "timestamp" is not an RFC 3339 time'
       END AS reject
FROM (SELECT source_line, try(json_transform(raw, {json_spec(textPayload="VARCHAR", jsonPayload="JSON", timestamp="VARCHAR",
                                                             receiveTimestamp="VARCHAR", resource="JSON", labels="JSON",
                                                             logName="VARCHAR", insertId="VARCHAR")})) AS j FROM lines)
"""


def _is_log_entry(obj: dict) -> bool:
    return ("logName" in obj or "insertId" in obj) and any(k in obj for k in ("textPayload", "jsonPayload", "protoPayload"))


def _sniff_gcp(head: list[str]) -> float:
    lines = share(head, _is_log_entry)
    if lines:
        return 0.96 * lines
    text = _head_text(head).lstrip()
    return 0.96 if text.startswith("[") and '"logName"' in text and ('"textPayload"' in text or '"jsonPayload"' in text) else 0.0


def _wrap_gcp(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    """``layout`` ``gcloud`` (default) prints one indented JSON array as gcloud logging read --format=json
    does; ``sink`` writes JSON lines as a Cloud Storage sink does."""
    resource = {"type": "k8s_container", "labels": {
        "cluster_name": "voice-prod", "container_name": meta.get("container", "voicebot"), "location": "europe-west1",
        "namespace_name": meta.get("namespace", "voice"), "pod_name": meta.get("pod", "voicebot-7d9f8b6c5d-x2k4q"),
        "project_id": "voice-prod-4711"}}
    entries = []
    for index, (ts, text) in enumerate(fill_times(lines)):
        entries.append({"insertId": f"{index:016x}", "labels": {"k8s-pod/app": meta.get("app", "voicebot")},
                        "logName": "projects/voice-prod-4711/logs/stdout", "receiveTimestamp": iso(ts)[:-1] + "412Z",
                        "resource": resource, "severity": "INFO", "textPayload": text, "timestamp": iso(ts)})
    if meta.get("layout") == "sink":
        return [_dumps(entry) for entry in entries]
    return json.dumps(entries, indent=2, sort_keys=True, ensure_ascii=False).split("\n")


GCP = Envelope(
    name="gcp-logging",
    description="GCP Cloud Logging entries (textPayload or jsonPayload.message, timestamp, resource labels): "
                "gcloud logging read --format=json's array, or a bucket sink's JSON lines.",
    example='{"insertId":"1a2b","logName":"projects/p/logs/stdout","resource":{"type":"k8s_container","labels":{"pod_name":"voicebot-0"}},'
            '"textPayload":"ERROR:assemblyai.streaming.v3.client:Connection closed: Session Expired (code=3008)","timestamp":"2026-11-20T10:00:03.3Z"}',
    source=GCP_SRC, sniff=_sniff_gcp, wrap=_wrap_gcp, kind="cloud",
    unwrap=_document_unwrapper(_GCP_SQL, None, line_shaped=lambda line: _one_object(line, _is_log_entry)),
)

# --------------------------------------------------------------------------
# AWS CloudWatch Logs
# --------------------------------------------------------------------------

# docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_FilterLogEvents.html: {"events": [FilteredLogEvent
# {logStreamName, timestamp (ms), message, ingestionTime, eventId}], "searchedLogStreams", "nextToken"};
# API_GetLogEvents.html: {"events": [OutputLogEvent {timestamp, message, ingestionTime}], "nextForwardToken", ...};
# the aws CLI prints them as one (indented) JSON document.
CLOUDWATCH_SRC = ("docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_FilterLogEvents.html and "
                  "API_GetLogEvents.html (events[]: timestamp in ms, message, logStreamName), as aws logs "
                  "filter-log-events / get-log-events print them")

_CLOUDWATCH_SQL = f"""
SELECT source_line, j.message AS text, {epoch_sql('j.timestamp', 'ms')} AS env_ts, NULL AS zone,
       CAST(json_object('log_stream', j.logStreamName) AS VARCHAR) AS labels,
       CASE WHEN j IS NULL THEN 'an event is not a JSON object'
            WHEN j.message IS NULL THEN 'a CloudWatch event has a "message"; this one has none'
            WHEN TRY_CAST(j.timestamp AS HUGEINT) IS NULL THEN 'its "timestamp" is not a number of milliseconds'
       END AS reject
FROM (SELECT source_line, try(json_transform(raw, {json_spec(message="VARCHAR", timestamp="VARCHAR", logStreamName="VARCHAR")})) AS j
      FROM lines)
"""


def _sniff_cloudwatch(head: list[str]) -> float:
    text = _head_text(head).lstrip()
    if text.startswith("{") and re.search(r'"events"\s*:\s*\[', text) and ('"ingestionTime"' in text or '"timestamp"' in text):
        return 0.97
    return 0.0


def _wrap_cloudwatch(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    """aws logs filter-log-events --output json (the CLI's default indent of 4)."""
    stream = meta.get("log_stream", "voicebot/voicebot/4f7e2a9c1b3d4e5f")
    events = [{"logStreamName": stream, "timestamp": int(ts.timestamp() * 1000), "message": text,
               "ingestionTime": int(ts.timestamp() * 1000) + 412, "eventId": f"{index:056d}"}
              for index, (ts, text) in enumerate(fill_times(lines))]
    document = {"events": events, "searchedLogStreams": [{"logStreamName": stream, "searchedCompletely": True}]}
    return json.dumps(document, indent=4, ensure_ascii=False).split("\n")


CLOUDWATCH = Envelope(
    name="cloudwatch",
    description="AWS CloudWatch Logs as aws logs filter-log-events / get-log-events print them: {\"events\": [{timestamp (ms), message, logStreamName}]}.",
    example='{"events": [{"logStreamName": "voicebot/4f7e", "timestamp": 1763632803300, '
            '"message": "Session closed: 4008 Session has expired", "ingestionTime": 1763632803712}]}',
    source=CLOUDWATCH_SRC, sniff=_sniff_cloudwatch, wrap=_wrap_cloudwatch, kind="cloud",
    unwrap=_document_unwrapper(_CLOUDWATCH_SQL, "events"),
)

# docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html: each record (gzip-compressed in
# Kinesis/Firehose/Lambda) is {"messageType": "DATA_MESSAGE" | "CONTROL_MESSAGE", "owner", "logGroup",
# "logStream", "subscriptionFilters", "logEvents": [{"id", "timestamp" (ms), "message"}]}.
SUBSCRIPTION_SRC = ("docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html (DATA_MESSAGE records: "
                    "logGroup, logStream, logEvents[] with id, timestamp in ms, message), one decompressed record a line")

_SUBSCRIPTION_SQL = f"""
WITH j AS (
    SELECT source_line, try(json_transform(raw, {json_spec(messageType="VARCHAR", logGroup="VARCHAR", logStream="VARCHAR",
                                                            logEvents="JSON")})) AS j
    FROM lines
), a AS (
    SELECT source_line, j, CASE WHEN json_type(j.logEvents) = 'ARRAY' THEN json_extract(j.logEvents, '$[*]') END AS events
    FROM j WHERE j.messageType = 'DATA_MESSAGE'
), e AS (
    SELECT source_line, j, unnest(events) AS event, generate_subscripts(events, 1) AS position FROM a
)
SELECT source_line, position, event->>'$.message' AS text, {epoch_sql("event->>'$.timestamp'", 'ms')} AS env_ts, NULL AS zone,
       CAST(json_object('log_group', j.logGroup, 'log_stream', j.logStream) AS VARCHAR) AS labels,
       CASE WHEN event->>'$.message' IS NULL THEN 'a log event has no "message"'
            WHEN TRY_CAST(event->>'$.timestamp' AS HUGEINT) IS NULL THEN 'a log event''s "timestamp" is not a number of milliseconds'
       END AS reject
FROM e
UNION ALL
SELECT source_line, 0, NULL, NULL, NULL, NULL,
       CASE WHEN j IS NULL THEN 'line is not a JSON object'
            WHEN j.messageType IS NULL THEN 'not a CloudWatch Logs subscription record (no messageType)'
            WHEN j.messageType = 'DATA_MESSAGE' AND coalesce(json_type(j.logEvents), '') <> 'ARRAY' THEN 'a DATA_MESSAGE without a logEvents array'
       END
FROM j WHERE j IS NULL OR j.messageType IS DISTINCT FROM 'DATA_MESSAGE' OR coalesce(json_type(j.logEvents), '') <> 'ARRAY'
ORDER BY source_line, position
"""


def _wrap_subscription(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    """One record per ``batch`` events (``batch`` in meta, default 25), as a subscription delivers them."""
    size = meta.get("batch", 25)
    timed = fill_times(lines)
    out = []
    for start in range(0, len(timed), size):
        events = [{"id": f"{start + i:056d}", "timestamp": int(ts.timestamp() * 1000), "message": text}
                  for i, (ts, text) in enumerate(timed[start:start + size])]
        out.append(_dumps({"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": meta.get("log_group", "/ecs/voicebot"),
                           "logStream": meta.get("log_stream", "voicebot/voicebot/4f7e2a9c1b3d4e5f"),
                           "subscriptionFilters": ["closewatch"], "logEvents": events}))
    return out


SUBSCRIPTION = Envelope(
    name="cloudwatch-subscription",
    description="AWS CloudWatch Logs subscription records (decompressed, one a line): logGroup, logStream, logEvents[].",
    example='{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/ecs/voicebot","logStream":"voicebot/4f7e",'
            '"subscriptionFilters":["closewatch"],"logEvents":[{"id":"3789","timestamp":1763632803300,"message":"Session closed: 4008 Session has expired"}]}',
    source=SUBSCRIPTION_SRC, unwrap=_lines_unwrapper(_SUBSCRIPTION_SQL), wrap=_wrap_subscription, kind="cloud",
    sniff=lambda head: 0.97 * share(head, lambda o: "messageType" in o and ("logEvents" in o or "logGroup" in o)),
)

# --------------------------------------------------------------------------
# OpenTelemetry: OTLP JSON (the collector's file exporter)
# --------------------------------------------------------------------------

# open-telemetry/opentelemetry-collector-contrib exporter/fileexporter/README.md: one JSON-encoded
# ExportLogsServiceRequest per line; open-telemetry/opentelemetry-proto opentelemetry/proto/logs/v1/logs.proto
# and docs/specification.md (JSON encoding: resourceLogs[].resource.attributes, scopeLogs[].scope.name,
# logRecords[] with timeUnixNano / observedTimeUnixNano as decimal strings, severityText, body.stringValue).
OTLP_SRC = ("open-telemetry/opentelemetry-collector-contrib exporter/fileexporter/README.md (one OTLP JSON request a line); "
            "open-telemetry/opentelemetry-proto opentelemetry/proto/logs/v1/logs.proto (resourceLogs, scopeLogs, logRecords, "
            "timeUnixNano, body.stringValue)")

_OTLP_SQL = f"""
WITH r0 AS (
    SELECT source_line, try(json_extract(raw, '$.resourceLogs[*]')) AS rls FROM lines
), r AS (
    SELECT source_line, unnest(rls) AS rl, generate_subscripts(rls, 1) AS p1 FROM r0
), s0 AS (
    SELECT source_line, p1, rl->'$.resource.attributes' AS attrs, json_extract(rl, '$.scopeLogs[*]') AS sls FROM r
), s AS (
    SELECT source_line, p1, attrs, unnest(sls) AS sl, generate_subscripts(sls, 1) AS p2 FROM s0
), l0 AS (
    SELECT source_line, p1, p2, attrs, sl->>'$.scope.name' AS scope, json_extract(sl, '$.logRecords[*]') AS recs FROM s
), l AS (
    SELECT source_line, p1, p2, attrs, scope, unnest(recs) AS rec, generate_subscripts(recs, 1) AS p3 FROM l0
), fields AS (
    SELECT source_line, p1, p2, p3, scope, attrs,
           coalesce(nullif(rec->>'$.timeUnixNano', '0'), rec->>'$.observedTimeUnixNano') AS nanos,
           rec->>'$.severityText' AS severity,
           coalesce(rec->>'$.body.stringValue', CASE WHEN (rec->'$.body') IS NOT NULL THEN CAST(rec->'$.body' AS VARCHAR) END) AS body
    FROM l
)
SELECT source_line, p1, p2, p3,
       CASE WHEN severity IS NOT NULL AND severity <> '' AND scope IS NOT NULL AND scope <> ''
            THEN upper(severity) || ':' || scope || ':' || body ELSE body END AS text,
       {epoch_sql('nanos', 'ns')} AS env_ts, NULL AS zone,
       CAST(attrs AS VARCHAR) AS otlp_attributes,
       CASE WHEN body IS NULL THEN 'a log record has no body' END AS reject
FROM fields
UNION ALL
SELECT source_line, 0, 0, 0, NULL, NULL, NULL, NULL,
       CASE WHEN NOT json_valid(raw) THEN 'line is not valid JSON' ELSE 'not an OTLP logs request (no resourceLogs)' END
FROM lines WHERE NOT json_valid(raw) OR NOT coalesce(try(json_exists(raw, '$.resourceLogs')), false)
ORDER BY source_line, p1, p2, p3
"""

#: OTLP resource attributes kept as labels (OpenTelemetry semantic conventions), under closewatch's label names.
OTLP_LABELS = {"service.name": "service", "host.name": "host", "k8s.pod.name": "pod", "k8s.container.name": "container",
               "k8s.namespace.name": "namespace", "container.name": "container", "service.instance.id": "instance"}


def _unwrap_otlp(batches: Iterator[pl.DataFrame], ctx: UnwrapContext) -> Iterator[pl.DataFrame]:
    with duck() as con:
        for lines in batches:
            register_lines(con, lines)
            frame = query_frame(con, _OTLP_SQL)
            con.unregister("batch")
            distinct = frame["otlp_attributes"].drop_nulls().unique().to_list()
            mapping = {value: _otlp_labels(value) for value in distinct}
            frame = frame.with_columns(
                labels=pl.col("otlp_attributes").replace_strict(mapping, default=None, return_dtype=pl.String),
                env_ts=pl.col("env_ts").dt.convert_time_zone("UTC"),
            )
            yield conform_records(frame)


def _otlp_labels(attributes: str) -> str | None:
    try:
        items = json.loads(attributes)
    except ValueError:
        return None
    labels = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("key") in OTLP_LABELS and isinstance(item.get("value"), dict):
            value = item["value"].get("stringValue")
            if value:
                labels[OTLP_LABELS[item["key"]]] = value
    return _dumps(labels) if labels else None


def _wrap_otlp(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    """One request per ``batch`` records; ``logger`` in meta names the scope (the Python logging bridge
    uses the logger's name) and each line then carries its level as severityText."""
    size = meta.get("batch", 20)
    timed = fill_times(lines)
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": meta.get("service", "voicebot")}},
                               {"key": "host.name", "value": {"stringValue": meta.get("host", "voice-01")}}]}
    out = []
    for start in range(0, len(timed), size):
        records = []
        for ts, text in timed[start:start + size]:
            nanos = str(int(ts.timestamp() * 1_000_000) * 1000)
            records.append({"timeUnixNano": nanos, "observedTimeUnixNano": nanos, "severityNumber": 9,
                            "severityText": "INFO", "body": {"stringValue": text}, "attributes": [],
                            "traceId": "", "spanId": ""})
        scope = {"name": meta.get("scope", "")} if meta.get("scope") else {}
        out.append(_dumps({"resourceLogs": [{"resource": resource, "scopeLogs": [{"scope": scope, "logRecords": records}]}]}))
    return out


OTLP = Envelope(
    name="otlp-json",
    description="OpenTelemetry OTLP JSON, as the collector's file exporter writes it: resourceLogs[].scopeLogs[].logRecords[] "
                "(body.stringValue, timeUnixNano); service and host from the resource attributes.",
    example='{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"voicebot"}}]},'
            '"scopeLogs":[{"scope":{},"logRecords":[{"timeUnixNano":"1763632803300000000","body":{"stringValue":"Session closed: 4008 Session has expired"}}]}]}]}',
    source=OTLP_SRC, unwrap=_unwrap_otlp, wrap=_wrap_otlp, kind="cloud",
    sniff=lambda head: 0.97 * share(head, lambda o: "resourceLogs" in o),
)

# --------------------------------------------------------------------------
# Elasticsearch / OpenSearch search hits
# --------------------------------------------------------------------------

# elastic.co/guide/en/elasticsearch/reference/current/search-search.html (response: hits.hits[] with _index, _id,
# _source); elastic.co/guide/en/ecs/current (ECS fields: message, @timestamp, host.name, service.name,
# container.name, kubernetes.pod.name as Filebeat writes them). OpenSearch's _search response has the same shape.
ES_SRC = ("elastic.co/guide/en/elasticsearch/reference/current/search-search.html (hits.hits[]._source); ECS fields "
          "message, @timestamp, host.name, service.name, container.name, kubernetes.pod.name (Filebeat); OpenSearch _search")

_ES_SQL = f"""
WITH j AS (
    SELECT source_line, try(json_transform(raw, {json_spec(_source="JSON", _index="VARCHAR")})) AS j FROM lines
), s AS (
    SELECT source_line, j, j._source AS src,
           coalesce(j._source->>'$."@timestamp"', j._source->>'$.timestamp') AS time_text FROM j
)
SELECT source_line, coalesce(src->>'$.message', src->>'$.log', src->>'$.event.original') AS text,
       TRY_CAST(time_text AS TIMESTAMPTZ) AS env_ts, {zone_sql('time_text')} AS zone,
       CAST(json_object('host', coalesce(src->>'$.host.name', src->>'$.host.hostname'), 'service', src->>'$.service.name',
                        'container', coalesce(src->>'$.kubernetes.container.name', src->>'$.container.name'),
                        'pod', src->>'$.kubernetes.pod.name', 'namespace', src->>'$.kubernetes.namespace') AS VARCHAR) AS labels,
       CASE WHEN j IS NULL THEN 'not a JSON object'
            WHEN src IS NULL THEN 'a search hit has a "_source"; this one has none'
            WHEN coalesce(src->>'$.message', src->>'$.log', src->>'$.event.original') IS NULL THEN 'its _source has no "message"'
            WHEN time_text IS NOT NULL AND TRY_CAST(time_text AS TIMESTAMPTZ) IS NULL THEN 'its "@timestamp" is not an RFC 3339 time'
       END AS reject
FROM s
"""


def _sniff_es(head: list[str]) -> float:
    lines = share(head, lambda o: "_source" in o)
    if lines:
        return 0.96 * lines
    text = _head_text(head)
    return 0.96 if text.lstrip().startswith("{") and re.search(r'"hits"\s*:\s*\[', text) and '"_source"' in text else 0.0


def _wrap_es(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    """A _search response as Kibana's or curl's pretty output shows it (``layout`` ``ndjson``: one hit a line)."""
    hits = []
    for index, (ts, text) in enumerate(fill_times(lines)):
        hits.append({"_index": ".ds-logs-voicebot-2026.11.20-000001", "_id": f"{index:020d}", "_score": None,
                     "_source": {"@timestamp": iso(ts), "message": text, "host": {"name": meta.get("host", "voice-01")},
                                 "service": {"name": meta.get("service", "voicebot")},
                                 "log": {"file": {"path": "/var/log/voicebot/app.log"}}},
                     "sort": [int(ts.timestamp() * 1000)]})
    if meta.get("layout") == "ndjson":
        return [_dumps(hit) for hit in hits]
    response = {"took": 12, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": None, "hits": hits}}
    return json.dumps(response, indent=2, ensure_ascii=False).split("\n")


ELASTICSEARCH = Envelope(
    name="elasticsearch",
    description="Elasticsearch/OpenSearch search hits: a _search response (hits.hits[]) or one hit a line; "
                "_source.message and @timestamp (ECS).",
    example='{"_index":"logs-voicebot","_id":"1","_source":{"@timestamp":"2026-11-20T10:00:03.300Z",'
            '"message":"Connection closed: 1006 - ","host":{"name":"voice-01"}}}',
    source=ES_SRC, sniff=_sniff_es, wrap=_wrap_es, kind="cloud",
    unwrap=_document_unwrapper(_ES_SQL, "hits", line_shaped=lambda line: _one_object(line, lambda o: "_source" in o)),
)

ENVELOPES = (LOKI, GCP, CLOUDWATCH, SUBSCRIPTION, OTLP, ELASTICSEARCH)
