"""Envelopes: each reads exactly the closes of the plain log it wraps, each with its time, and nothing else.

The wrapped logs are built by each envelope's ``wrap`` (its public layout,
cited in its module) around lines the client renderers write (ingest.clients),
so the plain log and the wrapped one say the same thing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

import duckdb
import polars as pl
import pytest
from closewatch.ingest.clients import RENDERERS_TIMED, noise_lines
from closewatch.ingest.envelopes import (
    ENVELOPE_LIST,
    get_envelope,
    pick_client,
    reader_for_head,
    zone_name,
)
from closewatch.ingest.errors import IngestError
from closewatch.ingest.formats import EVENT_SCHEMA, REJECT_SCHEMA, ParseOptions
from closewatch.ingest.lines import iter_line_batches, stream_of

T0 = datetime(2026, 11, 20, 10, 0, 3, 300_000, tzinfo=UTC)
EXPIRED = "Session Expired: Maximum session duration exceeded"
AUTH = "Unauthorized Connection: Missing Authorization header"
CLOSES = [(3008, EXPIRED), (1006, ""), (1000, ""), (1008, AUTH), (3007, "Input duration violation: 1200 ms. Expected between 50 and 1000 ms")]


def events(count: int = len(CLOSES)) -> list[dict]:
    return [{"ts": T0 + timedelta(minutes=7 * i, seconds=i), "session_id": f"{i:08x}-0d7b-4c1e-9a51-3e2f0c6d8b71",
             "close_code": code, "close_reason": reason, "audio_duration_s": 12.0 if code == 1000 else None,
             "session_duration_s": 13.5 if code == 1000 else None}
            for i, (code, reason) in enumerate(CLOSES[:count])]


def rendered(client: str, layout: str | None, noise: bool = True) -> list[tuple[datetime | None, str]]:
    """A client's log for the closes above, with unrelated lines of the same application between them."""
    rng = Random(7)
    out = []
    for event in events():
        if noise:
            out += [(event["ts"] - timedelta(seconds=5), line) for line in noise_lines(client, rng, event["ts"], layout)]
        out += RENDERERS_TIMED[client](event, layout)
    return out


def read(lines: list[str], batch_bytes: int = 1 << 20, **options) -> tuple[str | None, pl.DataFrame, pl.DataFrame, int]:
    """Detect and parse ``lines`` as the pipeline does: (format name, events, rejects, skipped)."""
    opts = ParseOptions(reference_time=options.pop("reference_time", datetime(2026, 12, 1, tzinfo=UTC)), **options)
    fmt = reader_for_head(lines[:2000], None, opts)
    if fmt is None:
        return None, pl.DataFrame(schema=EVENT_SCHEMA), pl.DataFrame(schema=REJECT_SCHEMA), 0
    data = ("\n".join(lines) + "\n").encode()
    out = list(fmt.parse(iter_line_batches(stream_of(data), batch_bytes=batch_bytes), opts))
    found = pl.concat([o.events for o in out], how="diagonal_relaxed") if out else pl.DataFrame(schema=EVENT_SCHEMA)
    rejects = pl.concat([o.rejects for o in out], how="diagonal_relaxed") if out else pl.DataFrame(schema=REJECT_SCHEMA)
    return fmt.name, found.sort("source_line"), rejects, sum(o.skipped for o in out)


def closes_of(frame: pl.DataFrame) -> list[tuple]:
    return frame.select("close_code", "close_reason", "session_id", "audio_duration_s").rows()


#: (client, layout) pairs each envelope is tried with: plain prints, Python logging, loguru, Node.
CONTAINER_CLIENTS = [("websocket-client", "plain"), ("assemblyai-python-v3", "default"), ("livekit-agents", "livekit"),
                     ("assemblyai-js", "plain"), ("pipecat", "loguru"), ("browser-js", "dash")]
PYTHON_CLIENTS = [("assemblyai-python-v3", "default"), ("livekit-agents", "default"), ("assemblyai-python-v2", "default")]
NODE_CLIENTS = [("assemblyai-js", "plain"), ("websocket-client", "plain")]


def cases() -> list:
    out = []
    for envelope in ENVELOPE_LIST:
        if envelope.name in ("livekit-json", "python-json-logger", "structlog"):
            pairs = PYTHON_CLIENTS
        elif envelope.name in ("pino", "winston"):
            pairs = NODE_CLIENTS
        else:
            pairs = CONTAINER_CLIENTS
        out += [pytest.param(envelope.name, client, layout, id=f"{envelope.name}-{client}") for client, layout in pairs]
    return out


@pytest.mark.parametrize("envelope, client, layout", cases())
def test_envelope_reads_exactly_the_closes_of_the_plain_log(envelope, client, layout):
    timed = rendered(client, layout)
    _, plain, plain_rejects, _ = read([line for _, line in timed])
    assert plain.height == len(CLOSES) and plain_rejects.height == 0  # the plain log itself reads right

    lines = get_envelope(envelope).wrap(timed, {})
    name, found, rejects, skipped = read(lines)

    assert name is not None and name.startswith(envelope + "/"), name
    assert name.endswith("/" + plain_name(client, layout))
    assert rejects.height == 0, rejects.rows()
    assert closes_of(found) == closes_of(plain)
    precision = "1s" if envelope == "syslog" else "1ms"  # RFC 3164 times have whole seconds
    expected = [e["ts"] for e in events()]
    assert [ts.replace(microsecond=0) if precision == "1s" else ts for ts in found["ts"].to_list()] == \
        [ts.replace(microsecond=0) if precision == "1s" else ts for ts in expected]
    if envelope not in ("cloudwatch-subscription", "otlp-json"):  # those carry many records a line
        assert found.height + rejects.height + skipped == len(lines)  # every input line is counted once


