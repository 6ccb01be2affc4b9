"""``closewatch scheduler``: ingest a watched folder, analyze, evaluate rules, deliver the outbox, on intervals.

APScheduler 3.x runs four interval jobs in a BlockingScheduler: ingest,
analyze and evaluate share ONE worker thread, so they never overlap; deliver
has a thread of its own, so a slow or dead channel never delays ingest or
evaluation (a deliver run is bounded by ``[alerts] deliver_deadline`` and
SIGTERM stops it within seconds, leaving unsent rows pending). The two threads
take turns for each short connection (``SerialStore``), since DuckDB allows
one configuration of a file per process. Every job run opens the store for
short transactions and closes it again,
so the dashboard and the CLI can use the database between (and during most
of) the runs; when another process holds the file, the job waits with the
store's backoff, and gives up after the lock timeout with an ``error``
outcome (the next run tries again).

Each run is recorded in ``job_runs`` (job, started, finished, outcome, error,
detail): a row is written as ``running`` when the job starts and completed
when it ends, so a scheduler killed mid-job leaves a ``running`` row that the
next start marks ``interrupted``. ``scheduler_health`` (a view) gives the last
run of each job for the dashboard.

Exactly once across restarts:

* ingest: a file is loaded only if its content's sha256 is not already in
  ``ingest_batches``, which is written in the same transaction as the file's
  rows, so a kill mid-file loads it fully on the next run, and a finished
  file is never loaded again. ``watched_files`` remembers (path, size, mtime)
  so unchanged files are not even re-read. Files younger than ``settle`` are
  left for the next run: they may still be being written.
* evaluate / deliver: see alerts/evaluation.py and alerts/outbox.py (watermark
  and outbox in the same transactions as the state they follow).

One scheduler per database: an exclusive lock on ``<db>.scheduler.lock``
refuses a second one (the OS drops it when the process dies, even on SIGKILL).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from closewatch.alerts.evaluation import evaluate
from closewatch.alerts.errors import AlertError
from closewatch.alerts.outbox import deliver, due
from closewatch.alerts.rules import load_rules
from closewatch.durations import format_duration
from closewatch.errors import ClosewatchError, StoreBusy
from closewatch.jobs.alerting import engine_settings
from closewatch.jobs.analysis import analyze_recent, describe
from closewatch.redaction import redact_text
from closewatch.settings import SchedulerSettings, Settings
from closewatch.store import Store

log = logging.getLogger("closewatch.scheduler")
JOBS = ("ingest", "analyze", "evaluate", "deliver")
#: job_runs older than this are deleted (at start and every PRUNE_EVERY_RUNS runs).
KEEP_RUNS_DAYS = 7
PRUNE_EVERY_RUNS = 500
#: Jobs that keep the store open for their whole run (they wait on nothing but the database; deliver calls channels).
HELD_JOBS = frozenset({"ingest", "analyze", "evaluate"})
#: ... when they run at most this often: held runs back to back would leave other processes no moment to open the file.
HOLD_MIN_INTERVAL_S = 10.0
#: Idle runs in a row are written to job_runs at most this often (scheduler_health calls a job late after
#: twice its interval plus a minute, so the health stays right while a 15 s deliver job writes once a minute).
IDLE_RECORD_EVERY_S = 60.0
#: A job_runs error is one sentence; anything longer is cut (after redaction).
MAX_ERROR_CHARS = 1000
#: Names in a watched folder that are never logs, or not finished yet.
_SKIP_NAMES = {"manifest.json", "README.md"}
_SKIP_SUFFIXES = {".py", ".md", ".tmp", ".part", ".partial", ".crdownload", ".lock"}


# -- job runs ---------------------------------------------------------------------


class JobRecorder:
    """Writes one job_runs row per run; rows that could not be written (database busy) wait in memory."""

    def __init__(self, store: Store):
        self.store = store
        self.unwritten: list[tuple[str, list[Any]]] = []
        self.stopping = False  # set on SIGTERM/SIGINT: runs already queued behind the current one are dropped
        self.runs = 0
        self.lock = threading.RLock()  # the deliver thread records its runs beside the other jobs' thread
        self.idle_recorded: dict[str, float] = {}  # job -> when its last idle run was written (time.monotonic)
        self.held_jobs = set(HELD_JOBS)  # run_forever leaves out the jobs that run too often to hold the file
        self.idle_every: dict[str, float] = {}  # job -> seconds between written idle runs (run_forever: from its interval)

    def run(self, job: str, work: Callable[[], str], idle: Callable[[], str | None] | None = None) -> tuple[str, str | None]:
        """Run one job and record it; returns (outcome, error). Never raises a user error.

        The jobs in HELD_JOBS keep the file open for their whole run
        (``SerialStore.held``): their many short transactions then cost one
        open and one checkpoint, not one each.
        """
        holding = getattr(self.store, "held", None)
        if holding is None or job not in self.held_jobs:
            return self._run(job, work, idle)
        # the recorder's lock first, as the deliver thread's writes take it: the same order in both threads, no deadlock
        with self.lock, holding():
            return self._run(job, work, idle)

    def _run(self, job: str, work: Callable[[], str], idle: Callable[[], str | None] | None) -> tuple[str, str | None]:
        """Run one job and record it (see ``run``).

        ``idle`` (one cheap read) says why there is nothing to do, or None when
        there is: an idle run is recorded as one finished row (and idle runs in
        a row at most every IDLE_RECORD_EVERY_S), without the 'running' row and
        the job's own transactions, since each write to a large store costs
        tens of milliseconds of CPU and these runs come every few seconds.
        """
        if self.stopping:
            return "skipped", None
        self.runs += 1
        if self.runs % PRUNE_EVERY_RUNS == 0:
            self.prune()
        run_id = uuid.uuid4().hex
        started = datetime.now(UTC)
        clock, cpu = time.perf_counter(), time.process_time()
        quiet = self._idle(job, idle)
        if quiet is not None:
            every = self.idle_every.get(job, IDLE_RECORD_EVERY_S)
            if time.monotonic() - self.idle_recorded.get(job, -every) >= every:
                if not self._write("INSERT INTO job_runs VALUES (?, ?, ?, now(), 'ok', NULL, ?, ?)",
                                   [run_id, job, started, quiet, os.getpid()]):
                    log.warning("%s skipped: the database is busy", job)
                    return "error", "the database was busy"
                self.idle_recorded[job] = time.monotonic()
            log.info("%s ok in %.2f s (CPU %.2f s): %s", job, time.perf_counter() - clock, time.process_time() - cpu, quiet)
            return "ok", None
        self.idle_recorded.pop(job, None)
        if not self._write("INSERT INTO job_runs VALUES (?, ?, ?, NULL, 'running', NULL, NULL, ?)", [run_id, job, started, os.getpid()]):
            with self.lock:
                self.unwritten.append(("INSERT INTO job_runs VALUES (?, ?, ?, now(), 'error', ?, NULL, ?)",
                                   [uuid.uuid4().hex, job, started, "the database was busy; the run was skipped", os.getpid()]))
            log.warning("%s skipped: the database is busy", job)
            return "error", "the database was busy"
        outcome, error, detail = "ok", None, ""
        try:
            detail = work() or ""
        except ClosewatchError as failure:
            outcome, error = "error", str(failure)
        except Exception as failure:  # a bug: keep the scheduler alive, record it, show the traceback in the log
            outcome, error = "error", f"{type(failure).__name__}: {failure}"
            log.exception("%s failed unexpectedly", job)
        error = redact_text(error)[:MAX_ERROR_CHARS] if error else error  # an error may quote a URL or a header
        detail = redact_text(detail)
        finished = datetime.now(UTC)
        done = ("UPDATE job_runs SET finished_at = ?, outcome = ?, error = ?, detail = ? WHERE run_id = ?",
                [finished, outcome, error, detail, run_id])
        if not self._write(*done):
            with self.lock:
                self.unwritten.append(done)
        took = time.perf_counter() - clock
        used = time.process_time() - cpu  # the whole process's CPU meanwhile: the deliver thread's too, when they overlap
        if outcome == "ok":
            log.info("%s ok in %.2f s (CPU %.2f s): %s", job, took, used, detail)
        else:
            log.warning("%s %s in %.2f s (CPU %.2f s): %s", job, outcome, took, used, error)
        return outcome, error

    @staticmethod
    def _idle(job: str, idle: Callable[[], str | None] | None) -> str | None:
        """The idle check's answer; a failing check means "not idle" (the run itself then says what is wrong)."""
        if idle is None:
            return None
        try:
            return idle()
        except Exception:
            return None

    def interrupted(self) -> int:
        """Mark runs left 'running' by a scheduler that died (we hold the scheduler lock, so none is live)."""
        with self.store.transaction() as con:
            return con.execute("""
                UPDATE job_runs SET outcome = 'interrupted', finished_at = now(),
                       error = 'the scheduler stopped during this run (killed or crashed); the next run redid its work'
                WHERE outcome = 'running'
            """).fetchone()[0]

    def prune(self) -> None:
        """Keep job_runs bounded: runs older than KEEP_RUNS_DAYS go (a failure there must not stop the job)."""
        try:
            with self.store.transaction() as con:
                con.execute(f"DELETE FROM job_runs WHERE started_at < now() - INTERVAL {KEEP_RUNS_DAYS} DAY")
        except StoreBusy:
            pass

    def _write(self, sql: str, params: list[Any]) -> bool:
        with self.lock:
            try:
                with self.store.transaction() as con:
                    for earlier_sql, earlier_params in self.unwritten:
                        con.execute(earlier_sql, earlier_params)
                    con.execute(sql, params)
                self.unwritten.clear()
                return True
            except StoreBusy:
                return False


