"""Alert commands: the `alerts` group (run, status, history, silence, silences, unsilence, check,
backtest, noise, explain, outbox, deliver) and `scheduler`."""

from __future__ import annotations

import getpass
import json
import logging
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from closewatch.cli.kit import OUTPUT_FORMATS, db_option, err_console, existing_store, get_settings, get_store, print_frame
from closewatch.durations import format_duration, parse_duration, parse_time

if TYPE_CHECKING:  # every command starts without the settings' pydantic models until it reads them
    from closewatch.settings import Settings

RULES_HELP = "The rules file (default: `rules` under [alerts] in closewatch.toml, else ./alerts.toml, else the shipped defaults)."


def rules_option(command):
    return click.option("--rules", "rules_path", type=click.Path(dir_okay=False), help=RULES_HELP)(command)


@dataclass
class _Context:
    store: object
    rules_path: Path
    engine: object
    settings: Settings

    def ruleset(self):
        from closewatch.alerts.rules import load_rules

        return load_rules(self.rules_path, self.engine.step_s)


def _context(ctx: click.Context, rules_path: str | None, open_store=existing_store) -> _Context:
    from closewatch.jobs.alerting import engine_settings, rules_path as resolve_rules

    settings = get_settings(ctx)
    return _Context(open_store(ctx, settings), resolve_rules(settings, rules_path), engine_settings(settings), settings)


@contextmanager
def _stop_on_signals():
    """An event set by SIGTERM or SIGINT while a delivery runs: it stops within seconds and releases unsent rows."""
    stop = threading.Event()

    def handler(signum, _frame) -> None:
        err_console.print(f"{signal.Signals(signum).name}: stopping the delivery; unsent notifications stay pending.", highlight=False)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@click.group(name="alerts")
def alerts() -> None:
    """Alert rules: evaluate them, see their state and history, silence them, backtest them.

    Rules live in a TOML file (see docs/alerts.md); without one, the shipped
    defaults apply. `closewatch scheduler` evaluates them on a schedule.

    \b
    Example:
        closewatch alerts check --rules alerts.toml
        closewatch alerts run
        closewatch alerts backtest --from 2024-05-01 --to 2024-05-08 --format json
    """


@alerts.command()
@rules_option
@click.option("--no-deliver", is_flag=True, help="Only queue notifications in the outbox; the scheduler (or `alerts deliver`) sends them.")
@db_option
@click.pass_context
def run(ctx: click.Context, rules_path: str | None, no_deliver: bool) -> None:
    """Evaluate every rule once now, from its watermark up to the newest data, then deliver notifications.

    Each evaluation time is evaluated once: running it again right away does
    nothing new, and after a pause the missed times are caught up.

    \b
    Example:
        closewatch alerts run
        closewatch alerts run --rules alerts.toml --no-deliver
    """
    from closewatch.alerts.evaluation import evaluate
    from closewatch.alerts.outbox import deliver
    from closewatch.alerts.state import status

    c = _context(ctx, rules_path)
    ruleset = c.ruleset()
    for warning in ruleset.warnings:
        err_console.print(f"warning: {warning}", style="yellow", highlight=False, markup=False)
    report = evaluate(c.store, ruleset, c.engine)
    console = Console()
    console.print(report.summary() + ".", highlight=False, soft_wrap=True)
    for failure in report.failures:
        err_console.print(failure, style="red", highlight=False, markup=False)
    if not no_deliver:
        with _stop_on_signals() as stop:
            delivered = deliver(c.store, ruleset, c.engine, stop=stop)
        console.print(f"Notifications: {delivered.summary()}.", highlight=False, markup=False, soft_wrap=True)
    states = status(c.store, ruleset)
    if states.height:
        held = ["inhibited_by"] if states["inhibited_by"].is_not_null().any() else []
        print_frame(states.select("rule", "group", "state", "value", "fired_at", *held), "table")
    if report.failures:
        ctx.exit(1)