def plain_name(client: str, layout: str) -> str:
    return client


def test_every_envelope_is_detected_from_its_own_example():
    for envelope in ENVELOPE_LIST:
        if envelope.name in ("cloudwatch",):  # its example is one document on one line
            continue
        fmt = reader_for_head([envelope.example], None, ParseOptions())
        assert fmt is not None and fmt.name.split("/")[0] == envelope.name, (envelope.name, fmt and fmt.name)


# --------------------------------------------------------------------------
# Split lines
# --------------------------------------------------------------------------


def test_cri_partial_records_are_joined_across_batches():
    reason = "Unauthorized Connection: " + "x" * 3000
    timed = [(T0, "Session began: ID=abc-1, ExpiresAt=2026-11-20 13:00:03"),
             (T0, f"WebSocket Disconnected: Status=1008, Msg={reason}")]
    lines = get_envelope("cri").wrap(timed, {"split_at": 700})
    assert sum(" stdout P " in line for line in lines) == 4
    _, found, rejects, _ = read(lines, batch_bytes=1500)
    assert rejects.height == 0
    assert found.select("close_code", "close_reason", "session_id").rows() == [(1008, reason, "abc-1")]
    assert found["source_line"].to_list() == [2]  # the first part's line


def test_cri_stdout_and_stderr_partials_do_not_mix():
    lines = [
        "2026-11-20T10:00:03.300000000Z stdout P WebSocket Disconnected: Status=3008, ",
        "2026-11-20T10:00:03.300000100Z stderr F Traceback (most recent call last):",
        f"2026-11-20T10:00:03.300000200Z stdout F Msg={EXPIRED}",
    ]
    _, found, rejects, _ = read(lines)
    assert rejects.height == 0
    assert found.select("close_code", "close_reason").rows() == [(3008, EXPIRED)]


def test_docker_entries_split_at_16k_are_joined():
    reason = "Unauthorized Connection: " + "y" * 40_000
    lines = get_envelope("docker-json").wrap([(T0, f"WebSocket Disconnected: Status=1008, Msg={reason}")], {})
    assert len(lines) == 3  # docker writes 16 KiB pieces; only the last ends with a newline
    _, found, rejects, _ = read(lines)
    assert rejects.height == 0
    assert found.select("close_code", "close_reason").rows() == [(1008, reason)]


# --------------------------------------------------------------------------
# Times
# --------------------------------------------------------------------------


def test_syslog_year_is_inferred_from_the_files_modification_time():
    lines = [f"Dec 31 23:59:58 voice-01 voicebot[2211]: WebSocket Disconnected: Status=3008, Msg={EXPIRED}",
             f"Jan  2 00:00:01 voice-01 voicebot[2211]: WebSocket Disconnected: Status=3008, Msg={EXPIRED}"]
    _, found, _, _ = read(lines, reference_time=datetime(2027, 1, 3, 12, tzinfo=UTC))
    assert found["ts"].to_list() == [datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC), datetime(2027, 1, 2, 0, 0, 1, tzinfo=UTC)]
    # no line lies after the file was written: a November line in a file written in March is last year's
    _, found, _, _ = read(lines[:1], reference_time=datetime(2027, 3, 1, tzinfo=UTC))
    assert found["ts"].to_list() == [datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC)]


def test_syslog_local_times_are_read_in_tz():
    lines = [f"Nov 20 11:00:03 voice-01 voicebot[2211]: WebSocket Disconnected: Status=3008, Msg={EXPIRED}"]
    _, found, _, _ = read(lines, tz="Europe/Berlin")
    assert found["ts"].to_list() == [datetime(2026, 11, 20, 10, 0, 3, tzinfo=UTC)]


def test_rfc5424_lines_keep_their_offset():
    lines = get_envelope("syslog").wrap([(T0, f"WebSocket Disconnected: Status=3008, Msg={EXPIRED}")],
                                        {"layout": "5424", "tz": "Europe/Berlin"})
    assert lines[0].startswith("<14>1 2026-11-20T11:00:03.300000+01:00 voice-01 voicebot 2211 - - ")
    _, found, _, _ = read(lines)
    assert found["ts"].to_list() == [T0]
    assert json.loads(found["labels"][0]) == {"app": "voicebot", "host": "voice-01"}


def test_inner_time_without_zone_is_read_in_the_envelopes_zone():
    # logcli prints times in --timezone; the app logged its local wall time without a zone
    lines = [json.dumps({"labels": {"app": "voicebot"}, "line": line, "timestamp": "2026-11-20T11:00:03.3+01:00"})
             for line in (("2026-11-20 11:00:03,300 - assemblyai.streaming.v3.client - ERROR - "
                           f"Connection closed: {EXPIRED} (code=3008)"),)]
    name, found, _, _ = read(lines)
    assert name == "loki/assemblyai-python-v3"
    assert found["ts"].to_list() == [T0]
    assert zone_name("+01:00", "UTC") == "Etc/GMT-1" and zone_name("+05:30", "UTC") == "UTC"
    assert zone_name("+01:00", "America/New_York") == "America/New_York"  # --tz wins


def test_envelope_time_fills_only_lines_without_their_own():
    # the inner line's own time (10:00:03.300) wins over the collector's later one
    lines = [json.dumps({"log": f"2026-11-20T10:00:03.300Z Connection closed: 3008 - {EXPIRED}\n", "stream": "stdout",
                         "time": "2026-11-20T10:00:04.900000000Z"})]
    _, found, _, _ = read(lines)
    assert found["ts"].to_list() == [T0]


# --------------------------------------------------------------------------
# journald specifics
# --------------------------------------------------------------------------


