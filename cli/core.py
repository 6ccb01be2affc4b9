"""Core commands: ingest, sql, catalog, formats, info, reclassify."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path

from typing import TYPE_CHECKING

import click
from closewatch.cli import kit
from closewatch.cli.kit import (
    OUTPUT_FORMATS,
    catalog_path,
    db_option,
    existing_store,
    get_quick_settings,
    get_settings,
    get_store,
    out_console,
    print_frame,
)

if TYPE_CHECKING:
    from rich.console import Console

# rich, polars and the stages are imported by the commands that use them,
# so `closewatch --help`, `sql` and `info` start at once (bench/bench_cli_start.py).

PROGRESS_MIN_BYTES = 8 * 1024 * 1024


# -- ingest ----------------------------------------------------------------


@click.command()
@click.argument("paths", nargs=-1)
@click.option("--follow", "follow_target", metavar="-|FILE",
              help="Read standard input (-), a named pipe or a file as it grows, storing its lines every [follow] flush until Ctrl-C or its end.")
@click.option("--format", "format_name", help="Read every input as this format (see `closewatch formats`); default: detect per file.")
@click.option("--envelope", help="Read every input inside this envelope (docker-json, cri, journald, ...; see `closewatch formats`); default: detect per file.")
@click.option("--client-from", "client_from", metavar="LABEL",
              help="The envelope label (pod, container, host, unit, log_stream, service, ...) that names the client where a line names none.")
@click.option("--tz", default="UTC", show_default=True, help="Time zone of timestamps that carry none (an IANA name).")
@click.option("--catalog", "catalog_option", type=click.Path(exists=True, dir_okay=False), help="Your own close-code catalog file, evaluated before the built-in one.")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True, help="local: into the database file; spark: Apache Spark reads the files into the Parquet lake (--lake).")
@click.option("--lake", "lake_option", type=click.Path(file_okay=False), help="With --engine spark: the lake folder to write (default: closewatch --lake, $CLOSEWATCH_LAKE or [store] lake).")
@click.option("--master", help="With --engine spark: the Spark master URL (default: [spark] master, else local[*]).")
@db_option
@click.pass_context
def ingest(ctx: click.Context, paths: tuple[str, ...], follow_target: str | None, format_name: str | None, envelope: str | None,
           client_from: str | None, tz: str, catalog_option: str | None, engine: str, lake_option: str | None,
           master: str | None) -> None:
    """Load session-close logs into the database (or, with --engine spark, into a Parquet lake).

    PATHS may be files, directories (read recursively), globs, or - for
    standard input; .gz files are decompressed. Each file loads whole in one
    transaction or not at all; a file already loaded adds nothing.

    With --engine spark, Spark runs the same parsers over the files (one task
    per file) and adds the new closures and rejects to the lake's date
    partitions in one commit; read them with closewatch --lake DIR ...
    (docs/spark.md).

    With --follow, the input is read as it arrives (kubectl logs -f,
    docker logs -f, journalctl -f -o json) and its complete lines are stored
    every [follow] flush (2 s); Ctrl-C or the end of the stream stores the
    rest and exits. Lines sent again by a restarted pipe add nothing.

    \b
    Example:
        closewatch ingest sample_logs/
        kubectl logs -f deploy/voicebot | closewatch ingest --follow -
        closewatch ingest 'logs/*.jsonl.gz' --tz Europe/Berlin
        zcat app.log.gz | closewatch ingest - --format assemblyai-python-v3
        closewatch ingest /var/log/pods/voice_voicebot-*/voicebot/0.log --envelope cri
        closewatch ingest loki-export.jsonl --client-from pod
        closewatch ingest --engine spark --lake /data/closewatch-lake /mnt/logs/2024-05-01/
    """
    with kit.imports_uncollected():
        from closewatch import jobs
        from closewatch.errors import ConfigError
        from closewatch.ingest.sources import expand_inputs
        from closewatch.ingest.staging import spool_folder

    if follow_target is not None:
        if paths or engine != "local":
            raise ConfigError("--follow reads one input (- or a file) into the database; name no other paths and no --engine.")
        from closewatch.cli.follow import follow_input

        follow_input(ctx, follow_target, format_name, envelope, client_from, tz, catalog_path(ctx, catalog_option))
        return
    if not paths:
        raise ConfigError("Name what to load: files, folders, globs or - for standard input (or --follow - to read it as it arrives).")
    if engine == "spark":
        _ingest_with_spark(ctx, paths, format_name, tz, catalog_path(ctx, catalog_option), lake_option, master,
                           envelope, client_from)
        return
    settings = get_quick_settings(ctx)  # without a config file, a small ingest imports no pydantic
    store = get_store(ctx, settings)
    inputs = expand_inputs(list(paths), spool_dir=spool_folder(store.path) if "-" in paths else None)
    with _sigterm_unwinds(), _progress_display(inputs) as progress_for:
        results = jobs.ingest(store, inputs, format_name, tz, catalog_path(ctx, catalog_option), progress_for,
                              envelope=envelope, client_from=client_from, limits=settings.ingest_limits)
    _print_ingest_summary(results)


def _ingest_with_spark(ctx: click.Context, paths: tuple[str, ...], format_name: str | None, tz: str,
                       catalog: Path | None, lake_option: str | None, master: str | None,
                       envelope: str | None, client_from: str | None) -> None:
    from closewatch.errors import ConfigError
    from closewatch.ingest.sources import expand_inputs
    from closewatch.jobs.spark import ingest_to_lake
    from rich.table import Table

    settings = get_settings(ctx)
    lake = lake_option or settings.store.lake
    if lake is None:
        raise ConfigError("--engine spark writes a Parquet lake: name its folder with --lake DIR (or [store] lake in the config file).")
    report = ingest_to_lake(lake, expand_inputs(list(paths)), master or settings.spark.master,
                            format_name, tz, catalog, dict(settings.spark.conf), envelope, client_from)
    table = Table(title=f"Spark ingest into {report.lake} (job {report.job}, {report.seconds:.1f} s)", title_justify="left")
    for name in ["file", "format", "read", "accepted", "duplicates", "rejected", "skipped"]:
        table.add_column(name, justify="left" if name in ("file", "format") else "right")
    for row in report.inputs:
        table.add_row(row["source_file"], row["source_format"] or "-", f"{row['lines_read']:,}", f"{row['added']:,}",
                      f"{row['duplicates']:,}", f"{row['rejected']:,}", f"{row['skipped']:,}")
    out_console().print(table)
    for row in report.inputs:
        if row["status"] != "loaded":
            click.secho(f"{row['source_file']}: {row['message']}.", fg="yellow")
    changed = ", ".join(report.partitions) or "none (nothing new)"
    click.echo(f"{report.added:,} closures and {report.rejects_added:,} rejects added; partitions replaced: {changed}.")


@contextmanager
def _sigterm_unwinds():
    """SIGTERM ends the command like Ctrl-C does, through every finally: the file being loaded is
    rolled back and its staging folder removed (Python's default would exit on the spot)."""
    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _progress_display:
    """A rich progress bar per large input, shown only on a terminal."""

    def __init__(self, inputs):
        self.progress = None
        large = any((source.size or 0) >= PROGRESS_MIN_BYTES for source in inputs)
        if large and kit.err_console.is_terminal:
            # imported only here: rich.progress costs a small ingest's start about 0.04 s (issue 16)
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                console=kit.err_console, transient=True,
            )

    def __enter__(self):
        if self.progress is None:
            return None
        self.progress.start()

        def progress_for(source):
            total = None if source.compressed else source.size
            task = self.progress.add_task(Path(source.name).name, total=total)
            return lambda done: self.progress.update(task, completed=done)

        return progress_for

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()


