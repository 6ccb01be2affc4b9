"""Channels: one message sent through console, log, file, webhook or apprise, or one sentence saying why not.

Secrets stay out of the database: a channel's URL and headers are read from
the environment variables the rules file names at the moment of sending, and
an error text never quotes them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import tenacity

from closewatch import __version__
from closewatch.alerts.errors import DeliveryFailed
from closewatch.alerts.rules import Channel, format_duration, header_problem, url_problem

log = logging.getLogger("closewatch.alerts")
USER_AGENT = f"closewatch/{__version__}"
MAX_ERROR_CHARS = 300


def send(channel: Channel, payload: dict[str, Any], sleep=time.sleep, deadline: float | None = None,
         stop: threading.Event | None = None, client: httpx.Client | None = None) -> None:
    """Deliver one message through one channel, or raise DeliveryFailed with one sentence.

    After ``deadline`` (a ``time.monotonic()`` value) a webhook starts no new
    attempt; ``stop`` ends its retries early (SIGTERM). ``client`` is a shared
    httpx client (building one costs about 0.1 s, so a run makes one).
    """
    if channel.type == "console":
        print(payload["text"] + f"\n(notification {payload['id']})\n", flush=True)
    elif channel.type == "log":
        log.warning("%s | %s", payload["title"], payload["summary"], extra={"notification_id": payload["id"]})
    elif channel.type == "file":
        _append_line(Path(channel.path or "alerts.jsonl"), payload)
    elif channel.type == "webhook":
        if client is None:
            with new_client() as own:
                _post_with_retries(channel, payload, sleep, deadline, stop, own)
        else:
            _post_with_retries(channel, payload, sleep, deadline, stop, client)
    elif channel.type == "apprise":
        _apprise(channel, payload)
    else:  # pragma: no cover - rules.py admits no other type
        raise DeliveryFailed(f"channel '{channel.name}' has unknown type {channel.type!r}")


def _append_line(path: Path, payload: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(payload, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise DeliveryFailed(f"cannot append to {path}: {error.strerror or error}") from None


def _secret(channel: Channel, env: str) -> str:
    value = os.environ.get(env)
    if not value:
        raise DeliveryFailed(f"environment variable {env} (channel '{channel.name}') is not set")
    return value


class _NotAccepted(Exception):
    """One webhook attempt that did not end in a 2xx; its text is the reason, already free of secrets."""


def _webhook_request(channel: Channel) -> tuple[str, dict[str, str]]:
    """The URL and headers of a webhook call, checked: a bad value is one sentence that names where it came from."""
    url = channel.url or _secret(channel, channel.url_envs[0])
    problem = url_problem(url)
    if problem:
        where = f"environment variable {channel.url_envs[0]}" if not channel.url else "its url"
        raise DeliveryFailed(f"webhook '{channel.name}': the URL in {where} {problem}; fix it")
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **channel.headers}
    sources = {name: "its headers" for name in channel.headers}
    for name, env in channel.headers_env.items():
        headers[name] = _secret(channel, env)
        sources[name] = f"environment variable {env}"
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem:
            raise DeliveryFailed(f"webhook '{channel.name}': header {name!r} from {sources.get(name, 'closewatch')} {problem}; fix it")
    return url, headers


def new_client() -> httpx.Client:
    """The HTTP client of webhooks: no redirects followed, no proxy or .netrc taken from the environment."""
    return httpx.Client(follow_redirects=False, trust_env=False)


def _post_with_retries(channel: Channel, payload: dict[str, Any], sleep, deadline: float | None,
                       stop: threading.Event | None, client: httpx.Client) -> None:
    """POST the JSON payload with httpx; retry with exponential backoff and full jitter (tenacity); only 2xx counts.

    Redirects are not followed (a 3xx has not accepted the notification) and
    the answer's body is never read. Each attempt has the channel's full
    timeout (connect, write, read, pool): cutting it short near the run's
    deadline would give up on calls the receiver then accepts, and send
    them twice. No attempt starts after the deadline.
    """
    url, headers = _webhook_request(channel)
    headers["Idempotency-Key"] = payload["id"]
    body = json.dumps(payload, default=str).encode("utf-8")
    deadline = deadline if deadline is not None else float("inf")
    seconds = channel.timeout_s

    def attempt(client: httpx.Client) -> None:
        try:
            with client.stream("POST", url, content=body, headers=headers, timeout=httpx.Timeout(seconds)) as response:
                status = response.status_code
        except httpx.TimeoutException:
            raise _NotAccepted(f"timed out after {format_duration(seconds)}") from None
        except (httpx.HTTPError, OSError, ValueError) as error:
            raise _NotAccepted(f"connection failed ({_clean(str(error) or type(error).__name__, url)})") from None
        if not 200 <= status < 300:
            raise _NotAccepted(f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else ""))

    stops = tenacity.stop_after_attempt(channel.retries + 1) | _StopAt(deadline)
    if stop is not None:
        stops = stops | tenacity.stop_when_event_set(stop)
    retrying = tenacity.Retrying(
        stop=stops, wait=tenacity.wait_random_exponential(multiplier=channel.backoff_s, max=max(channel.backoff_s, 60)),
        retry=tenacity.retry_if_exception_type(_NotAccepted), sleep=sleep, reraise=True,
    )
    try:
        retrying(attempt, client)
    except _NotAccepted as error:
        tries = retrying.statistics.get("attempt_number", 1)
        raise DeliveryFailed(f"webhook '{channel.name}' did not accept it: {error} (after {tries} attempt{'s' if tries != 1 else ''})") from None


class _StopAt(tenacity.stop.stop_base):
    """Stop retrying once the run's deadline (a time.monotonic() value) has passed."""

    def __init__(self, deadline: float):
        self.deadline = deadline

    def __call__(self, retry_state) -> bool:
        return time.monotonic() >= self.deadline


def _apprise(channel: Channel, payload: dict[str, Any]) -> None:
    import apprise

    notifier = apprise.Apprise()
    for env in channel.url_envs:
        if not notifier.add(_secret(channel, env)):
            raise DeliveryFailed(f"apprise does not understand the URL in {env} (channel '{channel.name}'); see https://github.com/caronc/apprise/wiki")
    if not notifier.notify(title=payload["title"], body=payload["text"]):
        raise DeliveryFailed(f"apprise could not deliver to channel '{channel.name}' (its log says why)")


def _clean(text: str, *secrets: str) -> str:
    """An error text without the secrets it might quote."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<secret>")
    return text[:MAX_ERROR_CHARS]
