"""The dashboard's server process (dashboard/streamlit_run.py): every page run once at start, before it says it is ready."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from closewatch import jobs
from closewatch import page_socket
from closewatch.dashboard import streamlit_run, ui
from closewatch.dashboard.queries.shared import WARMED
from closewatch.ingest.sources import expand_inputs
from closewatch.store import Store
from tests.dashboard.browser import free_port

DASHBOARD = Path(streamlit_run.__file__).parent
SAMPLE = Path(__file__).resolve().parents[2] / "sample_logs"


def bare_expressions(path: Path) -> list[str]:
    """Statements that Streamlit's "magic" would write to the page: expressions on their own line that are not calls."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        body = getattr(node, "body", None)
        for index, statement in enumerate(body if isinstance(body, list) else []):
            if not isinstance(statement, ast.Expr) or isinstance(statement.value, ast.Call | ast.Await | ast.Yield | ast.YieldFrom):
                continue
            if index == 0 and isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str):
                continue  # a docstring
            found.append(f"{path.name}:{statement.lineno}")
    return found


def test_no_page_relies_on_streamlit_magic_which_the_server_turns_off():
    scripts = [DASHBOARD / "app.py", *(DASHBOARD / page for page in ui.PAGES.values())]
    assert len(scripts) == len(ui.PAGES) + 1 and all(script.exists() for script in scripts)
    assert [where for script in scripts for where in bare_expressions(script)] == []
    assert "magicEnabled = false" in (DASHBOARD / ".streamlit" / "config.toml").read_text()


def test_a_bare_expression_is_found(tmp_path):
    """The check above can fail: a value on its own line is what magic would have shown; calls and docstrings are not."""
    sample = tmp_path / "page.py"
    sample.write_text('"""doc"""\nimport streamlit as st\nx = 1\nx\nst.write(x)\n\n\ndef f():\n    """doc"""\n    "shown"\n')
    assert bare_expressions(sample) == ["page.py:4", "page.py:10"]


@pytest.mark.parametrize("address, port, base, expected", [
    ("", 8501, "", "ws://127.0.0.1:8501/_stcore/stream"),
    ("0.0.0.0", 8502, "", "ws://127.0.0.1:8502/_stcore/stream"),
    ("10.1.2.3", 8503, "/dash/", "ws://10.1.2.3:8503/dash/_stcore/stream"),
    ("::1", 8504, "", "ws://[::1]:8504/_stcore/stream"),
])
def test_the_server_calls_itself_where_it_listens(address, port, base, expected):
    from streamlit import config

    saved = {name: config.get_option(name) for name in ("server.address", "server.port", "server.baseUrlPath")}
    try:
        config.set_option("server.address", address)
        config.set_option("server.port", port)
        config.set_option("server.baseUrlPath", base)
        assert streamlit_run.stream_url() == expected
    finally:
        for name, value in saved.items():
            config.set_option(name, value)


@pytest.mark.slow
def test_every_page_runs_once_before_the_server_says_it_is_ready(tmp_path):
    db = tmp_path / "pages.duckdb"
    jobs.ingest(Store(db), expand_inputs([str(SAMPLE / "closures.jsonl")]))
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLOSEWATCH_")}
    env.update(CLOSEWATCH_DB=str(db), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "closewatch.dashboard.streamlit_run", "run", str(DASHBOARD / "app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not any(WARMED in line for line in lines):
            line = process.stdout.readline()
            assert line or process.poll() is None, "the server exited:\n" + "".join(lines)
            assert time.monotonic() < deadline, "not ready within 120 s:\n" + "".join(lines)
            lines.append(line)
        log = "".join(lines)
        assert f"every page ran once ({len(ui.PAGES)} pages" in log, log
        assert log.index("every page ran once") < log.index(WARMED)
        assert "Traceback" not in log and "failed" not in log, log
        # the same call works for anyone: a page's run over the socket, as a browser asks for it
        page_socket.run_page(f"ws://127.0.0.1:{port}/_stcore/stream", 60, "patterns")
    finally:
        process.terminate()
        process.wait(timeout=30)