def _print_ingest_summary(results) -> None:
    from rich.table import Table

    table = Table(title="Ingest summary", title_justify="left")
    for name in ["file", "format", "read", "accepted", "duplicates", "rejected", "skipped"]:
        table.add_column(name, justify="left" if name in ("file", "format") else "right")
    for r in results:
        table.add_row(r.source, r.format or "-", f"{r.lines_read:,}", f"{r.accepted:,}", f"{r.duplicates:,}", f"{r.rejected:,}", f"{r.skipped:,}")
    out_console().print(table)
    for r in results:
        if r.status != "loaded":
            click.secho(f"{r.source}: {r.message}.", fg="yellow")
        for line, reason in r.first_rejects:
            click.echo(f"  {r.source}:{line}: rejected: {reason}")
        if r.rejected > len(r.first_rejects):
            click.echo(f"  ... {r.rejected - len(r.first_rejects):,} more in the rejects table (closewatch sql \"select * from rejects\")")


# -- sql, catalog, formats, info --------------------------------------------


@click.command()
@click.argument("query")
@click.option("--format", "output", type=OUTPUT_FORMATS, default="table", show_default=True, help="Output format; json prints one array of objects.")
@db_option
@click.pass_context
def sql(ctx: click.Context, query: str, output: str) -> None:
    """Run a read-only SQL query against the database.

    Tables: closures, ingest_batches, rejects, detections, the alert_* tables,
    job_runs; views: closures_hourly, closures_daily, client_error_rates,
    client_daily_error_rates, violator_chunk_ms, violator_audio_rate,
    reason_templates (the README's schema section has every column).
    Queries cannot write, read or write files, attach databases or change
    settings. They run on a snapshot of the database (copied again only
    when the database changed), so they never block ingest or the
    scheduler, and stop at the [sql] limits in closewatch.toml: timeout
    (30s), memory_limit_mb (1024), max_rows (100000). Ctrl-C stops a query.

    \b
    Example:
        closewatch sql "select category, count(*) from closures group by 1" --format json
    """
    from closewatch.cli.rows import print_rows
    from closewatch.sandbox import Limits, run_here

    settings = get_quick_settings(ctx)
    answer = run_here(existing_store(ctx, settings), query, Limits.from_settings(settings))
    print_rows(answer.columns, answer.rows, output)
    if answer.truncated:
        kit.err_console.print(f"Only the first {len(answer.rows):,} rows are shown ([sql] max_rows); add a LIMIT or aggregate.",
                              style="yellow", highlight=False, markup=False)


