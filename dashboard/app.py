"""The closewatch dashboard: `closewatch dashboard` (or `streamlit run dashboard/app.py`).

The database is the one named by $CLOSEWATCH_DB (``closewatch dashboard --db``
sets it), else ./closewatch.duckdb. Pages live in ``views/`` (a ``pages/``
folder would also be served by Streamlit's older file-based navigation); each
reads through its own module in ``queries/`` (short-lived connections, results
cached on the data's latest batch) and shows errors through ``dashboard.ui.guard``.
"""

from __future__ import annotations

import streamlit as st

from closewatch.dashboard import ui
from closewatch.dashboard.queries.shared import cached, db_path_label, get_store
from closewatch.dashboard.queries.timespan import span as loaded_span

st.set_page_config(page_title="closewatch", page_icon=":material/monitor_heart:", layout="wide")

PAGES = [
    st.Page(ui.PAGES["overview"], title="Overview", icon=":material/dashboard:", default=True),
    st.Page(ui.PAGES["upload"], title="Upload", icon=":material/upload:"),
    st.Page(ui.PAGES["explorer"], title="Explorer", icon=":material/table_rows:"),
    st.Page(ui.PAGES["patterns"], title="Patterns", icon=":material/troubleshoot:"),
    st.Page(ui.PAGES["alerts"], title="Alerts", icon=":material/notifications:"),
    st.Page(ui.PAGES["sql"], title="SQL", icon=":material/terminal:"),
    st.Page(ui.PAGES["reference"], title="Reference", icon=":material/menu_book:"),
]


def sidebar() -> None:
    """Which database this is and what it holds, on every page."""
    with st.sidebar, ui.guard():
        store = get_store()
        span = cached(loaded_span)
        st.caption(f"Database: `{db_path_label(store)}`")
        st.caption(f"{ui.fmt_int(span.closures)} closures from {ui.fmt_int(span.batches)} files; last load {ui.fmt_time(span.last_batch)} UTC.")


page = st.navigation(PAGES)
page.run()
sidebar()  # after the page, so it counts what an upload on this run just added
