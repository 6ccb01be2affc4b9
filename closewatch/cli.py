"""The closewatch command line. Each command's docstring is its --help text.

This is the CLI's one error boundary: a ``ClosewatchError`` becomes one line
on stderr and exit status 1; click's own usage errors exit 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

import click
import polars as pl
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from closewatch import __version__
from closewatch.config import load_settings, resolve_db_path
from closewatch.errors import ClosewatchError
from closewatch.store import Store

err_console = Console(stderr=True)
PROGRESS_MIN_BYTES = 8 * 1024 * 1024
OUTPUT_FORMATS = click.Choice(["table", "csv", "json"])


class ClosewatchGroup(click.Group):
    """A click group that turns domain errors into one sentence and exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ClosewatchError as error:
            err_console.print(f"[bold red]Error:[/] {error}", highlight=False)
            ctx.exit(1)


def db_option(command: Callable) -> Callable:
    """Let every command take --db after its own name, as well as after `closewatch`."""

    @click.option("--db", "db_path", type=click.Path(dir_okay=False), help="The DuckDB file (default: $CLOSEWATCH_DB or ./closewatch.duckdb).")
    @functools.wraps(command)
    def wrapper(*args, db_path: str | None = None, **kwargs):
        if db_path:
            click.get_current_context().obj["db"] = db_path
        return command(*args, **kwargs)

    return wrapper


@click.group(cls=ClosewatchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="The DuckDB file (default: $CLOSEWATCH_DB or ./closewatch.duckdb).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config file (default: $CLOSEWATCH_CONFIG or ./closewatch.toml).")
@click.option("--lock-timeout", type=float, help="Seconds to wait while another process holds the database (default 30).")
@click.version_option(__version__, prog_name="closewatch")
@click.pass_context
def cli(ctx: click.Context, db_path: str | None, config_path: str | None, lock_timeout: float | None) -> None:
    """closewatch: why streaming speech-to-text sessions close, from your logs.

    \b
    Example:
        closewatch ingest sample_logs/
        closewatch sql "select category, count(*) from closures group by 1"
    """
    ctx.ensure_object(dict)
    ctx.obj.update(db=db_path, config=config_path, lock_timeout=lock_timeout)


def get_store(ctx: click.Context) -> Store:
    """The store the options name, with a notice on stderr while it waits for a lock."""
    settings = load_settings(ctx.obj.get("config"))
    timeout = ctx.obj.get("lock_timeout")
    return Store(
        resolve_db_path(ctx.obj.get("db")),
        lock_timeout_s=settings.lock_timeout_s if timeout is None else timeout,
        on_wait=lambda message: err_console.print(message, style="yellow", highlight=False),
    )


def catalog_path(ctx: click.Context, option: str | None) -> Path | None:
    return Path(option) if option else load_settings(ctx.obj.get("config")).catalog


# -- ingest ----------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "format_name", help="Read every input as this format (see `closewatch formats`); default: detect per file.")
@click.option("--tz", default="UTC", show_default=True, help="Time zone of timestamps that carry none (an IANA name).")
@click.option("--catalog", "catalog_option", type=click.Path(exists=True, dir_okay=False), help="Your own close-code catalog file, evaluated before the built-in one.")
@db_option
@click.pass_context
def ingest(ctx: click.Context, paths: tuple[str, ...], format_name: str | None, tz: str, catalog_option: str | None) -> None:
    """Load session-close logs into the database.

    PATHS may be files, directories (read recursively), globs, or - for
    standard input; .gz files are decompressed. Each file loads whole in one
    transaction or not at all; a file already loaded adds nothing.

    \b
    Example:
        closewatch ingest sample_logs/
        closewatch ingest 'logs/*.jsonl.gz' --tz Europe/Berlin
        zcat app.log.gz | closewatch ingest - --format assemblyai-python
    """
    from closewatch import jobs
    from ingest.sources import expand_inputs

    store = get_store(ctx)
    inputs = expand_inputs(list(paths))
    with _progress_display(inputs) as progress_for:
        results = jobs.ingest(store, inputs, format_name, tz, catalog_path(ctx, catalog_option), progress_for)
    _print_ingest_summary(results)


