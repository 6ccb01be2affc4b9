"""Text formats: lines written with the clients' own format strings come back as the right closes.

Every fixture here is built by the format's renderer (ingest.clients), which
uses the same format strings the parser reads; hand-written lines cover what
the renderers do not write (a garbled code, foreign tracebacks).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closewatch.ingest import clients
from closewatch.ingest.formats import (
    EVENT_SCHEMA,
    REJECT_SCHEMA,
    ParseOptions,
    all_formats,
    detect_format,
    get_format,
)
from closewatch.ingest.lines import head_lines_of, iter_line_batches
from closewatch.ingest.textlogs import FORMATS, RENDERERS, RENDERERS_TIMED

SAMPLES = Path(__file__).resolve().parents[2] / "sample_logs"
T0 = datetime(2025, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC)
SID = ["5f2c1a9e-0d7b-4c1e-9a51-3e2f0c6d8b71", "6a3d2b8f-1e8c-4d2f-8b62-4f3a1d7e9c82", "7b4e3c9a-2f9d-4e3a-9c73-5a4b2e8f0d93"]
TEXT_FORMATS = list(FORMATS)
# Layouts whose lines carry a timestamp.
TIMED = {"dashes", "spaces", "brackets", "pipes", "thread", "livekit", "loguru", "iso", "dash", "kv"}
TIMED_FORMATS = {"browser-js", "pipecat", "generic"}


def lines_frame(lines: list[str], first: int = 1) -> pl.DataFrame:
    return pl.DataFrame({"raw": lines}, schema={"raw": pl.String}).with_row_index("source_line", offset=first).with_columns(
        pl.col("source_line").cast(pl.Int64)
    )


def parse(fmt: str, lines: list[str], batch: int | None = None, tz: str = "UTC") -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Events, rejects and skipped count of ``lines`` read as ``fmt`` (in batches of ``batch`` lines)."""
    frame = lines_frame(lines)
    size = batch or max(1, frame.height)
    batches = iter([frame.slice(i, size) for i in range(0, max(frame.height, 1), size)])
    out = list(get_format(fmt).parse(batches, ParseOptions(tz=tz)))
    events = pl.concat([o.events for o in out]) if out else pl.DataFrame(schema=EVENT_SCHEMA)
    rejects = pl.concat([o.rejects for o in out]) if out else pl.DataFrame(schema=REJECT_SCHEMA)
    return events, rejects, sum(o.skipped for o in out)


def event(code, reason, session=0, client=None, at=T0, **extra) -> dict:
    return {"ts": at, "session_id": SID[session] if session is not None else None, "close_code": code,
            "close_reason": reason, "client_id": client, **extra}


# --------------------------------------------------------------------------
# Round trips: renderer -> parser
# --------------------------------------------------------------------------

EXPIRED = "Session Expired: Maximum session duration exceeded"
CHUNKS = "Input duration violation: 1200 ms. Expected between 50 and 1000 ms"
LAYOUT_CASES = [(fmt, layout) for fmt, c in clients.CLIENTS.items() for layout in c.layouts] + [("generic", "plain")]


@pytest.mark.parametrize("fmt,layout", LAYOUT_CASES)
@pytest.mark.parametrize("code,reason", [(3008, EXPIRED), (3007, CHUNKS), (1008, "Unauthorized Connection: Missing Authorization header")])
def test_error_close_round_trips(fmt, layout, code, reason):
    lines = RENDERERS[fmt](event(code, reason, client="callbot-eu"), layout)
    events, rejects, skipped = parse(fmt, lines)
    assert rejects.height == 0
    assert events.height == 1, lines
    row = events.row(0, named=True)
    assert (row["close_code"], row["close_reason"], row["session_id"]) == (code, reason, SID[0])
    if layout in TIMED or fmt in TIMED_FORMATS:
        assert row["ts"] == T0.replace(microsecond=250_000)
    else:
        assert row["ts"] is None
    if fmt != "livekit-agents" or layout == "livekit":  # LiveKit names a client only in its dev layout's extras
        assert row["client_id"] == "callbot-eu"
    assert skipped == len(lines) - 1


