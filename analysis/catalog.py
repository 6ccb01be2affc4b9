"""The close-code catalog and the classifier that applies it.

Classification is a table, not a chain of ifs: ``catalog.toml`` beside this
module maps (close code, reason pattern) to a closure class, and a user file
can extend or override it. The same condition has carried different codes
over the API's life (4008, 3005 "Session Expired", 3008), so entries match on
code, on reason text, or both, and the first matching entry wins.

Logs hold millions of closures but only a few thousand distinct
(close_code, close_reason) pairs, so ``classify`` labels the distinct pairs
with one polars expression and maps the labels back onto the rows; no Python
runs per row.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from closewatch.analysis.errors import CatalogError
from closewatch.quick_settings import read_toml
from closewatch.vocabulary import CATEGORIES as CATEGORIES  # the pages import it from here

BUILTIN_PATH = Path(__file__).with_name("catalog.toml")

# What a pair that no entry matches becomes: kept and surfaced, never dropped.
# Its era stays NULL because nothing says which API version sent it.
UNKNOWN = {
    "category": "unknown",
    "severity": "warning",
    "retry_safe": "with_backoff",
    "action": "closewatch does not know this code and reason; check the reason text and extend the catalog with --catalog.",
}

ENTRY_SCHEMA = pl.Schema({
    "priority": pl.Int32(),
    "codes": pl.List(pl.Int32()),
    "code_is_null": pl.Boolean(),
    "reason": pl.String(),
    "category": pl.String(),
    "severity": pl.String(),
    "retry_safe": pl.String(),
    "action": pl.String(),
    "era": pl.String(),
    "docs": pl.String(),
    "infer_code": pl.Int32(),
    "origin": pl.String(),
})

_KEYS = ["close_code", "close_reason"]
_PAIR = "__closewatch_pair"
_LABELS = ("category", "severity", "retry_safe", "action", "era", "chunk_ms", "audio_rate_ratio")
_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
_CHUNK_MS = rf"(?i)input duration violation:\s*{_NUMBER}\s*ms"
_AUDIO_RATE = rf"(?i)audio transmission rate exceeded:\s*received\s+{_NUMBER}\s*sec\.?\s+audio\s+in\s+{_NUMBER}\s*sec"

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


@dataclass(frozen=True, eq=False)  # eq=False: comparing DataFrames with == is elementwise
class Catalog:
    """The entries in evaluation order (``priority`` ascending, first match wins).

    One row per entry, with the columns of ``ENTRY_SCHEMA``; ``origin`` says
    whether a row came from the built-in file or from the user's file.
    """

    entries: pl.DataFrame


# ---------------------------------------------------------------- loading


def load_catalog(extra: str | Path | None = None) -> Catalog:
    """Load the built-in catalog, with the user's ``extra`` file evaluated first.

    User entries come first so that they override built-in ones for the same
    code or reason. Every entry is validated here, so a bad file fails at
    start-up with a sentence naming the file, entry and field, never midway
    through a classification.
    """
    rows = []
    if extra is not None:
        rows += _read_entries(Path(extra), origin=str(extra))
    rows += _read_entries(BUILTIN_PATH, origin="builtin", checked=True)
    for priority, row in enumerate(rows):
        row["priority"] = priority
    return Catalog(pl.DataFrame(rows, schema=ENTRY_SCHEMA))


#: What an [[entry]] that omits a field holds (pydantic's defaults in closewatch.analysis.catalog_entry).
_ENTRY_DEFAULTS: dict[str, Any] = {"codes": None, "code_is_null": False, "reason": None, "infer_code": None}


def _read_entries(path: Path, origin: str, checked: bool = False) -> list[dict[str, Any]]:
    """Parse one catalog file into validated entry rows, in file order.

    ``checked``: the file is the built-in one, which tests/analysis/test_catalog.py
    validates entry by entry; its rows are taken as they are, so loading it
    imports neither pydantic nor its model (about 0.1 s of a small ingest's
    start, issue 16). A user's file is always validated.
    """
    document = _read_toml(path)
    extra_keys = sorted(set(document) - {"entry"})
    if extra_keys:
        raise CatalogError(
            f"{path}: top-level key {extra_keys[0]!r} is not allowed, only [[entry]] tables; fix the file and run again."
        )
    entries = document.get("entry")
    if not isinstance(entries, list) or not entries:
        raise CatalogError(f"{path} has no [[entry]] tables; add at least one and run again.")
    if checked:
        return [_ENTRY_DEFAULTS | raw | {"origin": origin} for raw in entries]
    from closewatch.analysis.catalog_entry import validate_entry

    return [
        validate_entry(raw, f"{path} entry {number}") | {"origin": origin}
        for number, raw in enumerate(entries, start=1)
    ]


def _read_toml(path: Path) -> dict[str, Any]:
    return read_toml(path, CatalogError, "catalog file")


# ---------------------------------------------------------------- classifying


def classify(frame: Frame, catalog: Catalog) -> Frame:
    """Label every closure with category, severity, retry_safe, action, era and numbers.

    ``frame`` needs ``close_code`` and ``close_reason``; the label columns are
    added or overwritten, a NULL ``close_code`` is filled from the matched
    entry's ``infer_code`` and ``code_inferred`` marks those rows. Row count and
    order are preserved. A LazyFrame comes back lazy, but its distinct
    (code, reason) pairs are collected now: the labels are computed once per
    pair, eagerly, and the rows then pick theirs up by position.
    """
    lazy = frame.lazy()
    schema = lazy.collect_schema()
    lazy = lazy.with_columns(_key_casts(schema))
    pairs = lazy.select(_KEYS).unique().collect()
    labelled = _label_pairs(pairs, catalog.entries)
    result = _attach(lazy, labelled, had_inferred="code_inferred" in schema)
    return result.collect() if isinstance(frame, pl.DataFrame) else result


def _key_casts(schema: pl.Schema) -> list[pl.Expr]:
    """Give all-NULL key columns real types, so regex matching and the pair lookup work on them."""
    casts = []
    if schema["close_code"] == pl.Null:
        casts.append(pl.col("close_code").cast(pl.Int32))
    if schema["close_reason"] == pl.Null:
        casts.append(pl.col("close_reason").cast(pl.String))
    return casts


def _label_pairs(pairs: pl.DataFrame, entries: pl.DataFrame) -> pl.DataFrame:
    """One labelled row per distinct (close_code, close_reason) pair."""
    matched = pairs.with_columns(priority=_first_match(entries))
    verdicts = entries.select("priority", "category", "severity", "retry_safe", "action", "era", "infer_code")
    inferred = pl.col("close_code").is_null() & pl.col("infer_code").is_not_null()
    return matched.join(verdicts, on="priority", how="left").with_columns(
        *(pl.col(name).fill_null(value) for name, value in UNKNOWN.items()),
        inferred=inferred,
        inferred_code=pl.when(inferred).then(pl.col("infer_code")).cast(pairs.schema["close_code"], strict=False),
        chunk_ms=_chunk_ms(),
        audio_rate_ratio=_audio_rate_ratio(),
    )


def _first_match(entries: pl.DataFrame) -> pl.Expr:
    """Priority of the first entry whose condition holds, NULL when none does.

    Each entry yields its priority where it matches and NULL elsewhere;
    ``coalesce`` keeps the first non-NULL in entry order, which is the same
    as a when/then chain but stays flat however long the catalog grows.
    """
    return pl.coalesce(
        [
            pl.when(_condition(entry)).then(pl.lit(entry["priority"], dtype=pl.Int32))
            for entry in entries.sort("priority").iter_rows(named=True)
        ]
    )


def _condition(entry: dict[str, Any]) -> pl.Expr:
    """An entry's match condition; a NULL code or reason never satisfies a test on it."""
    tests = [pl.lit(True)]
    if entry["codes"] is not None:
        tests.append(pl.col("close_code").is_in(entry["codes"]))
    if entry["code_is_null"]:
        tests.append(pl.col("close_code").is_null())
    if entry["reason"] is not None:
        tests.append(pl.col("close_reason").str.contains(entry["reason"]))
    return functools.reduce(operator.and_, tests)


