"""Alerts: the rules and their current state, history, silences, scheduler health, and backtests.

The live part (states, history, silences, health) is a fragment that reruns
on its own every few seconds (``[dashboard] alerts_refresh`` in
closewatch.toml, default 10 s), so an on-call person can leave it open.
Silences go through ``alerts.silences`` exactly like `closewatch alerts silence`.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta

import altair as alt
import polars as pl
import streamlit as st

from closewatch.errors import ClosewatchError
from closewatch.dashboard import ui
from closewatch.dashboard.queries import alerts as queries
from closewatch.dashboard.queries import findings, shared, timespan

DEFAULT_REFRESH_S = 10.0


def refresh_seconds() -> float:
    """How often the live part reruns: [dashboard] alerts_refresh in closewatch.toml (at least 1 s)."""
    seconds = shared.get_settings().dashboard.alerts_refresh_s
    return seconds if seconds >= 1 else DEFAULT_REFRESH_S


def rules_table(config: queries.AlertConfig, states: pl.DataFrame, opened: pl.DataFrame) -> pl.DataFrame:
    """One row per rule: what it watches, how many of its groups are firing or pending now, and for a
    pattern rule how many findings of its pattern are open (so a rule at "ok" beside open findings says why)."""
    open_by_pattern = dict(opened.group_by("pattern").len().iter_rows()) if opened.height else {}
    firing = states.filter(pl.col("state") == "firing").group_by("rule").len("firing") if states.height else pl.DataFrame(schema={"rule": pl.String, "firing": pl.UInt32})
    pending = states.filter(pl.col("state") == "pending").group_by("rule").len("pending") if states.height else pl.DataFrame(schema={"rule": pl.String, "pending": pl.UInt32})
    rules = pl.DataFrame([
        {"rule": r.name, "kind": r.kind, "severity": r.severity, "enabled": r.enabled,
         "group_by": ", ".join(r.group_by), "every": ui.fmt_duration(r.every_s),
         "channels": ", ".join(r.channels), "description": r.description,
         "open_findings": open_by_pattern.get(r.pattern, 0) if r.kind == "pattern" else None}
        for r in config.ruleset.rules
    ], schema={"rule": pl.String, "kind": pl.String, "severity": pl.String, "enabled": pl.Boolean, "group_by": pl.String,
               "every": pl.String, "channels": pl.String, "description": pl.String, "open_findings": pl.Int64})
    return (
        rules.join(firing, on="rule", how="left").join(pending, on="rule", how="left")
        .with_columns(pl.col("firing").fill_null(0), pl.col("pending").fill_null(0))
        .with_columns(now=pl.when(pl.col("firing") > 0).then(pl.lit("firing"))
                      .when(pl.col("pending") > 0).then(pl.lit("pending")).otherwise(pl.lit("ok")))
        .select("rule", "now", "firing", "pending", "open_findings", "kind", "severity", "enabled", "group_by", "every", "channels",
                "description")
    )


def health_table(health: pl.DataFrame, intervals: dict[str, float], now: datetime) -> pl.DataFrame:
    """Each job's last run, and whether it is on time (a run within twice its interval plus a minute)."""
    rows = []
    known = {row["job"]: row for row in health.iter_rows(named=True)}
    for job, every in intervals.items():
        row = known.get(job)
        if row is None:
            rows.append({"job": job, "health": "never ran", "every": ui.fmt_duration(every), "last run (UTC)": "-",
                         "outcome": "-", "last ok (UTC)": "-", "runs": 0, "errors": 0, "last error": ""})
            continue
        late = row["last_started"] is None or now - row["last_started"] > timedelta(seconds=2 * every + 60)
        health = "late" if late else ("failing" if row["last_outcome"] == "error" else "ok")
        rows.append({"job": job, "health": health, "every": ui.fmt_duration(every),
                     "last run (UTC)": ui.fmt_time(row["last_started"]), "outcome": row["last_outcome"],
                     "last ok (UTC)": ui.fmt_time(row["last_ok"]), "runs": row["runs"], "errors": row["errors"],
                     "last error": row["last_error"] if row["last_outcome"] == "error" else ""})
    return pl.DataFrame(rows)


def open_findings(opened: pl.DataFrame) -> None:
    """The open findings beside the rule states: what the Patterns page shows as open, most severe first."""
    st.subheader("Open findings")
    window = ui.fmt_duration(findings.open_window().total_seconds())
    st.caption(f"Findings of the detectors whose window ends within {window} of the newest loaded closure, the ones the "
               "Patterns page marks open. Rules judge the traffic up to now, so findings in older logs do not fire them.")
    if opened.height == 0:
        st.caption("No open findings.")
        return
    with st.container(key="open_findings"):  # a named box, so a browser test can find the table
        ui.findings_table(opened, "open_findings_table")
    st.page_link(ui.page_path("patterns"), label="Their evidence on the Patterns page", icon=":material/troubleshoot:")