@pytest.mark.parametrize("fmt,layout", LAYOUT_CASES)
def test_normal_close_round_trips_with_durations(fmt, layout):
    lines = RENDERERS[fmt](event(1000, "", audio_duration_s=12.0, session_duration_s=14.0), layout)
    events, _, _ = parse(fmt, lines)
    assert events.height == 1, lines
    row = events.row(0, named=True)
    assert (row["close_code"], row["session_id"]) == (1000, SID[0])
    assert row["close_reason"] == ("normal closure" if fmt == "generic" else None)
    if fmt in ("assemblyai-python-v3", "websocket-client", "pipecat", "livekit-agents"):  # they log the Termination message
        assert row["audio_duration_s"] == 12.0
    if fmt in ("websocket-client", "pipecat", "livekit-agents"):
        assert row["session_duration_s"] == 14.0


# What each client can say about a refused handshake (HTTP 401) and a dropped connection (1006).
REFUSED = {"assemblyai-python-v3": 401, "assemblyai-python-v2": 401, "assemblyai-js": 401, "websocket-client": 401,
           "browser-js": 1006, "pipecat": 401, "livekit-agents": 401, "generic": 401}
DROPPED = {"assemblyai-python-v3": 1006, "assemblyai-python-v2": 1006, "assemblyai-js": 1006, "websocket-client": None,
           "browser-js": 1006, "pipecat": 1006, "livekit-agents": 1006, "generic": 1006}


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_refused_handshake_is_one_event_with_the_http_status(fmt):
    lines = RENDERERS[fmt](event(401, "", session=None))
    events, rejects, _ = parse(fmt, lines)
    assert rejects.height == 0
    assert events["close_code"].to_list() == [REFUSED[fmt]], lines
    assert events["session_id"].to_list() == [None]


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_dropped_connection_is_one_event(fmt):
    """websocket-client hands on_close None when no close frame came: the code stays NULL, not guessed."""
    events, _, _ = parse(fmt, RENDERERS[fmt](event(1006, "")))
    assert events["close_code"].to_list() == [DROPPED[fmt]]


def test_every_registered_text_format_has_a_renderer_and_a_cited_source():
    names = {f.name for f in all_formats()}
    assert set(TEXT_FORMATS) <= names
    assert set(RENDERERS) == set(TEXT_FORMATS) == set(RENDERERS_TIMED)
    for client in [*clients.CLIENTS.values(), clients.GENERIC_CLIENT]:
        assert client.source and all(p.source for p in client.patterns)


# --------------------------------------------------------------------------
# One event per close
# --------------------------------------------------------------------------


def test_sdk_error_line_app_echo_and_close_count_once_and_keep_the_error_frames_text():
    long_reason = "Invalid Message: " + "x" * 150  # longer than a close frame's 123 bytes
    lines = RENDERERS["assemblyai-python-v3"](event(3006, long_reason))
    assert any("See Error message for details" in line for line in lines)
    events, _, _ = parse("assemblyai-python-v3", lines)
    assert events.height == 1
    assert events.row(0, named=True)["close_reason"] == long_reason


def test_sdk_close_line_then_app_echo_count_once():
    lines = [
        "ERROR:assemblyai.streaming.v3.client:Connection closed: Session Expired (code=4008)",
        "Error occurred: Session Expired",
    ]
    events, _, skipped = parse("assemblyai-python-v3", lines)
    assert events.select("source_line", "close_code", "close_reason").rows() == [(1, 4008, "Session Expired")]
    assert skipped == 1


def test_two_sessions_dropping_one_after_another_stay_two_closes():
    """Same code, no timestamps, no Begin lines: each close keeps its own echo, nothing merges across."""
    one = ["ERROR:assemblyai.streaming.v3.client:Connection closed: no reason given (code=1006)",
           "Error occurred: Connection closed (code=1006)"]
    events, _, _ = parse("assemblyai-python-v3", one + one + one)
    assert events["source_line"].to_list() == [1, 3, 5]
    assert events["close_reason"].to_list() == [None, None, None]


def test_node_error_listener_and_close_listener_count_once():
    lines = RENDERERS["assemblyai-js"](event(3009, "Unauthorized Connection: Too many concurrent sessions"))
    assert sum(line.startswith("Error: Error:") for line in lines) == 1 and any(line.startswith("    at ") for line in lines)
    events, _, _ = parse("assemblyai-js", lines)
    assert events.select("close_code", "close_reason").rows() == [(3009, "Unauthorized Connection: Too many concurrent sessions")]


def test_legacy_python_sdk_keeps_the_servers_text_over_its_own_message_table():
    lines = RENDERERS["assemblyai-python-v2"](event(4008, "Session expired after 3h"))
    assert "An error occured: ('Session Expired', 4008)" in lines  # the SDK's RealtimeErrorMapping text
    events, _, _ = parse("assemblyai-python-v2", lines)
    assert events.select("close_code", "close_reason", "session_id").rows() == [(4008, "Session expired after 3h", SID[0])]