@click.command()
@click.option("--format", "output", type=OUTPUT_FORMATS, default="table", show_default=True)
@click.option("--catalog", "catalog_option", type=click.Path(exists=True, dir_okay=False), help="Include your own catalog file.")
@click.pass_context
def catalog(ctx: click.Context, output: str, catalog_option: str | None) -> None:
    """Show the close-code catalog: code, reason, category, severity, retry advice, action.

    \b
    Example:
        closewatch catalog --format csv > catalog.csv
    """
    from closewatch.analysis.catalog import catalog_table, load_catalog

    print_frame(catalog_table(load_catalog(catalog_path(ctx, catalog_option))), output)


@click.command()
def formats() -> None:
    """List the log formats and the envelopes closewatch reads, each with an example line.

    An envelope (docker, CRI, syslog, journald, Loki, cloud exports, JSON
    loggers) is peeled first; the text inside is read as one of the formats.

    \b
    Example:
        closewatch formats
    """
    from closewatch.ingest.envelopes import all_envelopes
    from closewatch.ingest.formats import all_formats
    from rich.console import Console

    console = Console()
    console.print("[bold underline]Formats[/]", highlight=False)
    for fmt in all_formats():
        _print_entry(console, fmt.name, fmt.description, fmt.source, fmt.example)
    console.print("\n[bold underline]Envelopes[/] (detected per file, or --envelope NAME)", highlight=False)
    for envelope in all_envelopes():
        _print_entry(console, envelope.name, envelope.description, envelope.source, envelope.example)


def _print_entry(console: Console, name: str, description: str, source: str, example: str) -> None:
    console.print(f"[bold]{name}[/]: {description}", highlight=False, markup=True)
    if source:
        console.print(f"  source: {source}", highlight=False, soft_wrap=True, markup=False)
    console.print(f"  example: {example}", highlight=False, soft_wrap=True, markup=False)


@click.command()
@db_option
@click.pass_context
def info(ctx: click.Context) -> None:
    """Show the database path, schema version, row counts and time span.

    \b
    Example:
        closewatch --db demo.duckdb info
    """
    from closewatch.store import first_row

    store = existing_store(ctx, get_quick_settings(ctx))
    with store.connect(read_only=True) as con:  # one row: fetched as a tuple, without making a polars frame
        row = first_row(con, """
            SELECT (SELECT max(version) FROM schema_version) AS schema_version,
                   (SELECT count(*) FROM closures) AS closures,
                   (SELECT count(*) FROM ingest_batches) AS batches,
                   (SELECT count(*) FROM rejects) AS rejects,
                   (SELECT min(ts) FROM closures) AS first_close,
                   (SELECT max(ts) FROM closures) AS last_close,
                   (SELECT count(DISTINCT client_id) FROM closures) AS clients
        """)
        names = [column[0] for column in con.description or []]
    click.echo(f"database: {store.path.resolve()}")
    for key, value in zip(names, row, strict=True):
        click.echo(f"{key}: {value if value is not None else '-'}")


@click.command()
@click.option("--catalog", "catalog_option", type=click.Path(exists=True, dir_okay=False), help="Your own catalog file, evaluated before the built-in one.")
@db_option
@click.pass_context
def reclassify(ctx: click.Context, catalog_option: str | None) -> None:
    """Apply the current catalog to every stored closure (after you change it).

    \b
    Example:
        closewatch reclassify --catalog my-codes.toml
    """
    from closewatch import jobs
    from rich.console import Console

    updated = jobs.reclassify(existing_store(ctx), catalog_path(ctx, catalog_option))
    Console().print(f"Reclassified {updated:,} closures.")


