"""Overview: KPIs, the timeline by category or severity, top reasons and top clients for a time range.

Every number leads to its rows: the links under the KPIs and a click on a
table row open the Explorer with the matching filters.
"""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from closewatch.analysis.catalog import CATEGORIES, SEVERITIES
from closewatch.dashboard import ui
from closewatch.dashboard.queries import overview as queries
from closewatch.dashboard.queries import shared, timespan

ERROR_CATEGORIES = [c for c in CATEGORIES if c != "normal"]


def kpis(view: queries.Overview, base: dict) -> None:
    """Four numbers, each with a link to the rows behind it."""
    errors = view.categories.filter(pl.col("category") != "normal")
    top = errors.group_by("category").agg(pl.col("closures").sum()).sort("closures", descending=True)
    columns = st.columns(4)
    with columns[0]:
        st.metric("Sessions closed", ui.fmt_int(view.closures), border=True)
        ui.explorer_link("All closures", **base)
    with columns[1]:
        st.metric("Error share", f"{view.error_share:.1%}", border=True, help="Closures whose category is not `normal`.")
        ui.explorer_link(f"{ui.fmt_int(view.errors)} errors", category=ERROR_CATEGORIES, **base)
    with columns[2]:
        st.metric("Clients affected", f"{ui.fmt_int(view.clients_affected)} of {ui.fmt_int(view.clients)}", border=True,
                  help="Clients with at least one closure that is not `normal`.")
        ui.explorer_link("Their errors", category=ERROR_CATEGORIES, **base)
    with columns[3]:
        if top.height:
            name, count = top.row(0)
            st.metric("Top error category", f"{count:,}", name, delta_color="off", delta_arrow="off", border=True)
            ui.explorer_link(f"{name} rows", category=name, **base)
        else:
            st.metric("Top error category", "none", border=True)


def timeline_chart(view: queries.Overview, stack_by: str) -> alt.Chart:
    """Stacked bars per bucket, colored by category or severity (severity in its natural order and colors)."""
    frame = view.timeline.group_by("bucket", stack_by).agg(pl.col("closures").sum()).sort("bucket")
    if stack_by == "severity":
        color = alt.Color("severity:N", sort=list(SEVERITIES), scale=alt.Scale(
            domain=list(ui.SEVERITY_COLORS), range=list(ui.SEVERITY_COLORS.values())))
    else:
        color = alt.Color("category:N", sort=list(CATEGORIES), scale=alt.Scale(scheme="tableau20"))
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=ui.time_axis(view.bucket_s),
            y=alt.Y("sum(closures):Q", title="closures"),
            color=color,
            tooltip=[alt.Tooltip("bucket:T", format="%Y-%m-%d %H:%M", title="UTC"), f"{stack_by}:N", "closures:Q"],
        )
        .properties(height=300)
    )


def categories_table(view: queries.Overview, base: dict) -> None:
    st.subheader("Categories")
    st.caption("Click a row to see its closures.")
    frame = view.categories.select("category", "severity", "closures", "share")
    event = ui.table(
        frame, "categories_table", on_select="rerun", selection_mode="single-row",
        column_config={"share": st.column_config.ProgressColumn("share", format="percent", min_value=0, max_value=1)},
    )
    row = ui.selected_row(event, frame)
    if row:
        ui.open_explorer(category=row["category"], **base)


def reasons_table(view: queries.Overview, base: dict) -> None:
    st.subheader("Top error reasons")
    st.caption("Click a row to see its closures.")
    frame = view.reasons.select(
        "closures", "category", pl.col("close_reason").fill_null("(no reason logged)").alias("reason"), "close_reason")
    event = ui.table(frame, "reasons_table", on_select="rerun", selection_mode="single-row",
                     column_config={"close_reason": None, "reason": st.column_config.TextColumn("reason", width="large")})
    row = ui.selected_row(event, frame)
    if row:
        ui.open_explorer(q=row["close_reason"] or "", category=row["category"], **base)


def clients_table(view: queries.Overview, base: dict) -> None:
    st.subheader("Top clients by error rate")
    st.caption(f"Clients with at least {queries.MIN_CLIENT_CLOSURES} closures in the range. Click a row to see its closures.")
    frame = view.top_clients
    event = ui.table(
        frame, "clients_table", on_select="rerun", selection_mode="single-row",
        column_config={"error_rate": st.column_config.ProgressColumn("error rate", format="percent", min_value=0, max_value=1)},
    )
    row = ui.selected_row(event, frame)
    if row:
        ui.open_explorer(client=row["client_id"], **base)


def main() -> None:
    st.title("Overview")
    span = shared.cached(timespan.span)
    if span.closures == 0:
        ui.empty_state()
        return
    start, end = ui.time_range(span)
    st.caption(ui.describe_range(start, end, span) + " Errors are closures whose category is not `normal`.")
    view = shared.cached(queries.overview, start, end)
    if view.closures == 0:
        st.info("No closures in this range; widen it or clear the dates.")
        return
    base = ui.range_params(start, end)
    kpis(view, base)
    stack_by = st.segmented_control("Stack by", ["category", "severity"], default="category", key="stack")
    st.altair_chart(timeline_chart(view, stack_by or "category"))
    left, right = st.columns(2)
    with left:
        reasons_table(view, base)
    with right:
        clients_table(view, base)
    categories_table(view, base)


with ui.guard():
    main()
