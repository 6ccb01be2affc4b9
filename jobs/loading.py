"""The units of work that every front end shares: the CLI, the dashboard and the scheduler.

Each job wires the stages together (parse with ``ingest``, classify with
``analysis``, store with ``closewatch.store``) so that no stage imports a later
one and every front end does exactly the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
from closewatch.analysis.catalog import Catalog, classify, load_catalog
from closewatch.ingest.envelopes import check_envelope_name
from closewatch.ingest.formats import ParseOptions
from closewatch.ingest.limits import IngestLimits
from closewatch.ingest.pipeline import (
    FileResult,
    Progress,
    check_format_name,
    ingest_input,
)
from closewatch.ingest.sources import Input
from closewatch.ingest.timestamps import check_zone
from closewatch.quick_settings import quick_settings
from closewatch.store import Store

#: Makes a progress callback for one input (or None for no progress display).
ProgressFactory = Callable[[Input], Progress | None]


def ingest(
    store: Store,
    inputs: list[Input],
    format_name: str | None = None,
    tz: str = "UTC",
    catalog_path: str | Path | None = None,
    progress_for: ProgressFactory | None = None,
    envelope: str | None = None,
    client_from: str | None = None,
    limits: IngestLimits | None = None,
) -> list[FileResult]:
    """Load every input, one transaction each; the catalog, options and limits are checked first.

    ``envelope`` reads every input inside that envelope (default: detected per file);
    ``client_from`` names the envelope label that becomes the client where a line names none;
    ``limits`` are the bounds of [ingest] (default: those of the config file, closewatch.toml
    or $CLOSEWATCH_CONFIG).
    """
    check_format_name(format_name)
    if limits is None:
        limits = quick_settings().ingest_limits  # without a config file: no pydantic
    check_envelope_name(envelope)
    options = ParseOptions(tz=check_zone(tz), envelope=envelope, client_from=client_from)
    catalog = load_catalog(catalog_path)
    enrich = lambda events: classify(events, catalog)
    results = []
    for source in inputs:
        progress = progress_for(source) if progress_for else None
        results.append(ingest_input(source, store, enrich, format_name, options, progress, limits))
    return results


def reclassify(store: Store, catalog_path: str | Path | None = None) -> int:
    """Apply the current catalog to every stored closure; returns the number of rows updated."""
    catalog = load_catalog(catalog_path)
    with store.transaction(lake=False) as con:  # the lake's rows are immutable Parquet: reclassify updates the file's own
        pairs = con.execute("""
            SELECT DISTINCT CASE WHEN code_inferred THEN NULL ELSE close_code END AS close_code, close_reason
            FROM closures
        """).pl()
        mapping = _classified_pairs(pairs, catalog)
        con.register("mapping", mapping.to_arrow())
        updated = con.execute("""
            UPDATE closures AS c SET
                close_code = m.new_code, code_inferred = m.code_inferred, category = m.category,
                severity = m.severity, retry_safe = m.retry_safe, action = m.action, era = m.era,
                chunk_ms = m.chunk_ms, audio_rate_ratio = m.audio_rate_ratio
            FROM mapping AS m
            WHERE (CASE WHEN c.code_inferred THEN NULL ELSE c.close_code END) IS NOT DISTINCT FROM m.close_code
              AND c.close_reason IS NOT DISTINCT FROM m.close_reason
        """).fetchone()[0]
        con.execute("INSERT INTO data_changes (change, rows) VALUES ('reclassify', ?)", [updated])
        return updated


def _classified_pairs(pairs: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    pairs = pairs.with_columns(pl.col("close_code").cast(pl.Int32), code_inferred=pl.lit(False))
    classified = classify(pairs.with_columns(original=pl.col("close_code")), catalog)
    return classified.rename({"close_code": "new_code"}).rename({"original": "close_code"})
