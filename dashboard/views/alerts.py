"""Alerts: the rules and their current state, history, silences, scheduler health, "Why?", backtests and compares.

The live part (states, history, silences, health) is a fragment that reruns
on its own every few seconds (``[dashboard] alerts_refresh`` in
closewatch.toml, default 10 s), so an on-call person can leave it open.
Silences go through ``alerts.silences`` exactly like `closewatch alerts silence`.
"""

from __future__ import annotations

import getpass
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl
import streamlit as st

from closewatch.durations import parse_time
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
        ui.findings_table(opened, "open_findings_table", plain=True)
    st.page_link(ui.page_path("patterns"), label="Their evidence on the Patterns page", icon=":material/troubleshoot:")


def followed_logs(followed: pl.DataFrame) -> None:
    """The live logs the scheduler, `closewatch follow` or `ingest --follow` read: how far, how fast, how late."""
    st.subheader("Followed logs")
    if followed.height == 0:
        st.caption("No log is followed: name live files in [scheduler] follow, run `closewatch follow GLOB`, "
                   "or pipe a stream into `closewatch ingest --follow -`.")
        return
    if followed.filter(pl.col("error").is_not_null()).height:
        st.warning("A followed log has a problem; see its error.")
    ui.plain_table(followed, "followed_table", column_config={
        "read_offset": st.column_config.NumberColumn("offset (bytes)", format=ui.COUNT_FORMAT),
        "lag_bytes": st.column_config.NumberColumn("lag (bytes)", format=ui.COUNT_FORMAT, help="Written but not yet stored."),
        "lines_per_s": st.column_config.NumberColumn("lines/s", format="%.1f"),
        "last_close_at": st.column_config.DatetimeColumn("last line's close (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "close_age_s": st.column_config.NumberColumn("lag (s)", format="%.0f", help="How long ago the newest close read happened."),
        "error": st.column_config.TextColumn(width="large"),
    })


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
        ui.plain_table(rules_table(config, alerts.states, opened), "rules_table",
                 column_config={"description": st.column_config.TextColumn(width="large"),
                                "open_findings": st.column_config.NumberColumn("open findings", format=ui.COUNT_FORMAT)})

    st.subheader("Current state")
    active = alerts.states.filter(pl.col("state").is_in(["firing", "pending"]))
    if active.height and config is not None and config.ruleset.inhibit:
        active = queries.held_back(shared.get_store(), active, config.ruleset)  # groups held back by [[inhibit]] say by what
    if active.height:
        ui.plain_table(active, "states_table")
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
    ui.plain_table(health, "health_table")
    followed_logs(alerts.followed)

    st.subheader("Silences")
    if alerts.silences.height:
        ui.plain_table(alerts.silences, "silences_table")
    else:
        st.caption("No active silences.")

    st.subheader("History")
    if alerts.history.height:
        ui.plain_table(alerts.history, "history_table", max_height=500)
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
    """Replay a rule over history (and, with edited rules, compare) and draw its would-be firings over the timeline."""
    from closewatch.alerts.backtest import backtest
    from closewatch.alerts.compare import compare

    st.subheader("Backtest a rule")
    span = shared.cached(timespan.span)
    if span.closures == 0:
        ui.empty_state()
        return
    st.caption("Replays the rule over the loaded data with the same state machine; sends and writes nothing. "
               "Empty dates: the whole span.")
    rule = st.selectbox("Rule", [r.name for r in config.ruleset.enabled], key="backtest_rule")
    start, end = ui.time_range(span, "bt_from", "bt_to")
    with st.expander("Compare with edited rules"):
        st.caption("Edit a bound, a window or a `for` here (nothing is saved): the backtest then replays both the rules "
                   "in force and the edited ones, and draws both as bands on the same timeline.")
        edited = st.text_area("Edited rules (TOML)", value=_rules_text(config), height=260, max_chars=MAX_RULES_CHARS,
                              key="bt_candidate")
    if st.button("Backtest", icon=":material/history:", key="run_backtest"):
        first = start or span.first
        last = end or (span.last + timedelta(minutes=1))
        candidate = _candidate_rules(config, edited)
        if candidate is None:
            result = BacktestResult(rule, first, last, backtest(shared.get_store(), config.ruleset, first, last, [rule]), start, end)
        else:
            comparison = compare(shared.get_store(), candidate, config.ruleset, first, last, [rule])
            result = BacktestResult(rule, first, last, comparison.old, start, end, comparison, candidate)
        st.session_state["backtest_result"] = result
    result = st.session_state.get("backtest_result")
    if result is not None and result.rule == rule:
        show_backtest(config, result)


#: The longest rules text the page takes to compare (the shipped defaults are about 6 kB).
MAX_RULES_CHARS = 200_000


@dataclass
class BacktestResult:
    """A backtest (or compare) kept across reruns, so that picking a band to explain does not lose it."""

    rule: str
    first: datetime
    last: datetime
    episodes: list
    start: datetime | None
    end: datetime | None
    comparison: Any = None  # alerts.compare.Comparison, when edited rules were compared
    candidate: Any = None  # the edited RuleSet


def _rules_text(config: queries.AlertConfig) -> str:
    try:
        return Path(config.rules_path).read_text(encoding="utf-8")[:MAX_RULES_CHARS]
    except OSError:
        return ""


def _candidate_rules(config: queries.AlertConfig, text: str) -> Any:
    """The edited rules as a RuleSet, or None when they are the rules in force; a broken edit raises one sentence."""
    from closewatch.alerts.rules import load_rules

    if not text.strip() or text == _rules_text(config):
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "edited rules.toml"
        path.write_text(text, encoding="utf-8")
        return load_rules(path, config.engine.step_s)


def show_backtest(config: queries.AlertConfig, result: BacktestResult) -> None:
    """The chart, the firings (or the paired firings of a compare), and a "Why?" for any band."""
    bucket_s, frame = shared.cached(queries.timeline, result.start, result.end)
    comparison = result.comparison
    st.altair_chart(backtest_chart(frame, bucket_s, result.episodes, result.last,
                                   comparison.new if comparison is not None else None))
    when = f"between {ui.fmt_time(result.first)} and {ui.fmt_time(result.last)} UTC"
    if comparison is not None:
        st.caption("Bands: the upper half (blue) are the firings of the rules in force, the lower half (red) those of the "
                   "edited rules, on the same timeline; hover a band for its group and times.")
        compare_tables(comparison, result.rule, when)
    elif result.episodes:
        ui.table(pl.DataFrame([{"rule": e.rule, "group": e.group or "(all)", "pending_at": e.pending_at, "fired_at": e.fired_at,
                                "resolved_at": e.resolved_at, "peak_value": e.peak_value, "notifications": e.notifications}
                               for e in result.episodes]), "episodes_table")
        st.caption(f"{result.rule} would have fired {len(result.episodes)} time(s) {when}.")
    else:
        st.info(f"{result.rule} would not have fired {when}.")
    band_why(config, result)


def compare_tables(comparison: Any, rule: str, when: str) -> None:
    """Every firing of either rule set with its change, and the rule's notifications per week and time firing, before and after."""
    changes = pl.DataFrame([c.as_dict() for c in comparison.changes],
                           schema={"rule": pl.String, "group": pl.String, "change": pl.String, "old_fired_at": pl.String,
                                   "new_fired_at": pl.String, "old_resolved_at": pl.String, "new_resolved_at": pl.String,
                                   "old_notifications": pl.Int64, "new_notifications": pl.Int64})
    if changes.height:
        ui.table(changes, "compare_table")
    for summary in comparison.summary:
        counts = summary.counts
        st.caption(f"{summary.rule} {when}: {counts['same']} same, {counts['moved']} moved, {counts['only_old']} lost by the "
                   f"edit (only_old), {counts['only_new']} added (only_new); notifications per week "
                   f"{summary.old_notifications_per_week:.1f} now, {summary.new_notifications_per_week:.1f} edited; time firing "
                   f"{ui.fmt_duration(summary.old_firing_s)} now, {ui.fmt_duration(summary.new_firing_s)} edited.")
    if not comparison.summary:
        st.info(f"Neither the rules in force nor the edited rules would have fired {rule} {when}.")


def backtest_chart(frame: pl.DataFrame, bucket_s: int, episodes: list, last: datetime, edited: list | None = None) -> alt.LayerChart:
    """Closures per bucket by severity, with each would-be firing as a shaded band.

    With ``edited`` (a compare), the firings of the rules in force fill the
    upper half of the chart and those of the edited rules the lower half, on
    the same timeline.
    """
    bars = alt.Chart(frame).mark_bar().encode(
        x=ui.time_axis(bucket_s),
        y=alt.Y("sum(closures):Q", title="closures"),
        color=alt.Color("severity:N", scale=alt.Scale(domain=list(ui.SEVERITY_COLORS), range=list(ui.SEVERITY_COLORS.values()))),
    )
    height = 280
    layers: list[Any] = []
    lanes = [(episodes, "rules in force", "#e45756", (0, height))] if edited is None else [
        (episodes, "rules in force", "#4c78a8", (0, height // 2)), (edited, "edited rules", "#e45756", (height // 2, height))]
    for found, name, color, (top, bottom) in lanes:
        if not found:
            continue
        bands = pl.DataFrame({
            "fired": [e.fired_at for e in found],
            "resolved": [e.resolved_at or last for e in found],
            "group": [e.group or "(all)" for e in found],
            "rules": [name] * len(found),
        })
        layers.append(alt.Chart(bands).mark_rect(opacity=0.3, color=color).encode(
            x=alt.X("fired:T", scale=alt.Scale(type="utc")), x2="resolved:T", y=alt.value(top), y2=alt.value(bottom),
            tooltip=["rules:N", "group:N", alt.Tooltip("fired:T", format="%Y-%m-%d %H:%M"),
                     alt.Tooltip("resolved:T", format="%Y-%m-%d %H:%M")]))
    if not layers:
        return bars.properties(height=height)
    return alt.layer(*layers, bars).properties(height=height)


def band_why(config: queries.AlertConfig, result: BacktestResult) -> None:
    """Pick a band: each evaluation time around it explained (value, bound, state, reason), as `alerts explain` does."""
    bands = [("rules in force", config.ruleset, e) for e in result.episodes]
    if result.comparison is not None:
        bands += [("edited rules", result.candidate, e) for e in result.comparison.new]
    if not bands:
        return
    labels = [f"{name}: {e.group or '(all)'} fired {ui.fmt_time(e.fired_at)}, resolved {ui.fmt_time(e.resolved_at)}"
              for name, _, e in bands]
    choice = st.selectbox("Why? Pick a band", ["-"] + labels, key="band_why")
    if choice == "-":
        return
    _, ruleset, episode = bands[labels.index(choice)]
    rule = ruleset.rule(episode.rule)
    step = timedelta(seconds=rule.every_s)
    begin = (episode.pending_at or episode.fired_at) - 2 * step
    finish = min(episode.resolved_at or result.last, begin + WHY_TIMES * step)
    show_explanation(ruleset, episode.rule, episode.group or None, begin, finish, f"why_band_{labels.index(choice)}")


#: Evaluation times a "Why?" shows at most (the CLI's `alerts explain --from --to` has no such limit).
WHY_TIMES = 240


def show_explanation(ruleset: Any, rule: str, group: str | None, start: datetime, end: datetime | None, key: str) -> None:
    """The rows of an explanation, the closures counted where the rule fired, with links to the Explorer.

    An explanation replays up to a day of warm-up, so it is kept in the session
    (per table, rule, group and range) and the page's other reruns redraw it.
    """
    from closewatch.alerts.explain import explain

    memo = st.session_state.setdefault("explanations", {})
    asked = (key, id(ruleset), rule, group, start, end, shared.data_token(shared.get_store()))
    if memo.get(key, (None,))[0] != asked:
        memo[key] = (asked, explain(shared.get_store(), ruleset, rule, start, end, group))
    explained = memo[key][1]
    if not explained.steps:
        st.info(f"{rule}: no group held or changed state in this range.")
        return
    frame = pl.DataFrame([{"eval_time": s.eval_time, "group": s.group, "value": s.value, "bound": s.bound,
                           "state": f"{s.state_before} → {s.state_after}", "notified": s.notified, "reason": s.reason}
                          for s in explained.steps],
                         schema={"eval_time": pl.Datetime("us", "UTC"), "group": pl.String, "value": pl.Float64,
                                 "bound": pl.Float64, "state": pl.String, "notified": pl.Boolean, "reason": pl.String})
    ui.table(frame, key, column_config={"reason": st.column_config.TextColumn(width="large")})
    for note in explained.notes:
        st.caption(note)
    shown = next((s for s in explained.steps if s.sample and s.outcome == "fired"), None) or next(
        (s for s in explained.steps if s.sample), None)
    if shown is not None:
        st.caption(f"Closures counted at {ui.fmt_time(shown.eval_time)} UTC for {shown.group or 'all'} (newest first):")
        for closure in shown.sample:
            ui.explorer_link(f"{closure['ts'][:19].replace('T', ' ')} · {closure['client_id']} · {closure['close_code']} · "
                             f"{(closure['close_reason'] or closure['category'] or '')[:80]}",
                             event=closure["event_id"], at=closure["link"].rsplit("at=", 1)[1])


def why_section(config: queries.AlertConfig) -> None:
    """"Why?" for each pending or firing group, or for any rule, group and moment (also where nothing fired)."""
    st.subheader("Why?")
    st.caption("Replays the stored closures through the same conditions and state machine as live evaluation and says, "
               "for each evaluation time, the value and the bound, the state before and after, and why a notification "
               "was or was not sent (`closewatch alerts explain`).")
    alerts = queries.alert_data(shared.get_store())
    active = alerts.states.filter(pl.col("state").is_in(["firing", "pending"])) if alerts.available and alerts.states.height else pl.DataFrame()
    rows = list(active.iter_rows(named=True)) if active.height else []
    other = "Another rule, group or moment"
    labels = [f"{r['rule']} · {r['group'] or '(all)'} ({r['state']})" for r in rows]
    choice = st.selectbox("Group", labels + [other], key="why_group_choice")
    if choice != other:
        row = rows[labels.index(choice)]
        rule = config.ruleset.rule(row["rule"])
        if rule is None:
            st.info(f"{row['rule']} is no longer in the rules file.")
            return
        until = row["evaluated_to"] or datetime.now(UTC)
        step = timedelta(seconds=rule.every_s)
        since = max((row["pending_since"] or row["fired_at"] or until) - 2 * step, until - WHY_TIMES * step)
        asked = ("group", rule.name, row["group"] or None, since, until)
    else:
        left, middle, right = st.columns(3)
        name = left.selectbox("Rule", [r.name for r in config.ruleset.rules], key="why_rule")
        group = middle.text_input("Group (optional)", key="why_group", help="'client_id=acme', or just 'acme'; empty: every group.")
        moment = right.text_input("At (UTC)", key="why_at", help="e.g. 2024-05-03 14:05, or 2h (ago); empty: the newest closure.")
        asked = ("moment", name, group.strip() or None, moment.strip(), None)
    if st.button("Why?", icon=":material/help:", key="run_why"):
        st.session_state["why_asked"] = asked
    if st.session_state.get("why_asked") != asked:
        return
    _, name, group_key, since, until = asked
    if isinstance(since, str):  # a moment typed by hand: empty is the newest closure
        from closewatch.alerts.explain import newest_time

        since = parse_time(since, "At") if since else newest_time(shared.get_store())
    show_explanation(config.ruleset, name, group_key, since, until, "why_table")


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
    if not tools_open():
        return
    with st.expander("Silence or unsilence"):
        silence_form(config)
    with ui.guard():
        why_section(config)
    with ui.guard():
        backtest_section(config)


#: The query parameters that open the tools by themselves: a link to a backtest's range.
_TOOL_PARAMETERS = ("bt_from", "bt_to")


def tools_open() -> bool:
    """Whether to draw the tools (silence, why, backtest): a toggle, kept in the page's address.

    They are closed on a first view: their forms, selects, date pickers and
    text area load the browser's largest widget code, 0.3-0.8 s of a cold
    view of this page in Chromium (issue 16). A link to a backtest's range
    opens them.
    """
    linked = any(name in st.query_params for name in _TOOL_PARAMETERS)
    return st.toggle("Silence, explain or backtest a rule", value=linked, key="tools", bind="query-params",
                     help="Silence a rule or a group, ask why a rule fired (or did not), replay a rule over history.")


with ui.guard():
    main()
