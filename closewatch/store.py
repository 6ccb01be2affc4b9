"""The DuckDB store and the policy for sharing its file between processes.

DuckDB lets one process open a file read-write, or several read-only, never
both. The dashboard, the scheduler and the CLI are separate processes, so no
one keeps the file open while idle: every unit of work opens a connection,
does its work in one transaction and closes it. Opening retries with backoff
while another process holds the lock, and gives up after ``lock_timeout_s``
with a sentence naming the holder. This is the only module that calls
``duckdb.connect`` on the store.

With a lake (``closewatch --lake DIR``, ``[store] lake``), every connection's
``closures`` is the union of the file's table and the Parquet lake that Spark
writes (``closewatch.lake``); state (alerts, detections, silences, job runs)
stays in the file. Only the units of work that write closures ask for a
connection without the lake (``transaction(lake=False)``).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from closewatch.errors import ClosewatchError, ReadOnlyQuery, SchemaTooNew, StoreBusy, StoreError, StoreReadOnly, first_line
from closewatch.schema import LATEST, MIGRATIONS

if TYPE_CHECKING:  # polars is imported by duckdb's .pl() where a frame is made, not by every user of the store;
    import polars as pl  # tenacity only when the file is locked (the CLI's quick commands start without it)
    from tenacity import RetryCallState

_LOCK_HOLDER = re.compile(r"PID (\d+)")
#: Waits between tries while the file is locked: 0.05 s, doubling, at most 1 s (multiplier, max).
_BACKOFF = (0.05, 1.0)

WaitNotice = Callable[[str], None]


class Store:
    """A closewatch database file. Cheap to create; holds no connection."""

    def __init__(self, path: str | Path, lock_timeout_s: float = 30.0, on_wait: WaitNotice | None = None,
                 lake: str | Path | None = None):
        self.path = Path(path)
        self.lake = _lakes().check_lake(lake) if lake else None
        self.lock_timeout_s = lock_timeout_s
        self.on_wait = on_wait
        self._schema_checked = False

    # -- connections -------------------------------------------------------

    @contextmanager
    def connect(self, read_only: bool = False, lake: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; the schema is created or migrated on first use.

        ``lake=False``: ``closures`` is the file's own table, for writing it.
        """
        con = self._open_current(read_only)
        try:
            if lake:
                self._attach_lake(con)
            yield con
        finally:
            con.close()

    @contextmanager
    def transaction(self, lake: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """One unit of work: everything inside commits together or not at all.

        Units that write ``closures`` pass ``lake=False`` (the lake is Spark's to write).
        """
        with self.connect(lake=lake) as con:
            con.begin()
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            con.commit()

    def query(self, sql: str, params: list | dict | None = None) -> pl.DataFrame:
        """Run one read query and return its rows (for the stages' own queries)."""
        with self.connect(read_only=True) as con:
            return con.execute(sql, params or []).pl()

    def user_query(self, sql: str, limit: int | None = None, config: dict | None = None) -> pl.DataFrame:
        """Run a user's ad-hoc SQL on ``user_connection`` and return at most ``limit`` rows as a frame."""
        with self.user_connection(config) as con, refusing():
            return as_frame_types(user_relation(con, sql, limit)).pl()

    @contextmanager
    def user_connection(self, config: dict | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection for a user's ad-hoc SQL: read-only, no file system, settings locked.

        It can read the store's tables and nothing else, so a query cannot
        write, attach other databases, read or write files, or loosen these
        settings (``config`` adds DuckDB settings such as ``memory_limit``,
        locked too). Front ends use it on a snapshot (closewatch/sandbox.py),
        never on the store itself.
        """
        con = self._open_current(read_only=True, config={"enable_external_access": False, **(config or {})},
                                 lock_configuration=True)
        try:
            self._attach_lake(con)
            yield con
        finally:
            con.close()

    def latest_batch(self) -> str:
        """A token that changes whenever closures are added or reclassified: a cache key for readers."""
        if not self.path.exists():
            return ""
        frame = self.query("""
            SELECT coalesce(max(finished_at)::VARCHAR, '') || ':' || count(*)::VARCHAR
                   || ':' || (SELECT coalesce(max(changed_at)::VARCHAR, '') FROM data_changes)
            FROM ingest_batches
        """)
        return frame.item() + self._lake_token()

    # -- internals ---------------------------------------------------------

    def _attach_lake(self, con: duckdb.DuckDBPyConnection) -> None:
        if self.lake is not None:
            _lakes().attach(con, self.lake)

    def _lake_token(self) -> str:
        """The lake's manifest changes with every Spark job that adds to it."""
        if self.lake is None:
            return ""
        manifest = self.lake / _lakes().MANIFEST
        return f":{manifest.stat().st_mtime_ns}" if manifest.exists() else ":"

    def _open_current(self, read_only: bool, config: dict | None = None,
                      lock_configuration: bool = False) -> duckdb.DuckDBPyConnection:
        """``_open``, with the schema created or migrated first if needed.

        The schema's version is read on the connection the caller gets, so a
        store at the latest version is opened once, not once to check and once
        to use (opening a large file costs tens of milliseconds).
        """
        if self._schema_checked:
            return self._open(read_only, config, lock_configuration)
        if not self.path.exists():
            if read_only:
                self._ensure_schema()
                return self._open(read_only, config, lock_configuration)
            return self._created(config, lock_configuration)
        con = self._open(read_only, config, lock_configuration)
        try:
            version = _schema_version(con)
        except BaseException:
            con.close()
            raise
        if version == LATEST:
            self._schema_checked = True
            return con
        con.close()
        self._ensure_schema()
        return self._open(read_only, config, lock_configuration)

    def _created(self, config: dict | None, lock_configuration: bool) -> duckdb.DuckDBPyConnection:
        """A new file's writing connection, its schema made on it: no second connection to create the
        schema and close again (a close writes a checkpoint), about a tenth of a small first ingest."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = self._open(False, config, lock_configuration)
        try:
            self._migrate_on(con)  # another process may have made the file meanwhile: this adds only what is missing
        except BaseException:
            con.close()
            raise
        self._schema_checked = True
        return con

    def _open(self, read_only: bool, config: dict | None = None, lock_configuration: bool = False) -> duckdb.DuckDBPyConnection:
        """Connect, retrying with exponential backoff (tenacity) while another process holds the file's lock."""
        if not read_only:
            self.check_writable()
        try:
            try:
                return self._connect_once(read_only, config or {}, lock_configuration)
            except duckdb.IOException as error:
                if not _is_lock_error(error):
                    raise
            return self._retrying()(self._connect_once, read_only, config or {}, lock_configuration)
        except duckdb.IOException as error:
            if _is_read_only(str(error)):
                raise StoreReadOnly(self._read_only_message()) from None
            holder = _holder(str(error))
            if holder is None:
                raise StoreError(f"Cannot open {self.path}: {first_line(error)}; check the path and its permissions.") from None
            raise StoreBusy(
                f"Database {self.path} is busy: held by {holder} for more than {self.lock_timeout_s:g} s; "
                "wait for it to finish or raise the timeout with --lock-timeout."
            ) from None

    def _retrying(self):
        """Tenacity's retry loop for a locked file, until ``lock_timeout_s`` from now."""
        from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

        backoff = wait_exponential(multiplier=_BACKOFF[0], max=_BACKOFF[1])
        deadline = time.monotonic() + self.lock_timeout_s
        return Retrying(
            retry=retry_if_exception(_is_lock_error),
            wait=lambda state: min(backoff(state), max(0.0, deadline - time.monotonic())),  # the last try is at the deadline
            stop=stop_after_delay(self.lock_timeout_s),
            before_sleep=self._tell_once(),
            reraise=True,
        )

    def _connect_once(self, read_only: bool, config: dict, lock_configuration: bool) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(self.path), read_only=read_only, config=config)
        # never draw DuckDB's bar over our output; one statement, as every one costs on the quick commands' start
        con.execute("SET enable_progress_bar = false" + ("; SET lock_configuration = true" if lock_configuration else ""))
        return con

    def _tell_once(self) -> Callable[[RetryCallState], None]:
        """Before the first wait only: tell the user who holds the file ("Database busy, held by PID n")."""
        told = False

        def tell(state: RetryCallState) -> None:
            nonlocal told
            if self.on_wait and not told and state.outcome is not None:
                holder = _holder(str(state.outcome.exception()))
                self.on_wait(f"Database busy, held by {holder}; waiting up to {self.lock_timeout_s:g} s...")
                told = True

        return tell

    def check_writable(self) -> None:
        """A database that cannot be written says so at once, instead of being waited on as if busy.

        DuckDB needs to write the file and to create its ``.wal`` beside it.
        """
        if self.path.exists() and not os.access(self.path, os.W_OK) or (
            self.path.parent.exists() and not os.access(self.path.parent, os.W_OK | os.X_OK)
        ):
            raise StoreReadOnly(self._read_only_message())

    def _read_only_message(self) -> str:
        where = self.path if not self.path.exists() or not os.access(self.path, os.W_OK) else self.path.parent
        return (f"Database {self.path} is read-only here ({where} cannot be written by this user); reading commands "
                "still work, but to load or change data fix its permissions or use --db with a writable copy.")

    def _ensure_schema(self) -> None:
        if self._schema_checked:
            return
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        version = self._read_version()
        if version > LATEST:
            raise SchemaTooNew(self._too_new_message(version))
        if version < LATEST:
            self._migrate(version)
        self._schema_checked = True

    def _too_new_message(self, version: int) -> str:
        return (f"Database {self.path} has schema version {version}, newer than this closewatch understands ({LATEST}); "
                "upgrade closewatch to open it.")

    def _read_version(self) -> int:
        if not self.path.exists():
            return 0
        con = self._open(read_only=True)
        try:
            return _schema_version(con)
        finally:
            con.close()

    def _migrate(self, current: int) -> None:
        con = self._open(read_only=False)
        try:
            self._migrate_on(con)
        finally:
            con.close()

    def _migrate_on(self, con: duckdb.DuckDBPyConnection) -> None:
        """Apply the migrations the file lacks, in one transaction, on a writing connection (which holds the file's lock)."""
        con.begin()
        try:
            con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER, applied_at TIMESTAMPTZ DEFAULT now())")
            current = scalar(con, "SELECT coalesce(max(version), 0) FROM schema_version")
            if current > LATEST:
                raise SchemaTooNew(self._too_new_message(current))
            for version in sorted(v for v in MIGRATIONS if v > current):
                con.execute(MIGRATIONS[version])
                con.execute(f"INSERT INTO schema_version (version) VALUES ({int(version)})")  # no bound parameter: see literal()
        except BaseException:
            con.rollback()
            raise
        con.commit()


