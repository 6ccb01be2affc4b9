"""What every page shares: the one error boundary, the time range picker, links, formatting.

``guard`` is the dashboard's error boundary: a ``ClosewatchError`` becomes its
one sentence in ``st.error``; anything else (a bug) becomes one sentence too,
with the traceback written to the server's log rather than the page.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import streamlit as st

from closewatch.errors import ClosewatchError, first_line
from closewatch.vocabulary import SEVERITIES
from closewatch.dashboard import drawn
from closewatch.dashboard.queries.timespan import Span, utc

log = logging.getLogger("closewatch.dashboard")

HERE = Path(__file__).parent
PAGES = {
    "overview": "views/overview.py",
    "upload": "views/upload.py",
    "explorer": "views/explorer.py",
    "patterns": "views/patterns.py",
    "alerts": "views/alerts.py",
    "sql": "views/sql.py",
    "reference": "views/reference.py",
}
#: A page's address (its path under the app's root), as Streamlit names it after its file.
PAGES_URL = {name: Path(path).stem for name, path in PAGES.items()}
#: Explorer filters travel in the URL under these names (the widgets are bound to them).
FILTER_KEYS = ("from", "to", "code", "category", "severity", "client", "session", "q", "normal")
URL_TIME = "%Y-%m-%dT%H:%M"
SEVERITY_COLORS = {"info": "#4c78a8", "warning": "#f2a900", "error": "#e45756", "critical": "#7b1e1e"}
#: How closure rows are shown in every table.
CLOSURE_COLUMN_CONFIG = {
    "ts": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "client_id": st.column_config.TextColumn("client"),
    "session_id": st.column_config.TextColumn("session"),
    "close_code": st.column_config.NumberColumn("code", format="%d"),
    "close_reason": st.column_config.TextColumn("reason", width="large", help="Click the row to read the whole text."),
    "retry_safe": st.column_config.TextColumn("retry safe"),
    "action": st.column_config.TextColumn("action", width="large"),
    "event_id": None,  # hidden: it is the key, not something to read
}
#: The order closure rows are shown in: what to do before where it happened, the long reason text last
#: (a click on a row opens the closure with its whole text).
CLOSURE_ORDER = ["ts", "category", "severity", "retry_safe", "action", "close_code", "client_id", "session_id", "close_reason"]
#: Every count in every table is written like the KPIs: 21,744 (never 21744, whatever the browser's locale).
COUNT_FORMAT = "%,d"
#: Shown for a missing value instead of Streamlit's "None".
MISSING = "-"
RETRY_ADVICE = {
    "yes": "Safe to retry right away.",
    "with_backoff": "Retry with exponential backoff and jitter.",
    "no": "Do not retry until the cause is fixed: a retry fails the same way.",
}


@contextmanager
def guard() -> Iterator[None]:
    """Show errors as one sentence with st.error, never as a traceback."""
    try:
        yield
    except ClosewatchError as error:
        show_error(str(error))
    except Exception as error:  # a bug: keep the page readable, keep the details for the log
        log.exception("dashboard page failed")
        show_error(f"Something went wrong on this page ({type(error).__name__}: {first_line(error)}); the details are in the dashboard's log.")


def show_error(message: str) -> None:
    """The one place the dashboard shows an error."""
    st.error(message, icon=":material/error:")


def page_path(name: str) -> str:
    """A page's script path as st.page_link and st.switch_page want it."""
    return PAGES[name]


# ---------------------------------------------------------------- time


def url_time(moment: datetime | None) -> str | None:
    """A time as the bound datetime widgets read it from the URL (minutes, UTC)."""
    return utc(moment).strftime(URL_TIME) if moment else None