# -- the jobs ---------------------------------------------------------------------------


@dataclass
class Jobs:
    """The four units of work; each returns a one-line detail for its job_runs row."""

    store: Store
    rules_path: Path
    settings: Settings
    _analyzed: str | None = None
    #: Set on SIGTERM/SIGINT: a deliver run starts no more sends and releases what it has not tried.
    stop: threading.Event = field(default_factory=threading.Event)
    #: Runs a job now (set by run_forever): the follower asks for an evaluation as soon as its live mark passes
    #: an evaluation time, and an evaluation that queued notifications asks for a delivery (issue 13's latency).
    nudge: Callable[[str], None] | None = None

    def follow(self) -> str:
        """One pass over the [scheduler] follow files (``--once``; run_forever follows them in a thread of their own).

        The live mark is left to go stale by itself, so the evaluation after it judges up to now.
        """
        from closewatch.jobs.following import enrich_with_catalog, read_options
        from closewatch.ingest.follow import FileFollower

        scheduler = self.settings.scheduler
        follower = FileFollower(self.store, scheduler.follow, enrich_with_catalog(self.settings.catalog),
                                read_options(self.settings, scheduler.format, tz=scheduler.tz))
        try:
            report = follower.tick()
        finally:
            follower.close(drop_mark_too=False)
        if report.errors:
            raise AlertError(report.summary())
        return report.summary()

    def ingest(self) -> str:
        scheduler = self.settings.scheduler
        if scheduler.watch is None:
            return "no watched folder configured"
        return ingest_watched(self.store, scheduler.watch, scheduler.settle_s, scheduler.format,
                              scheduler.tz, self.settings.catalog)

    def analyze(self) -> str:
        """Bring the findings of the last analyze_window (from the start of its UTC day) up to date, if data changed.

        Incremental: only what the closures stored since the last run change is recomputed (jobs.analysis.analyze_recent).
        """
        token = self.store.latest_batch()
        if token == self._analyzed:
            return "no new data since the last run"
        run = analyze_recent(self.store, self.settings)
        if run is None:
            return "no closures yet"
        self._analyzed = token
        return describe(run)

    def evaluate(self) -> str:
        engine = engine_settings(self.settings)
        ruleset = load_rules(self.rules_path, engine.step_s)
        report = evaluate(self.store, ruleset, engine)
        if report.notifications and self.nudge is not None:
            self.nudge("deliver")
        if report.failures:
            raise AlertError(f"{report.summary()}: {report.failures[0]}")
        return report.summary()

    def analyze_idle(self) -> str | None:
        """Why an analyze run has nothing to do (no new data since the last run), or None when it has."""
        return "no new data since the last run" if self._analyzed is not None and self.store.latest_batch() == self._analyzed else None

    def deliver_idle(self) -> str | None:
        """Why a deliver run has nothing to do (no notification due), or None when it has: one read, no write."""
        return None if due(self.store) else "nothing due"

    def idle_check(self, name: str) -> Callable[[], str | None] | None:
        """The job's cheap "nothing to do" check, for the jobs that have one (analyze, and deliver: it runs every 15 s)."""
        return getattr(self, f"{name}_idle", None)

    def deliver(self) -> str:
        engine = engine_settings(self.settings)
        ruleset = load_rules(self.rules_path, engine.step_s)
        report = deliver(self.store, ruleset, engine, stop=self.stop)
        if report.failed:
            raise AlertError(report.summary())
        return report.summary()


