"""Following live logs: files that are still being written (and rotated), and streams such as stdin.

The model is the log shippers' (Filebeat, Vector, Promtail, Fluent Bit): a
followed file is known by its device and inode, checked against a
fingerprint of its first bytes (so a reused inode, or a file truncated and
written again, is not mistaken for the old one), with the offset up to which
its lines are stored. All of it lives in ``follow_state``, committed in the
same transaction as the closures it read, so a follower killed at any line
resumes exactly where the store says, and no line is stored twice.

* Only complete lines are read; a last line without its newline waits for
  it, and is read as it is once the file has not grown for ``settle``.
* Rotation by rename: the open handle keeps reading the old file after its
  name is taken by a new one, until it has been quiet for ``settle``
  (finished: ``done``, or ``gone`` if it was removed); the new file is
  followed from its first byte. After a restart the old file is looked for
  by its inode in its folder.
* copytruncate: a file shorter than its offset, or whose first bytes no
  longer match its fingerprint, is read again from 0 (a new state; the old
  one is kept as ``truncated``). A copy that the globs match continues the
  old state from its offset, so the lines written just before the truncation
  are not lost.
* A rotated file compressed later (``app.log.1.gz``) is recognised by the
  fingerprint of its decompressed first bytes and continues its state: what
  was read is not read again.
* Format and envelope are detected once per file, from its first lines, and
  stay with its state.

Every commit also advances the follower's *live mark* (``follow_marks``):
everything its sources wrote before that time is stored. The alert engine
lets a rule's frontier move with that mark, so a burst followed by silence is
evaluated to its end (closewatch.alerts).

This module reads and stores; the loop that calls it every ``flush`` is in
``closewatch.jobs.following``.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import os
import socket
import stat
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import duckdb

from closewatch.ingest.envelopes import HEAD_BYTES, HEAD_LINES, reader_for_head
from closewatch.ingest.errors import IngestError
from closewatch.ingest.formats import ParseOptions
from closewatch.ingest.lines import GZIP_MAGIC, head_lines_of, stream_of
from closewatch.ingest.pipeline import STORED_CLOSURE_COLUMNS, Enrich, read_parts, staged_input, stored_ids_sql
from closewatch.ingest.sources import bytes_input, expand_inputs
from closewatch.ingest.limits import IngestLimits
from closewatch.settings import FollowSettings
from closewatch.store import Store, scalar

#: A file is told apart from others by the sha256 of this many first bytes (fewer while it is shorter).
FINGERPRINT_BYTES = 1024
#: Statuses of a state that is still being read.
ACTIVE = ("following", "rotated")
#: Before its format is known, a file waits for this many lines (or for ``settle``) before detection.
DETECT_MIN_LINES = 20
#: A follower's mark counts this long after its last write, plus a few flushes (then it is presumed dead).
MARK_GRACE_S = 30.0
#: An idle follower writes its live mark this often (a pass that stores lines writes it at once).
MARK_EVERY_S = 10.0
#: Retired states (truncated, moved, gone, done) are kept this long, for fingerprints and the dashboard.
KEEP_RETIRED_DAYS = 7
_UNREADABLE = (EOFError, OSError, zlib.error)


class FollowRaced(IngestError):
    """Another follower stored this file's lines first; the state is read again."""


class _Later(Exception):
    """A file to look at again on the next pass (a rotated copy whose original is still being finished)."""


@dataclass
class FollowState:
    """One row of follow_state: a followed file (or stream) and how far it is stored."""

    follow_id: str
    kind: str
    path: str
    device: int | None = None
    inode: int | None = None
    fingerprint: str = ""
    fingerprint_bytes: int = 0
    read_offset: int = 0
    line_no: int = 0
    format: str | None = None
    envelope: str | None = None
    batch_id: str = ""
    status: str = "following"
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    size: int | None = None
    lines_per_s: float = 0.0
    last_close_at: datetime | None = None
    last_read_at: datetime | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    error: str | None = None
    continued_by: str | None = None

    @classmethod
    def new(cls, kind: str, path: str, **values) -> FollowState:
        return cls(uuid.uuid4().hex, kind, path, batch_id=uuid.uuid4().hex, started_at=datetime.now(UTC), **values)

    def continued(self, path: str, device: int, inode: int) -> FollowState:
        """A new state reading on where this one stopped (the same content, found under another inode)."""
        return replace(self, follow_id=uuid.uuid4().hex, path=path, device=device, inode=inode, status="following",
                       continued_by=None, error=None, started_at=datetime.now(UTC))


STATE_COLUMNS = [f.name for f in fields(FollowState)]