def test_livekit_close_retry_and_traceback_count_once():
    lines = RENDERERS["livekit-agents"](event(3008, EXPIRED))
    assert any(line.startswith("livekit.agents._exceptions.APIStatusError") for line in lines)
    events, _, skipped = parse("livekit-agents", lines)
    assert events.select("close_code", "close_reason").rows() == [(3008, EXPIRED)]
    assert skipped == len(lines) - 1


def test_pipecat_close_and_reconnect_lines_count_once():
    lines = RENDERERS["pipecat"](event(3005, "Session Cancelled: An error occurred"))
    assert any("reconnecting, attempt 1" in line for line in lines)
    events, _, _ = parse("pipecat", lines)
    assert events.select("close_code", "close_reason").rows() == [(3005, "Session Cancelled: An error occurred")]


def test_generic_fallback_folds_an_echo_from_another_logger_but_not_repeats_from_one():
    echo = ["2025-06-01T12:00:00.000Z ERROR sdk: stream failed: Session Expired: Maximum session duration exceeded",
            "2025-06-01T12:00:00.001Z ERROR app: call 7 ended: Session Expired: Maximum session duration exceeded"]
    events, _, _ = parse("generic", echo)
    assert events.height == 1
    burst = [f"2025-06-01T12:00:0{i}.000Z WARN gateway: Unauthorized Connection: Too many concurrent sessions" for i in range(5)]
    events, _, _ = parse("generic", burst)
    assert events.height == 5


def test_a_second_echo_of_the_same_kind_is_another_sessions_close():
    """v2 apps print "Closing Session" once per session: after one session's error close, the next
    session's plain "Closing Session" is its own (normal) close, not a second echo of the first."""
    lines = ["An error occured: ('Session Expired', 4008)", "Closing Session", "Closing Session"]
    events, _, _ = parse("assemblyai-python-v2", lines)
    assert events.select("source_line", "close_code").rows() == [(1, 4008), (3, 1000)]


def test_generic_closes_of_different_sessions_moments_apart_stay_apart():
    lines = [RENDERERS["generic"](event(3009, "Unauthorized Connection: Too many concurrent sessions", session=i,
                                        at=T0 + timedelta(seconds=i)))[0] for i in range(3)]
    events, _, _ = parse("generic", lines)
    assert events["session_id"].to_list() == SID


# --------------------------------------------------------------------------
# Sessions from Begin lines: attached only when unambiguous
# --------------------------------------------------------------------------


def _story(fmt: str, layout: str | None, specs: list[tuple[int, int, int, int]]) -> list[str]:
    """Interleave sessions by time: specs are (session, code, began_s, closed_s)."""
    timed = []
    for session, code, began, closed in specs:
        e = event(code, EXPIRED if code != 1000 else "", session=session, at=T0 + timedelta(seconds=closed),
                  began_at=T0 + timedelta(seconds=began), audio_duration_s=5.0, session_duration_s=6.0)
        timed += RENDERERS_TIMED[fmt](e, layout)
    return [line for _, line in sorted(timed, key=lambda item: item[0])]


@pytest.mark.parametrize("fmt,layout", [("assemblyai-python-v3", "pipes"), ("assemblyai-js", "iso"), ("pipecat", None),
                                        ("websocket-client", None), ("browser-js", "dash")])
def test_strictly_sequential_sessions_get_their_ids(fmt, layout):
    lines = _story(fmt, layout, [(0, 3008, 0, 10), (1, 1000, 20, 30), (2, 3008, 40, 50)])
    events, _, _ = parse(fmt, lines)
    assert events["session_id"].to_list() == SID


@pytest.mark.parametrize("fmt,layout", [("assemblyai-python-v3", "pipes"), ("assemblyai-js", "iso"), ("pipecat", None),
                                        ("websocket-client", None), ("assemblyai-python-v2", "dashes")])
def test_overlapping_sessions_stay_unattached(fmt, layout):
    """B0 B1 C0 C1: which close belongs to which Begin is a guess, so both stay empty; the next
    sequential session is attached again."""
    lines = _story(fmt, layout, [(0, 3008, 0, 10), (1, 3008, 5, 15), (2, 3008, 30, 40)])
    events, _, _ = parse(fmt, lines)
    assert events["session_id"].to_list() == [None, None, SID[2]]


