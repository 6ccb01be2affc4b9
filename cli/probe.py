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

import time

from closewatch.errors import ClosewatchError

#: Largest message the probe accepts from the server (a page's deltas; the probe reads and drops them).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class PageNotRendered(ClosewatchError):
    """The dashboard did not render a page within the probe's time."""


def render_page(url: str, timeout_s: float) -> float:
    """Render the default page once over ``url``'s websocket; returns the seconds it took.

    Raises PageNotRendered (one sentence) when the socket does not open, the
    server closes it, or the run does not finish within ``timeout_s``.
    """
    from google.protobuf.message import DecodeError
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    started = time.monotonic()
    stream = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/_stcore/stream"
    rerun = BackMsg()
    rerun.rerun_script.query_string = ""
    try:
        with connect(stream, subprotocols=["streamlit"], open_timeout=timeout_s, close_timeout=1,
                     max_size=MAX_MESSAGE_BYTES) as socket:
            socket.send(rerun.SerializeToString())
            while True:
                left = timeout_s - (time.monotonic() - started)
                if left <= 0:
                    raise TimeoutError
                message = ForwardMsg()
                message.ParseFromString(socket.recv(timeout=left))
                if message.WhichOneof("type") == "script_finished":
                    return time.monotonic() - started
    except TimeoutError:
        raise PageNotRendered(f"no page rendered within {timeout_s:g} s") from None
    except (OSError, WebSocketException, DecodeError) as error:
        raise PageNotRendered(f"the page socket failed ({type(error).__name__}: {error})") from None