@alerts.command()
@click.option("--all", "all_states", is_flag=True, help="Include inactive and resolved groups.")
@rules_option
@click.option("--format", "output", type=OUTPUT_FORMATS, default="table", show_default=True)
@db_option
@click.pass_context
def status(ctx: click.Context, all_states: bool, rules_path: str | None, output: str) -> None:
    """Show pending and firing alerts per rule and group, with each rule's watermark.

    `inhibited_by` names the firing alert that keeps a group from notifying
    ([[inhibit]] in the rules file); `detail` gives both numbers of a rate
    per 1,000 sessions, or the clients a "clients" rule counted.

    \b
    Example:
        closewatch alerts status --all --format json
    """
    from closewatch.alerts.errors import RulesInvalid
    from closewatch.alerts.state import current_states, status as annotated

    c = _context(ctx, rules_path)
    try:
        ruleset = c.ruleset()
    except RulesInvalid as error:  # the states are still worth seeing; only the annotations need the rules
        err_console.print(f"warning: {error} Showing the states without inhibited_by and detail.", style="yellow",
                          highlight=False, markup=False, soft_wrap=True)
        print_frame(current_states(c.store, all_states), output)
        return
    print_frame(annotated(c.store, ruleset, all_states), output)


@alerts.command()
@click.option("--rule", help="Only this rule.")
@click.option("--since", help="Only transitions at or after this time (ISO, or a duration ago like 24h).")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--format", "output", type=OUTPUT_FORMATS, default="table", show_default=True)
@db_option
@click.pass_context
def history(ctx: click.Context, rule: str | None, since: str | None, limit: int, output: str) -> None:
    """Show alert state transitions (pending, firing, resolved), newest first.

    \b
    Example:
        closewatch alerts history --rule auth-failures --since 7d
    """
    from closewatch.alerts.state import history as read_history

    print_frame(read_history(existing_store(ctx), rule, parse_time(since, "--since") if since else None, limit), output)


@alerts.command()
@click.argument("rule")
@click.option("--group", help="Only this group: 'client_id=acme', or just 'acme' for a one-column group. Default: every group.")
@click.option("--for", "duration", required=True, help="How long, e.g. 30m, 2h, 1d. The silence ends on its own.")
@click.option("--comment", default="", help="Why (shown in `alerts silences`).")
@rules_option
@db_option
@click.pass_context
def silence(ctx: click.Context, rule: str, group: str | None, duration: str, comment: str, rules_path: str | None) -> None:
    """Stop notifications of a rule (or one of its groups) for a while; states still change.

    \b
    Example:
        closewatch alerts silence disconnect-storm --group call-center-eu --for 2h --comment "ISP maintenance"
    """
    from closewatch.alerts.silences import add_silence
    from closewatch.alerts.errors import AlertError

    seconds = parse_duration(duration)
    if not seconds:
        raise AlertError(f"--for {duration!r} is not a duration; write e.g. 30m, 2h or 1d.")
    c = _context(ctx, rules_path)
    silence_id = add_silence(c.store, c.ruleset(), rule, group, seconds, comment, _user())
    Console().print(f"Silenced {rule}{' for ' + group if group else ''} for {format_duration(seconds)} (id {silence_id}).", highlight=False, markup=False, soft_wrap=True)


@alerts.command()
@click.option("--all", "include_ended", is_flag=True, help="Include expired and ended silences.")
@click.option("--format", "output", type=OUTPUT_FORMATS, default="table", show_default=True)
@db_option
@click.pass_context
def silences(ctx: click.Context, include_ended: bool, output: str) -> None:
    """List active silences.

    \b
    Example:
        closewatch alerts silences --all
    """
    from closewatch.alerts.silences import list_silences

    print_frame(list_silences(existing_store(ctx), include_ended), output)


@alerts.command()
@click.argument("target")
@click.option("--group", help="With a rule name: only the silence of this group.")
@db_option
@click.pass_context
def unsilence(ctx: click.Context, target: str, group: str | None) -> None:
    """End a silence now: by its id, or every active silence of a rule.

    \b
    Example:
        closewatch alerts unsilence 3f9a1c2e
        closewatch alerts unsilence disconnect-storm
    """
    from closewatch.alerts.silences import end_silences
    from closewatch.alerts.errors import AlertError

    ended = end_silences(existing_store(ctx), target, group)
    if not ended:
        raise AlertError(f"No active silence matches '{target}'{' and group ' + group if group else ''}; see `closewatch alerts silences`.")
    Console().print(f"Ended {ended} silence{'s' if ended != 1 else ''}.")