def test_sessions_on_different_threads_attach_by_thread():
    first = RENDERERS_TIMED["assemblyai-python-v3"](event(3008, EXPIRED, session=0, at=T0 + timedelta(seconds=10), began_at=T0), "thread")
    second = RENDERERS_TIMED["assemblyai-python-v3"](
        event(3007, CHUNKS, session=1, client="other", at=T0 + timedelta(seconds=12), began_at=T0 + timedelta(seconds=1)), "thread")
    lines = [line for _, line in sorted(first + second, key=lambda item: item[0])]
    assert len({line.split("[")[1].split("]")[0] for line in lines}) == 2  # two reader threads
    events, _, _ = parse("assemblyai-python-v3", lines)
    assert events.select("close_code", "session_id").rows() == [(3008, SID[0]), (3007, SID[1])]


def test_a_close_that_names_its_session_keeps_it_even_when_sessions_overlap():
    lines = _story("livekit-agents", "livekit", [(0, 3008, 0, 10), (1, 3008, 5, 15)])
    events, _, _ = parse("livekit-agents", lines)
    assert events["session_id"].to_list() == SID[:2]


def test_a_refused_handshake_after_a_close_takes_no_session():
    lines = RENDERERS["assemblyai-python-v3"](event(3008, EXPIRED)) + RENDERERS["assemblyai-python-v3"](event(401, "", session=None))
    events, _, _ = parse("assemblyai-python-v3", lines)
    assert events.select("close_code", "session_id").rows() == [(3008, SID[0]), (401, None)]


# --------------------------------------------------------------------------
# Tracebacks, unrelated lines, rejects
# --------------------------------------------------------------------------

FOREIGN_TRACEBACK = [
    "ERROR:app.stt:on_error handler raised",
    "Traceback (most recent call last):",
    '  File "/srv/app/stt.py", line 57, in on_error',
    "    raise RuntimeError(msg)",
    "RuntimeError: WebSocket Disconnected: Status=3008, Msg=Session Expired: Maximum session duration exceeded",
    "",
    "During handling of the above exception, another exception occurred:",
    "",
    "Traceback (most recent call last):",
    '  File "/srv/app/stt.py", line 60, in on_error',
    "    raise ConnectionError('x')",
    "websockets.exceptions.ConnectionClosedError: received 3008 (registered) Session Expired: Maximum session duration exceeded; then sent 3008 (registered)",
    "INFO:app:next record",
]


@pytest.mark.parametrize("fmt", ["websocket-client", "generic", "pipecat"])
def test_traceback_lines_are_skipped_with_their_record_not_read_as_closes(fmt):
    events, rejects, skipped = parse(fmt, FOREIGN_TRACEBACK)
    assert events.height == 0 and rejects.height == 0
    assert skipped == len(FOREIGN_TRACEBACK)


def test_traceback_split_across_batches_is_still_skipped():
    lines = RENDERERS["livekit-agents"](event(3008, EXPIRED)) * 1 + FOREIGN_TRACEBACK
    whole = parse("generic", lines)[0]
    for size in (1, 2, 3, 5):
        assert parse("generic", lines, batch=size)[0].equals(whole)
    assert whole.height == 1


def test_unrelated_lines_are_skipped_and_a_garbled_close_is_rejected_with_its_line():
    lines = [
        "INFO:httpx:HTTP Request: POST https://api.openai.com/v1/chat/completions \"HTTP/1.1 200 OK\"",
        "ERROR:app.db:database connection closed unexpectedly; reconnecting pool",
        "ERROR:assemblyai.streaming.v3.client:Connection closed: Session Expired (code=40O8)",
        "ERROR:assemblyai.streaming.v3.client:Connection closed: Session Expired (code=4008)",
        "ERROR:assemblyai.streaming.v3.client:Connection closed: Session Expired (code=99999)",
        "WARNING:assemblyai.streaming.v3.client:Streaming warning (code=1001): Audio is silent",
    ]
    events, rejects, skipped = parse("assemblyai-python-v3", lines)
    assert events["source_line"].to_list() == [4]
    assert rejects["source_line"].to_list() == [3, 5]
    assert "'40O8' is not a number" in rejects["reason"][0] and rejects["reason"][0].endswith(".")
    assert "outside" in rejects["reason"][1]
    assert rejects["raw"][0] == lines[2]
    assert skipped == 3
    assert events.height + rejects.height + skipped == len(lines)


