"""Dashboard commands: `dashboard` runs the Streamlit app; `up` runs everything (demo data, scheduler, dashboard).

Both start Streamlit as a child process (``streamlit run dashboard/app.py``
through ``launcher``, which makes children die with their parent) with the database in $CLOSEWATCH_DB, telemetry off and
headless, so the app is the same whether it is started here or with
``streamlit run``. `up` supervises two children and stops both, in order, on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from closewatch.cli.kit import db_option, err_console, existing_store, get_settings, get_store
from closewatch.cli.probe import PageNotRendered, render_page
from closewatch.errors import ClosewatchError

if TYPE_CHECKING:  # annotations only: every command starts without pydantic's models and duckdb
    from collections.abc import Callable

    from closewatch.settings import DashboardSettings, Settings
    from closewatch.store import Store

APP = Path(importlib.util.find_spec("closewatch.dashboard").origin).with_name("app.py")  # wherever the package is installed
DEMO = Path(__file__).resolve().parents[1] / "sample_logs" / "demo"  # in a source checkout (the demo logs are not packaged)
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
RESTART_STOP_TIMEOUT_S = 5.0  # a dashboard that stopped answering gets less time to go before SIGKILL
PORT_HELP = "Port of the dashboard."


class UpError(ClosewatchError):
    """`closewatch up` or `closewatch dashboard` cannot start or a child stopped."""


# -- the streamlit command line ----------------------------------------------------------


def streamlit_argv(port: int, address: str, max_upload_mb: int | None) -> list[str]:
    """The child command: the same settings as dashboard/.streamlit/config.toml, wherever we start from."""
    argv = launcher(
        "closewatch.dashboard.streamlit_run", "run", str(APP),  # streamlit, with the pages' first views computed at start
        "--server.port", str(port),
        "--server.address", address,
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--client.showErrorDetails", "none",
        "--runner.magicEnabled", "false",
    )
    if max_upload_mb is not None:
        argv += ["--server.maxUploadSize", str(max_upload_mb)]
    return argv


def child_env(ctx: click.Context, db: Path) -> dict[str, str]:
    """The environment of the children: the database and config this command was given."""
    env = dict(os.environ, CLOSEWATCH_DB=str(db), PYTHONUNBUFFERED="1")
    config = ctx.obj.get("config")
    if config:
        env["CLOSEWATCH_CONFIG"] = str(Path(config).resolve())
    if ctx.obj.get("lake"):
        env["CLOSEWATCH_LAKE"] = str(Path(ctx.obj["lake"]).resolve())
    return env


def check_port(address: str, port: int) -> None:
    """Fail early, with the fix, when the port is taken (Streamlit would pick another silently or die)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1" if address in ("localhost", "") else address, port))
        except OSError:
            raise UpError(f"Port {port} is already in use; stop what uses it or pass --port N.") from None


def url_of(address: str, port: int) -> str:
    host = "localhost" if address in ("0.0.0.0", "", "localhost", "127.0.0.1") else address
    return f"http://{host}:{port}"


def wait_ready(url: str, children: list[Child], timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll Streamlit's health endpoint until it answers; a child that dies meanwhile is an error."""
    import urllib.error
    import urllib.request  # here, not at the top: the other commands start without it

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in children:
            child.check()
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.3)
    raise UpError(f"The dashboard did not answer at {url} within {timeout_s:g} s; see {children[-1].log_path}.")


# -- children -----------------------------------------------------------------------------


def launcher(module: str, *args: str) -> list[str]:
    """The command that runs ``python -m module args`` as a child that dies with its parent (see ``_run_child``)."""
    return [sys.executable, "-m", "closewatch.cli.dashboard", module, *args]


def _run_child(argv: list[str]) -> None:
    """In the child: ask Linux for SIGTERM when the parent dies, then run the module as ``python -m`` would.

    A SIGKILLed `up` cannot stop its children, so the children watch it
    instead; this runs in the child's own interpreter (no preexec_fn, which is
    unsafe in a parent with threads).
    """
    import runpy

    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # the parent died before the request took effect
            sys.exit(1)
    module, *rest = argv
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


