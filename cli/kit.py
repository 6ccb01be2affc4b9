"""What every closewatch command shares: the error boundary, --db, the store, output.

``ClosewatchGroup`` is the CLI's one error boundary: a ``ClosewatchError``
becomes one line on stderr and exit status 1; click's own usage errors exit 2.
It imports a command's module only when that command runs (or for --help).
"""

from __future__ import annotations

import functools
import gc
import importlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from closewatch.errors import ClosewatchError, StoreError

if TYPE_CHECKING:  # imported where used, so `closewatch --help` and the quick commands start at once (bench/bench_cli_start.py)
    import polars as pl
    from rich.console import Console

    from closewatch.quick_settings import QuickSettings
    from closewatch.settings import Settings
    from closewatch.store import Store

OUTPUT_FORMATS = click.Choice(["table", "csv", "json"])
_consoles: dict[str, Console] = {}


def __getattr__(name: str) -> Any:
    """``err_console``, rich's console on stderr, made on first use: `info` and `sql` start without rich's console."""
    if name == "err_console":
        if "err" not in _consoles:
            from rich.console import Console

            _consoles["err"] = Console(stderr=True)
        return _consoles["err"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ClosewatchGroup(click.Group):
    """A click group that turns domain errors into one sentence and exit 1, and loads commands on demand.

    ``lazy`` names each command's ``module:attribute``: running `closewatch sql`
    imports the module of sql alone, not the alerts', dashboard's and
    generator's command modules (``--help`` lists them all, so it imports them).
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, attribute = self.lazy[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ClosewatchError as error:
            click.echo(click.style("Error:", fg="red", bold=True) + f" {error}", err=True)
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


@contextmanager
def imports_uncollected() -> Iterator[None]:
    """Import a command's heavy modules with Python's cycle collector paused, then freeze what they made.

    polars, numpy, pyarrow, duckdb and the stages make some 50,000 objects the
    collector tracks, which live as long as the process; while they were
    imported the collector ran about 120 times over them, 40 ms of a small
    ingest's second (issue 16). Frozen (``gc.freeze``), the collections during the command's
    work skip them; the collector runs as before once the imports are done.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
    gc.freeze()


def out_console() -> Console:
    """Console for results: the terminal's width, or wide enough not to wrap when piped."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def get_settings(ctx: click.Context) -> Settings:
    """The settings from the options (--config, --db, --lock-timeout, --lake), the environment and the config file."""
    from closewatch.settings import load_settings

    return load_settings(ctx.obj.get("config"), db=ctx.obj.get("db"), lock_timeout_s=ctx.obj.get("lock_timeout"),
                         lake=ctx.obj.get("lake"))


def get_quick_settings(ctx: click.Context) -> Settings | QuickSettings:
    """``get_settings`` for the quick commands (info, sql): without pydantic when there is no config file."""
    from closewatch.quick_settings import quick_settings

    return quick_settings(ctx.obj.get("config"), db=ctx.obj.get("db"), lock_timeout_s=ctx.obj.get("lock_timeout"),
                          lake=ctx.obj.get("lake"))


def get_store(ctx: click.Context, settings: Settings | QuickSettings | None = None) -> Store:
    """The store the settings name, with a notice on stderr while it waits for a lock."""
    from closewatch.store import Store

    settings = settings or get_settings(ctx)
    return Store(
        settings.db,
        lock_timeout_s=settings.lock_timeout_s,
        on_wait=lambda message: click.secho(message, fg="yellow", err=True),
        lake=settings.store.lake,
    )


def existing_store(ctx: click.Context, settings: Settings | QuickSettings | None = None) -> Store:
    """The store, for every command but those that load logs (ingest, up, scheduler).

    A path where no database exists is a mistake (a typo, the wrong folder),
    not a request for a new empty database that would answer every question
    with nothing.
    """
    store = get_store(ctx, settings)
    if not store.path.exists() and store.lake is None:  # with a lake, a new file just holds the state
        raise StoreError(
            f"Database {store.path} does not exist; check --db (or $CLOSEWATCH_DB), or create it by loading logs: "
            f"closewatch --db {store.path} ingest LOGS... (or closewatch --db {store.path} up, which loads the demo)."
        )
    return store


def catalog_path(ctx: click.Context, option: str | None) -> Path | None:
    """--catalog, else `catalog` under [analysis] in the config file (relative to it)."""
    return Path(option) if option else get_quick_settings(ctx).catalog


# -- output ----------------------------------------------------------------


def print_frame(frame: pl.DataFrame, output: str) -> None:
    """Print rows as a rich table, CSV, or one JSON array of objects."""
    frame = plain_numbers(frame)
    if output == "csv":
        sys.stdout.write(frame.write_csv())
    elif output == "json":
        sys.stdout.write(frame.write_json() + "\n")
    else:
        print_table(frame.columns, [["" if value is None else str(value) for value in row] for row in frame.iter_rows()])
        __getattr__("err_console").print(f"{frame.height:,} rows", style="dim")


def print_table(columns: list[str], cells: list[list[str]]) -> None:
    """A rich table folded to the output's width; names and cells are Text, so "[bold]x" is data, never rich markup."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=False)
    for name in columns:
        table.add_column(Text(name), overflow="fold")
    for row in cells:
        table.add_row(*(Text(text) for text in row))
    out_console().print(table)




def plain_numbers(frame: pl.DataFrame) -> pl.DataFrame:
    """DuckDB's sum() and count-like results arrive as DECIMAL(38, 0); print them as numbers, not strings."""
    import polars as pl

    return frame.with_columns(
        pl.col(name).cast(pl.Int64 if dtype.scale == 0 and _fits_int64(frame[name]) else pl.Float64)
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Decimal)
    )


def _fits_int64(values: pl.Series) -> bool:
    limit = 2**63 - 1
    low, high = values.min(), values.max()
    return (low is None or -limit <= low) and (high is None or high <= limit)
