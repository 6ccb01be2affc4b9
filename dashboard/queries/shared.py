"""How every page reads: one store per path, short-lived connections, a cache keyed on the data.

Readers open one short-lived read-only connection each. Pages call them
through ``cached``, which keys the result on the database's data token
(``Store.latest_batch()``, plus the detections' own stamp for readers that
show detections), so a new upload is visible on the next rerun of any page.
The token itself is asked of the store only when the database's files
changed on disk (``_Stamp``), so a rerun on unchanged data (a widget change,
another user, a page switch) opens no connection at all; results are shared
by every session of the process and computed once however many ask at once.
``Warmer`` (started by ``closewatch dashboard`` in the server process, see
dashboard/streamlit_run.py) computes each page's first view at start and again when
new data arrives, so nobody waits for the queries of an unfiltered page.

DuckDB refuses a second connection to the same file with another
configuration (read-only vs read-write, the locked settings of user SQL) while
one is open *in the same process*. Streamlit runs every browser session in a
thread of one process, so ``DashboardStore`` takes one process-wide lock for
the life of each connection; the connections are short, so readers queue for
milliseconds, and other processes are handled by the store's file lock policy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from closewatch.settings import Settings, load_settings
from closewatch.store import Store

log = logging.getLogger("closewatch.dashboard")

CACHE_TTL_S = 600  # a safety net: `closewatch reclassify` changes rows without a new batch
MAX_ENTRIES = 256
#: How often the warmer looks at the store's files for new data (a stat; a query only when they changed).
WARM_EVERY_S = 2.0
#: After the start, the warmer refreshes at most this often (a followed log commits every few seconds) ...
WARM_MIN_GAP_S = 30.0
#: ... and only while someone has viewed a page this recently: an unwatched dashboard costs no queries.
WARM_ACTIVE_S = 600.0
#: The default page's readers are warmed first: a visitor arriving right at the start opens that page, and waits for them.
WARM_FIRST = "closewatch.dashboard.queries.overview."
#: The words the warmer logs when the first views are ready (bench/bench_pages.py waits for them).
WARMED = "dashboard warmed"
#: The closure columns every closure table shows (Explorer rows, a closure's neighbours, a finding's evidence).
CLOSURE_ROW_COLUMNS = "ts, client_id, session_id, close_code, close_reason, category, severity, retry_safe, action, event_id"

_LOCK = threading.RLock()


class DashboardStore(Store):
    """A Store whose connections in this process are taken one at a time (see the module doc)."""

    @contextmanager
    def connect(self, read_only: bool = False, lake: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        with _LOCK, super().connect(read_only=read_only, lake=lake) as con:
            yield con

    def user_query(self, sql: str, limit: int | None = None) -> pl.DataFrame:
        with _LOCK:
            return super().user_query(sql, limit)


_STORES: dict[tuple[str, float, str], DashboardStore] = {}


def get_settings() -> Settings:
    """The settings from $CLOSEWATCH_DB, $CLOSEWATCH_CONFIG (set by `closewatch dashboard`) or ./closewatch.toml."""
    return load_settings(None)


def get_store() -> DashboardStore:
    """The store named by $CLOSEWATCH_DB (set by `closewatch dashboard --db`), one object per path."""
    settings = get_settings()
    path = settings.db.resolve()
    lake = settings.store.lake  # $CLOSEWATCH_LAKE (set by `closewatch --lake`) or [store] lake
    key = (str(path), settings.lock_timeout_s, str(lake))
    if key not in _STORES:
        _STORES[key] = DashboardStore(path, lock_timeout_s=settings.lock_timeout_s, lake=lake)
    return _STORES[key]


def db_path_label(store: Store) -> str:
    """The database path as the sidebar shows it."""
    try:
        return str(Path(store.path).relative_to(Path.cwd()))
    except ValueError:
        return str(store.path)


@contextmanager
def reading(store: Store) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection whose timestamps come back in UTC, whatever the machine's zone."""
    with store.connect(read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        yield con


# ---------------------------------------------------------------- caching

Reader = Callable[..., Any]
_READERS: dict[str, tuple[Reader, str]] = {}
#: What the pages read when first opened (no filter, the whole span): readers name them with ``reader(warm=...)``,
#: and ``Warmer`` keeps their results fresh so a page's first view finds them cached.
_WARM: list[tuple[str, Callable[[], tuple]]] = []


def _name(function: Reader) -> str:
    """A reader's registry key: module and name, since two pages may each have a reader called ``timeline``."""
    return f"{function.__module__}.{function.__qualname__}"


def reader(token: str = "closures", warm: Callable[[], tuple] | None = None) -> Callable[[Reader], Reader]:
    """Register a reader for ``cached``; ``token`` names what invalidates it (closures or detections).

    ``warm`` returns the arguments a page first calls it with (its default view); ``Warmer`` runs it with them.
    """

    def register(function: Reader) -> Reader:
        _READERS[_name(function)] = (function, token)
        if warm is not None:
            _WARM.append((_name(function), warm))
        return function

    return register


class _Stamp:
    """What the store's files look like on disk: unchanged files mean unchanged data, with no connection opened.

    Every commit writes the write-ahead log (or, at a checkpoint, the file and
    removes the log), so a commit by any process changes this stamp. A store
    with a lake (Parquet written by Spark) has no such stamp and is always asked.
    """

    @staticmethod
    def of(store: Store) -> tuple | None:
        if store.lake is not None:
            return None
        parts: list = []
        for path in (store.path, Path(str(store.path) + ".wal")):
            try:
                stat = path.stat()
                parts += [stat.st_mtime_ns, stat.st_size, stat.st_ino]
            except OSError:
                parts += [None, None, None]
        return tuple(parts)


#: Ask the store for its token at least this often, even when its files look unchanged (a safety net).
TOKEN_RECHECK_S = 30.0
_TOKENS: dict[tuple[str, str], tuple[tuple | None, float, str]] = {}
_TOKENS_LOCK = threading.Lock()


def data_token(store: Store, kind: str = "closures") -> str:
    """The cache key part that changes when the data a reader shows changes.

    Asked of the store (one short query) only when its files changed on disk
    since the last answer, or TOKEN_RECHECK_S passed: a rerun on unchanged
    data opens no connection at all.
    """
    key = (str(store.path), kind)
    stamp = _Stamp.of(store)
    with _TOKENS_LOCK:
        known = _TOKENS.get(key)
    if known is not None and stamp is not None and known[0] == stamp and time.monotonic() - known[1] < TOKEN_RECHECK_S:
        return known[2]
    asked = time.monotonic()
    token = store.latest_batch()
    if kind == "detections":
        with reading(store) as con:
            stamp_sql = "SELECT coalesce(max(detected_at)::VARCHAR, '') || ':' || count(*) FROM detections"
            token += "|" + con.execute(stamp_sql).fetchone()[0]
    with _TOKENS_LOCK:
        _TOKENS[key] = (stamp, asked, token)  # the stamp from before the query: a write meanwhile is seen next time
    return token


class _Cache:
    """Results by (reader, store, token, arguments): bounded, expiring, computed once however many sessions ask.

    Streamlit's ``st.cache_data`` pickles a result on every hit and lets two
    sessions that ask at once both run the query; this keeps one shared
    object per key (readers return fresh frames and callers never change
    them) and makes later askers wait for the first one's answer.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES, ttl_s: float = CACHE_TTL_S):
        self.max_entries, self.ttl_s = max_entries, ttl_s
        self.entries: OrderedDict[tuple, tuple[float, Any]] = OrderedDict()
        self.flights: dict[tuple, threading.Lock] = {}
        self.lock = threading.Lock()

    def _hit(self, key: tuple) -> tuple[bool, Any]:
        found = self.entries.get(key)
        if found is None or time.monotonic() - found[0] > self.ttl_s:
            return False, None
        self.entries.move_to_end(key)
        return True, found[1]

    def get(self, key: tuple, compute: Callable[[], Any]) -> Any:
        with self.lock:
            hit, value = self._hit(key)
            if hit:
                return value
            flight = self.flights.setdefault(key, threading.Lock())
        with flight:
            with self.lock:
                hit, value = self._hit(key)
            if hit:
                return value
            try:
                value = compute()
            finally:
                with self.lock:
                    self.flights.pop(key, None)
            with self.lock:
                self.entries[key] = (time.monotonic(), value)
                while len(self.entries) > self.max_entries:
                    self.entries.popitem(last=False)
            return value

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


_CACHE = _Cache()


def _call(name: str, store: Store, args: tuple) -> Any:
    function, kind = _READERS[name]
    return _CACHE.get((name, str(store.path), data_token(store, kind), args), lambda: function(store, *args))


_LAST_VIEW = [0.0]  # when a page last asked for data (time.monotonic): the warmer refreshes only for active users


def cached(function: Reader, *args: Any) -> Any:
    """``function(store, *args)``, cached on the store's path, its data token and the arguments."""
    _LAST_VIEW[0] = time.monotonic()
    return _call(_name(function), get_store(), args)


def last_view(moment: float | None = None) -> float:
    """When a page last asked for data (time.monotonic); with ``moment``, set it (runs that are not a user's put it back)."""
    if moment is not None:
        _LAST_VIEW[0] = moment
    return _LAST_VIEW[0]


def clear_cache() -> None:
    """Forget every cached result and token (tests; a store replaced under the same path)."""
    _CACHE.clear()
    with _TOKENS_LOCK:
        _TOKENS.clear()


class Warmer:
    """Keeps the pages' first views cached: at start, and again whenever new data arrives.

    ``closewatch dashboard`` and ``up`` start one in the server process
    (``dashboard/streamlit_run.py``) before the first browser connects, so nobody
    waits for module imports or for the default queries over millions of
    closures: the first view of a page and the first view after a load find
    their results computed. Between loads it costs a file ``stat`` every
    ``every_s`` seconds; after a load it refreshes at most every
    WARM_MIN_GAP_S, and only while someone has viewed a page within
    WARM_ACTIVE_S, so a store fed live does not keep it busy. Errors (a busy or missing store) are logged and
    tried again on the next tick; the pages would show them anyway.
    """

    def __init__(self, store_of: Callable[[], Store] | None = None, every_s: float = WARM_EVERY_S,
                 before: Callable[[], None] | None = None, min_gap_s: float = WARM_MIN_GAP_S,
                 then: Callable[[], None] | None = None):
        self.store_of = store_of or get_store
        self.every_s = every_s
        self.before = before
        self.then = then
        self.min_gap_s = min_gap_s
        self.last_warm = 0.0
        self.stop = threading.Event()
        self.warmed: tuple | None = None
        self.thread = threading.Thread(target=self._loop, name="closewatch-warmer", daemon=True)

    def start(self) -> Warmer:
        self.thread.start()
        return self

    def warm_once(self) -> int:
        """Compute every default view whose data changed; returns how many readers ran (or hit)."""
        store = self.store_of()
        if not store.path.exists():
            return 0
        if self.warmed is not None:  # after the start: only for someone using the pages, and not on every flush of a live feed
            now = time.monotonic()
            if now - _LAST_VIEW[0] > WARM_ACTIVE_S or now - self.last_warm < self.min_gap_s:
                return 0
        tokens = (data_token(store), data_token(store, "detections"))
        if tokens == self.warmed:
            return 0
        self.last_warm = time.monotonic()
        clock = time.perf_counter()
        _import_pages()
        for name, arguments in sorted(_WARM, key=lambda entry: not entry[0].startswith(WARM_FIRST)):
            _call(name, store, arguments())
        self.warmed = tokens
        log.info("the pages' first views are cached (%d reads, %.1f s)", len(_WARM), time.perf_counter() - clock)
        return len(_WARM)

    def _loop(self) -> None:
        started = time.perf_counter()
        self._hook(self.before, "warming the dashboard's imports")
        while not self.stop.is_set():
            first = self.warmed is None
            try:
                self.warm_once()
            except Exception:  # a busy store, a half-written config: the next tick tries again
                log.warning("warming the dashboard's caches failed; trying again in %s s", self.every_s, exc_info=True)
            if first and self.warmed is not None:
                self._hook(self.then, "preparing the pages")
                log.info("%s: ready for the first visitor, %.1f s after the start", WARMED, time.perf_counter() - started)
            self.stop.wait(self.every_s)

    @staticmethod
    def _hook(hook: Callable[[], None] | None, what: str) -> None:
        """Run a start hook; its failure is logged, never fatal (the pages would only be slower)."""
        if hook is None:
            return
        try:
            hook()
        except Exception:
            log.warning("%s failed", what, exc_info=True)


def _import_pages() -> None:
    """Import every page's readers, so their ``warm`` registrations exist (and the imports are paid now)."""
    from closewatch.dashboard.queries import alerts, explorer, findings, overview, reference, sql, timespan, upload  # noqa: F401