def live(config: queries.AlertConfig | None) -> None:
    """States, history, silences and scheduler health: reread on every refresh (``config`` None: the rules file is broken)."""
    now = datetime.now(UTC)
    alerts = queries.alert_data(shared.get_store(), now)
    if not alerts.available:
        st.info("No alert data yet: this database has no alert tables. Open it once with `closewatch alerts run` or `closewatch up`.")
        return
    st.caption(f"Updated {ui.fmt_time(now)} UTC; refreshes every {ui.fmt_duration(refresh_seconds())}.")
    states = alerts.states["state"] if alerts.states.height else pl.Series([], dtype=pl.String)
    firing = int((states == "firing").sum())
    pending = int((states == "pending").sum())
    opened = findings.open_only(shared.cached(findings.detections, findings.open_window()))
    columns = st.columns(5)
    columns[0].metric("Firing", ui.fmt_int(firing), border=True)
    columns[1].metric("Pending", ui.fmt_int(pending), border=True)
    columns[2].metric("Open findings", ui.fmt_int(opened.height), ui.severity_counts(opened, most_severe_only=True) or None,
                      delta_color="off", delta_arrow="off", border=True,
                      help=f"The detectors' findings the Patterns page marks open: {ui.severity_counts(opened) or 'none'}.")
    columns[3].metric("Active silences", ui.fmt_int(alerts.silences.height), border=True)
    queued = alerts.outbox.filter(pl.col("status") != "delivered")["notifications"].sum() if alerts.outbox.height else 0
    columns[4].metric("Notifications waiting", ui.fmt_int(int(queued or 0)), border=True)

    if config is not None:
        st.subheader("Rules")
        st.caption(f"From `{config.rules_path}`. A pattern rule's *open findings* are its pattern's findings listed "
                   "under Open findings below; the rule itself judges only the traffic up to now.")
        ui.table(rules_table(config, alerts.states, opened), "rules_table",
                 column_config={"description": st.column_config.TextColumn(width="large"),
                                "open_findings": st.column_config.NumberColumn("open findings", format=ui.COUNT_FORMAT)})

    st.subheader("Current state")
    active = alerts.states.filter(pl.col("state").is_in(["firing", "pending"]))
    if active.height:
        ui.table(active, "states_table")
    elif alerts.states.height and opened.height:
        st.info(f"No rule is firing or pending on the traffic up to now; the detectors hold {opened.height:,} open findings "
                f"({ui.severity_counts(opened)}) in the loaded logs, listed below.", icon=":material/info:")
    elif alerts.states.height:
        st.success("Nothing is firing or pending.", icon=":material/check_circle:")
    else:
        st.info("No rule has been evaluated on this database yet; the scheduler's evaluate job does it (`closewatch up` starts it).")
    open_findings(opened)

    st.subheader("Scheduler health")
    health = health_table(alerts.health, config.intervals if config else queries.default_intervals(), now)
    if alerts.health.height == 0:
        st.warning("The scheduler has not run on this database yet: start it with `closewatch scheduler` or `closewatch up`.")
    elif (health["health"] != "ok").any():
        st.warning("Some jobs are late or failing; see the table.")
    ui.table(health, "health_table")

    st.subheader("Silences")
    if alerts.silences.height:
        ui.table(alerts.silences, "silences_table")
    else:
        st.caption("No active silences.")

    st.subheader("History")
    if alerts.history.height:
        ui.table(alerts.history, "history_table")
    else:
        st.caption("No state changes recorded yet.")


def silence_form(config: queries.AlertConfig) -> None:
    """Silence a rule (or one group) for a while, or end a silence."""
    from closewatch.alerts.silences import add_silence, end_silences
    from closewatch.alerts.errors import AlertError
    from closewatch.alerts.rules import format_duration, parse_duration

    names = [rule.name for rule in config.ruleset.rules]
    with st.form("silence"):
        st.markdown("**Silence a rule**: notifications stop, states still change; the silence ends on its own.")
        left, middle, right = st.columns(3)
        rule = left.selectbox("Rule", names, key="silence_rule")
        group = middle.text_input("Group (optional)", key="silence_group", help="'client_id=acme', or just 'acme'; empty: every group.")
        duration = right.text_input("For", value="2h", key="silence_for", help="e.g. 30m, 2h, 1d")
        comment = st.text_input("Comment", key="silence_comment")
        if st.form_submit_button("Silence", icon=":material/notifications_off:"):
            with ui.guard():
                seconds = parse_duration(duration)
                if not seconds:
                    raise AlertError(f"'For' {duration!r} is not a duration; write e.g. 30m, 2h or 1d.")
                silence_id = add_silence(shared.get_store(), config.ruleset, rule, group.strip() or None, seconds, comment, _user())
                _done(f"Silenced {rule}{' for ' + group.strip() if group.strip() else ''} for {format_duration(seconds)} (id {silence_id}).")
    with st.form("unsilence"):
        st.markdown("**End a silence**: by its id, or every active silence of a rule.")
        target = st.text_input("Silence id or rule name", key="unsilence_target")
        if st.form_submit_button("Unsilence", icon=":material/notifications_active:"):
            with ui.guard():
                ended = end_silences(shared.get_store(), target.strip())
                if not ended:
                    raise AlertError(f"No active silence matches '{target.strip()}'; the Silences table lists them.")
                _done(f"Ended {ended} silence{'s' if ended != 1 else ''}.")