def ingest_watched(store: Store, folder: Path, settle_s: float, format_name: str | None, tz: str,
                   catalog: Path | None, clock: Callable[[], float] = time.time) -> str:
    """Load each settled, new file of the folder once; returns what happened in one line."""
    from closewatch import jobs
    from closewatch.ingest.sources import expand_inputs

    if not folder.is_dir():
        raise AlertError(f"The watched folder {folder} does not exist; create it or fix [scheduler] watch / --watch.")
    with store.transaction() as con:
        known = {row[0]: (row[1], row[2]) for row in con.execute("SELECT path, size, mtime_ns FROM watched_files").fetchall()}
    loaded, skipped, failed, waiting = 0, 0, [], 0
    for path in _candidates(folder):
        stat = path.stat()
        key = str(path.resolve())
        if known.get(key) == (stat.st_size, stat.st_mtime_ns):
            continue
        if clock() - stat.st_mtime < settle_s:
            waiting += 1
            continue
        source = expand_inputs([str(path)])[0]
        if source.problem:  # unreadable: say so, load the others, try again when the next run comes
            failed.append(f"{path.name}: {source.problem}")
            continue
        digest = _sha256(source)
        with store.transaction() as con:
            row = con.execute("SELECT batch_id FROM ingest_batches WHERE sha256 = ? LIMIT 1", [digest]).fetchone()
        if row is not None:
            _remember(store, key, stat, digest, row[0], "already_loaded", "the same content was loaded before")
            skipped += 1
            continue
        try:
            result = jobs.ingest(store, [source], format_name, tz, catalog)[0]
        except ClosewatchError as error:
            _remember(store, key, stat, digest, None, "failed", str(error))
            failed.append(f"{path.name}: {error}")
            continue
        _remember(store, key, stat, digest, result.batch_id, "ingested",
                  f"{result.accepted} accepted, {result.duplicates} duplicates, {result.rejected} rejected")
        loaded += 1
    parts = [f"{n} {what}" for n, what in ((loaded, "files loaded"), (skipped, "already loaded"), (waiting, "still being written")) if n]
    detail = ", ".join(parts) or "no new files"
    if failed:
        raise AlertError(f"{detail}; {len(failed)} failed: {failed[0]}")
    return detail


