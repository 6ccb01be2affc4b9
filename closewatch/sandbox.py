"""Users' ad-hoc SQL, bounded: a snapshot of the store, queried within time, memory and row limits.

Why a snapshot and a child process. DuckDB lets one process open a file
read-write or many read-only, never both, so a query that runs on the store
itself holds the file for as long as it runs: writers (ingest, the scheduler)
wait and give up with "busy", and in the dashboard every page waits behind it.
Instead:

* the store is copied to ``<db>.sql/snapshot.duckdb`` while a read-only
  connection holds it for the copy alone (milliseconds per MB; see
  bench/bench_sql.py), and only when the store changed since the last copy
  (its file's and WAL's size and mtime are the stamp); the copy is then
  checkpointed into one file and swapped in atomically, so queries still
  running keep the copy they opened;
* the query runs in a child process (``python -m closewatch.sandbox``) on
  that snapshot, through ``Store.user_query`` (read-only, no file access,
  settings locked) with DuckDB's ``memory_limit`` and ``threads``; the child
  never touches the store's file;
* the parent waits, and kills the child when the time limit passes, when its
  resident memory passes twice the memory limit plus 512 MB (DuckDB does not
  account for every allocation), or when the caller cancels (a closed or
  rerun dashboard page, Ctrl-C);
* at most ``max_rows`` rows come back (the caller learns whether more
  matched), written by the child as Arrow IPC and read by the parent.

The command line runs its query in its own process instead (``run_here``):
that process is the user's own, which they can stop with Ctrl-C, so a
second interpreter would only add its start (issue 16). It still queries
the snapshot, never the store's file, with the same connection and DuckDB
limits, while its main thread watches: at the time limit it interrupts the
query (``connection.interrupt()``), past the same memory ceiling it
interrupts it and ends the command, and Ctrl-C interrupts it too. The rows
come back as Python values, without polars. The dashboard keeps the child
process: its server must survive any query and a closed tab.

Every way a query ends badly is one sentence (``QueryRefused``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from closewatch.errors import ReadOnlyQuery
from closewatch.quick_settings import Limits
from closewatch.store import Store, refusing, user_relation

__all__ = ["Answer", "Limits", "QueryRefused", "Rows", "refresh_snapshot", "run_here", "run_query", "snapshot_dir"]

if TYPE_CHECKING:  # imported where used: the parent imports polars while the child runs, the child never imports psutil,
    import subprocess  # and the command line (run_here) imports neither, nor subprocess

    import polars as pl

#: How often the parent looks at the child (and calls the caller's tick).
POLL_S = 0.1
#: Resident memory the child may use beyond twice DuckDB's limit (the interpreter, polars, the result) before it is killed.
MEMORY_SLACK_MB = 512
#: How long a stopped query may take to end after ``connection.interrupt()`` (DuckDB checks often; milliseconds here).
INTERRUPT_GRACE_S = 5.0


DEFAULT_LIMITS = Limits()


class QueryRefused(ReadOnlyQuery):
    """A user's query was stopped or refused; the message says why and what to do."""


@dataclass(frozen=True)
class Answer:
    frame: pl.DataFrame
    truncated: bool  # more rows matched than max_rows
    seconds: float


