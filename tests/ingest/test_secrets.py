"""Issue 11, reproduction 6: no secret shape reaches the database, and rejects are cut only after redaction."""

from __future__ import annotations

import json

from tests.conftest import write_lines

KEY = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SECRETS = ["hunter2pw", "s3cr3t-value", "AbC123xyzSIG", "XyZ123abcDEF", AWS_SECRET, KEY]
REASONS = [
    "Unauthorized Connection: db password: hunter2pw",
    'Unauthorized Connection: {"secret_key": "s3cr3t-value"}',
    "Unauthorized Connection: GET https://a.blob.core.windows.net/x?sv=1&sig=AbC123xyzSIG&se=2",
    "Unauthorized Connection: https://hooks.slack.com/services/T1/B2/XyZ123abcDEF",
    f"Unauthorized Connection: {AWS_SECRET}",
    f"Unauthorized Connection: key {KEY}expired",
]


def test_every_shape_is_redacted_in_closures_and_rejects(run, tmp_path, db_path):
    lines = [json.dumps({"ts": f"2026-11-20T10:00:0{i}Z", "code": 1008, "reason": reason}) for i, reason in enumerate(REASONS)]
    # A broken line whose key straddles the 2,048-character cut of rejects.raw.
    lines.append('{"broken": "' + "x" * 2030 + f" {KEY} more")
    result = run("ingest", str(write_lines(tmp_path / "s.jsonl", lines)))
    assert result.exit_code == 0, result.output
    assert run.json("select count(*) as n from closures") == [{"n": len(REASONS)}]
    rejects = run.json("select line_no, raw from rejects")
    assert [r["line_no"] for r in rejects] == [len(lines)]
    assert len(rejects[0]["raw"]) == 2048 and rejects[0]["raw"].endswith(" [REDA")
    stored = json.dumps(run.json("select * from closures")) + json.dumps(rejects)
    files = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.is_file() and p.name.startswith(db_path.name))
    for secret in SECRETS:
        assert secret not in stored
        assert secret[:12].encode() not in files