def load_states(con: duckdb.DuckDBPyConnection, kind: str = "file") -> list[FollowState]:
    """The states of one kind, oldest first; retired ones older than KEEP_RETIRED_DAYS are pruned."""
    con.execute(f"""DELETE FROM follow_state WHERE status NOT IN {ACTIVE}
                    AND updated_at < now() - INTERVAL {KEEP_RETIRED_DAYS} DAY""")
    rows = con.execute(f"SELECT {', '.join(STATE_COLUMNS)} FROM follow_state WHERE kind = ? ORDER BY started_at",
                       [kind]).fetchall()
    return [FollowState(*row) for row in rows]


def save_state(con: duckdb.DuckDBPyConnection, state: FollowState) -> None:
    state.updated_at = datetime.now(UTC)
    values = [getattr(state, name) for name in STATE_COLUMNS]
    con.execute(f"INSERT OR REPLACE INTO follow_state ({', '.join(STATE_COLUMNS)}) VALUES ({', '.join('?' * len(values))})",
                values)


def touch_state(con: duckdb.DuckDBPyConnection, state: FollowState) -> None:
    """Store a state's path, status, size, rate and error, never its offset (which only store_lines moves, with
    its check): a new state is inserted whole."""
    state.updated_at = datetime.now(UTC)
    values = [getattr(state, name) for name in STATE_COLUMNS]
    con.execute(f"""INSERT INTO follow_state ({', '.join(STATE_COLUMNS)}) VALUES ({', '.join('?' * len(values))})
                    ON CONFLICT (follow_id) DO UPDATE SET path = excluded.path, status = excluded.status,
                        size = excluded.size, lines_per_s = excluded.lines_per_s, error = excluded.error,
                        continued_by = excluded.continued_by, updated_at = excluded.updated_at""", values)


def write_mark(con: duckdb.DuckDBPyConnection, follower: str, live_until: datetime, flush_s: float) -> None:
    """Everything the follower's sources wrote before ``live_until`` is stored (read by the alert engine)."""
    fresh = MARK_GRACE_S + 5 * flush_s
    con.execute(f"""INSERT OR REPLACE INTO follow_marks
                    VALUES (?, ?, now() + INTERVAL {int(fresh * 1000)} MILLISECOND, ?, now())""",
                [follower, live_until, os.getpid()])


def drop_mark(store: Store, follower: str) -> None:
    """A follower that stops cleanly no longer holds the frontier back."""
    with store.transaction() as con:
        con.execute("DELETE FROM follow_marks WHERE follower = ?", [follower])


def follower_name(what: str) -> str:
    """A follower's name in follow_marks: what it follows, where and which process."""
    return f"{what}@{socket.gethostname()}:{os.getpid()}"


# -- storing lines -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadOptions:
    """How every followed input is read: the user's format/envelope choices and the bounds."""

    follow: FollowSettings = FollowSettings()
    limits: IngestLimits = IngestLimits()
    format_name: str | None = None
    envelope: str | None = None
    tz: str = "UTC"
    client_from: str | None = None


@dataclass
class Stored:
    """What one commit stored."""

    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0


def detect_reader(state: FollowState, data: bytes, options: ReadOptions) -> bool:
    """Find the state's format (and envelope) from its first lines, once; False if none fits them."""
    parse = ParseOptions(tz=options.tz, envelope=options.envelope, client_from=options.client_from)
    head = head_lines_of(stream_of(data), HEAD_LINES, HEAD_BYTES, int(options.limits.max_line_length))
    reader = reader_for_head(head, options.format_name, parse)
    if reader is None:
        return False
    *chain, inner = reader.name.split("/")
    state.format, state.envelope = inner, chain[0] if chain else None
    return True