@alerts.command()
@rules_option
@click.pass_context
def check(ctx: click.Context, rules_path: str | None) -> None:
    """Validate a rules file and the [alerts] settings; list every problem with its rule, line and field.

    Exit status 0 when the file is valid (warnings, such as an unset
    environment variable, are shown but do not fail), 1 otherwise.

    \b
    Example:
        closewatch alerts check --rules alerts.toml
    """
    from closewatch.alerts.rules import check_rules
    from closewatch.jobs.alerting import rules_path as resolve_rules

    settings = get_settings(ctx)
    path = resolve_rules(settings, rules_path)
    ruleset, problems = check_rules(path, settings.alerts.step_s)
    problems = problems or ruleset.env_problems
    console = Console()
    if problems:
        for problem in problems:
            err_console.print(f"{path}: {problem}", highlight=False, markup=False, soft_wrap=True)
        err_console.print(f"[bold red]{len(problems)} problem{'s' if len(problems) != 1 else ''}[/] in {path}.", highlight=False)
        ctx.exit(1)
    for warning in ruleset.warnings:
        err_console.print(f"warning: {warning}", style="yellow", highlight=False, markup=False, soft_wrap=True)
    kinds = ", ".join(f"{sum(r.kind == k for r in ruleset.rules)} {k}" for k in ("threshold", "pattern", "absence", "sql") if any(r.kind == k for r in ruleset.rules))
    entries = len(ruleset.inhibit)
    inhibit = f", {entries} inhibit entr{'y' if entries == 1 else 'ies'}" if entries else ""
    console.print(f"{path}: OK, {len(ruleset.rules)} rules ({kinds}){inhibit}, channels: {', '.join(sorted(ruleset.channels))}.",
                  highlight=False, markup=False, soft_wrap=True)


@alerts.command()
@click.option("--from", "start", required=True, help="Start of the replay: ISO time (UTC unless it says otherwise) or a duration ago like 7d.")
@click.option("--to", "end", required=True, help="End of the replay, same forms.")
@click.option("--rule", "rule_names", multiple=True, help="Only this rule (repeatable).")
@rules_option
@click.option("--compare", "old_path", type=click.Path(dir_okay=False),
              help="Another rules file (the old rules) to compare with --rules (the new): which firings the change loses, adds or moves.")
@click.option("--format", "output", type=OUTPUT_FORMATS, default="table", show_default=True,
              help="json: an array of {rule, group, pending_at, fired_at, resolved_at, peak_value, notifications}; "
                   "with --compare, of {rule, group, change, old_fired_at, new_fired_at, old_resolved_at, new_resolved_at, ...}.")
@db_option
@click.pass_context
def backtest(ctx: click.Context, start: str, end: str, rule_names: tuple[str, ...], rules_path: str | None,
             old_path: str | None, output: str) -> None:
    """Replay stored history through the rules: when each rule and group would have fired and resolved.

    Uses the same conditions and state machine as live evaluation; sends
    nothing and writes nothing. Pattern rules need detections for the range
    (run `closewatch analyze` first).

    With --compare OLD.toml, replays both rule sets over the same history
    and pairs their firings per rule and group: only_old (the new rules lose
    it), only_new (they add it), same, or moved (both fire, at other times);
    then, per rule, notifications per week and time spent firing, before and
    after.

    \b
    Example:
        closewatch alerts backtest --from 2024-05-01 --to 2024-05-08
        closewatch alerts backtest --from 7d --to 0s --rule auth-failures --format json
        closewatch alerts backtest --rules new.toml --compare alerts.toml --from 7d --to 0s
    """
    from closewatch.alerts.backtest import backtest as replay

    c = _context(ctx, rules_path)
    if old_path is not None:
        _compare(c, Path(old_path), parse_time(start, "--from"), parse_time(end, "--to"), list(rule_names) or None, output)
        return
    episodes = replay(c.store, c.ruleset(), parse_time(start, "--from"), parse_time(end, "--to"), list(rule_names) or None)
    if output == "json":
        sys.stdout.write(json.dumps([e.as_dict() for e in episodes], indent=None) + "\n")
        return
    import polars as pl

    schema = {"rule": pl.String, "group": pl.String, "pending_at": pl.String, "fired_at": pl.String,
              "resolved_at": pl.String, "peak_value": pl.Float64, "notifications": pl.Int64}
    print_frame(pl.DataFrame([e.as_dict() for e in episodes], schema=schema), output)