def time_range(span: Span, key_from: str = "from", key_to: str = "to") -> tuple[datetime | None, datetime | None]:
    """Two bound pickers for a UTC range; empty means "from the first" / "to the last" closure.

    Empty defaults, rather than the span itself, keep the range at "the whole
    span" as new data arrives, and keep the URL clean. The end is inclusive
    of its minute, so "to 10:17" includes a closure at 10:17:02.
    """
    left, right = st.columns(2)
    start = left.datetime_input(
        "From (UTC)", value=None, key=key_from, bind="query-params", step=timedelta(minutes=1),
        help="Empty: from the first loaded closure.",
    )
    end = right.datetime_input(
        "To (UTC, inclusive)", value=None, key=key_to, bind="query-params", step=timedelta(minutes=1),
        help="Empty: up to the last loaded closure.",
    )
    if start is not None and end is not None and end < start:
        st.warning("The range ends before it starts; showing the whole span instead.")
        return None, None
    return utc(start), (utc(end) + timedelta(minutes=1)) if end is not None else None


def describe_range(start: datetime | None, end: datetime | None, span: Span) -> str:
    """One line saying which time the page shows."""
    if start is None and end is None:
        return f"The whole span of the loaded data: {fmt_time(span.first)} to {fmt_time(span.last)} (UTC)."
    return f"From {fmt_time(start or span.first)} to {fmt_time((end - timedelta(minutes=1)) if end else span.last)} (UTC)."


# ---------------------------------------------------------------- formatting