def store_lines(store: Store, state: FollowState, data: bytes, lines: int, new_offset: int, enrich: Enrich,
                options: ReadOptions, expected_offset: int | None = None, head: bytes | None = None,
                also: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> Stored:
    """Parse ``data`` (whole lines of the state's input) and store its closures, rejects and the state, in one transaction.

    The state's offset must still be ``expected_offset`` in the store (another
    follower of the same file may have stored these lines meanwhile:
    FollowRaced, nothing written). ``head`` is the input's first bytes, for
    its fingerprint while that covers less than FINGERPRINT_BYTES. ``also``
    runs inside the transaction (the live mark). ``state`` changes only once
    the transaction has committed.
    """
    expected = state.read_offset if expected_offset is None else expected_offset
    new = replace(state)
    if head is not None and new.fingerprint_bytes < FINGERPRINT_BYTES:
        new.fingerprint, new.fingerprint_bytes = fingerprint_of(head[:new_offset])
    if new.format is None and not detect_reader(new, data, options):
        new.error = ("no known log format in its first lines; it is read on, and detected again on the next lines "
                     "(pass --format or [scheduler] format to name it)")
        done = _store_unparsed(store, new, lines, new_offset, expected, also)
        vars(state).update(vars(new))
        return done
    parse = ParseOptions(tz=options.tz, envelope=new.envelope, client_from=options.client_from)
    done = Stored(lines=lines)
    with staged_input(bytes_input(new.path, data), enrich, new.format, parse, limits=options.limits, home=store.path) as staged:
        result = staged.result
        new.error = result.message if result.status not in ("loaded", "no_events") else None
        with store.transaction(lake=False) as con:
            _check_offset(con, new, expected)
            if staged.closures is not None:
                # the duplicate check reads only the stored ids in the chunk's time range (ingest.pipeline)
                query = _INSERT_SQL.format(final=read_parts(staged.closures), stored=stored_ids_sql(con, staged.closures))
                inserted = scalar(con, query,
                                  [new.path, _format_name(new), new.batch_id, new.line_no])
                done.accepted, done.duplicates = inserted, result.accepted - inserted
                newest = scalar(con, f"SELECT max(ts) FROM {read_parts(staged.closures)}")
                if newest is not None and (new.last_close_at is None or newest > new.last_close_at):
                    new.last_close_at = newest
            if staged.rejects:
                con.execute("INSERT INTO rejects SELECT ?, ?, source_line + ?, raw, reason FROM read_parquet(?)",
                            [new.batch_id, new.path, new.line_no, [str(p) for p in staged.rejects]])
                done.rejected = result.rejected
            _count(new, done, new_offset, lines)
            _upsert_batch(con, new, done)
            save_state(con, new)
            if also is not None:
                also(con)
    vars(state).update(vars(new))
    return done


def _store_unparsed(store: Store, state: FollowState, lines: int, new_offset: int, expected: int,
                    also: Callable[[duckdb.DuckDBPyConnection], None] | None) -> Stored:
    """Lines in no known format: counted as read (so the file moves on), nothing stored from them."""
    done = Stored(lines=lines)
    with store.transaction(lake=False) as con:
        _check_offset(con, state, expected)
        _count(state, done, new_offset, lines)
        _upsert_batch(con, state, done)
        save_state(con, state)
        if also is not None:
            also(con)
    return done


def _check_offset(con: duckdb.DuckDBPyConnection, state: FollowState, expected: int) -> None:
    row = con.execute("SELECT read_offset, status FROM follow_state WHERE follow_id = ?", [state.follow_id]).fetchone()
    if row is not None and row[0] != expected:
        raise FollowRaced(f"{state.path} was read further by another follower (offset {row[0]:,}, not {expected:,})")


def _count(state: FollowState, done: Stored, new_offset: int, lines: int) -> None:
    now = datetime.now(UTC)
    if state.last_read_at is not None:
        elapsed = max((now - state.last_read_at).total_seconds(), 0.001)
        state.lines_per_s = round(0.5 * state.lines_per_s + 0.5 * lines / elapsed, 3)
    state.read_offset, state.line_no = new_offset, state.line_no + lines
    state.lines += lines
    state.accepted += done.accepted
    state.duplicates += done.duplicates
    state.rejected += done.rejected
    state.last_read_at = now


def _format_name(state: FollowState) -> str | None:
    if state.format is None:
        return None
    return f"{state.envelope}/{state.format}" if state.envelope else state.format


def _upsert_batch(con: duckdb.DuckDBPyConnection, state: FollowState, done: Stored) -> None:
    """One ingest_batches row per followed file, its counts growing with every commit."""
    con.execute("""
        INSERT INTO ingest_batches (batch_id, source_file, sha256, format, started_at, finished_at, lines_read, accepted,
                                    duplicates, rejected, skipped, status, parse_s, load_s, message)
        VALUES (?, ?, NULL, ?, ?, now(), ?, ?, ?, ?, 0, 'following', 0, 0, ?)
        ON CONFLICT (batch_id) DO UPDATE SET
            source_file = excluded.source_file, format = excluded.format, finished_at = excluded.finished_at,
            lines_read = ingest_batches.lines_read + excluded.lines_read,
            accepted = ingest_batches.accepted + excluded.accepted,
            duplicates = ingest_batches.duplicates + excluded.duplicates,
            rejected = ingest_batches.rejected + excluded.rejected, message = excluded.message
    """, [state.batch_id, state.path, _format_name(state), state.started_at, done.lines, done.accepted,
          done.duplicates, done.rejected, state.error or "followed"])


#: A close's identity as the pipeline computes it for its event_id (ingest/pipeline.py: time, session, code as
#: logged, reason and client, after redaction), rebuilt from a row's columns.
_IDENTITY = """concat_ws(chr(31), epoch_us(ts)::VARCHAR, coalesce(session_id, ''),
                         coalesce((CASE WHEN code_inferred THEN NULL ELSE close_code END)::VARCHAR, ''),
                         coalesce(close_reason, ''), coalesce(client_id, ''))"""

#: The staged rows, their source_line moved to the file's numbering ($4 lines before the chunk). The pipeline
#: numbers identical closes (alike in every field) within one chunk; a followed input is never read twice (its
#: offset commits with its rows), so a row whose id this input ($3) already stored is the next occurrence of an
#: identical close, numbered on from those stored: the id a whole-file ingest of the same lines gives it.
_INSERT_SQL = f"""
INSERT INTO closures ({", ".join(STORED_CLOSURE_COLUMNS)}, ingested_at)
WITH staged AS (
    SELECT *, {_IDENTITY} AS identity FROM {{final}}
), earlier AS (
    SELECT {_IDENTITY} AS identity, count(*) AS seen FROM closures
    WHERE batch_id = $3 AND ts IN (SELECT ts FROM staged WHERE event_id IN (SELECT event_id FROM closures WHERE batch_id = $3))
    GROUP BY ALL
), numbered AS (
    SELECT s.* EXCLUDE (identity) REPLACE (CASE
               WHEN e.seen IS NULL THEN s.event_id  -- also every close without a time: its id is its chunk's (see pipeline)
               ELSE md5(s.identity || '#' || (e.seen + row_number() OVER (PARTITION BY s.identity ORDER BY s.source_line) - 1)::VARCHAR)
           END AS event_id)
    FROM staged s LEFT JOIN earlier e ON e.identity = s.identity
)
SELECT {", ".join("$1" if c == "source_file" else "$2" if c == "source_format" else "$3" if c == "batch_id"
                  else "source_line + $4" if c == "source_line" else c for c in STORED_CLOSURE_COLUMNS)}, now()
FROM numbered ANTI JOIN ({{stored}}) AS stored ON stored.event_id = numbered.event_id
"""


def whole_lines(data: bytes, at_end: bool, settled: bool) -> bytes:
    """The part of ``data`` to read now: up to its last newline; all of it when the input ended or settled.

    ``data`` that holds no newline at all and fills a whole chunk is one
    over-long line: it is taken (and rejected as too long by the reader).
    """
    cut = data.rfind(b"\n")
    if (at_end and settled) or cut < 0 and not at_end:
        return data
    return data[: cut + 1]


def count_lines(data: bytes) -> int:
    return data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)