def test_journald_message_as_a_byte_array_is_read():
    text = f"\x1b[31mERROR\x1b[0m:assemblyai.streaming.v3.client:Connection closed: {EXPIRED} (code=3008)"
    lines = get_envelope("journald").wrap([(T0, text)], {})
    assert isinstance(json.loads(lines[0])["MESSAGE"], list)
    _, found, rejects, _ = read(lines)
    assert rejects.height == 0
    assert found.select("close_code", "close_reason").rows() == [(3008, EXPIRED)]
    assert found["ts"].to_list() == [T0]


def test_journald_null_message_is_rejected_with_advice():
    lines = get_envelope("journald").wrap([(T0, "WebSocket Disconnected: Status=3008, Msg=" + EXPIRED),
                                           (T0, "WebSocket Disconnected: Status=1008, Msg=" + AUTH)], {})
    entry = json.loads(lines[1])
    entry["MESSAGE"] = None
    lines[1] = json.dumps(entry)
    _, found, rejects, _ = read(lines)
    assert found["close_code"].to_list() == [3008]
    assert rejects["source_line"].to_list() == [2]
    assert "journalctl -o json --all" in rejects["reason"][0]


# --------------------------------------------------------------------------
# Bad lines, documents
# --------------------------------------------------------------------------


@pytest.mark.parametrize("envelope", ["docker-json", "cri", "syslog", "loki", "cloudwatch-subscription", "otlp-json",
                                      "kubernetes-json", "livekit-json", "pino"])
def test_a_line_invalid_for_its_envelope_is_rejected_and_the_rest_loads(envelope):
    timed = rendered("websocket-client", "plain", noise=False) if envelope not in ("livekit-json",) else \
        rendered("livekit-agents", "default", noise=False)
    lines = get_envelope(envelope).wrap(timed, {"batch": 1})  # one record a line where a line can hold many
    lines.insert(2, "this line is not what the envelope writes {")
    _, found, rejects, _ = read(lines)
    assert found.height == len(CLOSES)
    assert rejects["source_line"].to_list() == [3]
    assert f"envelope {envelope}" in rejects["reason"][0]
    assert rejects["raw"][0] == "this line is not what the envelope writes {"


def test_a_document_cut_off_loads_the_entries_before_and_says_where():
    lines = get_envelope("gcp-logging").wrap(rendered("websocket-client", "plain", noise=False), {})
    cut = lines[: len(lines) * 2 // 3]
    _, found, rejects, _ = read(cut)
    assert 0 < found.height < len(CLOSES)
    assert rejects.height == 1 and "cut off" in rejects["reason"][0]


def test_document_entries_are_numbered_by_the_line_they_start_on():
    lines = get_envelope("cloudwatch").wrap(rendered("websocket-client", "plain", noise=False), {})
    _, found, _, _ = read(lines)
    for line_number in found["source_line"].to_list():
        assert lines[line_number - 1].strip() == "{"  # the event object's opening line


def test_gcp_sink_json_lines_and_elasticsearch_hits_per_line():
    timed = rendered("assemblyai-python-v3", "default")
    for envelope, meta in (("gcp-logging", {"layout": "sink"}), ("elasticsearch", {"layout": "ndjson"})):
        lines = get_envelope(envelope).wrap(timed, meta)
        assert len(lines) == len(timed)
        name, found, rejects, _ = read(lines)
        assert name == f"{envelope}/assemblyai-python-v3" and rejects.height == 0
        assert found["ts"].to_list() == [e["ts"] for e in events()]


# --------------------------------------------------------------------------
# Labels and clients
# --------------------------------------------------------------------------


def test_labels_are_kept_and_name_the_client_unless_the_line_does():
    lines = get_envelope("kubernetes-json").wrap(rendered("websocket-client", "plain", noise=False), {"pod": "voicebot-abc"})
    _, found, _, _ = read(lines)
    labels = json.loads(found["labels"][0])
    assert labels == {"app": "voicebot", "container": "voicebot", "host": "node-a1", "namespace": "voice", "pod": "voicebot-abc"}
    assert set(found["client_id"]) == {"voicebot"}  # app comes before pod
    _, by_pod, _, _ = read(lines, client_from="pod")
    assert set(by_pod["client_id"]) == {"voicebot-abc"}
    # a client the line names itself wins
    tagged = [dict(e, client_id="tenant-7") for e in events()]
    timed = [x for e in tagged for x in RENDERERS_TIMED["websocket-client"](e, "plain")]
    _, own, _, _ = read(get_envelope("kubernetes-json").wrap(timed, {}), client_from="pod")
    assert set(own["client_id"]) == {"tenant-7"}


POD_UID = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
CONTAINER_ID = "4f3c2b1a" * 8


@pytest.mark.parametrize("relative", [
    f"var/log/pods/voice_voicebot-7d9f8b6c5d-x2x9k_{POD_UID}/voicebot/0.log",
    f"var/log/pods/voice_voicebot-7d9f8b6c5d-x2x9k_{POD_UID}/voicebot/0.log.20261201-101500.gz",
    f"var/log/containers/voicebot-7d9f8b6c5d-x2x9k_voice_voicebot-{CONTAINER_ID}.log",
])
def test_a_cri_file_in_the_kubelets_layout_is_labelled_with_its_pod(run, tmp_path, relative):
    """The kubelet writes no pod into a CRI line; the file's path names it, and a label names the client."""
    import gzip

    path = tmp_path / relative
    path.parent.mkdir(parents=True)
    text = "\n".join(get_envelope("cri").wrap(rendered("websocket-client", "plain", noise=False), {})) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if path.name.endswith(".gz") else text.encode())
    result = run("ingest", str(path), "--client-from", "pod")
    assert result.exit_code == 0, result.output
    stored = run.json("SELECT DISTINCT client_id, labels FROM closures")
    assert len(stored) == 1
    assert stored[0]["client_id"] == "voicebot-7d9f8b6c5d-x2x9k"
    assert json.loads(stored[0]["labels"]) == {"pod": "voicebot-7d9f8b6c5d-x2x9k", "namespace": "voice", "container": "voicebot"}


