"""Following live logs as a job: the loop around ``closewatch.ingest.follow`` for the CLI and the scheduler.

``follow_files`` ticks a FileFollower every ``[follow] flush`` (at once again
while a file still has more than one chunk to read) until ``stop`` is set;
``follow_stream`` reads a stream until it ends or ``stop`` is set, storing
what is complete every flush and everything at the end. Both classify with
the catalog like every other ingest (the analysis stage's ``classify``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from closewatch.analysis.catalog import classify, load_catalog
from closewatch.errors import ClosewatchError
from closewatch.ingest.envelopes import check_envelope_name
from closewatch.ingest.follow import FileFollower, ReadOptions, StreamFollower, Stored, TickReport
from closewatch.ingest.formats import get_format
from closewatch.ingest.pipeline import Enrich
from closewatch.ingest.timestamps import check_zone
from closewatch.settings import Settings
from closewatch.store import Store

log = logging.getLogger("closewatch.follow")
#: A pass that fails (database busy for longer than the lock timeout) is retried after this many flushes.
RETRY_FLUSHES = 2


def enrich_with_catalog(catalog_path: Path | None) -> Enrich:
    catalog = load_catalog(catalog_path)
    return lambda events: classify(events, catalog)


def read_options(settings: Settings, format_name: str | None = None, envelope: str | None = None,
                 tz: str | None = None, client_from: str | None = None) -> ReadOptions:
    """How followed inputs are read: [follow] and [ingest] bounds, the user's format choices (checked here)."""
    if format_name is not None:
        get_format(format_name)
    check_envelope_name(envelope)
    return ReadOptions(follow=settings.follow, limits=settings.ingest_limits, format_name=format_name, envelope=envelope,
                       tz=check_zone(tz or "UTC"), client_from=client_from)


def follow_files(store: Store, globs: list[str], settings: Settings, stop: threading.Event,
                 options: ReadOptions | None = None, on_tick: Callable[[TickReport], None] | None = None,
                 follower: FileFollower | None = None, keep_mark: bool = False) -> None:
    """Follow the files the globs match until ``stop`` is set; the live mark is dropped on the way out
    (``keep_mark``: left to go stale by itself, for one pass that an evaluation follows)."""
    follower = follower or FileFollower(store, globs, enrich_with_catalog(settings.catalog), options or read_options(settings))
    flush = settings.follow.flush_s
    try:
        while not stop.is_set():
            try:
                report = follower.tick()
            except ClosewatchError as error:  # the database busy past the lock timeout: try again a little later
                log.warning("follow: %s", error)
                stop.wait(RETRY_FLUSHES * flush)
                continue
            except Exception:  # a bug: keep following (the scheduler stays up), show the traceback in the log
                log.exception("follow: a pass failed unexpectedly")
                follower.loaded = False  # read the states again from the store
                stop.wait(RETRY_FLUSHES * flush)
                continue
            if on_tick is not None:
                on_tick(report)
            if report.caught_up:
                stop.wait(flush)
    finally:
        follower.close(drop_mark_too=not keep_mark)


def follow_stream(store: Store, stream: BinaryIO, name: str, settings: Settings, stop: threading.Event,
                  options: ReadOptions | None = None, on_flush: Callable[[Stored], None] | None = None) -> Stored:
    """Read ``stream`` until it ends or ``stop`` is set, storing every flush; returns the totals stored."""
    follower = StreamFollower(store, stream, name, enrich_with_catalog(settings.catalog),
                              options or read_options(settings)).start()
    total = Stored()
    try:
        while True:
            ended = follower.wait(settings.follow.flush_s) or stop.is_set()
            _add(total, _flush(follower, final=ended))
            if on_flush is not None:
                on_flush(total)
            if ended:
                return total
    finally:
        if not follower.ended and not stop.is_set():  # an error on the way: keep what was read
            _add(total, _flush(follower, final=True))
        follower.close()


def _flush(follower: StreamFollower, final: bool) -> Stored:
    try:
        return follower.flush(final=final)
    except ClosewatchError as error:
        if final:
            raise
        log.warning("follow: %s; the lines wait for the next flush", error)
        return Stored()


def _add(total: Stored, done: Stored) -> None:
    total.lines += done.lines
    total.accepted += done.accepted
    total.duplicates += done.duplicates
    total.rejected += done.rejected
