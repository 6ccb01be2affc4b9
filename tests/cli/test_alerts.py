"""The alerts commands end to end: run, status, history, silence, unsilence, outbox, backtest."""

from __future__ import annotations

import json

from tests.alerts.helpers import VIOLATIONS, add, steady


def test_alert_commands_through_the_cli(run, store, tmp_path):
    path = tmp_path / "alerts.toml"
    path.write_text(VIOLATIONS, encoding="utf-8")
    add(store, steady("good", 0, 60) + steady("bad", 10, 15, "input_duration_violation") + steady("bad", 55, 60, "input_duration_violation"))

    result = run("alerts", "run", "--rules", str(path))
    assert result.exit_code == 0, result.stderr
    assert "1 rules over 61 evaluation times: 3 transitions, 3 notifications queued, 1 groups firing" in result.stdout
    assert "3 delivered" in result.stdout and "[FIRING] violations for client_id=bad" in result.stdout

    states = json.loads(run("alerts", "status", "--format", "json").stdout)
    assert [(s["rule"], s["group"], s["state"]) for s in states] == [("violations", "client_id=bad", "firing")]
    transitions = json.loads(run("alerts", "history", "--rule", "violations", "--format", "json").stdout)
    assert [t["to_state"] for t in transitions] == ["firing", "resolved", "firing"]

    result = run("alerts", "silence", "violations", "--group", "bad", "--for", "2h", "--comment", "deploy", "--rules", str(path))
    assert result.exit_code == 0 and "Silenced violations for bad for 2h" in result.stdout
    listed = json.loads(run("alerts", "silences", "--format", "json").stdout)
    assert [(s["rule"], s["group"], s["comment"]) for s in listed] == [("violations", "bad", "deploy")]
    assert run("alerts", "unsilence", listed[0]["silence_id"]).exit_code == 0
    result = run("alerts", "unsilence", "violations")
    assert result.exit_code == 1 and "No active silence" in result.stderr
    assert run("alerts", "silence", "violations", "--for", "soon", "--rules", str(path)).exit_code == 1

    sent = json.loads(run("alerts", "outbox", "--format", "json").stdout)
    assert len(sent) == 3 and {row["status"] for row in sent} == {"delivered"}

    result = run("alerts", "backtest", "--from", "2024-05-01T09:00", "--to", "2024-05-01T11:10", "--rules", str(path), "--format", "json")
    assert result.exit_code == 0, result.stderr
    episodes = json.loads(result.stdout)
    assert [(e["rule"], e["group"], e["fired_at"], e["resolved_at"]) for e in episodes] == [
        ("violations", "client_id=bad", "2024-05-01T10:13:00+00:00", "2024-05-01T10:18:00+00:00"),
        ("violations", "client_id=bad", "2024-05-01T10:58:00+00:00", "2024-05-01T11:03:00+00:00"),
    ]
    assert run("alerts", "backtest", "--from", "yesterday", "--to", "now", "--rules", str(path)).exit_code == 1
