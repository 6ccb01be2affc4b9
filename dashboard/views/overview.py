"""Overview: KPIs, the timeline by category or severity, top reasons and top clients for a time range.

Every number leads to its rows: the links under the KPIs and a click on a
table row open the Explorer with the matching filters.
"""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from closewatch.vocabulary import CATEGORIES, SEVERITIES
from closewatch.dashboard import ui
from closewatch.dashboard.queries import overview as queries
from closewatch.dashboard.queries import shared, timespan
from closewatch.dashboard.queries.explorer import NO_CODE

ERRORS = list(queries.ERROR_SEVERITIES)
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
    st.caption("One row per category, the same totals as the Reference page. Click a row to see its closures.")
    frame = view.categories.select("category", "closures", "errors", "share", "severities")
    event = ui.table(
        frame, "categories_table", on_select="rerun", selection_mode="single-row",
        column_config={"share": st.column_config.ProgressColumn("share", format="percent", min_value=0, max_value=1),
                       "errors": st.column_config.NumberColumn("errors", format=ui.COUNT_FORMAT, help=f"Its {ERROR_WORDS}."),
                       "severities": st.column_config.TextColumn("severities seen")},
    )
    row = ui.selected_row(event, frame)
    if row:
        ui.open_explorer(category=row["category"], **base)


def reasons_table(view: queries.Overview, base: dict) -> None:
    st.subheader("Top error reasons")
    st.caption("Errors (warning and above) by close code and reason. Click a row to see its closures.")
    frame = view.reasons.select(
        "closures", "close_code", "category", "severity",
        pl.col("close_reason").fill_null("").replace("", "(no reason logged)").alias("reason"), "close_reason")
    event = ui.table(frame, "reasons_table", on_select="rerun", selection_mode="single-row",
                     column_config={"close_reason": None, "reason": st.column_config.TextColumn("reason", width="large")})
    row = ui.selected_row(event, frame)
    if row:
        code = NO_CODE if row["close_code"] is None else str(row["close_code"])
        ui.open_explorer(q=row["close_reason"] or "", code=code, category=row["category"], severity=row["severity"], **base)


def clients_table(view: queries.Overview, base: dict) -> None:
    st.subheader("Top clients by error rate")
    st.caption(f"Clients with at least {queries.MIN_CLIENT_CLOSURES} closures in the range; errors are warning and above. "
               "Click a row to see its errors.")
    frame = view.top_clients
    event = ui.table(
        frame, "clients_table", on_select="rerun", selection_mode="single-row",
        column_config={"error_rate": st.column_config.ProgressColumn("error rate", format="percent", min_value=0, max_value=1)},
    )
    row = ui.selected_row(event, frame)
    if row:
        ui.open_explorer(client=row["client_id"], severity=ERRORS, **base)


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
    st.altair_chart(timeline_chart(view, stack_by or "category"))
    left, right = st.columns(2)
    with left:
        reasons_table(view, base)
    with right:
        clients_table(view, base)
    categories_table(view, base)


with ui.guard():
    main()
