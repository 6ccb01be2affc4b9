"""`closewatch dashboard` and `closewatch up` as real subprocesses (cli/dashboard.py).

The browser-level walk through `closewatch up` is tests/dashboard/test_e2e.py;
these check the commands' own promises: the server answers on the port it
printed, telemetry is off, a taken port is one sentence, SIGTERM and Ctrl-C
(SIGINT) stop everything they started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from closewatch.cli.dashboard import APP, streamlit_argv
from closewatch.cli.probe import PageNotRendered, render_page
from closewatch.store import Store
from tests.dashboard.browser import free_port


def clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("CLOSEWATCH_")}


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "closewatch.cli", *args], cwd=cwd, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_line(process: subprocess.Popen, needle: str, timeout_s: float = 120) -> list[str]:
    lines = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if needle in line:
            return lines
    process.kill()
    pytest.fail(f"no {needle!r} in the output:\n" + "".join(lines))


def test_the_streamlit_child_runs_headless_without_telemetry():
    argv = streamlit_argv(8600, "localhost", 64)
    options = dict(zip(argv[6::2], argv[7::2], strict=True))
    assert argv[3:6] == ["closewatch.dashboard.streamlit_run", "run", str(APP)] and APP.name == "app.py" and APP.parent.name == "dashboard"
    assert options["--server.headless"] == "true"
    assert options["--browser.gatherUsageStats"] == "false"
    assert options["--server.port"] == "8600" and options["--server.maxUploadSize"] == "64"


def test_a_taken_port_is_one_sentence_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "closewatch.cli", "up", "--db", str(tmp_path / "x.duckdb"),
                                 "--port", str(port), "--no-demo"], cwd=tmp_path, env=clean_env(),
                                capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert f"Port {port} is already in use; stop what uses it or pass --port N." in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.duckdb-logs").exists()  # no child was started


@pytest.mark.slow
def test_closewatch_dashboard_serves_the_app_and_stops_on_sigint(tmp_path):
    port = free_port()
    db = tmp_path / "dash.duckdb"
    Store(db).query("SELECT 1")  # `dashboard` opens an existing database; `up` and `ingest` create one
    process = start(["dashboard", "--db", str(db), "--port", str(port)], tmp_path)
    try:
        lines = wait_for_line(process, "closewatch dashboard:")
        assert f"http://localhost:{port}" in lines[-1]
        with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://localhost:{port}/", timeout=10) as response:
            assert b"<!doctype html>" in response.read().lower()
        child = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert process.wait(timeout=30) == 0
        _, alive = psutil.wait_procs(child, timeout=10)
        assert not alive
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
def test_closewatch_up_keeps_an_existing_database_and_stops_both_children(tmp_path):
    """A database that has data is opened as it is (no demo load); SIGTERM stops the scheduler and the dashboard."""
    db = tmp_path / "ops.duckdb"
    store = Store(db)
    with store.transaction() as con:
        con.execute("INSERT INTO closures (event_id, ts, category, severity) VALUES ('e1', now(), 'normal', 'info')")
    port = free_port()
    process = start(["up", "--db", str(db), "--port", str(port)], tmp_path)
    try:
        lines = wait_for_line(process, "closewatch is up:")
        assert not any("demo" in line for line in lines)
        children = psutil.Process(process.pid).children(recursive=True)
        commands = [" ".join(child.cmdline()) for child in children]
        assert any("closewatch.cli scheduler" in c for c in commands) and any("closewatch.dashboard.streamlit_run run" in c for c in commands)
        # the scheduler works on the same file while the dashboard serves it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not Store(db).query("SELECT count(*) FROM job_runs").item():
            time.sleep(1)
        assert Store(db).query("SELECT count(*) FROM job_runs").item() > 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
        rest = process.stdout.read()
        assert "scheduler stopped" in rest and "dashboard stopped" in rest
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive
        assert Store(db).query("SELECT count(*) FROM closures").item() == 1  # no demo load into a used database
        assert not (tmp_path / "ops.duckdb.scheduler.lock").exists()  # the scheduler removed its lock file
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
def test_closewatch_up_with_the_demo_moves_the_week_to_now_and_follows_live_demo_traffic(tmp_path):
    """The demo week ends at load time; the writer appends live traffic that the scheduler follows; SIGTERM stops all three."""
    from datetime import UTC, datetime, timedelta

    db = tmp_path / "demo.duckdb"
    process = start(["up", "--db", str(db), "--port", str(free_port())], tmp_path)
    try:
        lines = wait_for_line(process, "closewatch is up:", timeout_s=240)
        assert any("so the week ends now" in line for line in lines)
        live = tmp_path / "demo.duckdb-logs" / "demo" / "live.log"

        def followed() -> int:
            try:
                return Store(db).query("SELECT coalesce(sum(lines), 0) FROM follow_state WHERE path = ?", [str(live)]).item()
            except Exception:  # the scheduler holds the file this instant
                return 0

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and followed() < 5:
            time.sleep(1)
        assert followed() >= 5, "the scheduler stores the live demo traffic as it is written"
        newest = Store(db).query("SELECT max(ts) FROM closures").item()
        assert datetime.now(UTC) - newest < timedelta(minutes=2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert "demo writer stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()


def test_closewatch_up_without_the_demo_starts_no_writer(tmp_path):
    port = free_port()
    process = start(["up", "--db", str(tmp_path / "empty.duckdb"), "--port", str(port), "--no-demo"], tmp_path)
    try:
        wait_for_line(process, "closewatch is up:")
        commands = [" ".join(child.cmdline()) for child in psutil.Process(process.pid).children(recursive=True)]
        assert not any("generator.live" in c for c in commands) and not any("--follow" in c for c in commands)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_sigterm_while_the_children_start_stops_them_and_exits_0(tmp_path):
    """The handlers are in place before the first child starts: a SIGTERM before the address is printed is a clean stop."""
    port = free_port()
    process = start(["up", "--db", str(tmp_path / "empty.duckdb"), "--port", str(port), "--no-demo"], tmp_path)
    try:
        deadline = time.monotonic() + 60
        children: list[psutil.Process] = []
        while time.monotonic() < deadline and len(children) < 2 and process.poll() is None:
            children = psutil.Process(process.pid).children()
            time.sleep(0.05)
        assert len(children) == 2, "up starts the scheduler and the dashboard"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
        assert "closewatch is up" not in process.stdout.read()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"children left running: {[child.cmdline() for child in alive]}"
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
def test_children_die_with_a_killed_parent(tmp_path):
    """SIGKILL cannot be handled, so the children ask the kernel to stop them when `closewatch` dies."""
    port = free_port()
    Store(tmp_path / "k.duckdb").query("SELECT 1")
    process = start(["dashboard", "--db", str(tmp_path / "k.duckdb"), "--port", str(port)], tmp_path)
    wait_for_line(process, "closewatch dashboard:")
    children = psutil.Process(process.pid).children(recursive=True)
    assert children
    process.kill()
    process.wait()
    _, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, [child.cmdline() for child in alive]


def watched_dashboard(tmp_path: Path, db: Path, extra_config: str = "") -> tuple[subprocess.Popen, int]:
    """`closewatch dashboard` probing its pages every second (3 s each, restart after 2 misses)."""
    config = tmp_path / "closewatch.toml"
    config.write_text('[dashboard]\nprobe_every = "1s"\nprobe_timeout = "3s"\nprobe_failures = 2\n' + extra_config,
                      encoding="utf-8")
    port = free_port()
    process = start(["--config", str(config), "dashboard", "--db", str(db), "--port", str(port)], tmp_path)
    wait_for_line(process, "closewatch dashboard:")
    return process, port


def streamlit_of(process: subprocess.Popen) -> psutil.Process:
    [server] = [child for child in psutil.Process(process.pid).children(recursive=True)
                if "streamlit" in " ".join(child.cmdline())]
    return server


def rendered_within(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            render_page(url, timeout_s=10)
            return True
        except PageNotRendered:
            time.sleep(1)
    return False


@pytest.mark.slow
def test_a_hung_dashboard_is_noticed_and_restarted(tmp_path):
    """A stopped Streamlit process (SIGSTOP: it neither dies nor answers) is restarted by the page probe."""
    db = tmp_path / "hung.duckdb"
    Store(db).query("SELECT 1")
    process, port = watched_dashboard(tmp_path, db)
    try:
        hung = streamlit_of(process)
        hung.suspend()
        lines = wait_for_line(process, "stopped answering pages", timeout_s=90)
        assert "restarting it" in lines[-1]
        assert rendered_within(f"http://localhost:{port}", 120)
        assert streamlit_of(process).pid != hung.pid
        assert not hung.is_running() or hung.status() == psutil.STATUS_ZOMBIE
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
def test_pages_that_hang_while_health_is_green_are_noticed(tmp_path):
    """Another process holds the database past the page's patience: /_stcore/health says 200, no page renders.

    The page waits for the database up to [store] lock_timeout_s (here 300 s); the
    probe, allowed 3 s, notices, and `dashboard` says so and restarts the app.
    Once the holder lets go, pages render again.
    """
    db = tmp_path / "held.duckdb"
    Store(db).query("SELECT 1")
    process, port = watched_dashboard(tmp_path, db, "[store]\nlock_timeout_s = 300\n")
    # the holder takes the file as any writer does, retrying while the dashboard reads (its warmer reads at start)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom closewatch.store import Store\n"
                               "with Store(sys.argv[1], lock_timeout_s=60).transaction():\n"
                               "    print('held', flush=True); time.sleep(600)", str(db)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lines = wait_for_line(process, "stopped answering pages", timeout_s=90)
        assert "no page rendered within 3 s" in lines[-1]
        with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=10) as response:
            assert response.status == 200  # what the old check looked at: green all along
        holder.kill()
        holder.wait()
        assert rendered_within(f"http://localhost:{port}", 120)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
    finally:
        holder.kill()
        if process.poll() is None:
            process.kill()
