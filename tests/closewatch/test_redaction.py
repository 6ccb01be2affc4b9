"""Redaction: every secret shape the clients print is masked, nothing else is, and none reaches the database."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closewatch.ingest.clients import FAKE_JWT, FAKE_KEY
from closewatch.redaction import MASK, redact_secrets, redact_series, redact_text, redact_then_cut

redact_string = redact_text

SAMPLES = Path(__file__).resolve().parents[2] / "sample_logs"
KEY = FAKE_KEY  # 32 hex, an AssemblyAI API key's shape
JWT = FAKE_JWT  # a temporary token's / LiveKit token's shape

# (text with a secret, the secret, what must survive)
SHAPES = [
    (f"> Authorization: {KEY}", KEY, "> Authorization: "),  # websockets debug trace
    (f"Authorization: Bearer {JWT}", JWT, "Authorization: Bearer "),
    (f"{{'Authorization': '{KEY}', 'User-Agent': 'AssemblyAI/1.0'}}", KEY, "'User-Agent': 'AssemblyAI/1.0'"),  # aiohttp / dict repr
    (f"headers: {{ Authorization: '{KEY}' }}", KEY, "headers: { Authorization: '"),  # Node util.inspect
    ("Authorization: Token abcd1234efgh5678", "abcd1234efgh5678", "Authorization: Token "),
    ("x-api-key: sk_live_0123456789abcdefXYZ", "sk_live_0123456789abcdefXYZ", "x-api-key: "),
    (f"wss://streaming.assemblyai.com/v3/ws?sample_rate=16000&token={JWT}&format_turns=true", JWT, "&format_turns=true"),
    ("wss://api.assemblyai.com/v2/realtime/ws?token=0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7", "0a1b2c3d4e5f6071", "?token="),
    (f"StreamingClientOptions(api_key='{KEY}', api_host='streaming.assemblyai.com')", KEY, "api_host='streaming.assemblyai.com'"),
    ("ASSEMBLYAI_API_KEY=plainvalue123", "plainvalue123", "ASSEMBLYAI_API_KEY="),
    ("LIVEKIT_API_SECRET=Zm9vYmFyYmF6cXV4", "Zm9vYmFyYmF6cXV4", "LIVEKIT_API_SECRET="),
    ('{"token": "tok_live_abcdef12", "expires_in": 60}', "tok_live_abcdef12", '"expires_in": 60'),
    ("password=hunter2 user=bob", "hunter2", "user=bob"),
    ("Invalid API key: abcdefghij0123456789", "abcdefghij0123456789", "Invalid API key: "),
    ("Cookie: session=abc123def; theme=dark", "abc123def", "Cookie: "),
    ("postgres://app:s3cr3tpw@db.internal:5432/calls", "s3cr3tpw", "@db.internal:5432/calls"),
    (f"using key {KEY} for tenant 7", KEY, "for tenant 7"),
    (f"temporary token {JWT} expired", JWT, "expired"),
    ("openai key sk-proj-abcdefghijklmnop1234", "sk-proj-abcdefghijklmnop1234", "openai key "),
    ("slack xoxb-123456789012-abcdefghij", "xoxb-123456789012-abcdefghij", "slack "),
    ("aws AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOP", "aws "),
    # The shapes of issue 11: name-value pairs in text, JSON and URLs, webhook URLs, bare AWS secrets, glued hex keys.
    ("db password: hunter2 retrying", "hunter2", " retrying"),
    ('{"secret_key": "s3cr3t-value", "region": "eu"}', "s3cr3t-value", '"region": "eu"'),
    ('{"client_secret":"abc"}', "abc", '"client_secret":"'),
    ('config {\\"password\\": \\"two words\\", \\"user\\": 1}', "two words", '\\"user\\": 1'),
    ("GET https://acct.blob.core.windows.net/c/a.wav?sv=2022-11-02&sig=AbC123%2Bxyz%3D&se=2026 403", "AbC123%2Bxyz%3D", "&se=2026 403"),
    ("https://bucket.s3.amazonaws.com/a?X-Amz-Signature=9a8b7c6d5e4f&X-Amz-Date=2026", "9a8b7c6d5e4f", "&X-Amz-Date=2026"),
    ("signature=Zm9vYmFyYmF6 expired", "Zm9vYmFyYmF6", " expired"),
    ("notify https://hooks.slack.com/services/T0001/B0002/XyZ123abcDEF failed", "T0001/B0002/XyZ123abcDEF", " failed"),
    ("POST https://discord.com/api/webhooks/123456789/AbC-dEf_123 -> 401", "AbC-dEf_123", " -> 401"),
    ("aws_secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY loaded", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", " loaded"),
    ("bare wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG", "bare "),
    (f"key={KEY}Z", KEY, "key="),
    (f"using {KEY}revoked now", KEY, " now"),
]


@pytest.mark.parametrize("text,secret,kept", SHAPES)
def test_every_secret_shape_is_masked_and_its_label_kept(text, secret, kept):
    redacted = redact_string(text)
    assert secret not in redacted
    assert MASK in redacted
    assert kept in redacted


@pytest.mark.parametrize("text", [
    "Unauthorized Connection: Missing Authorization header",
    "Session Expired: Maximum session duration exceeded",
    "session 5f2c1a9e-0d7b-4c1e-9a51-3e2f0c6d8b71 closed",  # session ids are dashed UUIDs, not keys
    "Input duration violation: 1200 ms. Expected between 50 and 1000 ms",
    "StreamingClientOptions(api_key=None, token=None)",
    "max_tokens=100 sort_key=asc",
    "Handshake status 401 Unauthorized",
    "sent 1011 (internal error) keepalive ping timeout; no close frame received",
    "Unauthorized connection: Invalid token: expired",
    "passwordless login enabled",
    "token: none",
])
def test_ordinary_text_is_left_alone(text):
    assert redact_string(text) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([s[0] for s in SHAPES] + ["plain words", " ", "token=", "Authorization:"]), max_size=6).map(" ".join))
def test_redacting_twice_changes_nothing(text):
    once = redact_string(text)
    assert redact_string(once) == once


def test_works_on_whole_columns_with_nulls():
    frame = pl.DataFrame({"t": [f"token={JWT}", None, "fine"]})
    out = frame.select(redact_secrets(pl.col("t")))["t"].to_list()
    assert out == ["token=" + MASK, None, "fine"]


def test_the_cheap_first_pass_flags_every_shape_so_whole_columns_redact_the_same():
    values = pl.Series("v", [text for text, _, _ in SHAPES] + ["nothing here", None])
    expected = values.to_frame().select(redact_secrets(pl.col("v")))["v"]
    assert redact_series(values).to_list() == expected.to_list()


def test_no_secret_from_the_samples_is_anywhere_in_the_database(run, db_path):
    """Every sample carries secrets in noise lines, a close reason and a garbled (rejected) close line."""
    samples = sorted(SAMPLES.glob("*.log"))
    texts = "".join(path.read_text() for path in samples)
    secrets = [KEY, JWT]
    assert all(secret in texts for secret in secrets)
    for path in samples:
        result = run("ingest", str(path))
        assert result.exit_code == 0, result.output
    assert run.json("select count(*) as n from rejects")[0]["n"] == len(samples)
    assert run.json("select count(*) as n from closures where close_reason like '%[REDACTED]%'")[0]["n"] >= 1
    dumped = "".join(str(row) for table in ("closures", "rejects", "ingest_batches") for row in run.json(f"select * from {table}"))
    beside = [p for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)]  # the file, its WAL, the SQL snapshot
    files = [f for p in beside for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    raw = b"".join(p.read_bytes() for p in files)
    for secret in secrets:
        assert secret not in dumped
        assert secret.encode() not in raw
        for piece in (secret[:16], secret[-16:]):
            assert piece.encode() not in raw


def test_a_key_straddling_the_cut_is_redacted_before_it_is_cut():
    text = "x" * 2040 + " " + KEY + " tail"
    cut = redact_then_cut(pl.Series([text]), 2048).item()
    assert len(cut) == 2048
    assert KEY[:7] not in cut and cut.endswith(" " + MASK[:7])


def test_job_errors_and_messages_redact_as_plain_strings():
    error = "unknown url type: 'hooks.slack.com/services/T1/B2/secretpart'"
    assert "secretpart" not in redact_text(error)
    assert redact_text("") == ""