def _compare(c: _Context, old_path: Path, start, end, rule_names: list[str] | None, output: str) -> None:
    """backtest --compare: the paired firings (JSON: one row per firing), then the per-rule summary."""
    import polars as pl

    from closewatch.alerts.compare import compare
    from closewatch.alerts.rules import load_rules

    old = load_rules(old_path, c.engine.step_s)
    result = compare(c.store, c.ruleset(), old, start, end, rule_names)
    rows = [change.as_dict() for change in result.changes]
    if output == "json":
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    schema = {"rule": pl.String, "group": pl.String, "change": pl.String, "old_fired_at": pl.String, "new_fired_at": pl.String,
              "old_resolved_at": pl.String, "new_resolved_at": pl.String, "old_notifications": pl.Int64, "new_notifications": pl.Int64}
    frame = pl.DataFrame(rows, schema=schema)
    if output == "table":  # minutes in UTC are what a person compares; csv keeps the full ISO times
        times = ["old_fired_at", "new_fired_at", "old_resolved_at", "new_resolved_at"]
        frame = frame.with_columns(pl.col(times).str.slice(0, 16).str.replace("T", " "))
    print_frame(frame, output)
    if output == "table":
        summary = [{"rule": s.rule, "only_old": s.counts["only_old"], "only_new": s.counts["only_new"], "same": s.counts["same"],
                    "moved": s.counts["moved"], "notifications/week old": round(s.old_notifications_per_week, 1),
                    "notifications/week new": round(s.new_notifications_per_week, 1), "firing old": format_duration(s.old_firing_s),
                    "firing new": format_duration(s.new_firing_s)} for s in result.summary]
        if summary:
            print_frame(pl.DataFrame(summary), output)


@alerts.command()
@click.option("--from", "start", required=True, help="Start of the range: ISO time (UTC unless it says otherwise) or a duration ago like 7d.")
@click.option("--to", "end", required=True, help="End of the range, same forms.")
@click.option("--target", help="A budget of notifications, like 5/w (or 1/d, 10/2w): sweep each rule's bound for the one that meets it.")
@click.option("--rule", "rule_names", multiple=True, help="Only this rule (repeatable).")
@rules_option
@click.option("--format", "output", type=OUTPUT_FORMATS, default="table", show_default=True,
              help="json: an array of one object per rule (the table's columns, and `missed`: the detections the suggested bound misses).")
@db_option
@click.pass_context
def noise(ctx: click.Context, start: str, end: str, target: str | None, rule_names: tuple[str, ...], rules_path: str | None,
          output: str) -> None:
    """How noisy each rule would have been over a stored range, and (with --target) the bound that meets a budget.

    Per rule, from backtests (nothing is written or sent): firings and
    notifications per week, median and longest firing, flaps (fired again
    within an hour of resolving) and the share of the time firing. With
    --target, each threshold rule's `value` (a pattern rule's `min_count`) is
    swept: the most sensitive bound whose notifications per week stay within
    the target, the count a backtest with it gives, and the stored detections
    it would have missed.

    \b
    Example:
        closewatch alerts noise --from 28d --to 0s
        closewatch alerts noise --from 2024-05-01 --to 2024-05-29 --target 5/w --rule disconnect-storm
    """
    import polars as pl

    from closewatch.alerts.noise import noise_report, parse_target

    c = _context(ctx, rules_path)
    per_week = parse_target(target) if target else None
    rows = [row.as_dict() for row in noise_report(c.store, c.ruleset(), parse_time(start, "--from"), parse_time(end, "--to"),
                                                  per_week, list(rule_names) or None)]
    if output == "json":
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    shown = [{_NOISE_HEADERS.get(k, k) if output == "table" else k: v for k, v in row.items()
              if k != "missed" and (per_week is not None or k in _NOISE_PLAIN)} for row in rows]
    print_frame(pl.DataFrame(shown, infer_schema_length=None), output)
    for row in rows if output == "table" else []:
        for found in row["missed"]:
            Console().print(f"{row['rule']} with {row['suggested_bound']} would miss: {found['pattern']} {found['key']} "
                            f"{found['window_start']} to {found['window_end']} ({found['count']})", highlight=False, markup=False,
                            soft_wrap=True)


#: Short headers for the terminal table (csv and json keep the keys).
_NOISE_HEADERS = {"notifications": "notified", "firings_per_week": "firings/w", "notifications_per_week": "notified/w",
                  "median_firing": "median", "longest_firing": "longest", "firing_share": "firing share",
                  "suggested_bound": "suggested", "suggested_notifications_per_week": "suggested: notified/w",
                  "lost_firings": "lost firings", "missed_detections": "missed findings"}
