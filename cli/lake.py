"""closewatch lake: look after the Parquet lake that `ingest --engine spark` writes (docs/spark.md)."""

from __future__ import annotations

from datetime import datetime

import click
from closewatch.cli.kit import get_settings


@click.group()
def lake() -> None:
    """Look after the Parquet lake that ingest --engine spark writes.

    \b
    Example:
        closewatch --lake /data/cw-lake lake drop --before 2024-02-01
    """


@lake.command()
@click.option("--before", required=True, type=click.DateTime(formats=["%Y-%m-%d"]), help="Drop the days before this one (YYYY-MM-DD, UTC).")
@click.pass_context
def drop(ctx: click.Context, before: datetime) -> None:
    """Retention: delete the lake's date partitions before a day, closures and rejects.

    Each day goes at once (one rename, then the delete), so readers see a
    day whole or not at all; closes without a time are kept. Detections and
    alerts in the database file that point at dropped closures stay.

    \b
    Example:
        closewatch --lake /data/cw-lake lake drop --before 2024-02-01
    """
    from closewatch.errors import ConfigError
    from closewatch.lake import check_lake, drop_partitions_before

    configured = get_settings(ctx).store.lake
    if configured is None:
        raise ConfigError("Name the lake with closewatch --lake DIR lake drop ... (or [store] lake in the config file).")
    dropped = drop_partitions_before(check_lake(configured), before.date().isoformat())
    click.echo(f"Dropped {len(dropped)} partitions" + (f": {', '.join(dropped)}." if dropped else "."))