@dataclass(frozen=True)
class Rows:
    """A query's rows as Python values (``run_here``)."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool  # more rows matched than max_rows
    seconds: float


def run_query(store: Store, sql: str, limits: Limits = DEFAULT_LIMITS, tick: Callable[[float], None] | None = None) -> Answer:
    """Run ``sql`` in a child process on a fresh-enough snapshot of ``store``, within ``limits``.

    ``tick(elapsed_s)`` is called while the query runs; an exception it raises
    (a Streamlit rerun or stop, KeyboardInterrupt) kills the child and propagates.
    """
    import subprocess

    snapshot = refresh_snapshot(store)
    clock = time.monotonic()
    with _query_folder(snapshot) as work:
        result = Path(work) / "result.arrow"
        command = [sys.executable, "-m", "closewatch.sandbox", str(snapshot), str(result),
                   json.dumps({"memory_limit_mb": limits.memory_limit_mb, "threads": limits.threads,
                               "max_rows": limits.max_rows, "lake": str(store.lake) if store.lake else None,
                               "temp": str(Path(work) / "spill")})]
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 start_new_session=True)
        try:
            assert child.stdin is not None  # stdin=PIPE
            child.stdin.write(sql.encode("utf-8"))
            child.stdin.close()
            import polars as pl  # while the child starts: on another core, this import costs the caller nothing

            _watch(child, limits, clock, tick)
        finally:
            _kill(child)
        seconds = time.monotonic() - clock
        error = (Path(work) / "result.arrow.error")
        if error.exists():
            raise QueryRefused(error.read_text(encoding="utf-8"))
        if child.returncode != 0 or not result.exists():
            raise QueryRefused(_crash_sentence(child, limits))
        frame = pl.read_ipc(result)
    truncated = frame.height > limits.max_rows
    return Answer(frame.head(limits.max_rows), truncated, seconds)


def _watch(child: subprocess.Popen, limits: Limits, started: float, tick: Callable[[float], None] | None) -> None:
    """Wait for the child; kill it (and say why) at the time or memory limit."""
    import subprocess

    import psutil

    process = psutil.Process(child.pid)
    while True:
        try:
            child.wait(POLL_S)
            return
        except subprocess.TimeoutExpired:
            pass
        elapsed = time.monotonic() - started
        try:
            rss = process.memory_info().rss
        except psutil.Error:
            rss = 0
        _check_limits(limits, elapsed, rss)
        if tick is not None:
            tick(elapsed)


def run_here(store: Store, sql: str, limits: Limits = DEFAULT_LIMITS) -> Rows:
    """Run ``sql`` in this process on a fresh-enough snapshot of ``store``, within ``limits`` (for the command line).

    The query runs in a worker thread while this thread watches the clock,
    the process's resident memory and Ctrl-C; each interrupts the query.
    """
    snapshot = refresh_snapshot(store)
    clock = time.monotonic()
    with _query_folder(snapshot) as work:
        query_store = Store(snapshot, lock_timeout_s=5, lake=store.lake)
        with query_store.user_connection(duckdb_limits(limits, Path(work) / "spill")) as con:
            outcome: dict[str, Any] = {}
            worker = threading.Thread(target=_fetch, args=(con, sql, limits.max_rows + 1, outcome), daemon=True,
                                      name="closewatch-sql")
            worker.start()
            _watch_here(worker, con, limits, clock)
    error = outcome.get("error")
    if isinstance(error, ReadOnlyQuery) and not isinstance(error, QueryRefused):
        raise QueryRefused(str(error)) from None
    if error is not None:
        raise error
    rows = outcome["rows"]
    return Rows(outcome["columns"], rows[:limits.max_rows], len(rows) > limits.max_rows, time.monotonic() - clock)


def duckdb_limits(limits: Limits, spill: Path) -> dict[str, Any]:
    """DuckDB's own bounds for a user's query: memory, threads, and a spill folder of its own, itself bounded."""
    os.makedirs(spill, exist_ok=True)
    return {"memory_limit": f"{limits.memory_limit_mb}MB", "threads": limits.threads, "temp_directory": str(spill),
            "max_temp_directory_size": f"{4 * limits.memory_limit_mb}MB"}


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, limit: int, outcome: dict[str, Any]) -> None:
    """The worker: the query's columns and rows, or its one-sentence refusal, into ``outcome``."""
    try:
        with refusing():
            relation = user_relation(con, sql, limit)
            outcome["columns"], outcome["rows"] = list(relation.columns), relation.fetchall()
    except BaseException as error:  # handed to the watching thread, which raises it
        outcome["error"] = error


def _watch_here(worker: threading.Thread, con: duckdb.DuckDBPyConnection, limits: Limits, started: float) -> None:
    """Wait for the worker; interrupt its query at the time limit, past the memory ceiling, or at Ctrl-C."""
    try:
        while True:
            worker.join(POLL_S)
            if not worker.is_alive():
                return
            _check_limits(limits, time.monotonic() - started, _resident_bytes())
    except BaseException:  # the limits above, KeyboardInterrupt, SystemExit: stop the query before the connection closes
        con.interrupt()
        worker.join(INTERRUPT_GRACE_S)
        raise


