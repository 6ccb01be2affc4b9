"""One run of a dashboard page over Streamlit's websocket, asked for as a browser asks.

Two callers need the same conversation: the page probe of ``closewatch up``
and ``closewatch dashboard`` (cli/probe.py), which tells a dashboard that
renders pages from one whose health endpoint merely answers, and the
dashboard server's start (dashboard/streamlit_run.py), which runs every page
once before the first visitor. It lives in the core because the two front
ends may not import each other.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

#: Largest message accepted from the server (a page's deltas; they are read and dropped).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def stream_of(url: str) -> str:
    """The page socket of the dashboard at ``url`` (http:// or https://)."""
    return url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/_stcore/stream"


def connect(stream: str, timeout_s: float) -> Any:
    """The page socket, opened as the browser opens it.

    Both callers talk to a server they started themselves, so a wss:// server's
    own certificate is not checked.
    """
    from websockets.sync.client import connect as open_socket
    from websockets.typing import Subprotocol

    context = None
    if stream.startswith("wss://"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return open_socket(stream, subprotocols=[Subprotocol("streamlit")], open_timeout=timeout_s, close_timeout=1,
                       max_size=MAX_MESSAGE_BYTES, ssl=context)


def run_page(stream: str, timeout_s: float, page: str = "") -> float:
    """Run ``page`` (its URL path; "" is the default page) once over ``stream``; the seconds until the run finished.

    Raises TimeoutError when it does not finish within ``timeout_s``, and
    OSError, websockets' WebSocketException or protobuf's DecodeError when the
    socket fails; each caller says what that means for its user.
    """
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    started = time.monotonic()
    rerun = BackMsg()
    rerun.rerun_script.query_string = ""
    rerun.rerun_script.page_name = page
    with connect(stream, timeout_s) as socket:
        socket.send(rerun.SerializeToString())
        while True:
            left = timeout_s - (time.monotonic() - started)
            if left <= 0:
                raise TimeoutError(f"the page {page or '(default)'} did not finish within {timeout_s:g} s")
            message = ForwardMsg()
            message.ParseFromString(socket.recv(timeout=left))
            if message.WhichOneof("type") == "script_finished":
                return time.monotonic() - started
