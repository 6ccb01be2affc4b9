"""Overview: KPIs, the timeline by category or severity, top reasons and top clients for a time range.

Every number leads to its rows: the links under the KPIs and a click on a
table row open the Explorer with the matching filters.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from closewatch.vocabulary import CATEGORIES, SEVERITIES
from closewatch.dashboard import drawn, ui
from closewatch.dashboard.queries import overview as queries
from closewatch.dashboard.queries import shared, timespan
from closewatch.dashboard.queries.explorer import NO_CODE

ERRORS = list(queries.ERROR_SEVERITIES)
#: Vega's "tableau20", the categories' colors before the chart was drawn on the server.
CATEGORY_COLORS = ["#4c78a8", "#9ecae9", "#f58518", "#ffbf79", "#54a24b", "#88d27a", "#b79a20", "#f2cf5b", "#439894", "#83bcb6",
                   "#e45756", "#ff9d98", "#79706e", "#bab0ac", "#d67195", "#fcbfd2", "#b279a2", "#d6a5c9", "#9e765f", "#d8b5a5"]
ERROR_WORDS = "closures of severity " + ", ".join(ERRORS[:-1]) + " or " + ERRORS[-1]


def kpis(view: queries.Overview, base: dict) -> None:
    """Four numbers, each with a link to the rows behind it; the last is a name, so its card is wider."""
    columns = st.columns([1, 1, 1, 1.4])
    with columns[0]:
        st.metric("Sessions closed", ui.fmt_int(view.closures), border=True)
        ui.explorer_link("All closures", normal="true", **base)
    with columns[1]:
        st.metric("Error share", f"{view.error_share:.1%}", border=True,
                  help=f"Errors are {ERROR_WORDS}; info-level ends (normal closes, 1001 going away, expired sessions) are not.")
        ui.explorer_link(f"{ui.fmt_int(view.errors)} errors", severity=ERRORS, **base)
    with columns[2]:
        st.metric("Clients affected", f"{ui.fmt_int(view.clients_affected)} of {ui.fmt_int(view.clients)}", border=True,
                  help=f"Clients with at least one error ({ERROR_WORDS}).")
        ui.explorer_link("Their errors", severity=ERRORS, **base)
    with columns[3]:
        top_category(view, base)


def top_category(view: queries.Overview, base: dict) -> None:
    """The category with the most errors, by name (a metric would cut a long name short), with its count."""
    top = view.top_category
    if top is None:
        st.metric("Top error category", "none", border=True)
        return
    name, count = top
    with st.container(border=True, key="top_category"):
        st.markdown(f"Top error category :gray-badge[{ui.fmt_int(count)} errors]", help=f"The category with the most {ERROR_WORDS}.")
        st.markdown(f"#### {name}")
    ui.explorer_link(f"Its {ui.fmt_int(count)} errors", category=name, severity=ERRORS, **base)


def timeline(view: queries.Overview, stack_by: str) -> None:
    """Stacked bars per bucket, colored by category or severity (severity in its natural order and colors).

    Drawn on the server as SVG (dashboard/drawn.py): a chart library would cost a first visit about a second.
    """
    if stack_by == "severity":
        colors = {name: ui.SEVERITY_COLORS.get(name, "#bab0ac") for name in SEVERITIES}
    else:
        colors = dict(zip(CATEGORIES, CATEGORY_COLORS * 2, strict=False))
    drawn.stacked_bars(view.timeline, stack_by, view.bucket_s, colors, ui.time_axis_title(view.bucket_s), key="timeline")


def explorer_href(**filters: object) -> str:
    """The Explorer's address with these filters (a table cell's link)."""
    return drawn.page_href(ui.PAGES_URL["explorer"], **filters)


def categories_table(view: queries.Overview, base: dict) -> None:
    st.subheader("Categories")
    st.caption("One row per category, the same totals as the Reference page. Click a category to see its closures.")
    frame = view.categories.select("category", "closures", "errors", "share", "severities")
    drawn.table(frame, "categories_table", {
        "category": drawn.Column(link=lambda row: explorer_href(category=row["category"], **base)),
        "errors": drawn.Column(help=f"Its {ERROR_WORDS}."),
        "share": drawn.Column(kind="share"),
        "severities": drawn.Column("severities seen"),
    })


def reasons_table(view: queries.Overview, base: dict) -> None:
    st.subheader("Top error reasons")
    st.caption("Errors (warning and above) by close code and reason. Click a reason to see its closures.")
    frame = view.reasons.select(
        "closures", "close_code", "category", "severity",
        pl.col("close_reason").fill_null("").replace("", "(no reason logged)").alias("reason"), "close_reason")

    def rows(row: dict) -> str:
        code = NO_CODE if row["close_code"] is None else str(row["close_code"])
        return explorer_href(q=row["close_reason"] or "", code=code, category=row["category"], severity=row["severity"], **base)

    drawn.table(frame, "reasons_table", {"close_code": drawn.Column("code"), "reason": drawn.Column(link=rows, width=240)},
                order=["closures", "close_code", "category", "severity", "reason"])


def clients_table(view: queries.Overview, base: dict) -> None:
    st.subheader("Top clients by error rate")
    st.caption(f"Clients with at least {queries.MIN_CLIENT_CLOSURES} closures in the range; errors are warning and above. "
               "Click a client to see its errors.")
    drawn.table(view.top_clients, "clients_table", {
        "client_id": drawn.Column("client", link=lambda row: explorer_href(client=row["client_id"], severity=ERRORS, **base)),
        "error_rate": drawn.Column("error rate", kind="share"),
    })


def main() -> None:
    st.title("Overview")
    span = shared.cached(timespan.span)
    if span.closures == 0:
        ui.empty_state()
        return
    start, end = ui.time_range(span)
    st.caption(ui.describe_range(start, end, span) + f" Errors are {ERROR_WORDS}.")
    view = shared.cached(queries.overview, start, end)
    if view.closures == 0:
        st.info("No closures in this range; widen it or clear the dates.")
        return
    base = ui.range_params(start, end)
    kpis(view, base)
    stack_by = st.segmented_control("Stack by", ["category", "severity"], default="category", key="stack")
    timeline(view, stack_by or "category")
    left, right = st.columns(2)
    with left:
        reasons_table(view, base)
    with right:
        clients_table(view, base)
    categories_table(view, base)


with ui.guard():
    main()
