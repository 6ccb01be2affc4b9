"""cli/probe.py against real servers: a Streamlit dashboard that renders, a port that accepts and never answers, a closed port."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from closewatch.cli.probe import PageNotRendered, render_page
from closewatch.store import Store
from tests.dashboard.browser import free_port, wait_for_server
from tests.dashboard.test_commands import clean_env


@pytest.mark.slow
def test_a_page_of_a_live_dashboard_renders(tmp_path):
    db = tmp_path / "probe.duckdb"
    Store(db).query("SELECT 1")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "closewatch.cli", "dashboard", "--db", str(db), "--port", str(port)],
                              cwd=tmp_path, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_server(f"http://localhost:{port}", server)
        seconds = render_page(f"http://localhost:{port}", timeout_s=60)
        assert 0 < seconds < 60
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_server_that_accepts_and_never_answers_is_not_rendering():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        held = []
        threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
        started = time.monotonic()
        with pytest.raises(PageNotRendered, match="within 1.5 s|page socket failed"):
            render_page(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=1.5)
        assert time.monotonic() - started < 30  # bounded by the probe's timeout, not hanging


def test_a_closed_port_is_one_sentence():
    with pytest.raises(PageNotRendered, match="the page socket failed"):
        render_page(f"http://127.0.0.1:{free_port()}", timeout_s=5)