def test_a_cri_file_in_the_kubelets_layout_names_its_container_as_client_by_default(run, tmp_path):
    path = tmp_path / f"var/log/pods/voice_voicebot-7d9f8b6c5d-x2x9k_{POD_UID}/recognizer/0.log"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(get_envelope("cri").wrap(rendered("websocket-client", "plain", noise=False), {})) + "\n")
    assert run("ingest", str(path)).exit_code == 0
    assert run.json("SELECT DISTINCT client_id FROM closures") == [{"client_id": "recognizer"}]  # container before pod


def test_a_cri_file_elsewhere_has_no_labels(run, tmp_path):
    path = tmp_path / "exported.log"
    path.write_text("\n".join(get_envelope("cri").wrap(rendered("websocket-client", "plain", noise=False), {})) + "\n")
    assert run("ingest", str(path)).exit_code == 0
    assert run.json("SELECT DISTINCT labels FROM closures") == [{"labels": None}]


def test_pick_client_order():
    assert pick_client('{"host":"h","pod":"p"}') == "p"
    assert pick_client('{"host":"h","unit":"u.service"}') == "u.service"
    assert pick_client('{"host":"h"}', "log_stream") is None
    assert pick_client(None) is None


def test_secrets_in_labels_are_redacted():
    lines = [json.dumps({"labels": {"app": "voicebot", "url": "wss://x/ws?token=9f8e7d6c5b4a39281706f5e4d3c2b1a0"},
                         "line": f"WebSocket Disconnected: Status=3008, Msg={EXPIRED}", "timestamp": "2026-11-20T10:00:03.3Z"})]
    _, found, _, _ = read(lines)
    assert "9f8e7d6c5b4a" not in found["labels"][0] and "[REDACTED]" in found["labels"][0]


# --------------------------------------------------------------------------
# Nesting and JSON loggers
# --------------------------------------------------------------------------


def test_a_cloudwatch_event_holding_a_livekit_json_line_is_read_as_both():
    timed = rendered("livekit-agents", "default")
    inner = get_envelope("livekit-json").wrap(timed, {})
    lines = get_envelope("cloudwatch-subscription").wrap([(None, line) for line in inner], {"batch": 4})
    name, found, rejects, _ = read(lines)
    assert name == "cloudwatch-subscription/livekit-json/livekit-agents"
    assert rejects.height == 0
    _, plain, _, _ = read([line for _, line in timed])
    assert closes_of(found) == closes_of(plain)
    assert found["ts"].to_list() == [e["ts"] for e in events()]  # the logger's own time
    assert set(found["client_id"]) == {"/ecs/voicebot"}


def test_a_container_printing_pino_records_and_plain_lines():
    inner = get_envelope("pino").wrap(rendered("assemblyai-js", "plain"), {})
    inner.insert(0, "> voicebot@1.4.2 start")  # npm's banner is no JSON: read as a plain line, not rejected
    lines = get_envelope("docker-json").wrap([(T0, line) for line in inner], {})
    name, found, rejects, _ = read(lines)
    assert name == "docker-json/pino/assemblyai-js"
    assert rejects.height == 0
    assert found["close_code"].to_list() == [c for c, _ in CLOSES]
    assert found["ts"].to_list() == [e["ts"] for e in events()]


def test_livekit_json_handshake_refusal_keeps_the_status_from_exc_info():
    event = {"ts": T0, "session_id": None, "close_code": 401, "close_reason": ""}
    timed = RENDERERS_TIMED["livekit-agents"](event, "default")
    lines = get_envelope("livekit-json").wrap(timed, {})
    assert len(lines) == 1 and "Traceback" in json.loads(lines[0])["exc_info"]
    _, found, _, _ = read(lines)
    assert found["close_code"].to_list() == [401]


def test_a_json_logger_line_with_only_a_message_is_never_a_closure():
    lines = [json.dumps({"message": m, "level": "INFO", "name": "livekit.agents", "timestamp": "2026-11-20T10:00:03+00:00"})
             for m in ("registered worker", "received job request", "AssemblyAI session started id=abc expires_at=1")]
    lines.append(json.dumps({"message": "AssemblyAI WebSocket closed unexpectedly session=abc code=3008 data=3008 extra=" + EXPIRED,
                             "level": "WARNING", "name": "livekit.plugins.assemblyai", "timestamp": "2026-11-20T10:00:03.300000+00:00"}))
    name, found, rejects, skipped = read(lines)
    assert name == "livekit-json/livekit-agents"
    assert found.select("close_code", "session_id").rows() == [(3008, "abc")]
    assert skipped == 3 and rejects.height == 0


def test_forced_envelope_and_unknown_names():
    lines = get_envelope("cri").wrap([(T0, f"WebSocket Disconnected: Status=3008, Msg={EXPIRED}")], {})
    fmt = reader_for_head(lines, None, ParseOptions(envelope="cri"))
    assert fmt.name == "cri/websocket-client"
    with pytest.raises(IngestError, match="Unknown envelope 'dockr'"):
        reader_for_head(lines, None, ParseOptions(envelope="dockr"))


