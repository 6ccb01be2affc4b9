"""The SQL page in a real headless Chromium: a query whose tab is closed stops (issue 11).

A runaway query runs in the sandbox's child process (closewatch/sandbox.py);
the page polls it. When the user closes the tab, the query must stop long
before its time limit, so a forgotten tab cannot keep a core and up to the
memory limit busy for minutes. The test sets the limit far above the time it
allows, so only a stop on close can pass it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from closewatch.store import Store
from tests.dashboard.browser import CHROMIUM, free_port, open_page, wait_for_server

RUNAWAY = "select count(*) from range(1000000000000::bigint) a"
QUERY_LIMIT_S = 600        # [sql] timeout of this test's dashboard
STOP_ON_CLOSE_S = 60       # far below QUERY_LIMIT_S: only a stop on close gets the child gone within it

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium package is not installed (apt-get install chromium)"),
]


def sandbox_children(server: psutil.Process) -> list[psutil.Process]:
    """The sandbox processes (python -m closewatch.sandbox) below the dashboard server."""
    found = []
    for process in server.children(recursive=True):
        try:
            if "closewatch.sandbox" in process.cmdline():
                found.append(process)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.fixture
def dashboard_server(tmp_path: Path):
    """`closewatch dashboard` on an empty database with a long [sql] timeout; yields (url, process)."""
    db = tmp_path / "sql.duckdb"
    Store(db).query("SELECT 1")
    config = tmp_path / "closewatch.toml"
    config.write_text(f'[sql]\ntimeout = "{QUERY_LIMIT_S}s"\n', encoding="utf-8")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLOSEWATCH_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "closewatch.cli", "--config", str(config), "dashboard", "--db", str(db), "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://localhost:{port}"
    try:
        wait_for_server(url, process)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_closing_the_tab_stops_a_running_query(dashboard_server, browser_context):
    url, process = dashboard_server
    server = psutil.Process(process.pid)
    page = browser_context.new_page()
    open_page(page, f"{url}/sql", "SQL")
    editor = page.get_by_label("Query")
    editor.fill(RUNAWAY)
    editor.press("Control+Enter")  # commit the text area's value before the click
    page.get_by_role("button", name="Run").click()
    page.get_by_text("Running for").wait_for()

    deadline = time.monotonic() + 60
    while not sandbox_children(server):
        assert time.monotonic() < deadline, "the query's sandbox process never started"
        time.sleep(0.2)
    running = sandbox_children(server)

    page.close()
    gone, alive = psutil.wait_procs(running, timeout=STOP_ON_CLOSE_S)
    assert not alive, f"the query still ran {STOP_ON_CLOSE_S} s after its tab was closed: {[p.pid for p in alive]}"
    assert gone
    assert server.is_running(), "closing a tab must stop its query, not the dashboard"
