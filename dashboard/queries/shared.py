"""How every page reads: one store per path, short-lived connections, a cache keyed on the data.

Readers open one short-lived read-only connection each. Pages call them
through ``cached``, which keys the result on the database's data token
(``Store.latest_batch()``, plus the detections' own stamp for readers that
show detections), so a rerun after a widget change costs one tiny query and a
new upload is visible on the next rerun of any page.

DuckDB refuses a second connection to the same file with another
configuration (read-only vs read-write, the locked settings of user SQL) while
one is open *in the same process*. Streamlit runs every browser session in a
thread of one process, so ``DashboardStore`` takes one process-wide lock for
the life of each connection; the connections are short, so readers queue for
milliseconds, and other processes are handled by the store's file lock policy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import streamlit as st

from closewatch.settings import Settings, load_settings
from closewatch.store import Store

CACHE_TTL_S = 600  # a safety net: `closewatch reclassify` changes rows without a new batch
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


def _name(function: Reader) -> str:
    """A reader's registry key: module and name, since two pages may each have a reader called ``timeline``."""
    return f"{function.__module__}.{function.__qualname__}"


def reader(token: str = "closures") -> Callable[[Reader], Reader]:
    """Register a reader for ``cached``; ``token`` names what invalidates it (closures or detections)."""

    def register(function: Reader) -> Reader:
        _READERS[_name(function)] = (function, token)
        return function

    return register


def data_token(store: Store, kind: str = "closures") -> str:
    """The cache key part that changes when the data a reader shows changes."""
    token = store.latest_batch()
    if kind == "detections":
        with reading(store) as con:
            stamp = con.execute("SELECT coalesce(max(detected_at)::VARCHAR, '') || ':' || count(*) FROM detections").fetchone()[0]
        token += "|" + stamp
    return token


@st.cache_data(max_entries=256, ttl=CACHE_TTL_S, show_spinner=False)
def _run_cached(name: str, path: str, token: str, args: tuple) -> Any:
    """The cached call; ``token`` is only part of the key, so a new batch makes a new entry."""
    store = next((known for (known_path, *_), known in _STORES.items() if known_path == path), None)
    return _READERS[name][0](store or DashboardStore(path), *args)


def cached(function: Reader, *args: Any) -> Any:
    """``function(store, *args)``, cached on the store's path, its data token and the arguments."""
    store = get_store()
    name = _name(function)
    return _run_cached(name, str(store.path), data_token(store, _READERS[name][1]), args)