@dataclass
class Child:
    """A supervised child process whose output goes to a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # a session of its own: the terminal's Ctrl-C reaches only `up`, which stops the children in order
            self.process = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True)

    def check(self) -> None:
        """Raise if the child has exited (it should run until we stop it)."""
        if self.process is not None and self.process.poll() is not None:
            raise UpError(f"The {self.name} stopped (exit status {self.process.returncode}); "
                          f"its last words are in {self.log_path}:\n{self.tail()}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait, then SIGKILL if it will not go; returns its exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


class PageWatch:
    """Renders a page of the dashboard every ``every_s`` and restarts the dashboard after ``failures`` misses in a row.

    The health endpoint only says the server's event loop runs; a page view
    (cli/probe.py) says a user gets pages. The probe runs in a thread, so the
    supervisor keeps answering Ctrl-C and noticing dead children meanwhile.
    """

    def __init__(self, url: str, child: Child, settings: DashboardSettings, console: Console) -> None:
        self.url, self.child, self.console = url, child, console
        self.every_s, self.timeout_s, self.failures = settings.probe_every_s, settings.probe_timeout_s, settings.probe_failures
        self.misses = 0
        self.restarts = 0
        self._next = time.monotonic() + self.every_s
        self._thread: threading.Thread | None = None
        self._outcome: str | None = None  # None: rendered; else why not

    def poll(self) -> None:
        """Called by the supervisor every half second: collect a finished probe, start the next when due."""
        if self.every_s <= 0:
            return
        if self._thread is not None:
            if self._thread.is_alive():
                return
            self._thread = None
            self._judge(self._outcome)
        if time.monotonic() >= self._next:
            self._next = time.monotonic() + self.every_s
            self._thread = threading.Thread(target=self._probe, name="page-probe", daemon=True)
            self._thread.start()

    def _probe(self) -> None:
        try:
            render_page(self.url, self.timeout_s)
            self._outcome = None
        except PageNotRendered as why:
            self._outcome = str(why)

    def _judge(self, outcome: str | None) -> None:
        if outcome is None:
            self.misses = 0
            return
        self.misses += 1
        if self.misses < self.failures:
            return
        self.console.print(f"The dashboard stopped answering pages ({outcome}, {self.misses} probes in a row) "
                           f"although it still runs; restarting it (its log: {self.child.log_path}).", highlight=False)
        self.child.stop(timeout_s=RESTART_STOP_TIMEOUT_S)
        self.child.start()
        self.restarts += 1
        self.misses = 0
        self._next = time.monotonic() + max(self.every_s, READY_TIMEOUT_S / 3)  # let it start before judging again


class _Stop(Exception):
    """Raised by the signal handler so the supervisor loop unwinds into its cleanup."""


def run_supervised(children: list[Child], url: str, console: Console, announce: Callable[[], None],
                   watch_for: Callable[[], PageWatch]) -> None:
    """Start the children, wait until the dashboard answers, announce it, then wait until Ctrl-C / SIGTERM
    or until a child dies; then stop every started child, last started first.

    The signal handlers are in place before the first child starts: a SIGTERM at any line, while the
    children start or the instant the address is printed, stops them and exits 0, never by Python's
    default death by signal. Meanwhile the ``watch_for()`` watch renders a page now and then and
    restarts a dashboard that stopped answering.
    """

    def on_signal(signum, _frame):
        raise _Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for child in children:
            child.start()
        wait_ready(url, children)
        announce()
        watch = watch_for()
        while True:
            for child in children:
                child.check()
            watch.poll()
            time.sleep(0.5)
    except (_Stop, KeyboardInterrupt) as stop:
        console.print(f"Stopping ({stop or 'Ctrl-C'})...", highlight=False)
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        for child in reversed(children):
            if child.process is None:
                continue
            status = child.stop()
            console.print(f"  {child.name} stopped" + (f" (exit status {status})" if status not in (0, None, -15) else ""), highlight=False)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- commands -----------------------------------------------------------------------------


@click.command()
@click.option("--port", type=int, default=8501, show_default=True, help=PORT_HELP)
@click.option("--address", default="localhost", show_default=True, help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--max-upload-mb", type=click.IntRange(1, 10_000), help="Largest file the Upload page accepts, in MB (default 1024).")
@db_option
@click.pass_context
def dashboard(ctx: click.Context, port: int, address: str, max_upload_mb: int | None) -> None:
    """Open the dashboard in your browser: overview, upload, explorer, patterns, alerts, SQL, reference.

    The same app as `streamlit run dashboard/app.py`, on the database named
    by --db, which must exist (`closewatch up` or `closewatch ingest` creates
    one). It reads the database only in short read-only moments, so the
    CLI and the scheduler can use the same file alongside. Ctrl-C stops it.

    \b
    Example:
        closewatch dashboard --db demo.duckdb --port 8502
    """
    store = existing_store(ctx)  # a new database starts with `closewatch up` (or ingest), not with an empty dashboard
    store.query("SELECT 1")  # migrates an older file, so the app opens on a usable database
    check_port(address, port)
    db = store.path.resolve()
    console = Console(soft_wrap=True)
    url = url_of(address, port)
    child = Child("dashboard", streamlit_argv(port, address, max_upload_mb), child_env(ctx, db), _log_dir(db) / "dashboard.log")

    def announce() -> None:
        console.print(f"closewatch dashboard: [bold]{url}[/] on {db} (Ctrl-C stops it; log: {child.log_path})", highlight=False)

    run_supervised([child], url, console, announce, lambda: PageWatch(url, child, get_settings(ctx).dashboard, console))


@click.command()
@click.option("--port", type=int, default=8501, show_default=True, help=PORT_HELP)
@click.option("--address", default="localhost", show_default=True, help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--demo/--no-demo", default=True, show_default=True,
              help="When the database is empty: load the demo week (moved to end now) and write live demo traffic to a log the scheduler follows.")
@click.option("--max-upload-mb", type=click.IntRange(1, 10_000), help="Largest file the Upload page accepts, in MB (default 1024).")
@db_option
@click.pass_context
def up(ctx: click.Context, port: int, address: str, demo: bool, max_upload_mb: int | None) -> None:
    """Run everything: open the database (loading the demo logs if it is empty), the scheduler and the dashboard.

    With the demo, the demo week ends at the moment it is loaded, and a small
    writer appends live traffic (an incident every five minutes) to
    <database>-logs/demo/live.log, which the scheduler follows: the dashboard
    moves and an alert fires and resolves within minutes. --no-demo starts
    neither.

    Prints the dashboard's address, then runs until Ctrl-C or SIGTERM, which
    stop the dashboard and the scheduler cleanly. Their logs go to
    <database>-logs/ beside the database file.

    \b
    Example:
        closewatch up
        closewatch up --db ops.duckdb --port 8600 --no-demo
    """
    console = Console(soft_wrap=True)
    settings = get_settings(ctx)
    store = get_store(ctx, settings)
    closures = store.query("SELECT count(*) FROM closures").item()  # creates or migrates the file
    check_port(address, port)
    db = store.path.resolve()
    from closewatch.jobs.demo import is_demo_database, live_log

    live = demo and (closures == 0 or is_demo_database(store, db))  # never demo traffic into a database of real logs
    if closures == 0 and demo:
        _load_demo(settings, store, console)
    logs = _log_dir(db)
    env = child_env(ctx, db)
    app = Child("dashboard", streamlit_argv(port, address, max_upload_mb), env, logs / "dashboard.log")
    follow = ["--follow", str(live_log(db))] if live else []
    children = [
        Child("scheduler", launcher("closewatch.cli", *_lock_option(ctx), "scheduler", *follow), env, logs / "scheduler.log"),
        app,
    ]
    if live:
        children.insert(0, Child("demo writer", launcher("closewatch.generator.live", str(live_log(db))), env, logs / "demo-writer.log"))
    url = url_of(address, port)

    def announce() -> None:
        console.print(f"closewatch is up: [bold]{url}[/]", highlight=False)
        console.print(f"  database {db}; scheduler and dashboard logs in {logs}/; Ctrl-C stops both.", highlight=False)
        if live:
            console.print(f"  live demo traffic is written to {live_log(db)} and followed (an incident every 5 minutes).", highlight=False)

    run_supervised(children, url, console, announce, lambda: PageWatch(url, app, settings.dashboard, console))


def _load_demo(settings: Settings, store: Store, console: Console) -> None:
    """Load sample_logs/demo/ moved to end now, and run the detectors once (closewatch.jobs.demo)."""
    from closewatch.jobs.demo import load_demo

    if not DEMO.is_dir():
        err_console.print(f"No demo logs at {DEMO}; starting with an empty database (upload logs in the dashboard).", style="yellow", highlight=False)
        return
    console.print(f"Empty database: loading the demo logs from {DEMO}...", highlight=False)
    loaded = load_demo(store, settings, DEMO)
    console.print(f"  loaded {loaded.closures:,} closures from {loaded.files} files, moved {loaded.shifted_days} days "
                  "forward so the week ends now.", highlight=False)
    console.print(f"  found {loaded.findings:,} patterns.", highlight=False)


def _lock_option(ctx: click.Context) -> list[str]:
    timeout = ctx.obj.get("lock_timeout")
    return [] if timeout is None else ["--lock-timeout", str(timeout)]


def _log_dir(db: Path) -> Path:
    return db.with_name(db.name + "-logs")


if __name__ == "__main__":
    _run_child(sys.argv[1:])