def literal(value: Any) -> str:
    """A Python value as a SQL literal: for statements on the CLI's quick paths (ingest, migrations).

    Why not a bound parameter: binding any parameter but None makes DuckDB's
    Python client import pandas (to tell its types apart), half a second of a
    small ingest's start on a small machine. Strings are quoted SQL-style (a
    quote doubled; DuckDB's standard strings have no other escape), so any
    text, a user's file name included, stays one value.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"'{value!r}'::DOUBLE"  # 'nan' and 'inf' too
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("literal() takes aware datetimes only: a naive one has no instant")
        return f"'{value.isoformat()}'::TIMESTAMPTZ"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    raise TypeError(f"literal() does not write {type(value).__name__} values")


def first_row(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> tuple[Any, ...]:
    """The first row of a query that always returns one (an aggregate, a DML statement's count)."""
    row = con.execute(sql, params or []).fetchone()
    if row is None:
        raise StoreError("A query that always returns a row returned none; this is a bug in closewatch, please report it.")
    return row


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> Any:
    """The first column of ``first_row``: a count, a max, the number of rows a DML statement changed."""
    return first_row(con, sql, params)[0]


def _lakes():
    """closewatch.lake, imported where a store has a lake: most commands' stores have none."""
    from closewatch import lake

    return lake


def _schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The file's schema version, 0 for a file closewatch has not set up.

    Asked of the table itself: a query of information_schema costs ten times as much, on every command's start.
    """
    try:
        return scalar(con, "SELECT coalesce(max(version), 0) FROM main.schema_version")
    except duckdb.CatalogException:
        return 0


def _holder(message: str) -> str | None:
    """'PID 1234' from DuckDB's lock error, or None if the error is not about a lock."""
    if "lock" not in message.lower():
        return None
    match = _LOCK_HOLDER.search(message)
    return f"PID {match.group(1)}" if match else "another process"


def _is_lock_error(error: BaseException) -> bool:
    """DuckDB's "could not set lock on file ... (PID n)": another process holds the file."""
    return isinstance(error, duckdb.IOException) and _holder(str(error)) is not None and not _is_read_only(str(error))


def _is_read_only(message: str) -> bool:
    """The file or its folder cannot be written: waiting would not help."""
    lowered = message.lower()
    return "permission denied" in lowered or "read-only file system" in lowered


def user_relation(con: duckdb.DuckDBPyConnection, sql: str, limit: int | None = None) -> duckdb.DuckDBPyRelation:
    """A user's query on ``con`` (a ``user_connection``), cut to ``limit`` rows; run it inside ``refusing()``."""
    relation = con.sql(sql)
    if relation is None:
        raise ReadOnlyQuery("That statement returns no rows; closewatch sql runs read-only SELECT queries.")
    return relation.limit(limit) if limit is not None else relation


# DuckDB types polars cannot take in (an INTERVAL, a UNION, a BIT string, also
# inside a list or struct): such a column is shown as DuckDB writes it as text.
_NO_FRAME_TYPE = re.compile(r"\b(INTERVAL|UNION|BIT)\b")


def as_frame_types(relation: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """``relation`` with the columns a polars frame cannot hold cast to VARCHAR, so any query's rows can be shown."""
    types = [str(kind) for kind in relation.types]
    if not any(_NO_FRAME_TYPE.search(kind) for kind in types):
        return relation
    columns = [
        f"{_quote(name)}::VARCHAR AS {_quote(name)}" if _NO_FRAME_TYPE.search(kind) else _quote(name)
        for name, kind in zip(relation.columns, types, strict=True)
    ]
    return relation.select(", ".join(columns))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def refusing() -> Iterator[None]:
    """DuckDB's errors in a user's query become one sentence (``ReadOnlyQuery``)."""
    try:
        yield
    except duckdb.Error as error:
        raise ReadOnlyQuery(_query_refusal(error)) from None


def _query_refusal(error: Exception) -> str:
    """One sentence for a failed user query: refusals say why, mistakes quote DuckDB."""
    text = first_line(error)
    lowered = text.lower()
    if "read-only mode" in lowered:
        return "Refused: queries are read-only here; use SELECT (or WITH ... SELECT) to read the tables."
    if "file system operations are disabled" in lowered or "external" in lowered and "disabled" in lowered:
        return "Refused: queries cannot read or write files or attach databases; query the closewatch tables instead."
    if "out of memory" in lowered:
        return ("The query needed more memory than its limit and was stopped; aggregate, select fewer columns or rows, "
                "or raise [sql] memory_limit_mb in closewatch.toml.")
    if "configuration has been locked" in lowered:
        return "Refused: settings cannot be changed from a query."
    return f"The query failed: {text}; fix the SQL and run it again (the schema: closewatch sql \"DESCRIBE closures\")."


class SerialStore(Store):
    """A Store for a process whose threads share it: one connection at a time in this process.

    DuckDB refuses a second connection to a file with another configuration
    (read-only vs read-write) while one is open in the same process, so threads
    that use the store alongside (the scheduler's deliver job beside its other
    jobs) take turns for the life of each short connection. Waiting longer than
    the lock timeout is the same ``StoreBusy`` as waiting for another process.
    """

    _locks: dict[str, threading.RLock] = {}
    _locks_guard = threading.Lock()
    _held: dict[str, int] = {}  # path -> how deep this process holds the file open (``held``)

    @classmethod
    def like(cls, store: Store) -> SerialStore:
        """The same database, lake and lock policy as ``store``."""
        return cls(store.path, store.lock_timeout_s, store.on_wait, lake=store.lake)

    @contextmanager
    def connect(self, read_only: bool = False, lake: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        lock = self._process_lock()
        if not lock.acquire(timeout=self.lock_timeout_s):
            raise StoreBusy(f"Database {self.path} is busy: another job of this process held it for more than "
                            f"{self.lock_timeout_s:g} s; it is retried on the next run.")
        try:
            held = self._held.get(self._key(), 0) > 0  # under ``held``: read-write, the same configuration as the kept one
            with super().connect(read_only=read_only and not held, lake=lake) as con:
                yield con
        finally:
            lock.release()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Keep the file open for one bounded unit of work made of many short transactions (a scheduler job).

        Opening a large file costs tens of milliseconds of CPU, and closing it
        after a write checkpoints it: a job of twenty transactions paid that
        twenty times. While one connection stays open, the job's own
        connections join it (DuckDB shares one instance per file and
        configuration within a process) and the checkpoint happens once, at
        the end. Other threads of this process wait meanwhile, as they do for
        any connection, and other processes for the job's length: hold only
        work that never waits on anything but the database (never a channel
        call). A store with a lake, or a file that cannot be opened now, runs
        the work unheld, its connections short as usual.
        """
        if self.lake is not None:
            yield
            return
        lock = self._process_lock()
        if not lock.acquire(timeout=self.lock_timeout_s):
            yield
            return
        key = self._key()
        try:
            try:
                keeper = self._open_current(read_only=False)
            except ClosewatchError:
                keeper = None  # busy or unreadable: the work's own connections wait or say so
            self._held[key] = self._held.get(key, 0) + (keeper is not None)
            try:
                yield
            finally:
                if keeper is not None:
                    self._held[key] -= 1
                    keeper.close()
        finally:
            lock.release()

    def _key(self) -> str:
        return str(self.path.resolve())

    def _process_lock(self) -> threading.RLock:
        key = str(self.path.resolve())
        with self._locks_guard:
            return self._locks.setdefault(key, threading.RLock())
