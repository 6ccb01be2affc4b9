"""The closewatch command line: one group, commands registered from the modules beside it.

Each command's docstring is its --help text; errors are turned into one
sentence by ``ClosewatchGroup`` (cli/kit.py).
"""

from __future__ import annotations

import click

from closewatch import __version__
from closewatch.cli.kit import ClosewatchGroup

#: Every command, as ``module:attribute``: a command's module is imported when it runs (cli/kit.py's ClosewatchGroup).
COMMANDS = {
    "ingest": "closewatch.cli.core:ingest", "follow": "closewatch.cli.follow:follow", "sql": "closewatch.cli.core:sql",
    "catalog": "closewatch.cli.core:catalog", "formats": "closewatch.cli.core:formats", "info": "closewatch.cli.core:info",
    "reclassify": "closewatch.cli.core:reclassify",
    "alerts": "closewatch.cli.alerts:alerts", "scheduler": "closewatch.cli.alerts:scheduler",
    "analyze": "closewatch.cli.analyze:analyze",
    "generate": "closewatch.cli.generate:generate", "lake": "closewatch.cli.lake:lake",
    "dashboard": "closewatch.cli.dashboard:dashboard", "up": "closewatch.cli.dashboard:up",
}


@click.group(cls=ClosewatchGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="The DuckDB file (default: $CLOSEWATCH_DB or ./closewatch.duckdb).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config file (default: $CLOSEWATCH_CONFIG or ./closewatch.toml).")
@click.option("--lock-timeout", type=float, help="Seconds to wait while another process holds the database (default 30).")
@click.option("--lake", "lake_path", type=click.Path(file_okay=False), help="Also read the closures of this Parquet lake (written by ingest --engine spark; default: $CLOSEWATCH_LAKE or [store] lake).")
@click.version_option(__version__, prog_name="closewatch")
@click.pass_context
def cli(ctx: click.Context, db_path: str | None, config_path: str | None, lock_timeout: float | None, lake_path: str | None) -> None:
    """closewatch: why streaming speech-to-text sessions close, from your logs.

    \b
    Example:
        closewatch ingest sample_logs/
        closewatch sql "select category, count(*) from closures group by 1"
    """
    ctx.ensure_object(dict)
    ctx.obj.update(db=db_path, config=config_path, lock_timeout=lock_timeout, lake=lake_path)



def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