def _chunk_ms() -> pl.Expr:
    """The chunk length from "Input duration violation: 1200 ms. Expected ..."."""
    return pl.col("close_reason").str.extract(_CHUNK_MS, 1).cast(pl.Float64, strict=False)


def _audio_rate_ratio() -> pl.Expr:
    """How much faster than real time, from "... Received 2.1 sec. audio in 1.0 sec"."""
    received = pl.col("close_reason").str.extract(_AUDIO_RATE, 1).cast(pl.Float64, strict=False)
    elapsed = pl.col("close_reason").str.extract(_AUDIO_RATE, 2).cast(pl.Float64, strict=False)
    return pl.when(elapsed > 0).then(received / elapsed)


def _attach(lazy: pl.LazyFrame, labelled: pl.DataFrame, *, had_inferred: bool) -> pl.LazyFrame:
    """Give every row its pair's labels, keeping row order.

    A left join would need ``maintain_order`` to keep rows in place, which
    costs more than the whole classification; instead each row looks up its
    pair's position with ``replace_strict`` (a hash lookup, elementwise, so
    order-preserving) and gathers the labels by that position.
    """
    position = pl.struct(_KEYS).replace_strict(
        labelled.select(pl.struct(_KEYS)).to_series(),
        pl.int_range(labelled.height, dtype=pl.UInt32, eager=True),
    )

    def label(name: str) -> pl.Expr:
        return pl.lit(labelled[name]).gather(pl.col(_PAIR))

    inferred = label("inferred")
    if had_inferred:
        inferred = pl.col("code_inferred").fill_null(False) | inferred
    return (
        lazy.with_columns(position.alias(_PAIR))
        .with_columns(
            *(label(name).alias(name) for name in _LABELS),
            close_code=pl.col("close_code").fill_null(label("inferred_code")),
            code_inferred=inferred,
        )
        .drop(_PAIR)
    )


# ---------------------------------------------------------------- display


def catalog_table(catalog: Catalog) -> pl.DataFrame:
    """The catalog as people read it: one row per entry, in evaluation order."""
    codes = (
        pl.when(pl.col("code_is_null"))
        .then(pl.lit("no code"))
        .when(pl.col("codes").is_null())
        .then(pl.lit("any code"))
        .otherwise(pl.col("codes").list.eval(pl.element().cast(pl.String)).list.join(", "))
    )
    return catalog.entries.sort("priority").select(
        codes.alias("codes"),
        pl.col("reason").fill_null("any reason"),
        "category",
        "severity",
        "retry_safe",
        "action",
        "era",
        "docs",
    )
