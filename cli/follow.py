"""Following live logs: `closewatch follow GLOB...` and `closewatch ingest --follow -|FILE`."""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import click
from closewatch.cli.kit import catalog_path, db_option, err_console, get_settings, get_store


@click.command()
@click.argument("globs", nargs=-1, required=True)
@click.option("--format", "format_name", help="Read every file as this format (see `closewatch formats`); default: detected once per file.")
@click.option("--envelope", help="Read every file inside this envelope (docker-json, cri, ...); default: detected once per file.")
@click.option("--client-from", "client_from", metavar="LABEL", help="The envelope label that names the client where a line names none.")
@click.option("--tz", default="UTC", show_default=True, help="Time zone of timestamps that carry none (an IANA name).")
@click.option("--catalog", "catalog_option", type=click.Path(exists=True, dir_okay=False), help="Your own close-code catalog file.")
@db_option
@click.pass_context
def follow(ctx: click.Context, globs: tuple[str, ...], format_name: str | None, envelope: str | None,
           client_from: str | None, tz: str, catalog_option: str | None) -> None:
    """Follow live log files: store their new lines every [follow] flush, across rotations and restarts.

    GLOBS name the files (quote them so the shell leaves them to closewatch);
    files that appear later are followed as they come. Each file is read
    from where the database says it was left (its device, inode, offset and
    a fingerprint of its first bytes), only complete lines, committed every
    flush (2 s). Rotation by rename, copytruncate and rotated files
    compressed later are recognised; nothing is read twice. Runs until
    Ctrl-C or SIGTERM. The scheduler does the same for [scheduler] follow.

    \b
    Example:
        closewatch follow '/var/log/voicebot/*.log'
        closewatch follow 'logs/app.log*' --format assemblyai-python-v3
    """
    from closewatch.jobs.following import follow_files, read_options

    settings = get_settings(ctx)
    settings = settings.model_copy(update={"analysis": settings.analysis.model_copy(update={"catalog": catalog_path(ctx, catalog_option)})})
    options = read_options(settings, format_name, envelope, tz, client_from)
    store = get_store(ctx)
    err_console.print(f"Following {', '.join(globs)} into {store.path} (every {settings.follow.flush_s:g} s); Ctrl-C stops.",
                      highlight=False, markup=False)
    totals = {"lines": 0, "accepted": 0}
    last_error: list[str] = []

    def tell(report) -> None:
        totals["lines"] += report.lines
        totals["accepted"] += report.accepted
        if report.lines:
            err_console.print(f"{report.summary()}", highlight=False, markup=False)
        if report.errors and report.errors[:1] != last_error:
            err_console.print(f"  {report.errors[0]}", style="yellow", highlight=False, markup=False)
            last_error[:] = report.errors[:1]

    with stop_on_signals() as stop:
        follow_files(store, list(globs), settings, stop, options, on_tick=tell)
    err_console.print(f"Stopped: {totals['lines']:,} lines read, {totals['accepted']:,} closures stored.", highlight=False)


def follow_input(ctx: click.Context, target: str, format_name: str | None, envelope: str | None, client_from: str | None,
                 tz: str, catalog: Path | None) -> None:
    """`ingest --follow`: standard input (-) or a named pipe as a stream; a regular file followed like `closewatch follow`."""
    from closewatch.errors import ConfigError
    from closewatch.jobs.following import follow_files, follow_stream, read_options

    settings = get_settings(ctx)
    settings = settings.model_copy(update={"analysis": settings.analysis.model_copy(update={"catalog": catalog})})
    options = read_options(settings, format_name, envelope, tz, client_from)
    store = get_store(ctx)
    if target != "-":
        try:
            mode = os.stat(target).st_mode
        except OSError as error:
            raise ConfigError(f"Cannot follow {target} ({error.strerror}); check the path.") from None
        if stat.S_ISREG(mode):
            with stop_on_signals() as stop:
                follow_files(store, [target], settings, stop, options)
            return
        if not stat.S_ISFIFO(mode):
            raise ConfigError(f"Cannot follow {target}: it is neither a file nor a named pipe; name a log file, a pipe or - for standard input.")
    with stop_on_signals() as stop:
        if target == "-":
            total = follow_stream(store, sys.stdin.buffer, "<stdin>", settings, stop, options)
        else:
            with open(target, "rb") as stream:
                total = follow_stream(store, stream, target, settings, stop, options)
    err_console.print(f"{total.lines:,} lines read, {total.accepted:,} closures stored, {total.duplicates:,} duplicates, "
                      f"{total.rejected:,} rejected.", highlight=False)


@contextmanager
def stop_on_signals():
    """Ctrl-C and SIGTERM set an event: the loop commits what it read and returns, and the command exits 0."""
    stop = threading.Event()

    def on_signal(_signum, _frame):
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
