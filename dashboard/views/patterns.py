"""Patterns: what the detectors found, each with its explanation, evidence and a chart of its window.

Detections are written by ``closewatch analyze`` and by the scheduler's
analyze job; the button here runs the same job once, now.
"""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from closewatch.vocabulary import SEVERITIES
from closewatch.dashboard import drawn, ui
from closewatch.dashboard.queries import patterns as queries
from closewatch.dashboard.queries import findings, shared, timespan


def run_detection() -> None:
    """The analysis job over everything loaded, with the configured thresholds (what `closewatch analyze` does)."""
    from closewatch.jobs.analysis import analyze

    with st.spinner("Running the detectors over every loaded closure..."):
        result = analyze(shared.get_store(), shared.get_settings())
    st.toast(f"Found {result.findings.height:,} patterns in {result.closures:,} closures.", icon=":material/troubleshoot:")


def window_chart(found: queries.Finding) -> alt.LayerChart:
    """The key's closures per bucket around the detection, its window shaded, evidence in red."""
    detection = found.detection
    window = pl.DataFrame({"start": [detection["window_start"]], "end": [detection["window_end"]]})
    series = found.series.unpivot(index="bucket", on=["closures", "evidence"], variable_name="series", value_name="count")
    shade = alt.Chart(window).mark_rect(opacity=0.15, color="#e45756").encode(
        x=alt.X("start:T", scale=alt.Scale(type="utc")), x2="end:T")
    bars = alt.Chart(series).mark_bar(opacity=0.85).encode(
        x=ui.time_axis(found.bucket_s),
        y=alt.Y("count:Q", title="closures", stack=None),
        color=alt.Color("series:N", scale=alt.Scale(domain=["closures", "evidence"], range=["#9ecae9", "#e45756"]),
                        legend=alt.Legend(title=None, orient="top")),
        tooltip=[alt.Tooltip("bucket:T", format="%Y-%m-%d %H:%M"), "series:N", "count:Q"],
    )
    return (shade + bars).properties(height=260)


def detail(detection_id: str) -> None:
    found = shared.cached(queries.finding, detection_id)
    detection = found.detection
    if detection is None:
        st.warning("That detection is gone: a newer analysis run replaced its window.")
        return
    st.subheader(f"{detection['pattern']}: {detection['key']}")
    st.info(detection["explanation"], icon=":material/lightbulb:")
    st.success(f"**What to do:** {detection['action']}", icon=":material/build:")
    st.caption(f"Window {ui.fmt_time(detection['window_start'])} to {ui.fmt_time(detection['window_end'])} UTC; "
               f"severity {detection['severity']}; {detection['count']:,} events.")
    what = {"client_id": "client", "session_id": "session", "category": "category"}.get(found.matched_by)
    st.caption(f"The chart counts the closures of {what} `{detection['key']}`." if what
               else "The key names no client, session or category, so the chart counts every closure.")
    if found.series.height:
        st.altair_chart(window_chart(found))
    st.markdown(f"**Evidence** ({len(detection['evidence'] or []):,} events; the first {found.evidence.height:,} below)")
    ui.table(found.evidence, "evidence_table", column_order=ui.CLOSURE_ORDER)
    filters = ui.range_params(found.chart_start, found.chart_end)
    if what == "client":
        filters["client"] = detection["key"]
    elif what == "category":
        filters["category"] = detection["key"]
    elif what == "session":
        filters["session"] = detection["key"]
    ui.explorer_link("Open this window in the Explorer", **filters)


def main() -> None:
    st.title("Patterns")
    head, button = st.columns([4, 1])
    head.caption("Findings of the detectors (repeated violations, disconnect storms, concurrency saturation, "
                 "auth failures, expiry cost leaks, error spikes, new reasons). Thresholds: analysis/thresholds.toml.")
    if button.button("Run detection now", icon=":material/play_arrow:", key="run_detection"):
        with ui.guard():
            run_detection()
    found = shared.cached(findings.detections, findings.open_window())
    if found.height == 0:
        span = shared.cached(timespan.span)
        if span.closures == 0:
            ui.empty_state()
        else:
            st.info("No detections yet. Run the detectors with the button above or `closewatch analyze`; "
                    "`closewatch up` runs them on a schedule.", icon=":material/info:")
        return
    left, right = st.columns(2)
    patterns = left.multiselect("Pattern", sorted(found["pattern"].unique().to_list()), key="pattern", bind="query-params", placeholder="every pattern")
    severities = right.multiselect("Severity", list(SEVERITIES), key="det_severity", placeholder="every severity")
    shown = found
    if patterns:
        shown = shown.filter(pl.col("pattern").is_in(patterns))
    if severities:
        shown = shown.filter(pl.col("severity").is_in(severities))
    summary = ui.severity_counts(shown)
    opened = findings.open_only(shown).height
    st.caption(f"{shown.height:,} detections ({summary}), most severe first, then newest; {opened:,} open "
               f"(their window ends within {ui.fmt_duration(findings.open_window().total_seconds())} of the newest loaded closure; "
               "the Alerts page lists the same ones). Click a pattern to see its evidence.")
    # a link per detection (?detection=<id>, the pattern filter kept) opens it below; the address can be shared
    ui.findings_table(shown, "detections_table", column_order=["severity", "open", *ui.FINDING_COLUMNS[1:]], plain=True,
                      links={"pattern": lambda row: drawn.page_href(ui.PAGES_URL["patterns"], pattern=patterns,
                                                                    detection=row["detection_id"])})
    chosen = st.query_params.get("detection")
    if chosen:
        detail(chosen)


with ui.guard():
    main()