class _progress_display:
    """A rich progress bar per large input, shown only on a terminal."""

    def __init__(self, inputs):
        large = any((source.size or 0) >= PROGRESS_MIN_BYTES for source in inputs)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
            console=err_console, transient=True,
        ) if large and err_console.is_terminal else None

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
    table = Table(title="Ingest summary", title_justify="left")
    for name in ["file", "format", "read", "accepted", "duplicates", "rejected", "skipped"]:
        table.add_column(name, justify="left" if name in ("file", "format") else "right")
    for r in results:
        table.add_row(r.source, r.format or "-", f"{r.lines_read:,}", f"{r.accepted:,}", f"{r.duplicates:,}", f"{r.rejected:,}", f"{r.skipped:,}")
    console = Console()
    console.print(table)
    for r in results:
        if r.status == "no_events":
            console.print(f"[yellow]{r.source}: {r.message}.[/]", highlight=False)
        for line, reason in r.first_rejects:
            console.print(f"  {r.source}:{line}: rejected: {reason}", highlight=False)
        if r.rejected > len(r.first_rejects):
            console.print(f"  ... {r.rejected - len(r.first_rejects):,} more in the rejects table (closewatch sql \"select * from rejects\")", highlight=False)


# -- sql, catalog, formats, info --------------------------------------------


@cli.command()
@click.argument("query")
@click.option("--format", "output", type=OUTPUT_FORMATS, default="table", show_default=True, help="Output format; json prints one array of objects.")
@db_option
@click.pass_context
def sql(ctx: click.Context, query: str, output: str) -> None:
    """Run a read-only SQL query against the database.

    Tables: closures, ingest_batches, rejects, detections and the alert tables;
    views: closures_daily, closures_hourly, client_error_rates.

    \b
    Example:
        closewatch sql "select category, count(*) from closures group by 1" --format json
    """
    print_frame(get_store(ctx).user_query(query), output)


@cli.command()
@click.option("--format", "output", type=OUTPUT_FORMATS, default="table", show_default=True)
@click.option("--catalog", "catalog_option", type=click.Path(exists=True, dir_okay=False), help="Include your own catalog file.")
@click.pass_context
def catalog(ctx: click.Context, output: str, catalog_option: str | None) -> None:
    """Show the close-code catalog: code, reason, category, severity, retry advice, action.

    \b
    Example:
        closewatch catalog --format csv > catalog.csv
    """
    from analysis.catalog import catalog_table, load_catalog

    print_frame(catalog_table(load_catalog(catalog_path(ctx, catalog_option))), output)


@cli.command()
def formats() -> None:
    """List the log formats closewatch reads, each with an example line.

    \b
    Example:
        closewatch formats
    """
    from ingest.formats import all_formats

    console = Console()
    for fmt in all_formats():
        console.print(f"[bold]{fmt.name}[/]: {fmt.description}", highlight=False)
        if fmt.source:
            console.print(f"  source: {fmt.source}", highlight=False, soft_wrap=True)
        console.print(f"  example: {fmt.example}", highlight=False, soft_wrap=True, markup=False)


@cli.command()
@db_option
@click.pass_context
def info(ctx: click.Context) -> None:
    """Show the database path, schema version, row counts and time span.

    \b
    Example:
        closewatch --db demo.duckdb info
    """
    store = get_store(ctx)
    frame = store.query("""
        SELECT (SELECT max(version) FROM schema_version) AS schema_version,
               (SELECT count(*) FROM closures) AS closures,
               (SELECT count(*) FROM ingest_batches) AS batches,
               (SELECT count(*) FROM rejects) AS rejects,
               (SELECT min(ts) FROM closures) AS first_close,
               (SELECT max(ts) FROM closures) AS last_close,
               (SELECT count(DISTINCT client_id) FROM closures) AS clients
    """)
    row = frame.row(0, named=True)
    console = Console()
    console.print(f"database: {store.path.resolve()}", highlight=False)
    for key, value in row.items():
        console.print(f"{key}: {value if value is not None else '-'}", highlight=False)


@cli.command()
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

    updated = jobs.reclassify(get_store(ctx), catalog_path(ctx, catalog_option))
    Console().print(f"Reclassified {updated:,} closures.")


# -- output ----------------------------------------------------------------


def print_frame(frame: pl.DataFrame, output: str) -> None:
    """Print rows as a rich table, CSV, or one JSON array of objects."""
    if output == "csv":
        sys.stdout.write(frame.write_csv())
    elif output == "json":
        sys.stdout.write(frame.write_json() + "\n")
    else:
        table = Table(show_lines=False)
        for name in frame.columns:
            table.add_column(name, overflow="fold")
        for row in frame.iter_rows():
            table.add_row(*("" if value is None else str(value) for value in row))
        Console().print(table)
        Console(stderr=True).print(f"{frame.height:,} rows", style="dim")


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
