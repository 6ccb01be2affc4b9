"""A page view as a browser makes it, to tell a dashboard that answers from one that only looks alive.

Streamlit's ``/_stcore/health`` answers from the server's event loop, so it
stays green while every page hangs (a stuck script thread, a database held by
another process past the lock timeout, a stopped process still holding its
socket). ``render_page`` opens the app's websocket as the browser does, asks
for a run of the default page and waits for the run to finish: the one sign
that a user would see a page. `closewatch up` and `closewatch dashboard` call
it every ``[dashboard] probe_every`` (see ``cli/dashboard.py``).
"""

from __future__ import annotations

from closewatch.errors import ClosewatchError


class PageNotRendered(ClosewatchError):
    """The dashboard did not render a page within the probe's time."""


def render_page(url: str, timeout_s: float) -> float:
    """Render the default page once over ``url``'s websocket; returns the seconds it took.

    Raises PageNotRendered (one sentence) when the socket does not open, the
    server closes it, or the run does not finish within ``timeout_s``.
    """
    from google.protobuf.message import DecodeError
    from websockets.exceptions import WebSocketException

    from closewatch.page_socket import run_page, stream_of

    try:
        return run_page(stream_of(url), timeout_s)
    except TimeoutError:
        raise PageNotRendered(f"no page rendered within {timeout_s:g} s") from None
    except (OSError, WebSocketException, DecodeError) as error:
        raise PageNotRendered(f"the page socket failed ({type(error).__name__}: {error})") from None
