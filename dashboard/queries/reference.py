"""The Reference page's reads: how many closures each category holds, for its guides."""

from __future__ import annotations

import polars as pl

from closewatch.dashboard.queries.shared import reader, reading
from closewatch.store import Store


@reader(warm=lambda: ())
def category_counts(store: Store) -> pl.DataFrame:
    """Closures per category, for the Reference page's guides."""
    with reading(store) as con:
        return con.execute("SELECT category, count(*) AS closures FROM closures GROUP BY category").pl()
