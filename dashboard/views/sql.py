"""SQL: ad-hoc read-only queries, with the schema beside the editor and example queries.

Queries run in the SQL sandbox (closewatch/sandbox.py): a child process on a
snapshot of the store, through a read-only connection with
``enable_external_access=false`` and the configuration locked, so a query can
read the closewatch tables and nothing else, with the [sql] time, memory and
row limits. The page polls the child, so a rerun, the Stop button or a closed
session stops the query (the child is killed). A refusal is one sentence.
"""

from __future__ import annotations

import html
import io

import polars as pl
import streamlit as st

from closewatch.dashboard import drawn, ui
from closewatch.dashboard.queries import sql as queries
from closewatch.dashboard.queries import shared
from closewatch.sandbox import Limits

PICK = "Choose an example..."


def examples() -> dict[str, str]:
    """Title -> SQL, from dashboard/examples.toml."""
    return {q["title"]: q["sql"].strip() for q in ui.load_toml("examples.toml")["query"]}


def use_example() -> None:
    """Put the chosen example in the editor (a callback: it runs before the editor is drawn)."""
    title = st.session_state.get("example")
    if title and title != PICK:
        st.session_state["sql_text"] = examples()[title]


def schema_panel() -> None:
    """Every table and view with its columns: closures first, then the other tables, then the views."""
    st.subheader("Schema")
    frame = shared.cached(queries.schema).with_columns(
        pl.col("data_type").str.replace("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", literal=True),
        order=pl.when(pl.col("table_name") == "closures").then(0).when(pl.col("table_type") == "VIEW").then(2).otherwise(1),
    )
    tables = []
    for (name, kind), columns in frame.sort("order", maintain_order=True).group_by("table_name", "table_type", maintain_order=True):
        lines = [f"<code>{html.escape(column)}</code> {html.escape(dtype.lower())}"
                 for column, dtype in columns.select("column_name", "data_type").iter_rows()]
        heading = html.escape(name + (" (view)" if kind == "VIEW" else ""))
        tables.append(drawn.Section(heading, "<br>".join(lines), opened=name == "closures"))
    drawn.sections(tables, "schema")  # HTML <details>: a first view pays nothing per table


def run(sql: str) -> None:
    """Run the query and keep the result in the session, so downloads do not run it again."""
    limits = Limits.from_settings(shared.get_settings())
    status = st.empty()

    def tick(elapsed: float) -> None:  # each call lets Streamlit stop this script (rerun, Stop, closed session)
        status.caption(f"Running for {elapsed:.0f} s (stopped at {limits.timeout_s:g} s)...")

    answer = queries.user_query(shared.get_store(), sql, limits, tick)
    status.empty()
    st.session_state["sql_result"] = (sql, answer, limits.max_rows)


def result_panel() -> None:
    _, answer, max_rows = st.session_state["sql_result"]
    frame, seconds = answer.frame, answer.seconds
    more = f" (the first {max_rows:,}; add a LIMIT or aggregate for the rest)" if answer.truncated else ""
    st.caption(f"{frame.height:,} rows{more} in {seconds * 1000:,.0f} ms.")
    ui.table(frame, "sql_result_table", placeholder="NULL")  # counts read like every page's; NULL as SQL says it
    left, right, _ = st.columns([1, 1, 4])
    left.download_button("CSV", frame.write_csv(), file_name="closewatch-query.csv", mime="text/csv",
                         icon=":material/download:", on_click="ignore")
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    right.download_button("Parquet", buffer.getvalue(), file_name="closewatch-query.parquet",
                          mime="application/vnd.apache.parquet", icon=":material/download:", on_click="ignore")


def main() -> None:
    st.title("SQL")
    st.caption("Read-only DuckDB SQL over the closewatch tables. Queries cannot write, change settings, attach databases or touch files.")
    editor, side = st.columns([5, 2])
    with side, ui.guard():
        schema_panel()
    with editor:
        st.selectbox("Examples", [PICK, *examples()], key="example", on_change=use_example)
        if "sql_text" not in st.session_state:
            st.session_state["sql_text"] = next(iter(examples().values()))
        sql = st.text_area("Query", key="sql_text", height=220)
        if st.button("Run", type="primary", icon=":material/play_arrow:", key="run_sql"):
            st.session_state.pop("sql_result", None)
            if sql.strip():
                with ui.guard():  # a refusal shows right under the button
                    run(sql)
            else:
                ui.show_error("The editor is empty; write a SELECT query or choose an example.")
        if "sql_result" in st.session_state:
            result_panel()


with ui.guard():
    main()