def _done(message: str) -> None:
    """Rerun the whole page so the live part above shows the change, and say what was done."""
    st.session_state["alerts_done"] = message
    st.rerun()


def backtest_section(config: queries.AlertConfig) -> None:
    """Replay a rule over history and draw its would-be firings over the timeline."""
    from closewatch.alerts.backtest import backtest

    st.subheader("Backtest a rule")
    span = shared.cached(timespan.span)
    if span.closures == 0:
        ui.empty_state()
        return
    st.caption("Replays the rule over the loaded data with the same state machine; sends and writes nothing. "
               "Empty dates: the whole span.")
    rule = st.selectbox("Rule", [r.name for r in config.ruleset.enabled], key="backtest_rule")
    start, end = ui.time_range(span, "bt_from", "bt_to")
    if not st.button("Backtest", icon=":material/history:", key="run_backtest"):
        return
    first = start or span.first
    last = end or (span.last + timedelta(minutes=1))
    episodes = backtest(shared.get_store(), config.ruleset, first, last, [rule])
    bucket_s, frame = shared.cached(queries.timeline, start, end)
    st.altair_chart(backtest_chart(frame, bucket_s, episodes, last))
    if episodes:
        ui.table(pl.DataFrame([{"rule": e.rule, "group": e.group or "(all)", "pending_at": e.pending_at, "fired_at": e.fired_at,
                                "resolved_at": e.resolved_at, "peak_value": e.peak_value, "notifications": e.notifications}
                               for e in episodes]), "episodes_table")
        st.caption(f"{rule} would have fired {len(episodes)} time(s) between {ui.fmt_time(first)} and {ui.fmt_time(last)} UTC.")
    else:
        st.info(f"{rule} would not have fired between {ui.fmt_time(first)} and {ui.fmt_time(last)} UTC.")


def backtest_chart(frame: pl.DataFrame, bucket_s: int, episodes: list, last: datetime) -> alt.LayerChart:
    """Closures per bucket by severity, with each would-be firing as a shaded band."""
    bars = alt.Chart(frame).mark_bar().encode(
        x=ui.time_axis(bucket_s),
        y=alt.Y("sum(closures):Q", title="closures"),
        color=alt.Color("severity:N", scale=alt.Scale(domain=list(ui.SEVERITY_COLORS), range=list(ui.SEVERITY_COLORS.values()))),
    )
    if not episodes:
        return bars.properties(height=280)
    bands = pl.DataFrame({
        "fired": [e.fired_at for e in episodes],
        "resolved": [e.resolved_at or last for e in episodes],
        "group": [e.group or "(all)" for e in episodes],
    })
    shade = alt.Chart(bands).mark_rect(opacity=0.25, color="#e45756").encode(
        x=alt.X("fired:T", scale=alt.Scale(type="utc")), x2="resolved:T", tooltip=["group:N", alt.Tooltip("fired:T", format="%Y-%m-%d %H:%M"),
                                                alt.Tooltip("resolved:T", format="%Y-%m-%d %H:%M")])
    return (shade + bars).properties(height=280)


def _user() -> str:
    try:
        return f"{getpass.getuser()} (dashboard)"
    except (KeyError, OSError):
        return "dashboard"


def main() -> None:
    st.title("Alerts")
    if "alerts_done" in st.session_state:
        st.success(st.session_state.pop("alerts_done"), icon=":material/check_circle:")
    try:
        config = queries.alert_config()
    except ClosewatchError as error:  # the state and the scheduler's health are still worth showing
        ui.show_error(str(error))
        config = None

    @st.fragment(run_every=refresh_seconds())
    def live_part() -> None:
        with ui.guard():
            live(config)

    live_part()
    if config is None:
        st.caption("Silences and backtests need a valid rules file.")
        return
    with st.expander("Silence or unsilence"):
        silence_form(config)
    with ui.guard():
        backtest_section(config)


with ui.guard():
    main()