# -- following files ---------------------------------------------------------------------------------


def fingerprint_of(head: bytes) -> tuple[str, int]:
    head = head[:FINGERPRINT_BYTES]
    return hashlib.sha256(head).hexdigest(), len(head)


def _matches(state: FollowState, head: bytes) -> bool:
    """Does content opening with ``head`` open the way the state's file did?"""
    size = state.fingerprint_bytes
    return size > 0 and len(head) >= size and hashlib.sha256(head[:size]).hexdigest() == state.fingerprint


@dataclass
class Tracked:
    """A file being read: its state and an open handle (which keeps reading it after a rename or removal)."""

    state: FollowState
    handle: BinaryIO
    compressed: bool
    grew_at: float
    seen_size: int = -1
    detached_at: float | None = None  # when its path stopped naming it (rotated away or removed)

    @property
    def key(self) -> tuple[int, int]:
        return (self.state.device or 0, self.state.inode or 0)

    def head(self) -> bytes:
        return _read_head(self.handle, self.compressed)

    def close(self) -> None:
        try:
            self.handle.close()
        except OSError:
            pass


def _read_head(handle: BinaryIO, compressed: bool) -> bytes:
    if compressed:
        handle.seek(0)
        return handle.read(FINGERPRINT_BYTES)
    return os.pread(handle.fileno(), FINGERPRINT_BYTES, 0)


def _open(path: Path) -> tuple[BinaryIO, bool, os.stat_result]:
    raw = open(path, "rb")  # kept open while the file is followed
    info = os.fstat(raw.fileno())
    compressed = os.pread(raw.fileno(), 2, 0) == GZIP_MAGIC
    if compressed:
        return gzip.GzipFile(fileobj=raw), True, info  # type: ignore[return-value]
    return raw, False, info


@dataclass
class TickReport:
    """One pass over the followed files."""

    lines: int = 0
    accepted: int = 0
    files: int = 0
    caught_up: bool = True  # every file was read to its end (else the next pass should come at once)
    marked: datetime | None = None  # the live mark written by this pass, if one was
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.files} files followed, {self.lines:,} lines read, {self.accepted:,} closures stored"
        return text + (f"; {len(self.errors)} problems: {self.errors[0]}" if self.errors else "")


