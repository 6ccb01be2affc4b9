"""Channels on their own: a failure is one sentence that never quotes the secret URL."""

from __future__ import annotations

import pytest

from closewatch.alerts.channels import send
from closewatch.alerts.errors import DeliveryFailed
from closewatch.alerts.rules import Channel


def test_an_unreachable_webhook_fails_in_one_sentence_without_its_url():
    channel = Channel("hook", "webhook", url="http://127.0.0.1:9/secret-path", timeout_s=0.5, retries=0)
    with pytest.raises(DeliveryFailed, match="webhook 'hook' did not accept it: connection failed") as caught:
        send(channel, {"id": "x", "title": "t", "text": "t"})
    assert "secret-path" not in str(caught.value)