def test_a_client_line_whose_layout_is_broken_is_a_reject():
    line = ("2025-06-01 12:00:00.000 | WARNING  | pipecat.services.websocket_service:_maybe_try_reconnect:212 - "
            "AssemblyAISTTService#0 connection closed, but with an error: garbage")
    lines = [line]
    _, rejects, _ = parse("pipecat", lines)
    assert rejects.height == 1 and "layout does not match" in rejects["reason"][0]


def test_null_words_are_missing_codes_not_rejects():
    lines = ["WebSocket Error: Connection to remote host was lost.", "WebSocket Disconnected: Status=None, Msg=None"]
    events, rejects, _ = parse("websocket-client", lines)
    assert rejects.height == 0
    assert events.select("close_code", "close_reason").rows() == [(None, "Connection to remote host was lost.")]


def test_colour_codes_are_ignored():
    line = RENDERERS["livekit-agents"](event(3008, EXPIRED, session=None))[0]
    coloured = line.replace(" WARNING ", " \x1b[33mWARNING\x1b[0m ") + "\x1b[0m"
    events, _, _ = parse("livekit-agents", [coloured])
    assert events.select("close_code", "close_reason").rows() == [(3008, EXPIRED)]


def test_naive_timestamps_are_read_in_the_given_zone():
    lines = RENDERERS["pipecat"](event(3008, EXPIRED, session=None))
    events, _, _ = parse("pipecat", lines, tz="Europe/Berlin")
    assert events["ts"][0] == T0.replace(microsecond=250_000) - timedelta(hours=2)


def test_events_have_exactly_the_event_schema():
    events, rejects, _ = parse("assemblyai-python-v3", RENDERERS["assemblyai-python-v3"](event(3008, EXPIRED)))
    assert events.schema == pl.Schema(EVENT_SCHEMA)
    assert rejects.schema == pl.Schema(REJECT_SCHEMA)


# --------------------------------------------------------------------------
# Detection and the sample files
# --------------------------------------------------------------------------

SAMPLE_FORMATS = {
    "assemblyai-python-v3.log": "assemblyai-python-v3", "assemblyai-python-v2.log": "assemblyai-python-v2",
    "assemblyai-js.log": "assemblyai-js", "websocket-client.log": "websocket-client", "browser-js.log": "browser-js",
    "pipecat-loguru.log": "pipecat", "livekit-agents.log": "livekit-agents", "generic-app.log": "generic",
}


@pytest.mark.parametrize("name", sorted(SAMPLE_FORMATS))
def test_sniff_picks_the_samples_own_format(name):
    with open(SAMPLES / name, "rb") as stream:
        head = head_lines_of(stream)
    assert detect_format(head).name == SAMPLE_FORMATS[name]


def _sample_script():
    sys.path.insert(0, str(SAMPLES))
    try:
        import make_text_samples
    finally:
        sys.path.remove(str(SAMPLES))
    return make_text_samples


def _as_logged(fmt: str, code: int | None) -> int | None:
    """The code a client can report for a close (see REFUSED / DROPPED)."""
    if code == 1006 or (code is None and fmt != "assemblyai-python-v2"):
        return DROPPED[fmt]
    if code is not None and code < 1000:
        return REFUSED[fmt]
    return code


@pytest.mark.parametrize("name", sorted(SAMPLE_FORMATS))
def test_each_sample_loads_every_close_once_one_reject_and_leaves_overlaps_unattached(name):
    fmt = SAMPLE_FORMATS[name]
    with open(SAMPLES / name, "rb") as stream:
        out = list(get_format(fmt).parse(iter_line_batches(stream, batch_bytes=4096), ParseOptions()))
    events = pl.concat([o.events for o in out])
    rejects = pl.concat([o.rejects for o in out])
    timeline = _sample_script().timeline(fmt, __import__("random").Random(f"closewatch-sample-{fmt}"))
    expected = sorted((_as_logged(fmt, e["close_code"]) for e in timeline), key=lambda c: (c is None, c))
    assert sorted(events["close_code"].to_list(), key=lambda c: (c is None, c)) == expected
    assert rejects.height == 1 and clients.FAKE_KEY in rejects["raw"][0]
    lines = (SAMPLES / name).read_text().count("\n")
    assert events.height + rejects.height + sum(o.skipped for o in out) == lines
    overlapping = {e["session_id"] for e in timeline if e.get("overlapping")}
    attached = set(events["session_id"].drop_nulls())
    if fmt in ("livekit-agents", "generic"):  # their close lines name the session: overlaps hide nothing
        assert attached == {e["session_id"] for e in timeline if e["session_id"]}
    else:
        assert not overlapping & attached
        assert attached == {e["session_id"] for e in timeline if e["session_id"] and not e.get("overlapping")}