class FileFollower:
    """Follows the files that some globs match, across rotations, restarts and crashes (see the module docstring).

    ``tick`` is one pass: notice rotations and truncations, find new files,
    read each one's new complete lines (one chunk of at most ``max_chunk``
    bytes per file) and commit them with its state; then write the live mark
    if every file was read to its end. Not thread-safe: one thread ticks.
    """

    def __init__(self, store: Store, globs: Iterable[str], enrich: Enrich, options: ReadOptions = ReadOptions(),
                 follower: str | None = None, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.globs = list(globs)
        self.enrich = enrich
        self.options = options
        self.follower = follower or follower_name("files")
        self.clock = clock
        self.tracked: dict[str, Tracked] = {}
        self.states: dict[str, FollowState] = {}  # every known file state, by follow_id
        self.loaded = False
        self.lock = threading.Lock()
        self._shown: dict[str, tuple] = {}  # what was last written of each state (see _save_all)
        self._marked_at = -MARK_EVERY_S

    # -- one pass -----------------------------------------------------------------

    def tick(self) -> TickReport:
        with self.lock:
            started = datetime.now(UTC)
            report = TickReport()
            if not self.loaded:
                self._load()
            for tracked in list(self.tracked.values()):
                try:
                    self._check_identity(tracked, report)
                except _UNREADABLE as error:
                    self._fail(tracked, f"{tracked.state.path} cannot be read ({error}); it is tried again later", report)
            self._discover(report)
            for tracked in list(self.tracked.values()):
                try:
                    self._read(tracked, report)
                except FollowRaced as raced:
                    report.errors.append(str(raced))
                    self._forget(tracked)  # read its state again on the next pass
                except _UNREADABLE as error:
                    self._fail(tracked, f"{tracked.state.path} cannot be read ({error}); it is tried again later", report)
            report.files = len(self.tracked)
            report.marked = self._save_all(started if report.caught_up else None, quiet=report.lines == 0)
            return report

    def close(self, drop_mark_too: bool = True) -> None:
        """Stop following: handles closed, the live mark dropped (a clean stop never holds the frontier back)."""
        with self.lock:
            for tracked in self.tracked.values():
                tracked.close()
            self.tracked.clear()
            if drop_mark_too:
                drop_mark(self.store, self.follower)

    # -- knowing the files ----------------------------------------------------------

    def _load(self) -> None:
        with self.store.transaction() as con:
            self.states = {s.follow_id: s for s in load_states(con, "file")}
        self.states.update({t.state.follow_id: t.state for t in self.tracked.values()})  # the open ones are current
        self.loaded = True
        self._find_lost()

    def _find_lost(self) -> None:
        """After a restart: states still being read whose path no longer names their file are looked for by inode."""
        for state in [s for s in self.states.values() if s.status in ACTIVE and s.follow_id not in self.tracked and self._ours(s)]:
            path = _same_file_near(state)
            if path is None or not self._track(state, path, detached=path != Path(state.path)):
                state.status, state.error = "gone", "removed while closewatch was not following it; what it held after the stored offset is lost"
                self._save(state)

    def _ours(self, state: FollowState) -> bool:
        """Is this state's file named by our globs (or rotated out of a folder they name)? Another follower of the
        same store (the scheduler beside `closewatch follow`) has states of its own files."""
        path = os.path.abspath(state.path)
        patterns = [os.path.abspath(os.path.expanduser(glob)) for glob in self.globs]
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns):
            return True
        return state.status == "rotated" and any(os.path.dirname(path) == os.path.dirname(pattern) for pattern in patterns)

    def _check_identity(self, tracked: Tracked, report: TickReport) -> None:
        """A truncated or rewritten file starts a new state from 0 (the old one kept as truncated)."""
        if tracked.compressed:
            return
        size = os.fstat(tracked.handle.fileno()).st_size
        state = tracked.state
        if size >= state.read_offset and (state.fingerprint_bytes == 0 or _matches(state, tracked.head())):
            return
        state.status, state.error = "truncated", f"truncated at {state.read_offset:,} bytes (copytruncate?); read again from 0"
        self._save(state)
        fresh = FollowState.new("file", state.path, device=state.device, inode=state.inode)
        self.states[fresh.follow_id] = fresh
        del self.tracked[state.follow_id]
        self.tracked[fresh.follow_id] = replace(tracked, state=fresh, seen_size=-1)

    def _discover(self, report: TickReport) -> None:
        """Match what the globs name now against what is followed: renames, new files, rotated copies, removals."""
        seen: set[tuple[int, int]] = set()
        by_key = {t.key: t for t in self.tracked.values()}
        fresh: list[tuple[Path, os.stat_result]] = []
        for path in self._paths(report):
            try:
                info = os.stat(path)
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            seen.add(key)
            if key in by_key:
                found = by_key[key]  # renamed within the globs (app.log -> app.log.1), or back: still followed
                found.state.path = str(path)
                if found.detached_at is not None:
                    found.detached_at, found.state.status = None, "following"
            else:
                fresh.append((path, info))
        for tracked in self.tracked.values():
            if tracked.key not in seen and tracked.detached_at is None:
                tracked.detached_at = self.clock()
                tracked.state.status = "rotated"
                tracked.state.path = _current_name(tracked) or tracked.state.path
        for path, info in fresh:
            if len(self.tracked) >= self.options.follow.max_files:
                report.errors.append(f"more than {self.options.follow.max_files} files to follow; raise [follow] max_files "
                                     "or narrow the globs")
                break
            try:
                self._adopt(path, info)
            except _Later:
                continue
            except FollowRaced:
                self.loaded = False  # another follower's state for it: read the states again on the next pass
                continue
            except _UNREADABLE as error:
                report.errors.append(f"{path} cannot be read ({error}); it is tried again on the next pass")

    def _paths(self, report: TickReport) -> list[Path]:
        paths = []
        for glob in self.globs:
            try:
                inputs = expand_inputs([glob])
            except IngestError:
                continue  # nothing matches yet: a file that appears later is followed then
            for source in inputs:
                if source.path is not None and not source.problem:
                    paths.append(source.path.absolute())
                elif source.problem:
                    report.errors.append(source.problem)
        return paths

    def _adopt(self, path: Path, info: os.stat_result) -> None:
        """A file not being read: known by its inode, a copy of a retired file (by fingerprint), or new."""
        key = (info.st_dev, info.st_ino)
        known = [s for s in self.states.values() if (s.device, s.inode) == key and s.status in (*ACTIVE, "done")]
        known_state = known[-1] if known else None
        if known_state is not None and known_state.status == "done" and known_state.size == info.st_size:
            return  # finished and unchanged: nothing to open
        handle, compressed, _ = _open(path)
        try:
            state = self._identify(path, key, known_state, handle, compressed, info)
        except (_Later, FollowRaced, *_UNREADABLE):
            handle.close()
            raise
        if state is None:
            handle.close()
            return
        self.states[state.follow_id] = state
        self.tracked[state.follow_id] = Tracked(state, handle, compressed, self.clock())

    def _identify(self, path: Path, key: tuple[int, int], known_state: FollowState | None, handle: BinaryIO,
                  compressed: bool, info: os.stat_result) -> FollowState | None:
        """The state an opened file continues or starts; None to look at it again later."""
        head = _read_head(handle, compressed)
        if compressed and time.time() - info.st_mtime < self.options.follow.settle_s:
            return None  # still being compressed, perhaps: its head may not be all there yet
        if known_state is not None and (known_state.fingerprint_bytes == 0 or _matches(known_state, head)):
            state = known_state
            state.path, state.status = str(path), "following"
        else:
            if known_state is not None:
                known_state.status, known_state.error = "gone", "its inode now holds another file"
                self._save(known_state)
            state = self._continuation(path, key, head) or self._new_state(path, key)
        return state

    def _new_state(self, path: Path, key: tuple[int, int]) -> FollowState:
        """A file seen for the first time; if another follower of the same store took it meanwhile, its state."""
        with self.store.transaction() as con:
            row = con.execute(f"SELECT follow_id FROM follow_state WHERE kind = 'file' AND device = ? AND inode = ? "
                              f"AND status IN {ACTIVE} ORDER BY started_at DESC LIMIT 1", list(key)).fetchone()
            if row is not None:
                raise FollowRaced(f"{path} is followed by another follower too; its state is read again")
            state = FollowState.new("file", str(path), device=key[0], inode=key[1])
            touch_state(con, state)
        return state

    def _continuation(self, path: Path, key: tuple[int, int], head: bytes) -> FollowState | None:
        """A new state continuing a retired one whose file opens like this one (a rotated copy, compressed or not)."""
        rotating = [t.state for t in self.tracked.values() if t.detached_at is not None]
        if any(_matches(s, head) for s in rotating):
            raise _Later()
        open_ids = set(self.tracked)
        candidates = [s for s in self.states.values() if s.follow_id not in open_ids and s.status != "moved" and _matches(s, head)]
        if not candidates:
            return None
        old = max(candidates, key=lambda s: (s.fingerprint_bytes, s.read_offset))
        new = old.continued(str(path), *key)
        old.status, old.continued_by = "moved", new.follow_id
        self._save(old)
        return new

    def _track(self, state: FollowState, path: Path, detached: bool) -> bool:
        """Read on a state from a file found by its inode, if the file still opens as the state's did (inodes are
        reused: a removed file's number may now belong to a new one); False if not."""
        try:
            handle, compressed, _ = _open(path)
            same = state.fingerprint_bytes == 0 or _matches(state, _read_head(handle, compressed))
        except _UNREADABLE:
            return False
        if not same:
            handle.close()
            return False
        tracked = Tracked(state, handle, compressed, self.clock())
        if detached:
            tracked.detached_at = self.clock()
            state.status = "rotated"
        self.tracked[state.follow_id] = tracked
        return True

    def _forget(self, tracked: Tracked) -> None:
        tracked.close()
        self.tracked.pop(tracked.state.follow_id, None)
        self.loaded = False  # the states are read again from the store on the next pass

    def _fail(self, tracked: Tracked, message: str, report: TickReport) -> None:
        tracked.state.error = message
        report.errors.append(message)

    # -- reading ---------------------------------------------------------------------------

    def _read(self, tracked: Tracked, report: TickReport) -> None:
        state = tracked.state
        data, at_end, size = self._next_chunk(tracked)
        now = self.clock()
        if size != tracked.seen_size:
            tracked.grew_at, tracked.seen_size = now, size
        state.size = size if not tracked.compressed else os.fstat(_raw(tracked).fileno()).st_size
        settled = now - tracked.grew_at >= self.options.follow.settle_s or tracked.compressed
        if not at_end:
            report.caught_up = False
        take = whole_lines(data, at_end, settled)
        if state.format is None and take and not (settled or take.count(b"\n") >= DETECT_MIN_LINES):
            take = b""  # too few lines yet to tell the format from
        if take:
            head = tracked.head() if state.fingerprint_bytes < FINGERPRINT_BYTES else None
            done = store_lines(self.store, state, take, count_lines(take), state.read_offset + len(take), self.enrich,
                               self.options, head=head)
            report.lines += done.lines
            report.accepted += done.accepted
        if at_end and len(take) == len(data) and (tracked.compressed or (tracked.detached_at is not None and settled)):
            self._finish(tracked)

    def _next_chunk(self, tracked: Tracked) -> tuple[bytes, bool, int]:
        """(bytes after the offset, up to max_chunk; whether they reach the end; the content's size so far)."""
        state = tracked.state
        limit = int(self.options.follow.max_chunk)
        if tracked.compressed:
            tracked.handle.seek(state.read_offset)
            data = tracked.handle.read(limit + 1)
            at_end = len(data) <= limit
            return data[:limit], at_end, state.read_offset + len(data)
        size = os.fstat(tracked.handle.fileno()).st_size
        data = os.pread(tracked.handle.fileno(), min(max(size - state.read_offset, 0), limit), state.read_offset)
        return data, state.read_offset + len(data) >= size, size

    def _finish(self, tracked: Tracked) -> None:
        """A rotated or compressed file read to its end: closed, its state done (or gone, if it was removed)."""
        state = tracked.state
        removed = not tracked.compressed and os.fstat(tracked.handle.fileno()).st_nlink == 0
        state.status = "gone" if removed else "done"
        tracked.close()
        del self.tracked[state.follow_id]
        self._save(state)

    # -- saving ------------------------------------------------------------------------------

    def _save(self, state: FollowState) -> None:
        with self.store.transaction() as con:
            touch_state(con, state)

    def _save_all(self, live_until: datetime | None, quiet: bool) -> datetime | None:
        """Every followed file's path, size, rate and status, and the live mark, in one short transaction.

        A quiet pass (nothing read, nothing changed) writes only every MARK_EVERY_S, so an idle follower
        costs little; returns the mark written, if any.
        """
        for tracked in self.tracked.values():
            if _idle(tracked.state, self.options.follow.flush_s):
                tracked.state.lines_per_s = 0.0
        shown = {t.state.follow_id: _shown(t.state) for t in self.tracked.values()}
        due = time.monotonic() - self._marked_at >= MARK_EVERY_S
        if quiet and shown == self._shown and not due:
            return None
        with self.store.transaction() as con:
            for tracked in self.tracked.values():
                if self._shown.get(tracked.state.follow_id) != shown[tracked.state.follow_id]:
                    touch_state(con, tracked.state)
            if live_until is not None:
                write_mark(con, self.follower, live_until, self.options.follow.flush_s)
        self._shown = shown
        if live_until is not None:
            self._marked_at = time.monotonic()
        return live_until


