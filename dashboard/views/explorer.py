"""Explorer: filter closures, read the catalog's action and retry advice, open one closure in context.

Every filter is bound to the URL, so other pages link here with filters
already set, and a filtered view can be shared by copying the address.
A closure opens by clicking its time (a link to this page with ``?event=<event_id>``), or by that address (with
``&at=<ISO time>`` the lookup is instant on large databases).
"""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from closewatch.vocabulary import CATEGORIES, SEVERITIES
from closewatch.dashboard import drawn, ui
from closewatch.dashboard.queries import explorer as queries
from closewatch.dashboard.queries import shared, timespan

def filters(span: timespan.Span) -> queries.Filters:
    """The filter widgets (all bound to the URL) and the Filters they describe."""
    choices = shared.cached(queries.explorer_choices)
    start, end = ui.time_range(span)
    first, second, third = st.columns(3)
    codes = first.multiselect("Close code", choices.codes, key="code", bind="query-params", placeholder="any code")
    categories = second.multiselect("Category", list(CATEGORIES), key="category", bind="query-params", placeholder="any category")
    severities = third.multiselect("Severity", list(SEVERITIES), key="severity", bind="query-params", placeholder="any severity")
    first, second, third = st.columns(3)
    clients = first.multiselect("Client", choices.clients, key="client", bind="query-params", placeholder="any client")
    session = second.text_input("Session id starts with", key="session", bind="query-params")
    text = third.text_input("Reason contains", key="q", bind="query-params")
    normal = st.toggle("Show normal closures", key="normal", bind="query-params",
                       help="Normal closures (1000, a client's Terminate) are hidden unless this is on or the category filter names them.")
    return queries.Filters(start, end, tuple(codes), tuple(categories), tuple(severities), tuple(clients), session or "", text or "",
                           bool(normal))


def detail(event_id: str, at: datetime | None) -> None:
    """One closure: what happened, what to do, and its session's and client's other events."""
    found = shared.cached(queries.closure_detail, event_id, at)
    closure = found.closure
    if closure is None:
        st.warning(f"No closure has event id {event_id}; it may belong to another database.")
        return
    st.subheader("Closure")
    code = "no code" if closure["close_code"] is None else str(closure["close_code"]) + (" (inferred)" if closure["code_inferred"] else "")
    color = {"info": "blue", "warning": "orange", "error": "red", "critical": "violet"}.get(closure["severity"], "gray")
    st.markdown(
        f"**Category** :{color}-badge[{closure['category']}] &nbsp; **Severity** :{color}-badge[{closure['severity']}] &nbsp; "
        f"**Close code** :gray-badge[{code}] &nbsp; **Retry safe** :gray-badge[{closure['retry_safe']}] &nbsp; "
        f"**When** {ui.fmt_time(closure['ts'])} UTC &nbsp; **Client** `{closure['client_id'] or '-'}`"
    )
    st.markdown(f"**Reason:** {closure['close_reason'] or '(none logged)'}")
    st.success(f"**What to do:** {closure['action']}  \n**Retry:** {ui.RETRY_ADVICE.get(closure['retry_safe'], '-')}", icon=":material/build:")
    numbers = _numbers(closure)
    if numbers:
        st.info(numbers, icon=":material/straighten:")
    with st.expander("Every field of this closure"):
        st.json({key: (ui.fmt_time(value) if key in ("ts", "ingested_at") else value) for key, value in closure.items()})
    left, right = st.columns(2)
    with left:
        st.markdown(f"**Session `{closure['session_id'] or '-'}`**: its closures")
        if found.session.height:
            ui.table(found.session, "session_events", column_order=ui.CLOSURE_ORDER)
        else:
            st.caption("The log names no session for this closure.")
    with right:
        st.markdown(f"**Client `{closure['client_id'] or '-'}`**: its closures within {int(queries.AROUND.total_seconds() // 60)} minutes")
        ui.table(found.client, "client_events", column_order=ui.CLOSURE_ORDER)


def _numbers(closure: dict) -> str:
    """The numbers read out of the reason text, in the words the user needs."""
    if closure.get("chunk_ms") is not None:
        return f"The client's audio chunks were {closure['chunk_ms']:g} ms; the API accepts 50 to 1000 ms per chunk."
    if closure.get("audio_rate_ratio") is not None:
        return f"The client sent audio {closure['audio_rate_ratio']:.2g}x faster than real time; send it at real-time pace."
    if closure.get("session_duration_s") is not None:
        return f"The session lasted {closure['session_duration_s'] / 60:.1f} minutes."
    return ""


def main() -> None:
    st.title("Explorer")
    span = shared.cached(timespan.span)
    if span.closures == 0:
        ui.empty_state()
        return
    chosen = filters(span)
    found = shared.cached(queries.explorer_rows, chosen)
    rows = found.rows
    shown = f"showing the newest {rows.height:,}" if found.total > rows.height else "showing all"
    hidden = f" {found.hidden_normal:,} normal closures are hidden." if found.hidden_normal else ""
    st.caption(f"{found.total:,} closures match; {shown}.{hidden} Times are UTC. "
               "Click a time to open that closure and read its whole reason. For more, use the SQL page.")
    grid = st.toggle(f"Sortable grid of the newest {queries.GRID_ROWS:,}", key="grid",
                     help="Sort, search and widen the columns; a click on a row opens the closure.")
    if grid:
        found = shared.cached(queries.explorer_rows, chosen, queries.GRID_ROWS)
        event = ui.table(
            found.rows, "closures_grid", on_select="rerun", selection_mode="single-row", column_order=ui.CLOSURE_ORDER,
            column_config={"close_reason": st.column_config.TextColumn("reason", width="medium", help="Click the row to read the whole text."),
                           "category": st.column_config.TextColumn("category", width="medium"),
                           "action": st.column_config.TextColumn("action", width="large")},
        )
        row = ui.selected_row(event, found.rows)
        if row:
            detail(row["event_id"], row["ts"])
            return
    else:
        # a first view draws the newest as HTML: the data grid's code cost it about a second (issue 16, measured)
        ui.plain_table(
            rows, "closures_table", column_order=ui.CLOSURE_ORDER, max_height=TABLE_HEIGHT_PX, links={"ts": closure_href},
            column_config={"close_reason": st.column_config.TextColumn("reason", width="large"),
                           "action": st.column_config.TextColumn("action", width="large")},
        )
    if st.query_params.get("event"):
        detail(st.query_params["event"], _url_time(st.query_params.get("at")))


#: The closures table's height: about 15 rows, the rest a scroll away.
TABLE_HEIGHT_PX = 620


def closure_href(row: dict) -> str:
    """This page's address with its filters kept and the closure to open (``event``, and ``at`` for a fast lookup)."""
    kept = {key: st.query_params.get_all(key) for key in ui.FILTER_KEYS}
    return drawn.page_href(ui.PAGES_URL["explorer"], **kept, event=row["event_id"], at=row["ts"].isoformat() if row["ts"] else None)


def _url_time(text: str | None) -> datetime | None:
    """The optional ?at= of a deep link (ISO 8601, UTC); a malformed one is ignored (the lookup just scans)."""
    try:
        return timespan.utc(datetime.fromisoformat(text)) if text else None
    except ValueError:
        return None


with ui.guard():
    main()