def test_plain_logs_are_not_mistaken_for_envelopes():
    for client, layout in CONTAINER_CLIENTS + PYTHON_CLIENTS:
        lines = [line for _, line in rendered(client, layout)]
        fmt = reader_for_head(lines, None, ParseOptions())
        assert fmt is not None and "/" not in fmt.name, (client, fmt and fmt.name)


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_jsonl_line_with_only_a_message_is_skipped_not_a_closure(tmp_path, fast_path):
    from closewatch.ingest.formats import get_format
    from closewatch.ingest.structured import stage_json_file

    lines = [json.dumps({"ts": "2026-11-20T10:00:00Z", "message": "session started"}),
             json.dumps({"ts": "2026-11-20T10:00:01Z", "message": "user said hello", "level": "info"}),
             json.dumps({"ts": "2026-11-20T10:00:02Z", "message": f"stream ended: {EXPIRED}"}),
             json.dumps({"ts": "2026-11-20T10:00:03Z", "code": 1006, "message": "lost"}),
             json.dumps({"ts": "2026-11-20T10:00:04Z", "error": "read ECONNRESET"})]
    if fast_path:
        path = tmp_path / "app.jsonl"
        path.write_text("\n".join(lines) + "\n")
        with duckdb.connect() as con:
            counts = stage_json_file(path, ParseOptions(), con)
            assert counts is not None and (counts.events, counts.skipped, counts.rejects) == (3, 2, 0)
            reasons = con.execute("SELECT close_reason FROM staged ORDER BY source_line").pl()["close_reason"].to_list()
    else:
        out = list(get_format("jsonl").parse(iter_line_batches(stream_of(("\n".join(lines) + "\n").encode())), ParseOptions()))
        assert sum(o.skipped for o in out) == 2
        reasons = pl.concat([o.events for o in out])["close_reason"].to_list()
    assert reasons == [f"stream ended: {EXPIRED}", "lost", "read ECONNRESET"]


# --------------------------------------------------------------------------
# Mixed files
# --------------------------------------------------------------------------

APP_CLOSE = "2026-11-20 11:00:03,300 ERROR [voicebot] Connection closed: 1008 - Unauthorized Connection: invalid api key"


def test_an_applications_own_close_line_inside_an_sdk_log_is_read():
    timed = rendered("assemblyai-python-v3", "dashes")
    lines = [line for _, line in timed]
    name, before, _, _ = read(lines)
    lines.append(APP_CLOSE)  # an hour after the SDK's last report: a close of its own
    name, found, rejects, _ = read(lines)
    assert name == "assemblyai-python-v3" and rejects.height == 0
    assert found.height == before.height + 1
    added = found.filter(pl.col("close_reason").str.contains("invalid api key"))
    assert added["ts"].to_list() == [datetime(2026, 11, 20, 11, 0, 3, 300_000, tzinfo=UTC)]


def test_an_echo_of_the_sdks_report_by_the_app_still_counts_once():
    event = {"ts": T0, "session_id": None, "close_code": 1008, "close_reason": AUTH}
    lines = [line for _, line in RENDERERS_TIMED["assemblyai-python-v3"](event, "dashes")]
    _, alone, _, _ = read(lines)
    echo = f"2026-11-20 10:00:03,400 ERROR [voicebot] STT stopped: {AUTH}"
    _, found, _, _ = read([*lines, echo])
    assert found.select("close_code", "close_reason").rows() == alone.select("close_code", "close_reason").rows()


def test_a_json_line_inside_a_text_log_is_read_with_its_time():
    lines = [line for _, line in rendered("websocket-client", "plain")]
    lines.insert(4, json.dumps({"ts": "2026-11-20T09:59:00Z", "level": "error", "close_code": 3009,
                                "close_reason": "Unauthorized Connection: Too many concurrent sessions"}))
    lines.insert(5, json.dumps({"ts": "2026-11-20T09:59:01Z", "level": "info", "message": "user said hello"}))
    name, found, _, _ = read(lines)
    assert name == "websocket-client"
    row = found.filter(pl.col("close_code") == 3009)
    assert row["ts"].to_list() == [datetime(2026, 11, 20, 9, 59, tzinfo=UTC)]
    assert found.height == len(CLOSES) + 1


# --------------------------------------------------------------------------
# sample_logs/envelopes
# --------------------------------------------------------------------------

SAMPLES = Path(__file__).resolve().parents[2] / "sample_logs"


