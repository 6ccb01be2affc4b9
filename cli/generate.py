"""closewatch generate: realistic synthetic logs in every format, with a manifest of injected incidents."""

from __future__ import annotations

from datetime import date

import click
from closewatch.generator import defaults


def _parse_formats(values: tuple[str, ...]) -> tuple[str, ...] | None:
    """--formats may be repeated or comma-separated; empty means every format."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return tuple(names) or None


@click.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--days", type=int, default=defaults.DEFAULT_DAYS, show_default=True, help="Number of days of traffic.")
@click.option("--sessions-per-day", type=int, default=defaults.DEFAULT_SESSIONS_PER_DAY, show_default=True,
              help="Average session closes per day, over all clients (weekends are quieter).")
@click.option("--clients", type=int, default=defaults.DEFAULT_CLIENTS, show_default=True,
              help="Number of client applications; the first seven each carry one incident.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed: the same seed writes the same bytes.")
@click.option("--formats", "formats", multiple=True, metavar="NAMES",
              help="Only these formats (comma-separated or repeated); default: every format `closewatch formats` lists.")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]), default=defaults.DEFAULT_START.isoformat(),
              show_default=True, help="First day (UTC) of the generated period.")
@click.option("--gzip", "compress", is_flag=True, help="Write every log gzip-compressed (.gz).")
@click.option("--no-incidents", is_flag=True, help="Background traffic only: no injected incidents.")
@click.option("--platform-outage", metavar="CATEGORY", type=click.Choice(defaults.PLATFORM_CATEGORIES),
              help="Also a platform-wide outage: for 30 minutes every client's sessions close with this category "
                   "(network_abnormal, server_error, concurrency_limit) and reconnect in loops.")
@click.option("--envelope", metavar="NAME",
              help="Wrap every file as a collector ships it (docker-json, cri, syslog, journald, loki, gcp-logging, "
                   "cloudwatch, otlp-json, pino, ...; see `closewatch formats`), under OUTDIR/NAME/<format>/.")
def generate(outdir: str, days: int, sessions_per_day: int, clients: int, seed: int, formats: tuple[str, ...],
             start, compress: bool, no_incidents: bool, platform_outage: str | None, envelope: str | None) -> None:
    """Write realistic session-close logs and OUTDIR/manifest.json.

    One file per client and format under OUTDIR/<format>/, with a diurnal
    traffic curve, a production-like mix of closures over the API's three
    code eras, and injected incidents (chunks too long, faster than real
    time, a concurrency burst, a network outage, sessions left to expire, a
    revoked key, a never-seen reason). manifest.json lists each incident with
    its client, UTC window and the pattern a detector should report.

    \b
    Example:
        closewatch generate demo/ --days 7 --seed 42
        closewatch generate small/ --days 2 --sessions-per-day 500 --formats jsonl,csv
        closewatch generate k8s/ --days 1 --formats websocket-client --envelope cri
        closewatch ingest demo/ && closewatch analyze
    """
    from closewatch.generator import traffic as generator

    config = generator.GeneratorConfig(
        days=days, sessions_per_day=sessions_per_day, clients=clients, seed=seed,
        formats=_parse_formats(formats), start=date(start.year, start.month, start.day), gzip=compress,
        incidents=not no_incidents, envelope=envelope, platform_outage=platform_outage,
    )
    config.check()
    manifest = generator.generate(outdir, config)
    _print_summary(outdir, manifest)


def _print_summary(outdir: str, manifest: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    files = Table(title=f"Generated {manifest['events']:,} closes in {len(manifest['files'])} files under {outdir}",
                  title_justify="left")
    for name in ("format", "files", "events", "lines"):
        files.add_column(name, justify="left" if name == "format" else "right")
    for fmt in manifest["formats"]:
        own = [f for f in manifest["files"] if f["format"] == fmt]
        files.add_row(fmt, str(len(own)), f"{sum(f['events'] for f in own):,}", f"{sum(f['lines'] for f in own):,}")
    console.print(files)
    if manifest["incidents"]:
        console.print("[bold]Injected incidents[/] (ground truth in manifest.json):", highlight=False)
    for item in manifest["incidents"]:
        if item["details"].get("required", True):
            console.print(f"  {item['kind']} on {item['client']}: {item['start']} to {item['end']}, "
                          f"{item['details']['events']:,} events, expect {item['expected_pattern']}", highlight=False)