#: The noise table's columns without --target.
_NOISE_PLAIN = ("rule", "firings", "notifications", "firings_per_week", "notifications_per_week", "median_firing",
                "longest_firing", "flaps", "firing_share")


@alerts.command()
@click.argument("rule")
@click.option("--group", help="One group: client_id=acme, or just acme for a rule grouped by one column. Default: every group that did something.")
@click.option("--at", "at", help="One moment: ISO time or a duration ago (default: the newest closure). Explains the last evaluation time at or before it.")
@click.option("--from", "start", help="Start of a range to explain, instead of --at.")
@click.option("--to", "end", help="End of the range (with --from).")
@click.option("--warmup", help="How far before the first time the replay starts, to rebuild pending/firing/notified (default: 1d, or longer for long for/keep_firing_for/repeat_interval).")
@click.option("--dashboard-url", default="http://localhost:8501", show_default=True, help="Where the dashboard runs, for the Explorer links of the closures counted.")
@rules_option
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: an array of {eval_time, rule, group, value, bound, holds, state_before, state_after, outcome, reason, notified, silence, sample}.")
@db_option
@click.pass_context
def explain(ctx: click.Context, rule: str, group: str | None, at: str | None, start: str | None, end: str | None,
            warmup: str | None, dashboard_url: str, rules_path: str | None, output: str) -> None:
    """Why RULE fired, or did not: each evaluation time with the value, the bound, the state before and after, and the reason.

    Replays the stored closures through the same conditions and state
    machine as live evaluation (nothing is written or sent), so it answers
    "why did this page me at 14:05" and "why didn't it fire at 14:05" alike.
    Each row that counted closures carries a sample of them with links to
    the dashboard's Explorer.

    \b
    Example:
        closewatch alerts explain disconnect-storm --group acme --at 2024-05-03T14:05
        closewatch alerts explain auth-failures --from 2024-05-03T14:00 --to 2024-05-03T15:00 --format json
    """
    from closewatch.alerts.errors import AlertError
    from closewatch.alerts.explain import explain as replay, newest_time

    if at is not None and (start is not None or end is not None):
        raise AlertError("Give either --at or --from/--to, not both.")
    if (start is None) != (end is None):
        raise AlertError("A range needs both --from and --to (or use --at for one moment).")
    c = _context(ctx, rules_path)
    moment = parse_time(at, "--at") if at is not None else parse_time(start, "--from") if start is not None else newest_time(c.store)
    until = parse_time(end, "--to") if end is not None else None
    warmup_s = parse_duration(warmup) if warmup else None
    if warmup and (warmup_s is None or warmup_s < 0):
        raise AlertError(f"--warmup {warmup!r} is not a duration; use e.g. 6h or 2d.")
    result = replay(c.store, c.ruleset(), rule, moment, until, group, warmup_s)
    base = dashboard_url.rstrip("/") + "/"
    rows = [step.as_dict() for step in result.steps]
    for row in rows:
        for closure in row["sample"]:
            closure["link"] = base + closure["link"]
    if output == "json":
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    _print_explanation(result, rows)


def _print_explanation(result, rows: list[dict]) -> None:
    """The rows as a table, then the closures counted at the first rows that did something, then the notes."""
    import polars as pl

    console = Console()
    if not rows:
        console.print(f"{result.rule}: no group did anything in this range (replayed from {result.replayed_from:%Y-%m-%d %H:%M} UTC); "
                      "--group or --at shows the numbers of quiet times.", highlight=False, markup=False, soft_wrap=True)
    else:
        frame = pl.DataFrame([{"eval_time": r["eval_time"][:16].replace("T", " "), "group": r["group"],
                               "value": None if r["value"] is None else round(r["value"], 4),
                               "bound": r["bound"], "state": f"{r['state_before']} -> {r['state_after']}",
                               "notified": r["notified"], "reason": r["reason"]} for r in rows],
                             schema={"eval_time": pl.String, "group": pl.String, "value": pl.Float64, "bound": pl.Float64,
                                     "state": pl.String, "notified": pl.Boolean, "reason": pl.String})
        print_frame(frame, "table")
    shown = [r for r in rows if r["sample"] and r["outcome"] != "quiet"][:3] or [r for r in rows if r["sample"]][:1]
    for row in shown:
        console.print(f"Closures counted at {row['eval_time'][:16].replace('T', ' ')} for {row['group'] or 'all'} (newest first):",
                      highlight=False, markup=False, soft_wrap=True)
        for closure in row["sample"]:
            console.print(f"  {closure['ts'][:19].replace('T', ' ')}  {closure['client_id']}  {closure['close_code']}  "
                          f"{(closure['close_reason'] or closure['category'] or '')[:60]}  {closure['link']}",
                          highlight=False, markup=False, soft_wrap=True)
    for note in result.notes:
        err_console.print(f"note: {note}", style="yellow", highlight=False, markup=False, soft_wrap=True)


