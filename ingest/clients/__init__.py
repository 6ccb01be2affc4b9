"""What each client prints when a streaming session ends: patterns as data, and renderers.

One module per client (``python_v3``, ``python_v2``, ``js``, ``websocket_client``,
``browser``, ``pipecat``, ``livekit``, and the ``generic`` fallback), each holding
its ``CLIENT``: one text format closewatch reads. Its ``patterns`` are the
client's own format strings turned into regular expressions (Rust syntax, as
polars uses: no look-around, no back-references), each cited beside it with
the repository and file it was read from. The same format strings drive the
``render`` functions, which the tests, the sample files and the log generator
use, so a parser and its fixtures cannot drift apart.

Roles say what a line means in a session's story, because one close is often
logged several times (an SDK line, the app's echo, the close itself):

``E``  an error report that comes *before* the close of the same session
       (the server's Error frame, an ``on_error`` callback): folded into the
       next close line when one follows, else an event of its own;
``C``  the close itself: always one event;
``A``  an application's echo of the report just logged: folded into the
       preceding E or C line, else into the next close, else an event;
``B``  a session began, carrying its id (attached to the following close
       only when unambiguous);
``T``  the Termination message (durations): folded into the next close, or,
       where the client logs nothing for a normal close, the event itself
       (close code 1000).
``G``  (generic fallback only) a line naming a known reason text.

``standalone`` says when an E/A/T line that found no close becomes an event:
``always``, ``known`` (only if it carries a close/HTTP code or a reason text
closewatch knows), or ``never`` (pure echoes such as "retrying in 2s").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from closewatch.ingest.clients import (
    browser,
    generic,
    js,
    livekit,
    pipecat,
    python_v2,
    python_v3,
    websocket_client,
)
from closewatch.ingest.clients.base import (
    EXCEPTION_CODE_REGEX,
    NETWORK_TEXTS,
    NULL_CODES,
    PLACEHOLDER_REASONS,
    POOR_REASONS,
    PY_LAYOUTS,
    STRONG_REASONS,
    WEAK_REASONS,
    Client,
    Pattern,
    _asctime,
    _iso,
    loguru_line,
    py_line,
)
from closewatch.ingest.clients.generic import GENERIC_CODE, GENERIC_SESSION
from closewatch.ingest.clients.noise import FAKE_JWT, FAKE_KEY, noise_lines

#: The text formats, in the order ``closewatch formats`` lists them: an explicit list, no registration by import.
CLIENT_LIST: tuple[Client, ...] = (
    python_v3.CLIENT, python_v2.CLIENT, js.CLIENT, websocket_client.CLIENT, browser.CLIENT, pipecat.CLIENT, livekit.CLIENT,
)
CLIENTS: dict[str, Client] = {client.name: client for client in CLIENT_LIST}
GENERIC_CLIENT = generic.CLIENT

#: format name -> render(event, layout=None) -> list of (ts, line): ts lets a generator interleave sessions.
RENDERERS_TIMED: dict[str, Callable[..., list[tuple[datetime | None, str]]]] = {
    **{name: c.render_timed for name, c in CLIENTS.items()}, GENERIC_CLIENT.name: GENERIC_CLIENT.render_timed,
}


def _untimed(fn: Callable[..., list[tuple[datetime | None, str]]]) -> Callable[..., list[str]]:
    def render(event: dict, layout: str | None = None) -> list[str]:
        return [line for _, line in fn(event, layout)]
    render.__doc__ = fn.__doc__
    render.__name__ = fn.__name__.replace("render_", "render_lines_")
    return render


__all__ = [
    "CLIENTS", "CLIENT_LIST", "EXCEPTION_CODE_REGEX", "FAKE_JWT", "FAKE_KEY", "GENERIC_CLIENT", "GENERIC_CODE",
    "GENERIC_SESSION", "NETWORK_TEXTS", "NULL_CODES", "PLACEHOLDER_REASONS", "POOR_REASONS", "PY_LAYOUTS",
    "RENDERERS_TIMED", "STRONG_REASONS", "WEAK_REASONS", "Client", "Pattern", "_asctime", "_iso", "loguru_line", "noise_lines",
    "py_line",
]
