"""Reference: the close-code catalog as one table, and a troubleshooting guide per category.

The catalog is ``analysis.catalog`` (built-in plus the user's file named in
the config); the guides are ``dashboard/guides.toml``, both data.
"""

from __future__ import annotations

import html

import polars as pl
import streamlit as st

from closewatch.analysis.catalog import CATEGORIES, catalog_table, load_catalog
from closewatch.dashboard import drawn, ui
from closewatch.dashboard.queries import reference as queries
from closewatch.dashboard.queries import shared


def catalog_section() -> None:
    st.subheader("Close-code catalog")
    settings = shared.get_settings()
    table = catalog_table(load_catalog(settings.catalog))
    source = f"the built-in catalog and `{settings.catalog}`" if settings.catalog else "the built-in catalog"
    st.caption(f"From {source}. Entries are evaluated top to bottom; the first match wins. "
               "`retry_safe`: yes = reconnect now, with_backoff = retry with exponential backoff, no = fix first.")
    chosen = st.multiselect("Category", list(CATEGORIES), key="ref_category", placeholder="every category")
    if chosen:
        table = table.filter(pl.col("category").is_in(chosen))
    ui.plain_table(
        table.rename({"codes": "code", "reason": "reason pattern", "retry_safe": "retry safe", "action": "recommended action"}),
        "catalog_table", column_config={"recommended action": st.column_config.TextColumn(width="large")}, max_height=600,
    )


def guides_section() -> None:
    st.subheader("Troubleshooting by category")
    guides = ui.load_toml("guides.toml")
    counts = dict(shared.cached(queries.category_counts).iter_rows())
    sections = []
    for category in CATEGORIES:
        guide = guides.get(category)
        if guide is None:
            continue
        count = counts.get(category, 0)
        causes = "".join(f"<li>{html.escape(cause)}</li>" for cause in guide["causes"])
        steps = "".join(f"<li>{html.escape(step)}</li>" for step in guide["steps"])
        link = drawn.page_link(drawn.page_href(ui.PAGES_URL["explorer"], category=category),
                               f"See the {count:,} {category} closures") if count else ""
        sections.append(drawn.Section(
            f"{html.escape(guide['title'])} (<code>{html.escape(category)}</code>): {count:,} closures loaded",
            f"<p>{html.escape(guide['summary'])}</p><strong>Likely causes</strong><ul>{causes}</ul>"
            f"<strong>What to do</strong><ol>{steps}</ol>{link}"))
    drawn.sections(sections, "guides")  # HTML <details>: a first view pays nothing per guide


def main() -> None:
    st.title("Reference")
    catalog_section()
    guides_section()


with ui.guard():
    main()