def _candidates(folder: Path) -> list[Path]:
    """Files that may be logs: not hidden, not partial downloads, not the generator's manifest."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.name not in _SKIP_NAMES and path.suffix not in _SKIP_SUFFIXES:
            files.append(path)
    return files


def _sha256(source) -> str:
    """The same digest ingest records in ingest_batches.sha256 (of the decompressed content)."""
    digest = hashlib.sha256()
    with source.open() as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _remember(store: Store, key: str, stat: os.stat_result, digest: str, batch_id: str | None, status: str, message: str) -> None:
    with store.transaction() as con:
        con.execute("INSERT OR REPLACE INTO watched_files VALUES (?, ?, ?, ?, ?, ?, ?, now())",
                    [key, stat.st_size, stat.st_mtime_ns, digest, batch_id, status, message])


# -- the scheduler --------------------------------------------------------------------------


class SchedulerLock:
    """One scheduler per database: an exclusive flock on <db>.scheduler.lock, released by the OS on any exit.

    A clean stop also removes the file (a kill leaves it, unlocked, for the next start to reuse).
    """

    def __init__(self, db_path: Path):
        self.path = db_path.with_name(db_path.name + ".scheduler.lock")
        self.handle = None

    def __enter__(self) -> SchedulerLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            self.handle = open(self.path, "a+")
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.handle.seek(0)
                holder = self.handle.read().strip() or "another process"
                self.handle.close()
                raise AlertError(f"Another scheduler (PID {holder}) is already running on {self.path.with_suffix('')}; stop it first.") from None
            if self._holds_the_file():
                break
            self.handle.close()  # a scheduler stopping meanwhile removed the file we locked: lock the one there now
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def _holds_the_file(self) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(self.handle.fileno()).st_ino
        except FileNotFoundError:
            return False

    def __exit__(self, *exc) -> None:
        if self.handle:
            self.path.unlink(missing_ok=True)  # still locked, so nobody can take the lock of the removed file
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


def run_once(jobs: Jobs, recorder: JobRecorder) -> dict[str, str]:
    """Every job once, in order (follow if configured, ingest, analyze, evaluate, deliver); returns job -> outcome."""
    names = (("follow",) if jobs.settings.scheduler.follow else ()) + JOBS
    return {name: recorder.run(name, getattr(jobs, name), jobs.idle_check(name))[0] for name in names}


def start_following(jobs: Jobs) -> threading.Thread | None:
    """Follow the [scheduler] follow globs in a thread until ``jobs.stop`` is set (closewatch.jobs.following).

    After each pass that read every file to its end, an evaluation is asked
    for as soon as the live mark has passed a new evaluation time, so a close
    is judged within a step and a flush of being written, not at the next
    evaluate interval.
    """
    scheduler = jobs.settings.scheduler
    if not scheduler.follow:
        return None
    from closewatch.jobs.following import follow_files, read_options

    options = read_options(jobs.settings, scheduler.format, tz=scheduler.tz)
    step, lateness = jobs.settings.alerts.step_s, jobs.settings.follow.lateness_s
    judged = {"tick": -1}

    def on_tick(report) -> None:
        if report.marked is None or jobs.nudge is None:
            return
        tick = int((report.marked.timestamp() - lateness) // step)
        if tick != judged["tick"]:
            judged["tick"] = tick
            jobs.nudge("evaluate")

    thread = threading.Thread(target=follow_files, name="follow", daemon=True,
                              args=(jobs.store, list(scheduler.follow), jobs.settings, jobs.stop, options, on_tick))
    thread.start()
    log.info("following %s every %s", ", ".join(scheduler.follow), format_duration(jobs.settings.follow.flush_s))
    return thread


def _already_running_is_fine(record: logging.LogRecord) -> bool:
    """A job brought forward while it runs is skipped by APScheduler with a warning; that is expected, not news."""
    return "maximum number of running instances reached" not in record.getMessage()


def run_forever(jobs: Jobs, recorder: JobRecorder) -> None:
    """Run the jobs on their [scheduler] intervals until SIGTERM or SIGINT.

    On a signal, a running deliver stops within seconds (its unsent rows stay
    pending); a running ingest, analyze or evaluate finishes its unit first.
    """
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.blocking import BlockingScheduler

    settings: SchedulerSettings = jobs.settings.scheduler
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per webhook call is noise; failures are logged by deliver
    recorder.prune()
    scheduler = BlockingScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=1), "deliver": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": max(1, int(settings.misfire_grace_s))},
        timezone=UTC,
    )
    start = datetime.now(UTC)
    for order, name in enumerate(JOBS):
        every = getattr(settings, f"{name}_every_s")
        recorder.idle_every[name] = min(IDLE_RECORD_EVERY_S, 4 * every)  # the health's "late" is 2 intervals + 1 min
        if every < HOLD_MIN_INTERVAL_S:
            recorder.held_jobs.discard(name)  # back to back, held runs would keep other processes out of the file
        scheduler.add_job(recorder.run, "interval", args=[name, getattr(jobs, name), jobs.idle_check(name)], id=name, name=name,
                          seconds=every, next_run_time=start + timedelta(milliseconds=100 * order),
                          executor="deliver" if name == "deliver" else "default")
        log.info("job %s every %s", name, format_duration(every))

    logging.getLogger("apscheduler.scheduler").addFilter(_already_running_is_fine)

    def nudge(name: str) -> None:
        try:
            scheduler.modify_job(name, next_run_time=datetime.now(UTC))
        except Exception:  # the scheduler is stopping (or not started yet): the job's interval runs it anyway
            log.debug("could not bring %s forward", name)

    jobs.nudge = nudge
    following = start_following(jobs)

    def stop(signum, _frame) -> None:
        log.info("%s received: finishing the running job, then stopping", signal.Signals(signum).name)
        recorder.stopping = True
        jobs.stop.set()
        if scheduler.running:
            scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.start()
    if following is not None:
        jobs.stop.set()
        following.join(timeout=60)  # the pass under way commits; the live mark is dropped
    log.info("scheduler stopped")