def fmt_time(moment: datetime | None) -> str:
    return utc(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def fmt_int(value: int | None) -> str:
    return f"{value or 0:,}"


def fmt_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def table(frame: pl.DataFrame, key: str, column_config: dict | None = None, placeholder: str = MISSING, **kwargs: Any) -> Any:
    """st.dataframe with UTC times to the second, counts with thousands separators, "-" for missing values,
    and closure columns named for people."""
    config = table_config(frame, column_config)
    return st.dataframe(frame, hide_index=True, key=key, column_config=config, placeholder=placeholder, **kwargs)


def plain_table(frame: pl.DataFrame, key: str, column_config: dict | None = None, column_order: list[str] | None = None,
                placeholder: str = MISSING, max_height: int | None = None,
                links: dict[str, Callable[[dict[str, Any]], str | None]] | None = None) -> None:
    """``table``, formatted the same, drawn as HTML (dashboard/drawn.py): for the tables a first view shows and people
    read rather than sort or pick rows from, so that the view does not wait for the data grid's code.
    ``links`` makes a column's cells links (a page's address from the row)."""
    columns, hidden = drawn.columns_from_config(table_config(frame, column_config))
    for name, link in (links or {}).items():
        columns[name] = replace(columns.get(name, drawn.Column()), link=link)
    order = [name for name in (column_order or frame.columns) if name not in hidden]
    drawn.table(frame, key, columns, order, max_height, placeholder)


def table_config(frame: pl.DataFrame, column_config: dict | None = None) -> dict:
    """Every table's column settings: UTC times to the second, counts with separators, closure columns named for people."""
    config = {name: st.column_config.DatetimeColumn(name, format="YYYY-MM-DD HH:mm:ss")
              for name, dtype in frame.schema.items() if isinstance(dtype, pl.Datetime)}
    config.update({name: st.column_config.NumberColumn(name, format="%d" if name.endswith("code") else COUNT_FORMAT)
                   for name, dtype in frame.schema.items() if dtype.is_integer()})  # a code is a name, not a quantity
    config.update({name: spec for name, spec in CLOSURE_COLUMN_CONFIG.items() if name in frame.columns})
    config.update(column_config or {})
    return config


#: Findings as the Patterns and Alerts pages list them: the explanation right after what and whom it is about,
#: in rows tall enough for it to wrap onto four lines and read in full (explanations run to about 200 characters).
FINDING_COLUMNS = ["severity", "pattern", "key", "explanation", "window_start", "window_end", "count"]
FINDING_ROW_PX = 92
FINDING_ROWS_SHOWN = 8


#: How the findings tables show their columns.
FINDING_CONFIG = {
    "window_start": st.column_config.DatetimeColumn("from (UTC)", format="YYYY-MM-DD HH:mm"),
    "window_end": st.column_config.DatetimeColumn("to (UTC)", format="YYYY-MM-DD HH:mm"),
    "open": st.column_config.CheckboxColumn("open", width=48),
    "pattern": st.column_config.TextColumn("pattern", width=160),
    "key": st.column_config.TextColumn("key", width=150),
    "explanation": st.column_config.TextColumn("explanation", width=500),
}


def findings_table(frame: pl.DataFrame, key: str, column_order: list[str] = FINDING_COLUMNS, plain: bool = False,
                   **kwargs: Any) -> Any:
    """A table of detections in the query's order (most severe first), the explanation wrapped in a wide column.

    ``plain``: drawn as HTML (``plain_table``), the explanation wrapping onto as many lines as it needs."""
    height = min(max(frame.height, 1), FINDING_ROWS_SHOWN) * FINDING_ROW_PX + 40
    if plain:
        return plain_table(frame, key, FINDING_CONFIG, column_order, max_height=height + 2 * FINDING_ROW_PX, **kwargs)
    return table(frame, key, row_height=FINDING_ROW_PX, height=height, column_order=column_order, column_config=FINDING_CONFIG, **kwargs)


def severity_counts(frame: pl.DataFrame, most_severe_only: bool = False) -> str:
    """'3 critical, 10 error' for rows with a severity column, most severe first ("" when empty)."""
    counts = dict(frame.group_by("severity").len().iter_rows()) if frame.height else {}
    parts = [f"{counts[name]:,} {name}" for name in reversed(SEVERITIES) if name in counts]
    return ", ".join(parts[:1] if most_severe_only else parts)


def time_axis_title(bucket_s: int) -> str:
    """The x axis title of every timeline: UTC (not the browser's zone), with the bar width."""
    return f"UTC, one bar = {fmt_duration(bucket_s)}"


def time_axis(bucket_s: int) -> Any:
    """The x axis of every Vega timeline: UTC (not the browser's zone), labelled with the bar width."""
    import altair as alt

    return alt.X("bucket:T", title=time_axis_title(bucket_s), scale=alt.Scale(type="utc"),
                 axis=alt.Axis(format="%b %d %H:%M", labelAngle=0))


def explorer_link(label: str, icon: str = ":material/table_rows:", **filters: Any) -> None:
    """A link to the Explorer with filters (lists give repeated parameters); empty values are dropped."""
    params = {key: value for key, value in filters.items() if value not in (None, "", [], ())}
    st.page_link(page_path("explorer"), label=label, icon=icon, query_params=params or None)


def range_params(start: datetime | None, end: datetime | None) -> dict[str, str]:
    """The Explorer's from/to for a [start, end) range picked on another page."""
    params = {}
    if start is not None:
        params["from"] = url_time(start)
    if end is not None:
        params["to"] = url_time(end - timedelta(minutes=1))
    return params


def selected_row(event: Any, frame: pl.DataFrame) -> dict[str, Any] | None:
    """The row a user clicked in an ``st.dataframe(..., on_select="rerun")``, or None."""
    try:
        rows = event.selection.rows
    except AttributeError:
        return None
    if not rows or rows[0] >= frame.height:
        return None
    return frame.row(rows[0], named=True)


def load_toml(name: str) -> dict[str, Any]:
    """A data file that ships beside the dashboard (guides, example queries)."""
    with (HERE / name).open("rb") as handle:
        return tomllib.load(handle)


def empty_state(what: str = "closures") -> None:
    """What a page says when nothing is loaded yet, with the way out."""
    st.info(f"No {what} loaded yet. Upload log files on the Upload page, or run `closewatch ingest PATH`.", icon=":material/info:")
    st.page_link(page_path("upload"), label="Upload logs", icon=":material/upload:")