def test_samples_are_current():
    make_text_samples = _sample_script()
    for fmt, (name, _) in make_text_samples.FILES.items():
        assert (SAMPLES / name).read_text() == "\n".join(make_text_samples.build(fmt)) + "\n", name


def _sample_lines() -> list[str]:
    names = [p for p in sorted(SAMPLES.iterdir()) if p.suffix in (".log", ".jsonl", ".csv", ".tsv")]
    return [line for p in names for line in p.read_text(errors="replace").splitlines()[:200]]


SAMPLE_LINES = _sample_lines()


def exhaustive_detect(head: list[str]):
    """detect_format without skipping any sniff: the first format with the highest score."""
    scores = [(fmt.sniff(head), -place, fmt) for place, fmt in enumerate(all_formats())]
    best = max(scores, key=lambda item: item[:2])
    return best[2] if best[0] > 0 else None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(SAMPLE_LINES), st.text(max_size=80)), max_size=60))
def test_no_sniff_scores_above_its_formats_best_and_skipping_changes_no_choice(head):
    """detect_format skips a format whose best_sniff cannot beat the best score so far (issue 16): exact only if
    no sniff ever scores above its best_sniff."""
    for fmt in all_formats():
        assert fmt.sniff(head) <= fmt.best_sniff, fmt.name
    assert detect_format(head) is exhaustive_detect(head)


def test_every_sample_is_detected_as_without_skipping():
    for path in sorted(SAMPLES.iterdir()):
        if path.suffix in (".log", ".jsonl", ".csv", ".tsv"):
            with open(path, "rb") as stream:
                head = head_lines_of(stream)[:50]
            assert detect_format(head) is exhaustive_detect(head), path.name


def test_sniff_reads_lines_that_carry_an_apps_client_tag():
    head = [f"Session ID: {SID[0]} client=callbot-eu", "Closing Session client=callbot-eu"]
    assert detect_format(head).name == "assemblyai-python-v2"


def test_json_looking_input_keeps_text_scores_low():
    head = ['{"type": "close", "code": 3008, "reason": "Session Expired: Maximum session duration exceeded"}'] * 20
    for fmt in TEXT_FORMATS:
        assert FORMATS[fmt].sniff(head) < 0.9


def test_generic_scores_low_but_above_zero_on_a_known_reason_and_zero_on_unrelated_text():
    assert 0 < FORMATS["generic"].sniff(["12:00 stt failed: Session Expired: Maximum session duration exceeded"]) < 0.5
    assert 0 < FORMATS["generic"].sniff(["12:00 ws closed with code=4008"]) < 0.5
    for fmt in TEXT_FORMATS:
        assert FORMATS[fmt].sniff(["starting up", "listening on :8080", "done"]) == 0


# --------------------------------------------------------------------------
# Robustness
# --------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from([
    "Connection closed: ", "(code=", ")", "Session closed: ", "WebSocket Disconnected: Status=", ", Msg=",
    "Traceback (most recent call last):", "  File x", "ERROR:assemblyai.streaming.v3.client:", "Session started: ",
    " | WARNING  | ", " connection closed, but with an error: received ", "An error occured: ('", "', ", "Closing Session",
    "AssemblyAI WebSocket closed unexpectedly session=", " code=", " data=", " extra=", "Session Expired", "\x1b[33m",
    "2025-06-01 12:00:00,123", "2025-06-01T12:00:00Z ", "1006", "None", "4OO8", "\t", " ", "é", "\\", "$1", "{",
])
_LINES = st.lists(st.one_of(st.text(max_size=60), st.lists(_FRAGMENTS, max_size=8).map("".join)), max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=_LINES, fmt=st.sampled_from(TEXT_FORMATS), batch=st.integers(1, 7))
def test_parse_never_raises_and_accounts_for_every_line(lines, fmt, batch):
    lines = [line.replace("\n", " ").replace("\r", " ") for line in lines]
    events, rejects, skipped = parse(fmt, lines, batch=batch)
    assert events.height + rejects.height + skipped == len(lines)
    assert events["source_line"].is_unique().all() if events.height else True
    FORMATS[fmt].sniff(lines)