@alerts.command()
@click.option("--status", "status_filter", type=click.Choice(["pending", "delivered"]), help="Only rows in this state.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--format", "output", type=OUTPUT_FORMATS, default="table", show_default=True)
@db_option
@click.pass_context
def outbox(ctx: click.Context, status_filter: str | None, limit: int, output: str) -> None:
    """Show queued and delivered notifications, with attempts and the last error.

    \b
    Example:
        closewatch alerts outbox --status pending
    """
    from closewatch.alerts.outbox import outbox as read_outbox

    print_frame(read_outbox(existing_store(ctx), status_filter, limit), output)


@alerts.command(name="deliver")
@rules_option
@db_option
@click.pass_context
def deliver_command(ctx: click.Context, rules_path: str | None) -> None:
    """Send the notifications that are due now (failed ones wait for their backoff).

    \b
    Example:
        closewatch alerts deliver
    """
    from closewatch.alerts.outbox import deliver

    c = _context(ctx, rules_path)
    with _stop_on_signals() as stop:
        report = deliver(c.store, c.ruleset(), c.engine, stop=stop)
    Console().print(f"Notifications: {report.summary()}.", highlight=False, markup=False, soft_wrap=True)


# -- scheduler ---------------------------------------------------------------------------------


@click.command()
@click.option("--watch", type=click.Path(file_okay=False), help="Ingest new files dropped in this folder (default: `watch` under [scheduler]).")
@click.option("--follow", "follow_globs", multiple=True, metavar="GLOB",
              help="Follow live log files (repeatable; default: `follow` under [scheduler]): their lines are stored every [follow] flush.")
@rules_option
@click.option("--once", is_flag=True, help="Run every job once, in order, and exit (non-zero if one failed).")
@db_option
@click.pass_context
def scheduler(ctx: click.Context, watch: str | None, follow_globs: tuple[str, ...], rules_path: str | None, once: bool) -> None:
    """Run the jobs on a schedule: ingest the watched folder, analyze, evaluate rules, deliver notifications.

    Intervals come from [scheduler] in closewatch.toml (ingest_every,
    analyze_every, evaluate_every, deliver_every, misfire_grace, settle).
    Live log files named by [scheduler] follow (or --follow) are followed
    continuously beside the watched folder, which stays for files dropped
    whole; a close in them is evaluated within a step and a flush.
    The database is opened only while a job works, so the dashboard and the
    CLI can use it alongside. Stops cleanly on Ctrl-C or SIGTERM after the
    running job; every run is recorded in job_runs (view: scheduler_health).

    \b
    Example:
        closewatch scheduler --watch incoming/
        closewatch scheduler --follow '/var/log/voicebot/*.log'
        closewatch --config closewatch.toml scheduler --once
    """
    from closewatch.jobs.scheduler import JobRecorder, Jobs, SchedulerLock, run_forever, run_once
    from closewatch.store import SerialStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    c = _context(ctx, rules_path, open_store=get_store)  # it loads the watched folder, so it may start a database
    settings = c.settings.overriding("scheduler", watch=Path(watch).expanduser() if watch else None,
                                     follow=list(follow_globs) or None)
    c.ruleset()  # a broken rules file stops the start, with every problem named
    store = SerialStore.like(c.store)  # the deliver job runs in a thread of its own
    jobs = Jobs(store, c.rules_path, settings)
    with SchedulerLock(settings.db):
        recorder = JobRecorder(store)
        stale = recorder.interrupted()
        if stale:
            logging.getLogger("closewatch.scheduler").warning("%d job runs were interrupted by an earlier stop", stale)
        if once:
            outcomes = run_once(jobs, recorder)
            if any(outcome != "ok" for outcome in outcomes.values()):
                ctx.exit(1)
            return
        err_console.print(f"closewatch scheduler on {store.path} with rules {c.rules_path}; Ctrl-C stops it.", highlight=False)
        run_forever(jobs, recorder)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
