"""The analyze command: run the pattern detectors over a window and show the findings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from closewatch.cli.kit import OUTPUT_FORMATS, db_option, err_console, existing_store, get_settings, print_frame
from closewatch.durations import parse_time
from closewatch.vocabulary import Severity

if TYPE_CHECKING:  # imported where used: every command starts without polars
    import polars as pl

#: Most severe first.
_SEVERITY_ORDER = {severity.value: rank for rank, severity in enumerate(reversed(Severity))}


@click.command()
@click.option("--since", help="Start of the window: an ISO time (UTC unless it has an offset) or a duration ago like 24h or 7d. Default: the first stored closure.")
@click.option("--until", help="End of the window (exclusive), same forms as --since. Default: just after the last stored closure.")
@click.option("--thresholds", "thresholds_option", type=click.Path(exists=True, dir_okay=False), help="Your thresholds file, overriding the defaults key by key (see docs/patterns.md).")
@click.option("--format", "output", type=OUTPUT_FORMATS, default="table", show_default=True, help="Output format; csv and json include detection ids and evidence.")
@db_option
@click.pass_context
def analyze(ctx: click.Context, since: str | None, until: str | None, thresholds_option: str | None, output: str) -> None:
    """Detect patterns in stored closures and save them in the detections table.

    Patterns: repeated_violation, frequent_disconnects (incl. reconnect
    loops), concurrency_saturation, auth_failures, expiry_cost_leak,
    error_spike and new_reason. Running again over the same window replaces
    that window's findings instead of adding to them.

    \b
    Example:
        closewatch analyze
        closewatch analyze --since 24h --format json
        closewatch analyze --since 2024-05-01 --until 2024-05-08 --thresholds strict.toml
    """
    from closewatch.jobs.analysis import analyze as analyze_job

    window = {
        "since": parse_time(since, "--since") if since else None,
        "until": parse_time(until, "--until") if until else None,
    }
    settings = get_settings(ctx).overriding("analysis", thresholds=Path(thresholds_option) if thresholds_option else None)
    run = analyze_job(existing_store(ctx, settings), settings, **window)
    print_frame(_for_output(run.findings, output), output)
    err_console.print(
        f"{run.findings.height:,} findings in {run.since:%Y-%m-%d %H:%M:%S} – {run.until:%Y-%m-%d %H:%M:%S} UTC "
        f"from {run.closures:,} closures; replaced {run.replaced:,} earlier findings of this window "
        f"(read {run.read_s:.2f} s, detect {run.detect_s:.2f} s, write {run.write_s:.2f} s).",
        highlight=False,
    )


def _for_output(findings: pl.DataFrame, output: str) -> pl.DataFrame:
    """Most severe first; the table leaves out ids and evidence, csv joins evidence with spaces."""
    import polars as pl

    ordered = findings.sort(
        pl.col("severity").replace_strict(_SEVERITY_ORDER, default=9), "pattern", "key", "window_start"
    )
    if output == "table":
        when = "%Y-%m-%d %H:%M"
        return ordered.select(
            "severity", "pattern", "key",
            pl.col("window_start").dt.strftime(when), pl.col("window_end").dt.strftime(when),
            "count", "explanation",
        )
    if output == "csv":
        return ordered.with_columns(pl.col("evidence").list.join(" "))
    return ordered