def _resident_bytes() -> int:
    """This process's resident memory now (Linux's /proc), else its peak so far."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _kill(child: subprocess.Popen) -> None:
    if child.poll() is None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()


def _check_limits(limits: Limits, elapsed_s: float, resident_bytes: int) -> None:
    """Raise the one-sentence QueryRefused when a running query is past its time or its memory ceiling.

    The ceiling is twice the memory limit plus MEMORY_SLACK_MB: DuckDB does not account for every allocation.
    """
    if elapsed_s > limits.timeout_s:
        raise QueryRefused(_time_sentence(limits))
    if resident_bytes > (2 * limits.memory_limit_mb + MEMORY_SLACK_MB) * 1024 * 1024:
        raise QueryRefused(_memory_sentence(limits))


def _time_sentence(limits: Limits) -> str:
    return (f"The query ran longer than {limits.timeout_s:g} s and was stopped; add a WHERE on ts, aggregate, "
            "or raise [sql] timeout in closewatch.toml.")


def _memory_sentence(limits: Limits) -> str:
    return (f"The query needed more than its memory limit ({limits.memory_limit_mb:,} MB) and was stopped; "
            "aggregate, select fewer columns or rows, or raise [sql] memory_limit_mb in closewatch.toml.")


def _crash_sentence(child: subprocess.Popen, limits: Limits) -> str:
    stderr = child.stderr.read().decode("utf-8", "replace") if child.stderr else ""
    if child.returncode == -signal.SIGKILL or "memory" in stderr.lower():
        return _memory_sentence(limits)
    last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {child.returncode}"
    return f"The query's process failed ({last[:200]}); try a simpler query, and report it if it keeps happening."


# -- the snapshot ----------------------------------------------------------------------


def snapshot_dir(store: Store) -> Path:
    return store.path.with_name(store.path.name + ".sql")


def refresh_snapshot(store: Store) -> Path:
    """The snapshot file, copied anew when the store changed since the last copy."""
    folder = snapshot_dir(store)
    folder.mkdir(mode=0o700, exist_ok=True)
    snapshot = folder / "snapshot.duckdb"
    stamp_file = folder / "snapshot.stamp"
    if snapshot.exists() and _read(stamp_file) == _stamp(store.path):
        return snapshot
    with open(folder / "refresh.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one copier at a time; the others then find it fresh
        if snapshot.exists() and _read(stamp_file) == _stamp(store.path):
            return snapshot
        for stale in folder.glob("copy-*"):  # a copier killed midway left it: copiers hold the lock while theirs exists
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix="copy-", dir=folder) as work:
            copy = Path(work) / "snapshot.duckdb"
            with store.connect(read_only=True, lake=False):  # no writer meanwhile: the file and its WAL agree
                stamp = _stamp(store.path)
                shutil.copyfile(store.path, copy)
                wal = store.path.with_name(store.path.name + ".wal")
                if wal.exists():
                    shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
            con = duckdb.connect(str(copy))  # a file of its own: fold its WAL in, so the snapshot is one file
            con.execute("CHECKPOINT")
            con.close()
            os.replace(copy, snapshot)  # queries running on the old copy keep it open until they end
        stamp_file.write_text(stamp, encoding="utf-8")
    return snapshot


def _query_folder(snapshot: Path) -> tempfile.TemporaryDirectory:
    """A query's own folder beside the snapshot (its result, DuckDB's spill), named after this process.

    A process killed while its query ran (kill -9, a machine's OOM killer)
    leaves its folder behind, spill files and all; the next query removes the
    folders of processes that are gone.
    """
    for folder in snapshot.parent.glob("query-*"):
        try:
            pid = int(folder.name.split("-")[1])
            os.kill(pid, 0)
        except (IndexError, ValueError):
            continue  # not named by this code
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            continue  # alive, another user's
    return tempfile.TemporaryDirectory(prefix=f"query-{os.getpid()}-", dir=snapshot.parent, ignore_cleanup_errors=True)


def _stamp(path: Path) -> str:
    parts = []
    for file in (path, path.with_name(path.name + ".wal")):
        try:
            stat = file.stat()
            parts.append(f"{stat.st_size}:{stat.st_mtime_ns}")
        except FileNotFoundError:
            parts.append("-")
    return "|".join(parts)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


# -- the child -----------------------------------------------------------------------------


def _child(snapshot: str, result: str, options: str) -> int:
    """Run the query read from stdin on the snapshot; write the rows (Arrow IPC) or one sentence (``.error``)."""
    settings = json.loads(options)
    sql = sys.stdin.buffer.read().decode("utf-8", "replace")
    store = Store(snapshot, lock_timeout_s=5, lake=settings["lake"])
    config = duckdb_limits(Limits(memory_limit_mb=settings["memory_limit_mb"], threads=settings["threads"]), Path(settings["temp"]))
    try:
        frame = store.user_query(sql, settings["max_rows"] + 1, config)
    except ReadOnlyQuery as refusal:
        Path(result + ".error").write_text(str(refusal), encoding="utf-8")
        return 0
    frame.write_ipc(result)
    return 0


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:4]))
