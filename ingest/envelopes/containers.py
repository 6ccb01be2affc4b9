"""Container runtimes' log files: docker json-file, fluent-bit/fluentd Kubernetes records, and CRI (containerd, CRI-O).

Each reader keeps the runtime's time and stream, joins the lines the runtime
split (docker at 16 KiB, the kubelet's CRI partial records), and hands the
application's text on unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime

import polars as pl
from closewatch.ingest.envelopes.base import (
    UTC_US,
    Envelope,
    UnwrapContext,
    conform_records,
    duck,
    fill_times,
    iso,
    join_partials,
    json_spec,
    nonblank,
    query_frame,
    rfc3339_utc,
    share,
    zone_sql,
)

# --------------------------------------------------------------------------
# docker json-file
# --------------------------------------------------------------------------

# moby/moby daemon/logger/jsonfilelog/jsonlog/jsonlog.go: JSONLog{Log `json:"log"`, Stream `json:"stream"`,
# Created `json:"time"` (RFC 3339, nanoseconds), Attrs `json:"attrs,omitempty"`}; one object per line.
# moby/moby daemon/logger/copier.go: a line longer than 16 KiB is written as several entries, and only the
# last one ends with "\n" (the docs' json-file page shows {"log":"Log line is here\n","stream":"stdout","time":...}).
DOCKER_SRC = ("moby/moby daemon/logger/jsonfilelog/jsonlog/jsonlog.go (JSONLog: log, stream, time, attrs); "
              "daemon/logger/copier.go (16 KiB partial entries without a trailing newline); "
              "docs.docker.com/config/containers/logging/json-file/")

_DOCKER_SQL = f"""
SELECT source_line, j.log AS text, TRY_CAST(j.time AS TIMESTAMPTZ) AS env_ts, {zone_sql('j.time')} AS zone,
       CAST(j.attrs AS VARCHAR) AS labels, j.stream AS stream,
       CASE WHEN j IS NULL THEN 'line is not a JSON object'
            WHEN j.log IS NULL THEN 'a docker json-file record has a "log" field; this line has none'
            WHEN j.time IS NOT NULL AND TRY_CAST(j.time AS TIMESTAMPTZ) IS NULL
                THEN 'its "time" ''' || left(j.time, 40) || ''' is not an RFC 3339 time'
       END AS reject
FROM (SELECT source_line, try(json_transform(raw, {json_spec(log="VARCHAR", stream="VARCHAR", time="VARCHAR", attrs="JSON")})) AS j
      FROM lines)
"""


def _unwrap_docker(batches: Iterator[pl.DataFrame], ctx: UnwrapContext) -> Iterator[pl.DataFrame]:
    """Entries to records; an entry without its trailing newline continues on the next of its stream."""
    yield from _joined(batches, _DOCKER_SQL, partial=lambda: ~pl.col("text").str.ends_with("\n"), fast=_docker_fast)


# Go's encoding/json writes a JSONLog's fields in declaration order with no spaces, so nearly every line is
# {"log":"...","stream":"...","time":"..."}: read with one regex; a line with escapes (quotes, backslashes,
# \u003c...) or attrs, a time in another shape than the UTC one docker writes (polars and DuckDB read some
# odd ones differently: a lowercase z, a space for the T), or anything else, goes to the JSON reader.
_DOCKER_LINE = (r'^\{"log":"(?P<log>[^"\\\x00-\x1f]*(?:\\n)?)","stream":"(?P<stream>stdout|stderr)",'
                r'"time":"(?P<time>[^"\\\x00-\x1f]+)"\}$')  # a raw control character is invalid JSON: DuckDB rejects the line
_DOCKER_TIME_SHAPE = r"^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?Z$"


def _docker_fast(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(records read by the regex, the lines left for the JSON reader)."""
    got = lines.with_columns(g=pl.col("raw").str.extract_groups(_DOCKER_LINE)).unnest("g")
    shaped = pl.col("log").is_not_null() & pl.col("time").str.contains(_DOCKER_TIME_SHAPE)
    got = got.with_columns(pl.when(shaped).then(pl.col("log")).alias("log"))
    simple = got.filter(pl.col("log").is_not_null())
    ts = rfc3339_utc(simple["time"])
    records = simple.with_columns(env_ts=ts).select(
        "source_line",
        pl.when(pl.col("log").str.ends_with("\\n")).then(pl.col("log").str.strip_suffix("\\n") + "\n")
        .otherwise(pl.col("log")).alias("text"),
        "env_ts", pl.lit("+00:00").alias("zone"),
        pl.lit(None, pl.String).alias("labels"), "stream",
        pl.when(pl.col("env_ts").is_null())
        .then(pl.format("its \"time\" '{}' is not an RFC 3339 time", pl.col("time").str.slice(0, 40)))
        .alias("reject"),
    )
    return records, got.filter(pl.col("log").is_null()).select("source_line", "raw")


def _joined(batches: Iterator[pl.DataFrame], sql: str, partial, fast=None) -> Iterator[pl.DataFrame]:
    carry = None
    with duck() as con:
        for lines in batches:
            lines = nonblank(lines)
            records, rest = fast(lines) if fast else (None, lines)
            frame = records
            if rest.height:
                con.register("batch", rest.to_arrow())  # Arrow: DuckDB scans it without converting a polars frame
                con.execute("CREATE OR REPLACE TEMP VIEW lines AS SELECT source_line, raw FROM batch")
                slow = query_frame(con, sql)
                slow = slow.with_columns(pl.col("env_ts").dt.convert_time_zone("UTC").cast(UTC_US))
                frame = slow if frame is None else pl.concat([frame, slow], how="diagonal_relaxed").sort("source_line")
            if frame is None:
                continue
            stream = pl.col("stream") if "stream" in frame.columns else pl.lit("")
            ok = pl.col("reject").is_null()
            frame = frame.with_columns(_p=partial() & ok, _s=stream)
            records, carry = join_partials(frame, pl.col("_p"), pl.col("_s"), carry)
            yield conform_records(records)
    if carry is not None:  # the input ended inside a split line: keep what there is
        yield conform_records(carry)


def _sniff_docker(head: list[str]) -> float:
    return 0.95 * share(head, lambda o: "log" in o and "time" in o and "stream" in o and "kubernetes" not in o)


def _wrap_docker(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    out = []
    for ts, text in fill_times(lines):
        for part in _chunks(text + "\n", meta.get("split_at", 16 * 1024)):
            out.append(json.dumps({"log": part, "stream": meta.get("stream", "stdout"), "time": _nano(ts)},
                                  separators=(",", ":"), ensure_ascii=False))
    return out


def _chunks(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _nano(ts: datetime) -> str:
    """RFC 3339 with nanoseconds, as Go's time.RFC3339Nano writes a UTC time."""
    return iso(ts)[:-1] + "000Z"


DOCKER = Envelope(
    name="docker-json",
    description="docker's json-file log driver: one {log, stream, time} object per line; split long lines joined.",
    example='{"log":"WebSocket Disconnected: Status=3008, Msg=Session Expired: Maximum session duration exceeded\\n",'
            '"stream":"stdout","time":"2026-11-20T10:00:03.300000000Z"}',
    source=DOCKER_SRC, sniff=_sniff_docker, unwrap=_unwrap_docker, wrap=_wrap_docker, kind="container",
)

# --------------------------------------------------------------------------
# fluent-bit / fluentd Kubernetes records
# --------------------------------------------------------------------------

# fluent/fluent-bit plugins/filter_kubernetes/kube_meta.c: the "kubernetes" map (pod_name, namespace_name,
# pod_id, labels, annotations, host, container_name, docker_id, container_image) added to each record;
# its tail input's docker parser keeps "log", "stream", "time"; the cri parser gives "log", "stream", "_p"
# (P partial / F full) and "time". fabric8io/fluent-plugin-kubernetes_metadata_filter (fluentd) adds the same map.
K8S_SRC = ("fluent/fluent-bit plugins/filter_kubernetes/kube_meta.c (kubernetes: pod_name, namespace_name, "
           "container_name, host, labels) and conf/parsers.conf (docker and cri parsers: log, stream, time, _p); "
           "fabric8io/fluent-plugin-kubernetes_metadata_filter (fluentd, same kubernetes map)")

_K8S_META = {"pod_name": "VARCHAR", "namespace_name": "VARCHAR", "container_name": "VARCHAR", "host": "VARCHAR",
             "labels": {"app": "VARCHAR", "app.kubernetes.io/name": "VARCHAR"}}
_K8S_SQL = f"""
WITH j AS (
    SELECT source_line, try(json_transform(raw, {json_spec(log="VARCHAR", message="VARCHAR", stream="VARCHAR", time="VARCHAR",
                                                            **{"@timestamp": "VARCHAR"}, date="VARCHAR", _p="VARCHAR",
                                                            kubernetes=_K8S_META)})) AS j
    FROM lines
), t AS (
    SELECT source_line, j, coalesce(j.time, j."@timestamp", j.date) AS time_text FROM j
)
SELECT source_line, coalesce(j.log, j.message) AS text,
       CASE WHEN TRY_CAST(time_text AS DOUBLE) IS NOT NULL THEN make_timestamptz(CAST(TRY_CAST(time_text AS DOUBLE) * 1e6 AS BIGINT))
            ELSE TRY_CAST(time_text AS TIMESTAMPTZ) END AS env_ts,
       {zone_sql('time_text')} AS zone,
       CAST(json_object('pod', j.kubernetes.pod_name, 'namespace', j.kubernetes.namespace_name,
                        'container', j.kubernetes.container_name, 'host', j.kubernetes.host,
                        'app', coalesce(j.kubernetes.labels.app, j.kubernetes.labels."app.kubernetes.io/name"))
            AS VARCHAR) AS labels,
       j.stream AS stream, j._p = 'P' AS partial,
       CASE WHEN j IS NULL THEN 'line is not a JSON object'
            WHEN coalesce(j.log, j.message) IS NULL THEN 'a Kubernetes log record has a "log" field; this line has none'
       END AS reject
FROM t
"""


def _unwrap_k8s(batches: Iterator[pl.DataFrame], ctx: UnwrapContext) -> Iterator[pl.DataFrame]:
    """Records to text; fluent-bit's cri parser marks the parts of a split line with _p = P."""
    yield from _joined(batches, _K8S_SQL, partial=lambda: pl.col("partial").fill_null(False))


def _sniff_k8s(head: list[str]) -> float:
    return 0.96 * share(head, lambda o: ("log" in o or "message" in o) and isinstance(o.get("kubernetes"), dict))


def _wrap_k8s(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    pod = meta.get("pod", "voicebot-7d9f8b6c5d-x2k4q")
    kubernetes = {
        "pod_name": pod, "namespace_name": meta.get("namespace", "voice"), "pod_id": "2f1e3c7a-6b1d-4c55-9a3e-0d6f2b7c8e91",
        "labels": {"app": meta.get("app", "voicebot"), "pod-template-hash": "7d9f8b6c5d"},
        "host": meta.get("host", "node-a1"), "container_name": meta.get("container", "voicebot"),
        "docker_id": "4b8e0c2f6d1a", "container_image": "registry.example.com/voicebot:1.4.2",
    }
    return [json.dumps({"log": text + "\n", "stream": "stdout", "time": _nano(ts), "kubernetes": kubernetes},
                       separators=(",", ":"), ensure_ascii=False) for ts, text in fill_times(lines)]


KUBERNETES = Envelope(
    name="kubernetes-json",
    description="fluent-bit/fluentd Kubernetes records: the container's log line plus a kubernetes object (pod, container, namespace, host).",
    example='{"log":"Session closed: 4008 Session has expired\\n","stream":"stdout","time":"2026-11-20T10:00:03.3Z",'
            '"kubernetes":{"pod_name":"voicebot-7d9f8b6c5d-x2k4q","namespace_name":"voice","container_name":"voicebot","host":"node-a1"}}',
    source=K8S_SRC, sniff=_sniff_k8s, unwrap=_unwrap_k8s, wrap=_wrap_k8s, kind="container",
)

# --------------------------------------------------------------------------
# CRI (containerd, CRI-O): the kubelet's container log files
# --------------------------------------------------------------------------

# kubernetes/kubernetes pkg/kubelet/kuberuntime/logs/logs.go parseCRILog: "<RFC3339Nano time> <stdout|stderr>
# <tag> <log>", tags split by ":" whose first is P (partial: more of the line follows) or F (full);
# kubernetes/cri-api pkg/apis/runtime/v1/constants.go LogTagPartial = "P", LogTagFull = "F".
CRI_SRC = ("kubernetes/kubernetes pkg/kubelet/kuberuntime/logs/logs.go (parseCRILog: time stream tag log); "
           "kubernetes/cri-api pkg/apis/runtime/v1/constants.go (LogTagPartial P, LogTagFull F); "
           "pkg/kubelet/kuberuntime/helpers.go (BuildContainerLogsDirectory: <namespace>_<pod>_<uid>/<container>/<n>.log)")

CRI_LINE = r"^(?P<ts>\d{4}-\d\d-\d\dT\S+) (?P<stream>stdout|stderr) (?P<tag>[PF])(?::\S*)?(?: (?P<msg>.*))?$"


# The kubelet names a container's log file after its pod (kubernetes/kubernetes
# pkg/kubelet/kuberuntime/helpers.go BuildContainerLogsDirectory and
# buildContainerLogsPath: <pod logs dir>/<namespace>_<pod>_<uid>/<container>/<restart>.log,
# rotated as <restart>.log.<time>[.gz]; kuberuntime_container.go logSymlink:
# /var/log/containers/<pod>_<namespace>_<container>-<container id>.log). Namespaces,
# pod and container names are DNS names, so "_" only separates.
_POD_LOG_PATH = re.compile(
    r"(?:^|/)(?P<namespace>[a-z0-9][a-z0-9-]*)_(?P<pod>[a-z0-9][a-z0-9.-]*)_(?P<uid>[0-9a-f-]+)"
    r"/(?P<container>[a-z0-9][a-z0-9-]*)/\d+\.log(?:\.[^/]*)?$")
_CONTAINER_LOG_LINK = re.compile(
    r"(?:^|/)(?P<pod>[a-z0-9][a-z0-9.-]*)_(?P<namespace>[a-z0-9][a-z0-9-]*)_(?P<container>[a-z0-9][a-z0-9-]*)"
    r"-(?P<container_id>[0-9a-f]{64})\.log$")


def kubelet_path_labels(path: str | None) -> str | None:
    """The pod, namespace and container that a CRI log file's path names (JSON), or None for another path."""
    if not path:
        return None
    found = _POD_LOG_PATH.search(path) or _CONTAINER_LOG_LINK.search(path)
    if found is None:
        return None
    return json.dumps({key: found[key] for key in ("pod", "namespace", "container")})


#: CRI_LINE's fields, checked one by one on a line cut at its first three spaces (see _cri_fields).
_CRI_TIME, _CRI_TAG = r"^\d{4}-\d\d-\d\dT\S+$", r"^[PF](?::\S*)?$"


def _cri_fields(lines: pl.DataFrame, regex: bool = False) -> pl.DataFrame:
    """(source_line, raw, ts, stream, tag, msg) as CRI_LINE's groups give them.

    A line is cut at its first three spaces (a quarter of the regex's cost); where the pieces pass
    CRI_LINE's own tests (time, stream, tag) they are its groups, since none of those can hold a space.
    Other lines (and every line with ``regex``, the tests' reference) go through the regex.
    """
    if not regex:
        cut = lines.with_columns(c=pl.col("raw").str.splitn(" ", 4)).unnest("c").rename(
            {"field_0": "ts", "field_1": "stream", "field_2": "tag", "field_3": "msg"})
        fits = (pl.col("ts").str.contains(_CRI_TIME) & pl.col("stream").is_in(["stdout", "stderr"])
                & pl.col("tag").str.contains(_CRI_TAG)).fill_null(False)
        cut = cut.with_columns(_fits=fits)
        rest = cut.filter(~pl.col("_fits")).select("source_line", "raw")
        cut = cut.filter(pl.col("_fits")).select("source_line", "raw", "ts", "stream", pl.col("tag").str.head(1), "msg")
        if rest.height == 0:
            return cut
        return pl.concat([cut, _cri_fields(rest, regex=True)]).sort("source_line")
    got = lines.with_columns(g=pl.col("raw").str.extract_groups(CRI_LINE)).unnest("g")
    return got.select("source_line", "raw", "ts", "stream", "tag", "msg")


def _cri_records(lines: pl.DataFrame, ctx: UnwrapContext, regex: bool = False) -> pl.DataFrame:
    got = _cri_fields(nonblank(lines), regex)
    got = got.with_columns(env_ts=rfc3339_utc(got["ts"]))
    return got.select(
        "source_line", pl.col("msg").fill_null("").alias("text"), "env_ts",
        pl.col("ts").str.extract(r"([+-]\d\d:\d\d|Z)$").replace({"Z": "+00:00"}).alias("zone"),
        pl.lit(kubelet_path_labels(ctx.source_name), pl.String).alias("labels"),
        pl.when(pl.col("ts").is_null()).then(pl.lit("not a CRI log line (<RFC 3339 time> <stdout|stderr> <P|F> <text>)"))
        .when(pl.col("env_ts").is_null()).then(pl.format("its time '{}' is not an RFC 3339 time", pl.col("ts").str.slice(0, 40)))
        .alias("reject"),
        pl.col("stream"), (pl.col("tag") == "P").alias("_p"),
    )


def _unwrap_cri(batches: Iterator[pl.DataFrame], ctx: UnwrapContext) -> Iterator[pl.DataFrame]:
    """Lines to records; partial (P) records are joined with the rest of their line on the same stream."""
    carry = None
    for lines in batches:
        frame = _cri_records(lines, ctx)
        records, carry = join_partials(frame, pl.col("_p") & pl.col("reject").is_null(), pl.col("stream"), carry)
        yield conform_records(records)
    if carry is not None:
        yield conform_records(carry)


def _sniff_cri(head: list[str]) -> float:
    lines = [line for line in head if line.strip()]
    if not lines:
        return 0.0
    matched = int(pl.Series(lines, dtype=pl.String).str.contains(CRI_LINE).sum())
    return 0.95 * matched / len(lines)


def _wrap_cri(lines: list[tuple[datetime | None, str]], meta: dict) -> list[str]:
    out = []
    size = meta.get("split_at", 16 * 1024)
    stream = meta.get("stream", "stdout")
    for ts, text in fill_times(lines):
        parts = _chunks(text, size)
        for index, part in enumerate(parts):
            tag = "F" if index == len(parts) - 1 else "P"
            out.append(f"{_nano(ts)} {stream} {tag} {part}")
    return out


CRI = Envelope(
    name="cri",
    description="CRI container logs (containerd, CRI-O; /var/log/pods): <time> <stream> <P|F> <text>, partial records joined; "
                "pod, namespace and container from the kubelet's file path.",
    example="2026-11-20T10:00:03.300000000Z stdout F WebSocket Disconnected: Status=3008, Msg=Session Expired: Maximum session duration exceeded",
    source=CRI_SRC, sniff=_sniff_cri, unwrap=_unwrap_cri, wrap=_wrap_cri, kind="container",
)

ENVELOPES = (DOCKER, KUBERNETES, CRI)