def _shown(state: FollowState) -> tuple:
    """What touch_state writes of a state (and the dashboard shows): a change means it is written again."""
    return (state.path, state.status, state.size, state.lines_per_s, state.error, state.continued_by)


def _idle(state: FollowState, flush_s: float) -> bool:
    """Nothing read for two flushes: its rate is 0 lines a second now."""
    return state.last_read_at is not None and (datetime.now(UTC) - state.last_read_at).total_seconds() > 2 * flush_s


def _raw(tracked: Tracked) -> BinaryIO:
    handle = tracked.handle
    return handle.fileobj if isinstance(handle, gzip.GzipFile) else handle


def _current_name(tracked: Tracked) -> str | None:
    """Where an open file is now (Linux's /proc names it, after a rename too); None if removed or unknown."""
    try:
        name = os.readlink(f"/proc/self/fd/{_raw(tracked).fileno()}")
    except OSError:
        return None
    return None if name.endswith(" (deleted)") else name


def _same_file_near(state: FollowState) -> Path | None:
    """The file with the state's device and inode: at its path, else in its folder (renamed by a rotation)."""
    path = Path(state.path)
    for candidate in [path, *_siblings(path)]:
        try:
            info = os.stat(candidate)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) == (state.device, state.inode) and stat.S_ISREG(info.st_mode):
            return candidate
    return None


