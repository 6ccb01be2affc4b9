"""JSON lines (any aliases), the API's own messages, CSV/TSV: through the real pipeline into DuckDB."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.conftest import write_lines

ALIAS_CASES = [
    ({"close_code": 3008, "close_reason": "Session Expired: Maximum session duration exceeded", "ts": "2026-11-20T10:00:00Z", "session_id": "s1", "client_id": "web"}, "session_expired"),
    ({"code": 3009, "reason": "Unauthorized Connection: Too many concurrent sessions", "timestamp": "2026-11-20T10:00:00Z", "session": "s1", "client": "web"}, "concurrency_limit"),
    ({"status_code": 1006, "message": "connection lost", "time": 1763632800, "id": "s1", "app": "web"}, "network_abnormal"),
    ({"close_status_code": 3007, "close_msg": "Input duration violation: 1200 ms. Expected between 50 and 1000 ms", "@timestamp": "2026-11-20T10:00:00.000+00:00", "service": "web"}, "input_duration_violation"),
    ({"error_code": 4002, "error": "Insufficient funds", "asctime": "2026-11-20 10:00:00,123", "host": "web"}, "account_issue"),
]


@pytest.mark.parametrize("record, category", ALIAS_CASES, ids=[c[1] for c in ALIAS_CASES])
def test_field_aliases_map_to_canonical_columns(run, tmp_path, record, category):
    path = write_lines(tmp_path / "a.jsonl", [json.dumps({**record, "extra": {"nested": [1, 2]}, "other": 5})])
    assert run("ingest", str(path)).exit_code == 0
    (row,) = run.json("select close_code, category, client_id, ts is not null as has_ts from closures")
    code = next(record[k] for k in ("close_code", "code", "status_code", "close_status_code", "error_code") if k in record)
    assert row == {"close_code": code, "category": category, "client_id": "web", "has_ts": True}


@pytest.mark.parametrize(
    "code, reason, category",
    [
        (3008, "Session Expired: Maximum session duration exceeded", "session_expired"),
        (3005, "Session Expired: Maximum session duration exceeded", "session_expired"),
        (4008, "session expired", "session_expired"),
        (3005, "Input duration violation: 1200 ms. Expected between 50 and 1000 ms", "input_duration_violation"),
        (4033, "audio duration is too long", "input_duration_violation"),
        (1008, "Unauthorized Connection: Too many concurrent sessions", "concurrency_limit"),
        (4102, "too many streams", "concurrency_limit"),
        (1008, "Unauthorized Connection: Missing Authorization header", "auth_failed"),
        (4001, "Not Authorized", "auth_failed"),
        (3005, "Session Cancelled: An error occurred", "server_error"),
        (4031, "session idle for too long", "idle_timeout"),
        (1000, "", "normal"),
        (3999, "Something nobody has seen", "unknown"),
    ],
)
def test_all_three_eras_classify(run, tmp_path, code, reason, category):
    path = write_lines(tmp_path / "e.jsonl", [json.dumps({"code": code, "reason": reason, "ts": "2026-11-20T10:00:00Z"})])
    run("ingest", str(path))
    assert run.json("select category from closures") == [{"category": category}]


def test_numbers_in_reasons_become_columns(run, tmp_path):
    path = write_lines(tmp_path / "n.jsonl", [
        json.dumps({"code": 3007, "reason": "Input duration violation: 1200 ms. Expected between 50 and 1000 ms"}),
        json.dumps({"code": 3007, "reason": "Audio Transmission Rate Exceeded: Received 2.1 sec. audio in 1.0 sec"}),
    ])
    run("ingest", str(path))
    rows = run.json("select chunk_ms, audio_rate_ratio from closures order by source_line")
    assert rows == [{"chunk_ms": 1200.0, "audio_rate_ratio": None}, {"chunk_ms": None, "audio_rate_ratio": pytest.approx(2.1)}]


def test_bad_lines_are_rejected_with_line_numbers_and_the_rest_loads(run, tmp_path):
    lines = [
        json.dumps({"code": 1000, "reason": "", "ts": "2026-11-20T10:00:00Z"}),
        "{not json",
        json.dumps({"code": "abc", "reason": "x"}),
        json.dumps({"code": 1006, "ts": "yesterday-ish"}),
        json.dumps({"code": 1000, "reason": {"nested": True}}),
        "",
        json.dumps({"type": "Turn", "transcript": "hello"}),
        json.dumps({"code": 1006, "reason": "lost", "ts": 1763632800123}),
    ]
    result = run("ingest", str(write_lines(tmp_path / "bad.jsonl", lines)))
    assert result.exit_code == 0
    assert "bad.jsonl:2: rejected: line is not valid JSON" in result.stdout
    rejects = run.json("select line_no, reason from rejects order by line_no")
    assert [r["line_no"] for r in rejects] == [2, 3, 4, 5]
    assert "close code 'abc' is not an integer" in rejects[1]["reason"]
    assert "timestamp 'yesterday-ish'" in rejects[2]["reason"]
    assert rejects[3]["reason"] == "close reason is not text"
    assert run.json("select source_line from closures order by 1") == [{"source_line": 1}, {"source_line": 8}]
    (batch,) = run.json("select lines_read, accepted, rejected, skipped from ingest_batches")
    assert batch == {"lines_read": 8, "accepted": 2, "rejected": 4, "skipped": 2}


@pytest.mark.parametrize(
    "value, tz, expected",
    [
        ("2026-11-20T10:00:00Z", "UTC", "2026-11-20 10:00:00"),
        ("2026-11-20T10:00:00+02:00", "UTC", "2026-11-20 08:00:00"),
        ("2026-11-20T10:00:00", "UTC", "2026-11-20 10:00:00"),
        ("2026-11-20T10:00:00", "Europe/Berlin", "2026-11-20 09:00:00"),
        ("2026-11-20 10:00:00,250", "America/New_York", "2026-11-20 15:00:00.25"),
        ("2026-11-20T10:00:00+02:00", "America/New_York", "2026-11-20 08:00:00"),
        (1763632800, "Europe/Berlin", "2025-11-20 10:00:00"),
        (1763632800123, "UTC", "2025-11-20 10:00:00.123"),
        ("1763632800", "UTC", "2025-11-20 10:00:00"),
        ("1763632800.5", "UTC", "2025-11-20 10:00:00.5"),
        (1763632800123456, "UTC", "2025-11-20 10:00:00.123"),  # microseconds: the check reads milliseconds
        (" 1763632800 ", "UTC", "2025-11-20 10:00:00"),
        ("2026-11-20T10:00:00.250Z", "UTC", "2026-11-20 10:00:00.25"),
    ],
)
def test_timestamps_and_zones_are_stored_in_utc(run, tmp_path, value, tz, expected):
    path = write_lines(tmp_path / "t.jsonl", [json.dumps({"code": 1000, "ts": value})])
    run("ingest", str(path), "--tz", tz)
    (row,) = run.json("select strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S.%g') as utc from closures")
    assert row["utc"].rstrip("0").rstrip(".") == expected.rstrip("0").rstrip(".") if "." in expected else row["utc"].startswith(expected)


def test_unknown_time_zone_is_one_sentence(run, tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [json.dumps({"code": 1000})])
    result = run("ingest", str(path), "--tz", "Mars/Olympus")
    assert result.exit_code == 1
    assert "Unknown time zone 'Mars/Olympus'" in result.stderr


def test_api_messages_join_error_and_close_per_session(run, tmp_path):
    lines = [
        {"type": "Begin", "id": "sess-1", "expires_at": 1763640000},
        {"type": "Turn", "transcript": "hello"},
        {"type": "Error", "error_code": 3008, "error": "Session Expired: Maximum session duration exceeded"},
        {"event": "close", "code": 3008, "reason": "See Error message for details", "ts": "2026-11-20T10:00:00Z"},
        {"type": "Begin", "id": "sess-2"},
        {"type": "Termination", "audio_duration_seconds": 12.5, "session_duration_seconds": 13.1},
        {"event": "close", "code": 1000, "reason": "", "ts": "2026-11-20T10:05:00Z"},
        {"type": "Begin", "id": "sess-3"},
        {"type": "Error", "error_code": 3007, "error": "Input duration violation: 1200 ms. Expected between 50 and 1000 ms"},
    ]
    path = write_lines(tmp_path / "frames.jsonl", [json.dumps(line) for line in lines])
    result = run("ingest", str(path))
    assert "api-messages" in result.stdout
    rows = run.json("select session_id, close_code, category, close_reason, session_duration_s from closures order by source_line")
    assert rows == [
        {"session_id": "sess-1", "close_code": 3008, "category": "session_expired", "close_reason": "Session Expired: Maximum session duration exceeded", "session_duration_s": None},
        {"session_id": "sess-2", "close_code": 1000, "category": "normal", "close_reason": "", "session_duration_s": 13.1},
        {"session_id": "sess-3", "close_code": 3007, "category": "input_duration_violation", "close_reason": "Input duration violation: 1200 ms. Expected between 50 and 1000 ms", "session_duration_s": None},
    ]


@pytest.mark.parametrize("delimiter, suffix", [(",", "csv"), ("\t", "tsv")])
def test_csv_and_tsv_with_header(run, tmp_path, delimiter, suffix):
    rows = [
        ["timestamp", "close_status_code", "close_msg", "session", "app"],
        ["2026-11-20T10:00:00Z", "3009", "Unauthorized Connection: Too many concurrent sessions", "s1", "web"],
        ["2026-11-20T10:01:00Z", "abc", "oops", "s2", "web"],
        ["2026-11-20T10:02:00Z", "1006", "", "s3"],
    ]
    text = "\n".join(delimiter.join(row) for row in rows) + "\n"
    if delimiter == ",":
        text += '2026-11-20T10:03:00Z,1008,"Unauthorized Connection: Missing Authorization header, really",s4,web\n'
    path = tmp_path / f"c.{suffix}"
    path.write_text(text)
    run("ingest", str(path))
    assert run.json("select line_no from rejects order by 1") == [{"line_no": 3}, {"line_no": 4}]
    categories = [r["category"] for r in run.json("select category from closures order by source_line")]
    assert categories == ["concurrency_limit"] + (["auth_failed"] if delimiter == "," else [])


def test_gzip_stdin_directories_and_globs(run, tmp_path):
    folder = tmp_path / "logs" / "nested"
    folder.mkdir(parents=True)
    record = lambda n: json.dumps({"code": 1000, "ts": f"2026-11-20T10:00:0{n}Z", "session_id": f"s{n}"})
    with gzip.open(folder / "one.jsonl.gz", "wt") as handle:
        handle.write(record(1) + "\n")
    write_lines(tmp_path / "logs" / "two.log", [record(2)])
    write_lines(tmp_path / "three.jsonl", [record(3)])
    assert run("ingest", str(tmp_path / "logs")).exit_code == 0
    assert run("ingest", str(tmp_path / "thr*.jsonl")).exit_code == 0
    assert run("ingest", "-", input=record(4) + "\n").exit_code == 0
    assert run.json("select count(*) as n from closures") == [{"n": 4}]
    assert run("ingest", str(tmp_path / "nothing-*.jsonl")).exit_code == 1


def test_format_override_and_unknown_format(run, tmp_path):
    path = write_lines(tmp_path / "x.txt", [json.dumps({"code": 1000})])
    assert "jsonl" in run("ingest", str(path), "--format", "jsonl").stdout
    result = run("ingest", str(path), "--format", "nope")
    assert result.exit_code == 1 and "Unknown format 'nope'" in result.stderr


def test_a_big_file_read_in_parallel_keeps_every_line_number(run, tmp_path):
    """DuckDB reads a big JSON-lines file in parallel buffers; each row's number is still its line's.

    Lines of very different lengths (17 MB in all) put the buffers' edges at odd
    places; read without insertion order, thousands of rows came out misplaced.
    Every line names itself (session_id), and every 997th is a reject.
    """
    lengths = [0, 10, 200, 3000]
    lines = []
    for number in range(1, 20_001):
        if number % 997 == 0:
            lines.append(json.dumps({"code": "not a code", "reason": str(number)}))
        else:
            lines.append(json.dumps({"session_id": str(number), "code": 1006, "reason": "lost " + "x" * lengths[number * 7 % 4],
                                     "ts": f"2026-11-20T10:00:00.{number:06d}Z"}))
    assert run("ingest", str(write_lines(tmp_path / "big.jsonl", lines))).exit_code == 0
    assert run.json("select count(*) as n, count(*) filter (where session_id::bigint <> source_line) as misplaced from closures") == [
        {"n": 20_000 - 20, "misplaced": 0}]
    rejects = run.json("select line_no, raw from rejects order by line_no")
    assert [r["line_no"] for r in rejects] == list(range(997, 20_001, 997))
    assert all(json.loads(r["raw"])["reason"] == str(r["line_no"]) for r in rejects)
