"""What a notification says: what fired, for whom, how many, over which window, why, and what to do."""

from __future__ import annotations

from closewatch.alerts.messages import build_message
from closewatch.alerts.model import Notice
from closewatch.alerts.rules import Rule
from tests.alerts.helpers import T0, at


def test_a_message_says_what_fired_for_whom_how_many_over_which_window_why_and_what_to_do():
    rule = Rule(name="violations", kind="threshold", severity="error", group_by=("client_id",), window_s=900, value=5,
                where={"category": ("input_duration_violation",)}, runbook="see the wiki", labels={"team": "voice"},
                message="{client_id} broke the protocol {value} times ({headline})")
    notice = Notice("violations", "client_id=kiosk", {"client_id": "kiosk"}, "firing", int(T0.timestamp() * 1e6), 12.0, None,
                    details={"window_start": at(-15), "window_end": T0, "action": "send 50-1000 ms chunks",
                             "top_reasons": [{"reason": "Input duration violation: 1200 ms", "category": "input_duration_violation", "count": 12}]})
    message = build_message(rule, notice)
    assert message["title"] == "[FIRING] violations for client_id=kiosk (error)"
    assert message["summary"].startswith("kiosk broke the protocol 12 times (12 closures with category input_duration_violation in 15m for client_id=kiosk")
    text = message["text"]
    for part in ("Window: 2024-05-01 09:45 UTC to 2024-05-01 10:00 UTC (15m)", "12 x Input duration violation: 1200 ms",
                 "Action: send 50-1000 ms chunks", "Runbook: see the wiki", "Labels: team=voice"):
        assert part in text, part
    broken = Rule(name="r", kind="threshold", window_s=60, message="{value:d}")
    assert "message template failed" in build_message(broken, notice)["summary"]