def test_every_envelope_has_a_sample_that_is_up_to_date():
    result = subprocess.run([sys.executable, str(SAMPLES / "make_envelope_samples.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
    names = {path.name.split(".")[0] for path in (SAMPLES / "envelopes").iterdir()}
    assert names == {e.name for e in ENVELOPE_LIST}


@pytest.mark.parametrize("envelope", [e.name for e in ENVELOPE_LIST])
def test_each_envelope_sample_loads_its_six_closes_dated_on_the_demo_morning(envelope):
    path = next((SAMPLES / "envelopes").glob(f"{envelope}.*"))
    name, found, rejects, _ = read(path.read_text(encoding="utf-8").splitlines(), reference_time=datetime(2026, 12, 1, tzinfo=UTC))
    assert name.split("/")[0] == envelope
    assert found.height == 6 and rejects.height == 0
    assert found["ts"].null_count() == 0
    assert found["ts"].min() >= datetime(2026, 11, 16, 8, tzinfo=UTC) and found["ts"].max() < datetime(2026, 11, 17, tzinfo=UTC)


def test_docker_lines_with_escapes_are_decoded_as_json():
    plain = json.dumps({"log": f"WebSocket Disconnected: Status=3008, Msg={EXPIRED}\n", "stream": "stdout",
                        "time": "2026-11-20T10:00:03.300000000Z"}, separators=(",", ":"))
    escaped = ('{"log":"WebSocket Disconnected: Status=1008, Msg=Unauthorized Connection: key \\u003cnone\\u003e \\"x\\"\\n",'
               '"stream":"stderr","time":"2026-11-20T10:00:04.300000000Z"}')
    _, found, rejects, _ = read([plain, escaped])
    assert rejects.height == 0
    assert found.select("close_code", "close_reason").rows() == [
        (3008, EXPIRED), (1008, 'Unauthorized Connection: key <none> "x"')]
    assert found["ts"].to_list() == [T0, T0 + timedelta(seconds=1)]


# --------------------------------------------------------------------------
# Fast paths read what the general readers read
# --------------------------------------------------------------------------

ODD_DOCKER = [
    '{"log":"WebSocket Disconnected: Status=3008, Msg=Session Expired\\n","stream":"stdout","time":"2026-11-20T10:00:03.3Z"}',
    '{"log":"no newline: a partial entry","stream":"stderr","time":"2026-11-20T10:00:03.300000000Z"}',
    '{"log":"","stream":"stdout","time":"2026-11-20T10:00:04Z"}',
    '{"log":"\\n","stream":"stdout","time":"2026-11-20T10:00:04+01:00"}',
    '{"log":"two\\n\\n","stream":"stdout","time":"2026-11-20T10:00:05Z"}',
    '{"log":"quote \\" inside\\n","stream":"stdout","time":"2026-11-20T10:00:05Z"}',
    '{"log":"back\\\\slash\\n","stream":"stdout","time":"2026-11-20T10:00:05Z"}',
    '{"log":"unicode é ✓ \u3000\\n","stream":"stdout","time":"2026-11-20T10:00:06Z"}',
    '{"log":"x\\n","stream":"stdin","time":"2026-11-20T10:00:06Z"}',
    '{"log":"x\\n","stream":"stdout","time":""}',
    '{"log":"x\\n","stream":"stdout","time":"2026-13-20T10:00:06Z"}',
    '{"log":"x\\n","stream":"stdout","time":"yesterday"}',
    '{"log":"x\\n","stream":"stdout","time":"2026-11-20 10:00:06,5Z"}',
    '{"log":"x\\n","stream":"stdout","time":"2026-11-20T10:00:06.25z"}',
    '{"log":"x\\n","stream":"stdout","time":"2026-11-20T10:00:06-05:30"}',
    '{"log":"x\\n","stream":"stdout","time":"+01:00"}',
    '{"log":"x\\n","stream":"stdout","time":"2026-11-20T10:00:06.123456789Z"}',
    '{"log":"x\\n","stream":"stdout","time":"2026-11-20T10:00:06.9999999Z"}',
    '{"log":"x\\n","stream":"stdout","time":"2026-02-30T10:00:06Z"}',
    '{"log":"x\\n","stream":"stdout","time":"2028-02-29T23:59:59Z"}',
    '{"log":"x\\n","stream":"stdout","time":"2026-11-20T24:00:00Z"}',
    '{"log":"x\\n","stream":"stdout","time":"2026-11-20T23:59:60Z"}',
    '{"log":"x\\n","stream":"stdout","time":"2026-11-20T10:00:06.Z"}',
    '{"log":"x\\n","stream":"stdout","time":"0001-01-01T00:00:00Z"}',
    '{"log":"x\\n","stream":"stdout","time":"2026-11-20T10:00:06Z"} ',
    '{"log":"x\\n","stream":"stdout","time":"2026-11-20T10:00:06Z","attrs":{"tag":"a"}}',
    '{"stream":"stdout","log":"x\\n","time":"2026-11-20T10:00:06Z"}',
    '{"log":"a","stream":"stdout","time":"b","stream":"stdout","time":"c"}',
    '{"log":"x\\n","stream":"stdout","time":"2026-11-20T10:00:06Z"',
    '{"log":"x\\n","stream":"stdout"}',
    '{"log":"raw\ttab\\n","stream":"stdout","time":"2026-11-20T10:00:06Z"}',
    '{"log":"raw\x01control\\n","stream":"stdout","time":"2026-11-20T10:00:06Z"}',
    '{"log":"raw\x7fdel\\n","stream":"stdout","time":"2026-11-20T10:00:06Z"}',
    'not json',
]


def test_docker_lines_read_by_the_regex_are_read_as_the_json_reader_reads_them():
    from closewatch.ingest.envelopes.base import UTC_US, duck
    from closewatch.ingest.envelopes.containers import _DOCKER_SQL, _docker_fast

    lines = pl.DataFrame({"source_line": range(1, len(ODD_DOCKER) + 1), "raw": ODD_DOCKER},
                         schema={"source_line": pl.Int64, "raw": pl.String})
    fast, rest = _docker_fast(lines)
    with duck() as con:
        con.register("lines", lines.filter(pl.col("source_line").is_in(fast["source_line"].implode())).to_arrow())
        slow = pl.from_arrow(con.execute(_DOCKER_SQL).to_arrow_table())
    slow = slow.with_columns(pl.col("env_ts").dt.convert_time_zone("UTC").cast(UTC_US))
    columns = ["source_line", "text", "env_ts", "zone", "stream"]
    assert fast.height >= 6 and rest.height >= 6
    assert fast.select(columns).equals(slow.select(columns))
    assert fast["reject"].is_null().to_list() == slow["reject"].is_null().to_list()


def test_blank_lines_are_the_lines_duckdb_trims_to_nothing():
    from closewatch.ingest.envelopes.base import register_lines

    texts = ["", " ", "\t", "\u00a0\u3000 ", "\u2028", "\r", " x ", "\u200a", "\x0b", "{}"]
    lines = pl.DataFrame({"source_line": range(len(texts)), "raw": texts}, schema={"source_line": pl.Int64, "raw": pl.String})
    con = duckdb.connect()
    con.register("every", lines.to_arrow())
    expected = [row[0] for row in con.execute("SELECT source_line FROM every WHERE trim(raw) <> '' ORDER BY 1").fetchall()]
    register_lines(con, lines)
    assert [row[0] for row in con.execute("SELECT source_line FROM lines ORDER BY 1").fetchall()] == expected == [2, 4, 5, 6, 8, 9]


@pytest.mark.parametrize("key", ["code", "close_code", "co\\u0064e", "error_\\u0063ode"])
def test_a_logger_record_with_a_code_field_goes_to_the_structured_reader_however_its_key_is_written(key):
    line = f'{{"level":50,"time":1794787200358,"msg":"WebSocket closed","{key}":4001,"reason":"Not Authorized"}}'
    plain = '{"level":30,"time":1794787200358,"msg":"the error code\\" was 4001"}'
    records = pl.concat(list(get_envelope("pino").unwrap(
        iter([pl.DataFrame({"source_line": [1, 2], "raw": [line, plain]})]), __import__(
            "closewatch.ingest.envelopes.base", fromlist=["UnwrapContext"]).UnwrapContext())))
    assert records["text"].to_list() == [line, 'INFO::the error code" was 4001']


def _document(entries: list[str], indent: bool = True) -> list[str]:
    joined = (",\n" if indent else ",").join(entries)
    return ("[\n" + joined + "\n]").split("\n") if indent else ["[" + joined + "]"]


_GCP_ENTRY = '{{"insertId": "{n}", "logName": "projects/p/logs/stdout", "timestamp": "2026-11-20T10:00:0{n}Z", {body}}}'
ODD_DOCUMENTS = {
    "pretty": json.dumps([{"insertId": str(n), "logName": "projects/p/logs/stdout", "textPayload": f"line {n} é ✓",
                           "timestamp": "2026-11-20T10:00:03.3Z", "resource": {"labels": {"pod_name": "voicebot-0"}}}
                          for n in range(5)], indent=2).split("\n"),
    "compact": _document([_GCP_ENTRY.format(n=n, body=f'"textPayload": "line {n}"') for n in range(3)], indent=False),
    "escapes": _document([_GCP_ENTRY.format(n=1, body=r'"textPayload": "q \" b \\ \u00e9 \u0000 \/ \u001b[0m end"')]),
    "surrogate pair": _document([_GCP_ENTRY.format(n=1, body=r'"textPayload": "smile \ud83d\ude00"')]),
    "repeated key": _document([_GCP_ENTRY.format(n=1, body='"textPayload": "first", "textPayload": "second"'),
                               _GCP_ENTRY.format(n=2, body='"labels": {"a": "1", "a": "2"}, "textPayload": "x"')]),
    "numbers": _document([_GCP_ENTRY.format(n=n, body=f'"jsonPayload": {{"message": "m", "close_code": {number}, "x": {number}}}')
                          for n, number in enumerate(["1.10", "1E5", "1e400", "0.5", "12345678901234567890", "NaN", "-1"])]),
    "minus zero": _document([_GCP_ENTRY.format(n=1, body='"jsonPayload": {"message": "m", "close_code": -0}')]),
    "lone surrogate": _document([_GCP_ENTRY.format(n=1, body=r'"textPayload": "a \ud800 b"'),
                                 _GCP_ENTRY.format(n=2, body='"textPayload": "fine"')]),
    "bad entry": _document([_GCP_ENTRY.format(n=1, body='"textPayload": "ok"'), '{"insertId": "2", "textPayload": tru}',
                            _GCP_ENTRY.format(n=3, body='"textPayload": "after"')]),
    "trailing comma": ["[", _GCP_ENTRY.format(n=1, body='"textPayload": "ok"') + ",", "]"],
    "cut off": _document([_GCP_ENTRY.format(n=n, body='"textPayload": "x"') for n in range(3)])[:-2],
    "tab in a string": _document([_GCP_ENTRY.format(n=1, body='"textPayload": "a\tb"')]),
    "not an object": _document(['"just a string"', "[1, 2]", _GCP_ENTRY.format(n=3, body='"textPayload": "x"')]),
}


@pytest.mark.parametrize("name", list(ODD_DOCUMENTS))
def test_document_entries_handed_over_as_written_read_as_the_reencoded_ones(name):
    from closewatch.ingest.envelopes.base import duck, sql_records
    from closewatch.ingest.envelopes.cloud import _GCP_SQL, document_entries

    lines = ODD_DOCUMENTS[name]
    frame = pl.DataFrame({"source_line": range(1, len(lines) + 1), "raw": lines}, schema={"source_line": pl.Int64, "raw": pl.String})
    fast, fast_rejects = document_entries(iter([frame]), None)
    slow, slow_rejects = document_entries(iter([frame]), None, own_text=False)
    assert fast["source_line"].to_list() == slow["source_line"].to_list()
    assert fast_rejects.equals(slow_rejects)
    with duck() as con:
        assert sql_records(con, fast, _GCP_SQL).equals(sql_records(con, slow, _GCP_SQL))


def test_document_entries_keep_their_own_text_only_where_duckdb_reads_it_alike():
    from closewatch.ingest.envelopes.cloud import document_entries

    def own(name: str) -> bool:
        lines = ODD_DOCUMENTS[name]
        frame = pl.DataFrame({"source_line": range(1, len(lines) + 1), "raw": lines}, schema={"source_line": pl.Int64, "raw": pl.String})
        entries, _ = document_entries(iter([frame]), None)
        return "\n" in entries["raw"][0] or entries["raw"][0].startswith('{"insertId": ')
    assert own("pretty") and own("compact") and own("escapes")  # the fast path is taken...
    assert not any(map(own, ["repeated key", "numbers", "minus zero", "lone surrogate", "surrogate pair"]))  # ...and refused


def test_a_document_entry_with_a_lone_surrogate_is_rejected_with_its_line():
    _, found, rejects, _ = read(["[", '  {"insertId": "1", "logName": "l", "textPayload": "Connection closed: 1006 - a \\ud800 b",'
                                 ' "timestamp": "2026-11-20T10:00:03Z"},',
                                 '  {"insertId": "2", "logName": "l", "textPayload": "Connection closed: 1006 - ",'
                                 ' "timestamp": "2026-11-20T10:00:04Z"}', "]"], envelope="gcp-logging")
    assert rejects["source_line"].to_list() == [2]
    assert found.height == 1


@pytest.mark.parametrize("envelope, line", [
    ("pino", '{"level":30,"time":99999999999999999999,"pid":41,"hostname":"voice-01","msg":"x"}'),
    ("journald", '{"__REALTIME_TIMESTAMP" : "99999999999999999999999", "MESSAGE" : "x"}'),
])
def test_an_epoch_time_out_of_range_costs_its_line_not_the_input(envelope, line):
    timed = rendered("websocket-client", "plain", noise=False) if envelope == "journald" else rendered("assemblyai-js", "plain", noise=False)
    lines = get_envelope(envelope).wrap(timed, {})
    lines.insert(2, line)
    _, found, rejects, _ = read(lines, envelope=envelope)
    assert found.height == len(CLOSES)
    if envelope == "pino":
        assert rejects["source_line"].to_list() == [3] and "cannot be read" in rejects["reason"][0]


def test_a_document_entry_nested_too_deeply_is_rejected_and_the_entries_before_load():
    deep = "[" * 100_000 + "]" * 100_000
    lines = ["[",
             '  {"insertId": "1", "logName": "l", "textPayload": "Connection closed: 1006 - ", "timestamp": "2026-11-20T10:00:03Z"},',
             f'  {{"insertId": "2", "logName": "l", "textPayload": "x", "deep": {deep}}}', "]"]
    _, found, rejects, _ = read(lines, envelope="gcp-logging")
    assert found.height == 1
    assert rejects["source_line"].to_list() == [3] and "nested too deeply" in rejects["reason"][0]


def test_a_json_line_nested_too_deeply_does_not_stop_detection():
    from closewatch.ingest.envelopes import detect_envelope

    assert detect_envelope(["{\"a\": " + "[" * 100_000 + "]" * 100_000 + "}"]) is None


ODD_CRI = [
    "2026-11-20T10:00:03.300000000Z stdout F WebSocket Disconnected: Status=3008, Msg=Session Expired",
    "2026-11-20T10:00:03.3Z stderr P first half é ✓ \u3000 ",
    "2026-11-20T10:00:03.3Z stderr F second half",
    "2026-11-20T10:00:03Z stdout F",
    "2026-11-20T10:00:03Z stdout F ",
    "2026-11-20T10:00:03Z stdout F  two spaces",
    "2026-11-20T10:00:03Z stdout F:x tagged",
    "2026-11-20T10:00:03Z stdout F:x\ttab in the tag",
    "2026-11-20T10:00:03Z stdout F\ttab after the tag",
    "2026-11-20T10:00:03Z stdout X bad tag",
    "2026-11-20T10:00:03Z stdin F bad stream",
    "2026-11-20T10:00:03Z  stdout F two spaces before the stream",
    "2026-11-20T11:00:03.5+01:00 stdout F offset",
    "2026-11-20T10:00:03.5-05:30 stdout F odd offset",
    "2026-11-20T10:00:03z stdout F lowercase z",
    "2026-02-30T10:00:03Z stdout F no such day",
    "2026-11-20T10:00:03\u00a0Z stdout F a no-break space in the time",
    "2026-11-20 10:00:03Z stdout F a space for the T",
    "٢٠٢٦-11-20T10:00:03Z stdout F other digits",
    "2026-11-20T10:00:03Z stdout F quote \" back\\slash \\u0000 nul \x00 end",
    "2026-11-20T10:00:03Z stdout F \r carriage return",
    "not a CRI line at all",
    "",
    "   ",
]


def test_cri_lines_cut_at_spaces_are_read_as_the_regex_reads_them():
    from closewatch.ingest.envelopes.base import UnwrapContext
    from closewatch.ingest.envelopes.containers import _cri_records

    lines = pl.DataFrame({"source_line": range(1, len(ODD_CRI) + 1), "raw": ODD_CRI}, schema={"source_line": pl.Int64, "raw": pl.String})
    ctx = UnwrapContext(source_name="/var/log/pods/voice_voicebot-0_0f1e2d3c-4b5a/voicebot/0.log")
    fast, slow = _cri_records(lines, ctx), _cri_records(lines, ctx, regex=True)
    assert fast.equals(slow)
    assert fast["reject"].null_count() >= 10 and fast["reject"].is_not_null().sum() >= 5


@pytest.mark.parametrize("envelope", ["kubernetes-json", "journald", "cri", "cloudwatch-subscription"])
def test_small_batches_map_every_close_back_to_its_line_time_and_labels(envelope):
    """Many small batches: each close is mapped back through the part of the record map that holds it."""
    lines = get_envelope(envelope).wrap(rendered("websocket-client", "plain"), {"batch": 2})
    _, whole, _, _ = read(lines)
    _, small, _, _ = read(lines, batch_bytes=300)
    assert whole.height >= len(CLOSES)
    assert small.select("source_line", "ts", "labels", "client_id", "close_code").equals(
        whole.select("source_line", "ts", "labels", "client_id", "close_code"))
    assert small["ts"].null_count() == 0