def _siblings(path: Path) -> list[Path]:
    try:
        return sorted(Path(entry.path) for entry in os.scandir(path.parent) if entry.name != path.name)
    except OSError:
        return []


# -- following a stream --------------------------------------------------------------------------


class StreamFollower:
    """Reads a stream (stdin, a named pipe) as it arrives and stores its complete lines on each ``flush``.

    A thread reads the stream into a buffer bounded by ``max_chunk`` (the
    reader waits while it is full); ``flush`` stores what is complete with the
    stream's state and moves the live mark to the moment the buffer was seen
    drained. At the end of the stream (or on ``flush(final=True)``, Ctrl-C)
    a last line without its newline is stored too. A restarted pipe that
    sends lines again (``docker logs --since``) adds nothing: closures are
    identified by their content (event_id).
    """

    def __init__(self, store: Store, stream: BinaryIO, name: str, enrich: Enrich, options: ReadOptions = ReadOptions(),
                 follower: str | None = None):
        self.store = store
        self.stream = stream
        self.enrich = enrich
        self.options = options
        self.follower = follower or follower_name(f"stream {name}")
        self.state = FollowState.new("stream", name)
        self.buffer = bytearray()
        self.ended = False
        self.problem: str | None = None
        self.arrived_at = time.monotonic()
        self.drained_at: datetime | None = None  # the buffer was empty and the reader waiting, at this time
        self.marked_at = -MARK_EVERY_S
        self.condition = threading.Condition()
        self.reader = threading.Thread(target=self._pump, name=f"read {name}", daemon=True)

    def start(self) -> StreamFollower:
        with self.store.transaction() as con:
            touch_state(con, self.state)
        self.reader.start()
        return self

    def _pump(self) -> None:
        limit = int(self.options.follow.max_chunk)
        descriptor = self.stream.fileno()
        while True:
            with self.condition:
                while len(self.buffer) >= limit:
                    self.condition.wait()
                self.drained_at = datetime.now(UTC) if not self.buffer else self.drained_at
            try:
                data = os.read(descriptor, min(1 << 20, limit))
            except OSError as error:
                data, self.problem = b"", f"the stream could not be read on ({error})"
            with self.condition:
                if not data:
                    self.ended = True
                    self.condition.notify_all()
                    return
                self.buffer += data
                self.arrived_at = time.monotonic()
                self.condition.notify_all()

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the end of the stream; True once it ended."""
        with self.condition:
            self.condition.wait_for(lambda: self.ended, timeout=seconds)
            return self.ended

    def flush(self, final: bool = False) -> Stored:
        """Store the complete lines read so far (all of it, if final or the stream ended or settled)."""
        with self.condition:
            settled = time.monotonic() - self.arrived_at >= self.options.follow.settle_s
            take = whole_lines(bytes(self.buffer), True, final or self.ended or settled)
            if self.state.format is None and take and not (final or self.ended or settled
                                                            or take.count(b"\n") >= DETECT_MIN_LINES):
                take = b""
            drained = len(take) == len(self.buffer)
            mark = datetime.now(UTC) if drained and self.drained_at is not None else None
        done = Stored()
        if take:
            also = (lambda con: write_mark(con, self.follower, mark, self.options.follow.flush_s)) if mark else None
            self.marked_at = time.monotonic() if mark else self.marked_at
            done = store_lines(self.store, self.state, take, count_lines(take), self.state.read_offset + len(take),
                               self.enrich, self.options, head=take if self.state.fingerprint_bytes < FINGERPRINT_BYTES else None,
                               also=also)
        elif mark is not None and time.monotonic() - self.marked_at >= MARK_EVERY_S:  # idle: a mark now and then
            self.marked_at = time.monotonic()
            with self.store.transaction() as con:
                write_mark(con, self.follower, mark, self.options.follow.flush_s)
                if self.state.lines_per_s and _idle(self.state, self.options.follow.flush_s):
                    self.state.lines_per_s = 0.0
                    touch_state(con, self.state)
        with self.condition:
            del self.buffer[: len(take)]
            self.condition.notify_all()
        return done

    def close(self) -> None:
        """The stream's state ended and its live mark dropped."""
        self.state.status = "ended" if not self.problem else "gone"
        self.state.error = self.problem
        self.state.lines_per_s = 0.0
        with self.store.transaction() as con:
            touch_state(con, self.state)
            con.execute("DELETE FROM follow_marks WHERE follower = ?", [self.follower])


__all__ = [
    "FileFollower", "FollowState", "ReadOptions", "Stored", "TickReport", "store_lines", "detect_reader",
    "whole_lines", "count_lines", "write_mark", "drop_mark", "follower_name", "load_states", "save_state",
    "FollowRaced", "StreamFollower", "touch_state",
]
