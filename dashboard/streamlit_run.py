"""The dashboard's server process: ``streamlit run dashboard/app.py`` with every page prepared at start.

``closewatch dashboard`` and ``closewatch up`` start this instead of the bare
``streamlit`` command (same arguments). Before Streamlit serves anything it
starts a ``Warmer`` (dashboard/queries/shared.py) in a background thread,
which imports the pages' modules and runs each page's default reads, then
repeats them whenever new data arrives; so the first visitor after a start
or after a load does not wait for them.

Once the reads are cached it runs every page once over the server's own
socket, as a browser would (``prerender``): a process's first run of a page
pays costs that no later run does (Streamlit's one-time check of whether it
runs in a REPL walks every loaded module: about 0.3 s with polars, duckdb and
altair loaded; altair builds its schema validators on the first chart; the
pages' own lazy imports). Then it freezes the objects made so far out of the
garbage collector's reach (``gc.freeze``): Streamlit collects after every
run, which took about 0.1 s of the interpreter's lock with those modules
loaded, and 0 ms once they are frozen. Set ``CLOSEWATCH_DASHBOARD_WARM=0`` to
serve without any of it.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time

from closewatch import page_socket

log = logging.getLogger("closewatch.dashboard")

#: How long the start waits for its own server to accept the page socket, and for one page's run.
PRERENDER_TIMEOUT_S = 60.0


def _warm_imports() -> None:
    """What every page run needs, imported once here rather than by the first visitor's run."""
    import altair  # noqa: F401

    from closewatch.dashboard import ui  # noqa: F401


def stream_url() -> str:
    """The address of this server's page socket, as Streamlit's configuration gives it (loopback for a wildcard)."""
    from streamlit import config

    address = config.get_option("server.address") or "127.0.0.1"
    if address in ("0.0.0.0", "::", "localhost"):
        address = "127.0.0.1"
    host = f"[{address}]" if ":" in address else address
    scheme = "wss" if config.get_option("server.sslCertFile") else "ws"
    base = (config.get_option("server.baseUrlPath") or "").strip("/")
    return f"{scheme}://{host}:{config.get_option('server.port')}" + (f"/{base}" if base else "") + "/_stcore/stream"


def wait_for_socket(url: str, timeout_s: float = PRERENDER_TIMEOUT_S) -> None:
    """Until the server accepts the page socket (the warmer starts before Streamlit listens)."""
    from websockets.exceptions import WebSocketException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with page_socket.connect(url, 2):
                return
        except (OSError, WebSocketException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def prerender() -> None:
    """Every page run once, as the first visitor would (see the module doc); then what exists so far frozen for the collector."""
    from closewatch.dashboard import ui
    from closewatch.dashboard.queries import shared

    clock = time.perf_counter()
    url = stream_url()
    wait_for_socket(url)
    viewed = shared.last_view()
    for name in ui.PAGES:
        page_socket.run_page(url, PRERENDER_TIMEOUT_S, name)
    shared.last_view(viewed)  # these runs are not a user: the warmer refreshes only for people
    gc.freeze()
    log.info("every page ran once (%d pages, %.1f s)", len(ui.PAGES), time.perf_counter() - clock)


def main(argv: list[str]) -> int:
    if os.environ.get("CLOSEWATCH_DASHBOARD_WARM", "1") != "0":
        from closewatch.dashboard.queries.shared import Warmer

        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("closewatch.dashboard").setLevel(logging.INFO)

        Warmer(before=_warm_imports, then=prerender).start()
    from streamlit.web import cli as streamlit_cli

    sys.argv = ["streamlit", *argv]
    return streamlit_cli.main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
