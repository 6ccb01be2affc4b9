"""The pattern detectors: one small function per pattern, closures in, findings out.

Each detector takes the window's closures as a polars LazyFrame (columns of
``DETECTOR_CLOSURE_SCHEMA``, ``ts`` as naive UTC) and its [section] of thresholds,
and returns a DataFrame of findings with the columns of ``FINDING_SCHEMA``.
Normal closures carry no pattern by themselves: the detectors ignore them in
``closures`` and learn how busy a client was from ``activity`` (closures per
client and minute, ``ACTIVITY_COLUMNS``), which the job counts in DuckDB so
that only the few non-normal closures travel to polars. ``activity_of``
computes the same counts from a full closures frame.
Everything is column expressions, group-bys and rolling windows; nothing runs
Python per closure, so a detector costs about one pass over its categories.

The detection job (``analysis.detection``) reads the closures, runs every
detector, clips the findings to the analysed window, gives them their ids
and stores them. The explanation of a finding is one sentence with the
numbers; its action says what to do about it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from closewatch.analysis.templates import template_expr
from closewatch.analysis.thresholds import Section
from closewatch.vocabulary import Pattern

DETECTOR_CLOSURE_SCHEMA = {
    "event_id": pl.String,
    "ts": pl.Datetime("us"),
    "session_id": pl.String,
    "client_id": pl.String,
    "category": pl.String,
    "close_reason": pl.String,
    "chunk_ms": pl.Float64,
    "audio_rate_ratio": pl.Float64,
    "session_duration_s": pl.Float64,
}

FINDING_SCHEMA = {
    "pattern": pl.String,
    "key": pl.String,
    "window_start": pl.Datetime("us"),
    "window_end": pl.Datetime("us"),
    "count": pl.Int64,
    "severity": pl.String,
    "explanation": pl.String,
    "action": pl.String,
    "evidence": pl.List(pl.String),
}

ACTIVITY_COLUMNS = {"key": pl.String, "minute": pl.Datetime("us"), "closures": pl.UInt32}

#: The key of closures whose log names no client: they are still counted, together.
UNKNOWN_CLIENT = "(unknown client)"

_SECOND = timedelta(seconds=1)


# ---------------------------------------------------------------- shared pieces


def empty_findings() -> pl.DataFrame:
    return pl.DataFrame(schema=FINDING_SCHEMA)


def _client_key() -> pl.Expr:
    return pl.col("client_id").fill_null(UNKNOWN_CLIENT).alias("key")


def activity_of(closures: pl.LazyFrame) -> pl.LazyFrame:
    """Closures (of every category) per client key and minute: the denominators of the share rules."""
    return (
        closures.group_by(_client_key(), minute=pl.col("ts").dt.truncate("1m"))
        .agg(closures=pl.len())
        .select([pl.col(name).cast(dtype) for name, dtype in ACTIVITY_COLUMNS.items()])
    )


def _per_day(activity: pl.LazyFrame) -> pl.LazyFrame:
    """(key, day, sessions): every closure of a client in a UTC day."""
    return activity.group_by("key", day=pl.col("minute").dt.truncate("1d")).agg(sessions=pl.col("closures").sum())


def _findings(frame: pl.LazyFrame, pattern: Pattern) -> pl.DataFrame:
    """Select the finding columns in contract order and types, in a stable order."""
    return (
        frame.with_columns(pattern=pl.lit(str(pattern), dtype=pl.String))
        .select([pl.col(name).cast(dtype) for name, dtype in FINDING_SCHEMA.items()])
        .sort("pattern", "key", "window_start")
        .collect()
    )


def _episodes(events: pl.LazyFrame, by: list[str], window: timedelta, merge_gap: timedelta, min_count: int,
              limit: int, **aggs: pl.Expr) -> pl.LazyFrame:
    """Group each key's events into episodes and keep those with >= min_count within one window.

    Events of a key at most ``merge_gap`` (or ``window``, if longer) apart
    belong to one episode, so a client that misbehaves for hours gets one
    finding, not six. ``peak`` is the most events in any sliding ``window``
    (ending at an event) of the episode; an episode qualifies when its peak
    reaches ``min_count``.
    """
    gap = pl.col("ts").diff().over(by)
    return (
        events.sort([*by, "ts", "event_id"])
        .with_columns(
            _episode=(gap.is_null() | (gap > max(window, merge_gap))).cum_sum(),
            _peak=pl.len().rolling(index_column="ts", period=window).over(by),
        )
        .group_by([*by, "_episode"])
        .agg(
            window_start=pl.col("ts").min(),
            window_end=pl.col("ts").max(),
            count=pl.len(),
            peak=pl.col("_peak").max(),
            evidence=pl.col("event_id").drop_nulls().head(limit),
            **aggs,
        )
        .filter(pl.col("peak") >= min_count)
    )


def _with_share(episodes: pl.LazyFrame, activity: pl.LazyFrame, min_share: float) -> pl.LazyFrame:
    """Add what the client closed during each episode (``client_closures``, ``share``); keep shares >= min_share.

    A pattern is about a client whose sessions fail, not about a few failures
    among a busy client's thousands of good sessions, so counts alone do not
    scale: a threshold right for 3,000 sessions a day fires all day at 3
    million. The client's closures come from ``activity`` by minute.
    """
    spans = episodes.select("_episode", "key", _first=pl.col("window_start").dt.truncate("1m"), _last=pl.col("window_end"))
    totals = (
        spans.join(activity, on="key")
        .filter(pl.col("minute").is_between(pl.col("_first"), pl.col("_last")))
        .group_by("_episode")
        .agg(client_closures=pl.col("closures").sum())
    )
    return (
        episodes.join(totals, on="_episode", how="left")
        .with_columns(client_closures=pl.max_horizontal(pl.col("client_closures").fill_null(0), pl.col("count")))
        .with_columns(share=pl.col("count") / pl.col("client_closures"))
        .filter(pl.col("share") >= min_share)
    )


def _share_text() -> pl.Expr:
    return pl.format("{}% of its closures", _whole(pl.col("share") * 100))


def _earliest_ids(limit: int) -> pl.Expr:
    """The event ids of a group's first closures, in time order (deterministic evidence).

    ``bottom_k_by`` selects without sorting the whole group, which matters
    for the big groups of the share and spike rules.
    """
    return pl.col("event_id").bottom_k_by([pl.col("ts"), pl.col("event_id")], limit).drop_nulls()


def _most_common(column: str) -> pl.Expr:
    """The most frequent value of a group with its count, as a struct {column, count}.

    Not ``mode().sort().first()`` or ``min()``: in polars 2.1 a string
    aggregated that way can make a later ``pl.format`` panic ("assertion
    failed: i < self.len()", intermittently); ``value_counts`` is safe.
    """
    return pl.col(column).value_counts(sort=True).first()


def _span(start: str = "window_start", end: str = "window_end") -> pl.Expr:
    """A window's length as people say it: '40 s', '12 min', '3.5 h', '2.0 days'."""
    seconds = (pl.col(end) - pl.col(start)).dt.total_seconds(fractional=True)
    return (
        pl.when(seconds < 120).then(pl.format("{} s", seconds.round(0).cast(pl.Int64)))
        .when(seconds < 3600).then(pl.format("{} min", (seconds / 60).round(0).cast(pl.Int64)))
        .when(seconds < 172800).then(pl.format("{} h", _number(seconds / 3600)))
        .otherwise(pl.format("{} days", _number(seconds / 86400)))
    )


def _number(expr: pl.Expr) -> pl.Expr:
    """A number with at most one decimal, and none when it is whole: '3', '2.5'."""
    rounded = expr.round(1)
    return pl.when(rounded == rounded.round(0)).then(rounded.cast(pl.Int64).cast(pl.String)).otherwise(rounded.cast(pl.String))


def _duration_text(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds % 86400 == 0:
        return f"{seconds / 86400:g} d"
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _interval_name(value: timedelta) -> str:
    """'hour' for 1 h, 'day' for 1 d, 'minute' for 1 min, else the duration ('10 min')."""
    return {60: "minute", 3600: "hour", 86400: "day"}.get(int(value.total_seconds()), _duration_text(value))


def _at(column: str) -> pl.Expr:
    return pl.col(column).dt.strftime("%Y-%m-%d %H:%M UTC")


def _whole(expr: pl.Expr) -> pl.Expr:
    return expr.round(0).cast(pl.Int64)


def drop_overlapping(secondary: pl.DataFrame, primary: pl.DataFrame) -> pl.DataFrame:
    """Rows of ``secondary`` whose window overlaps no ``primary`` row of the same key.

    Used where two rules of one pattern see the same trouble (a disconnect
    burst that is also a reconnect loop): the user gets one finding.
    """
    if secondary.is_empty() or primary.is_empty():
        return secondary
    overlapping = (
        secondary.with_row_index("_row")
        .join(primary.select("key", _ps="window_start", _pe="window_end"), on="key")
        .filter((pl.col("window_start") <= pl.col("_pe")) & (pl.col("_ps") <= pl.col("window_end")))
        .get_column("_row")
    )
    return secondary.with_row_index("_row").filter(~pl.col("_row").is_in(overlapping.implode())).drop("_row")


# ---------------------------------------------------------------- repeated_violation


def repeated_violation(closures: pl.LazyFrame, activity: pl.LazyFrame, cfg: Section, limit: int) -> pl.DataFrame:
    """Clients whose code breaks the protocol again and again (chunk length, pacing, messages)."""
    violations = closures.filter(pl.col("category").is_in(cfg.categories)).with_columns(_client_key())
    episodes = _episodes(
        violations, ["key"], cfg.window, cfg.merge_gap, cfg.min_count, limit,
        top=_most_common("category"),
        chunk_ms=pl.col("chunk_ms").median(),
        rate=pl.col("audio_rate_ratio").median(),
        example=pl.col("close_reason").drop_nulls().first(),
    )
    episodes = _with_share(episodes, activity, cfg.min_share)
    episodes = episodes.with_columns(main=pl.col("top").struct.field("category"), main_count=pl.col("top").struct.field("count"))
    main = pl.col("main")
    detail = (
        pl.when(main == "input_duration_violation").then(
            pl.when(pl.col("chunk_ms").is_not_null())
            .then(pl.format("its audio chunks are ~{} ms where 50-1000 ms are allowed", _whole(pl.col("chunk_ms"))))
            .otherwise(pl.lit("its audio chunks are outside 50-1000 ms (the log does not say how long)"))
        )
        .when(main == "audio_rate_exceeded").then(
            pl.when(pl.col("rate").is_not_null())
            .then(pl.format("it sends audio ~{}x faster than real time", _number(pl.col("rate"))))
            .otherwise(pl.lit("it sends audio faster than real time"))
        )
        .otherwise(pl.format("e.g. \"{}\"", pl.col("example").fill_null("no reason logged").str.slice(0, 80)))
    )
    action = (
        pl.when(main == "input_duration_violation").then(
            pl.when(pl.col("chunk_ms").is_not_null())
            .then(pl.format("Send audio in chunks of 50-1000 ms (now ~{} ms), then reconnect; retrying unchanged fails the same way.", _whole(pl.col("chunk_ms"))))
            .otherwise(pl.lit("Send audio in chunks of 50-1000 ms, then reconnect; retrying unchanged fails the same way."))
        )
        .when(main == "audio_rate_exceeded").then(
            pl.lit("Pace the stream to real time (send each chunk only after its duration has passed), then reconnect.")
        )
        .otherwise(pl.lit("Send only valid JSON messages of a supported type (audio as binary frames), then reconnect."))
    )
    explained = episodes.with_columns(
        explanation=pl.format(
            "client {} had {} protocol violations in {} ({}; mostly {}: {}; up to {} within {}); {}.",
            "key", "count", _span(), _share_text(), main, "main_count", "peak",
            pl.lit(_duration_text(cfg.window)), detail,
        ),
        action=action,
        severity=pl.when(pl.col("count") >= cfg.critical_count).then(pl.lit("critical")).otherwise(pl.lit("error")),
    )
    return _findings(explained, Pattern.REPEATED_VIOLATION)


# ---------------------------------------------------------------- frequent_disconnects


def frequent_disconnects(closures: pl.LazyFrame, activity: pl.LazyFrame, cfg: Section, limit: int) -> pl.DataFrame:
    """Clients whose connections keep breaking: bursts, a high daily share, reconnect loops.

    The three rules often see the same trouble; a loop or share finding that
    overlaps a burst finding of the same client is dropped, so each episode
    is reported once.
    """
    bursts = _disconnect_bursts(closures, activity, cfg, limit)
    loops = drop_overlapping(_reconnect_loops(closures, activity, cfg, limit), bursts)
    shares = drop_overlapping(drop_overlapping(_disconnect_share(closures, activity, cfg, limit), bursts), loops)
    return pl.concat([bursts, loops, shares]).sort("pattern", "key", "window_start")


_DISCONNECT_ACTION = (
    "Check the client's network path and the API status page, and reconnect with exponential backoff "
    "and jitter rather than at once."
)


def _disconnect_bursts(closures: pl.LazyFrame, activity: pl.LazyFrame, cfg: Section, limit: int) -> pl.DataFrame:
    abnormal = closures.filter(pl.col("category").is_in(cfg.categories)).with_columns(_client_key())
    episodes = _episodes(
        abnormal, ["key"], cfg.window, cfg.merge_gap, cfg.min_count, limit,
        main=_most_common("category").struct.field("category"),
    )
    episodes = _with_share(episodes, activity, cfg.burst_min_share)
    explained = episodes.with_columns(
        explanation=pl.format(
            "client {} lost {} connections in {} ({}; mostly {}; up to {} within {}).",
            "key", "count", _span(), _share_text(), "main", "peak", pl.lit(_duration_text(cfg.window)),
        ),
        action=pl.lit(_DISCONNECT_ACTION),
        severity=pl.when(pl.col("count") >= cfg.critical_count).then(pl.lit("critical")).otherwise(pl.lit("error")),
    )
    return _findings(explained, Pattern.FREQUENT_DISCONNECTS)


def _disconnect_share(closures: pl.LazyFrame, activity: pl.LazyFrame, cfg: Section, limit: int) -> pl.DataFrame:
    """Per client and UTC day: the share of closures that were abnormal."""
    days = (
        closures.filter(pl.col("category").is_in(cfg.categories))
        .with_columns(_client_key(), day=pl.col("ts").dt.truncate("1d"))
        .group_by("key", "day")
        .agg(
            count=pl.len(),
            window_start=pl.col("ts").min(),
            window_end=pl.col("ts").max(),
            evidence=_earliest_ids(limit),
        )
        .join(_per_day(activity), on=["key", "day"])
        .filter(
            (pl.col("sessions") >= cfg.min_share_closures)
            & (pl.col("count") >= cfg.min_share * pl.col("sessions"))
        )
    )
    explained = days.with_columns(
        explanation=pl.format(
            "{}% of client {}'s closures on {} were abnormal ({} of {}).",
            _whole(pl.col("count") / pl.col("sessions") * 100), "key", pl.col("day").dt.strftime("%Y-%m-%d"),
            "count", "sessions",
        ),
        action=pl.lit(_DISCONNECT_ACTION),
        severity=pl.lit("warning"),
    )
    return _findings(explained, Pattern.FREQUENT_DISCONNECTS)


def _reconnect_loops(closures: pl.LazyFrame, activity: pl.LazyFrame, cfg: Section, limit: int) -> pl.DataFrame:
    """Many short sessions in a row, each ending abnormally, each soon after the last.

    "In a row" means no healthy closure of the client in between. That is
    judged per minute, from ``activity``: a failure in a minute in which the
    client also closed sessions some other way breaks the run. Reconnect
    loops last minutes, so the minute is fine enough, and nothing but the
    failures needs sorting.
    """
    abnormal = pl.col("category").is_in(cfg.categories)
    short = pl.col("session_duration_s").is_null() | (pl.col("session_duration_s") <= cfg.loop_max_session.total_seconds())
    failing = closures.filter(abnormal).with_columns(_client_key(), minute=pl.col("ts").dt.truncate("1m"))
    per_minute = failing.group_by("key", "minute").agg(failures=pl.len())
    mixed = (
        activity.join(per_minute, on=["key", "minute"], how="left")
        .filter(pl.col("closures") > pl.col("failures").fill_null(0))
        .select("key", "minute", mixed=pl.lit(True))
    )
    rows = (
        failing.join(mixed, on=["key", "minute"], how="left")
        .with_columns(member=short & pl.col("mixed").is_null())
        .select("key", "ts", "event_id", "session_duration_s", "member")
    )
    runs = _loop_runs(rows, cfg, limit)
    explained = runs.with_columns(
        explanation=pl.format(
            "client {} reconnected {} times in a row within {}, each session ending abnormally after {} s or less{}.",
            "key", "count", _span(), pl.lit(f"{cfg.loop_max_session.total_seconds():g}"),
            pl.when(pl.col("median_s").is_not_null()).then(pl.format(" (median {} s)", _number(pl.col("median_s")))).otherwise(pl.lit("")),
        ),
        action=pl.lit(
            "Stop the reconnect loop: back off exponentially between attempts and find why sessions fail right after opening."
        ),
        severity=pl.lit("error"),
    )
    return _findings(explained, Pattern.FREQUENT_DISCONNECTS)


def _loop_runs(rows: pl.LazyFrame, cfg: Section, limit: int = 0) -> pl.LazyFrame:
    """Runs of member rows per key, each within loop_max_gap of the previous; >= loop_min_sessions long."""
    gap = pl.col("ts").diff().over("key")
    breaks = ~pl.col("member") | gap.is_null() | (gap > cfg.loop_max_gap)
    return (
        rows.sort("key", "ts", "member", "event_id")
        .with_columns(_run=breaks.cum_sum())
        .filter(pl.col("member"))
        .group_by("key", "_run")
        .agg(
            window_start=pl.col("ts").min(),
            window_end=pl.col("ts").max(),
            count=pl.len(),
            median_s=pl.col("session_duration_s").median(),
            evidence=pl.col("event_id").head(limit),
        )
        .filter(pl.col("count") >= cfg.loop_min_sessions)
    )


# ---------------------------------------------------------------- concurrency_saturation


def concurrency_saturation(closures: pl.LazyFrame, activity: pl.LazyFrame, cfg: Section, limit: int) -> pl.DataFrame:
    """Bursts of 'too many concurrent sessions' per client, with the peak minute."""
    minutes = (
        closures.filter(pl.col("category") == "concurrency_limit")
        .with_columns(_client_key(), minute=pl.col("ts").dt.truncate("1m"))
        .group_by("key", "minute")
        .agg(
            n=pl.len(),
            first=pl.col("ts").min(),
            last=pl.col("ts").max(),
            evidence=_earliest_ids(limit),
        )
        .filter(pl.col("n") >= cfg.min_per_minute)
    )
    gap = pl.col("minute").diff().over("key")
    bursts = (
        minutes.sort("key", "minute")
        .with_columns(_episode=(gap.is_null() | (gap > cfg.merge_gap)).cum_sum())
        .group_by("key", "_episode")
        .agg(
            window_start=pl.col("first").min(),
            window_end=pl.col("last").max(),
            count=pl.col("n").sum(),
            minutes=pl.len(),
            peak=pl.col("n").max(),
            peak_minute=pl.col("minute").sort_by("n", descending=True).first(),
            evidence=pl.col("evidence").explode().head(limit),
        )
    )
    bursts = _with_share(bursts, activity, cfg.min_share)
    explained = bursts.with_columns(
        explanation=pl.format(
            "client {} was refused {} sessions for too many concurrent sessions in {} ({}; {} saturated minutes), peaking at {} in the minute from {}.",
            "key", "count", _span(), _share_text(), "minutes", "peak", _at("peak_minute"),
        ),
        action=pl.lit(
            "Keep concurrent sessions under the account's limit: queue new sessions, close finished ones with Terminate, "
            "retry with exponential backoff, and ask for a higher limit if the load is real."
        ),
        severity=pl.when(pl.col("peak") >= cfg.critical_per_minute).then(pl.lit("critical")).otherwise(pl.lit("warning")),
    )
    return _findings(explained, Pattern.CONCURRENCY_SATURATION)


# ---------------------------------------------------------------- auth_failures


def auth_failures(closures: pl.LazyFrame, activity: pl.LazyFrame, cfg: Section, limit: int) -> pl.DataFrame:
    """Repeated refusals per client: a missing or revoked key (auth_failed) or an account problem."""
    refused = closures.filter(pl.col("category").is_in(["auth_failed", "account_issue"])).with_columns(_client_key())
    episodes = _episodes(
        refused, ["key", "category"], cfg.window, cfg.merge_gap, cfg.min_count, limit,
        example=pl.col("close_reason").drop_nulls().first(),
    )
    episodes = _with_share(episodes, activity, cfg.min_share)
    is_account = pl.col("category") == "account_issue"
    explained = episodes.with_columns(
        explanation=pl.format(
            "client {} was refused {} times in {} ({}; {}), e.g. \"{}\".",
            "key", "count", _span(), _share_text(), "category",
            pl.col("example").fill_null("no reason logged").str.slice(0, 80),
        ),
        action=pl.when(is_account)
        .then(pl.lit("Fix the account problem named in the reason (for example add balance); every session fails until then, so pause retries."))
        .otherwise(pl.lit("Replace the API key or temporary token this client uses (missing, revoked or expired) and stop retrying with it.")),
        severity=pl.when(is_account).then(pl.lit("critical")).otherwise(pl.lit("error")),
    )
    return _findings(explained, Pattern.AUTH_FAILURES)


# ---------------------------------------------------------------- expiry_cost_leak


def expiry_cost_leak(closures: pl.LazyFrame, activity: pl.LazyFrame, cfg: Section, limit: int) -> pl.DataFrame:
    """Sessions left open until the maximum duration, with the hours billed, per client and day."""
    limit_s = cfg.session_limit.total_seconds()
    days = (
        closures.filter(pl.col("category") == "session_expired")
        .with_columns(_client_key(), day=pl.col("ts").dt.truncate("1d"))
        .group_by("key", "day")
        .agg(
            count=pl.len(),
            billed_h=pl.col("session_duration_s").fill_null(limit_s).sum() / 3600,
            known=pl.col("session_duration_s").is_not_null().sum(),
            window_start=pl.col("ts").min(),
            window_end=pl.col("ts").max(),
            evidence=_earliest_ids(limit),
        )
        .join(_per_day(activity), on=["key", "day"])
        .filter((pl.col("count") >= cfg.min_sessions) & (pl.col("count") >= cfg.min_share * pl.col("sessions")))
    )
    explained = days.with_columns(
        explanation=pl.format(
            "client {} let {} of its {} sessions on {} run into the maximum duration, billed ~{} h ({} with the duration logged, the rest counted at {}).",
            "key", "count", "sessions", pl.col("day").dt.strftime("%Y-%m-%d"), _number(pl.col("billed_h")), "known",
            pl.lit(_duration_text(cfg.session_limit)),
        ),
        action=pl.lit(
            "Send Terminate when the audio ends and close idle streams instead of letting sessions expire; "
            "an expired session is billed for its whole duration."
        ),
        severity=pl.when(pl.col("billed_h") >= cfg.error_hours).then(pl.lit("error")).otherwise(pl.lit("warning")),
    )
    return _findings(explained, Pattern.EXPIRY_COST_LEAK)


# ---------------------------------------------------------------- error_spike

_DAY_US = 86_400_000_000
_MAD_SCALE = 1.4826  # makes the MAD comparable to a standard deviation for normal data


def bucket_of(ts: pl.Expr, interval: timedelta) -> pl.Expr:
    """The interval a timestamp falls in, aligned to the epoch (the SQL history uses the same rule)."""
    step = int(interval / timedelta(microseconds=1))
    return pl.from_epoch((ts.dt.epoch("us") // step) * step, time_unit="us")


def error_spike(closures: pl.LazyFrame, history: pl.LazyFrame, grid: tuple[datetime, datetime],
                cfg: Section, limit: int) -> pl.DataFrame:
    """Intervals whose count of a category is far above its usual level.

    ``history`` holds counts (category, bucket, n) from before the window, so
    the baseline can reach back ``baseline_days``; ``grid`` is the first and
    last bucket to consider, so quiet intervals count as zeros. The baseline
    is the median and MAD of the same time of day on the previous days, or
    of the previous intervals when there are too few such days.
    """
    interval = cfg.interval
    current = (
        closures.filter(pl.col("category") != "normal")
        .with_columns(bucket=bucket_of(pl.col("ts"), interval))
        .group_by("category", "bucket")
        .agg(n=pl.len(), evidence=_earliest_ids(limit))
    )
    counts = pl.concat([history.select("category", "bucket", n=pl.col("n").cast(pl.UInt32)), current.select("category", "bucket", "n")])
    baselines = _spike_baselines(_zero_filled(counts, grid, interval), cfg)
    spikes = (
        baselines.join(current, on=["category", "bucket"], how="inner")
        .filter((pl.col("n") > pl.col("threshold")) & (pl.col("n") >= cfg.min_count))
    )
    return _spike_findings(spikes, cfg, limit)


def _zero_filled(counts: pl.LazyFrame, grid: tuple[datetime, datetime], interval: timedelta) -> pl.LazyFrame:
    """Every (category, bucket) of the grid, with 0 where nothing closed."""
    buckets = pl.LazyFrame({"bucket": pl.datetime_range(grid[0], grid[1], interval, time_unit="us", eager=True)})
    categories = counts.select("category").unique()
    summed = counts.group_by("category", "bucket").agg(pl.col("n").sum())
    return (
        categories.join(buckets, how="cross")
        .join(summed, on=["category", "bucket"], how="left")
        .with_columns(pl.col("n").fill_null(0).cast(pl.Float64), tod=pl.col("bucket").dt.epoch("us") % _DAY_US)
    )


def _spike_baselines(grid: pl.LazyFrame, cfg: Section) -> pl.LazyFrame:
    """Each bucket's threshold, from the same-time-of-day baseline or, lacking days, the recent one."""
    stats = {
        "med": pl.col("n").median(),
        "mad": (pl.col("n") - pl.col("n").median()).abs().median(),
        "busiest": pl.col("n").max(),
        "points": pl.len(),
    }
    day = timedelta(days=1)
    same_hour = grid.sort("category", "tod", "bucket").rolling(
        index_column="bucket", period=cfg.baseline_days * day, offset=-(cfg.baseline_days + 1) * day,
        group_by=["category", "tod"],
    ).agg(**stats)
    recent = grid.sort("category", "bucket").rolling(
        index_column="bucket", period=cfg.fallback_intervals * cfg.interval,
        offset=-(cfg.fallback_intervals + 1) * cfg.interval, group_by=["category"],
    ).agg(**{f"{name}_recent": expr for name, expr in stats.items()})
    use_same_hour = pl.col("points") >= cfg.min_baseline_points
    use_recent = ~use_same_hour & (pl.col("points_recent") >= cfg.fallback_intervals)

    def spread(med: str, mad: str) -> pl.Expr:
        """k robust standard deviations; a count's own noise (sqrt of its level) is the least."""
        return cfg.k * pl.max_horizontal(pl.col(mad) * _MAD_SCALE, pl.col(med).sqrt(), pl.lit(cfg.min_mad))

    return (
        same_hour.join(recent, on=["category", "bucket"])
        .filter(use_same_hour | use_recent)
        .with_columns(
            median=pl.when(use_same_hour).then(pl.col("med")).otherwise(pl.col("med_recent")),
            threshold=pl.when(use_same_hour)
            .then(pl.col("med") + spread("med", "mad"))
            .otherwise(pl.max_horizontal(pl.col("med_recent") + spread("med_recent", "mad_recent"),
                                         pl.col("busiest_recent") * cfg.fallback_max_factor)),
            basis=pl.when(use_same_hour)
            .then(pl.format("the same hour on the previous {} days", "points"))
            .otherwise(pl.format("the previous {} intervals", "points_recent")),
        )
        .select("category", "bucket", "median", "basis", "threshold")
    )


def _spike_findings(spikes: pl.LazyFrame, cfg: Section, limit: int) -> pl.DataFrame:
    """Adjacent spiking intervals of a category become one finding."""
    gap = pl.col("bucket").diff().over("category")
    episodes = (
        spikes.sort("category", "bucket")
        .with_columns(_episode=(gap.is_null() | (gap > cfg.interval)).cum_sum())
        .group_by("category", "_episode")
        .agg(
            window_start=pl.col("bucket").min(),
            window_end=pl.col("bucket").max() + cfg.interval,
            count=pl.col("n").sum(),
            intervals=pl.len(),
            peak=pl.col("n").max(),
            peak_bucket=pl.col("bucket").sort_by("n", descending=True).first(),
            usual=pl.col("median").median(),
            basis=pl.col("basis").first(),
            evidence=pl.col("evidence").explode().head(limit),
        )
    )
    ratio = pl.col("peak") / pl.max_horizontal(pl.col("usual"), pl.lit(1.0))
    interval = pl.lit(_interval_name(cfg.interval))
    usual = pl.format("where ~{} per {} is usual (median of {})", _number(pl.col("usual")), interval, "basis")
    explained = episodes.with_columns(
        key=pl.col("category"),
        explanation=pl.when(pl.col("intervals") == 1)
        .then(pl.format("{} closures rose to {} in the {} from {}, {}.", "category", "count", interval, _at("window_start"), usual))
        .otherwise(pl.format(
            "{} closures rose to {} over {} from {} (peak {} in the {} from {}), {}.",
            "category", "count", _span(), _at("window_start"), "peak", interval, _at("peak_bucket"), usual,
        )),
        action=pl.lit(
            "Find what changed when the spike began (a deploy, the network, the API status page) and read the evidence closures."
        ),
        severity=pl.when(ratio >= cfg.error_ratio).then(pl.lit("error")).otherwise(pl.lit("warning")),
    )
    return _findings(explained, Pattern.ERROR_SPIKE)


# ---------------------------------------------------------------- new_reason


def _clients_text() -> pl.Expr:
    """'client web-1' or '3 clients (a, b, c)' from a list column ``clients``."""
    names = pl.col("clients").list.sort().list.head(3).list.join(", ")
    many = pl.col("clients").list.len()
    return (
        pl.when(many == 1).then(pl.format("client {}", names))
        .otherwise(pl.format("{} clients ({}{})", many, names, pl.when(many > 3).then(pl.lit(", …")).otherwise(pl.lit(""))))
    )


def new_reason(closures: pl.LazyFrame, reasons_before: pl.LazyFrame, learned_at: datetime,
               cfg: Section, limit: int) -> pl.DataFrame:
    """Reason templates the store had never seen before this window.

    ``reasons_before`` lists the distinct reasons of earlier closures; a
    template is new when none of them has it, and when its first closure is
    after ``learned_at`` (the store's first closure plus ``learning``), so a
    fresh store does not report every reason it holds. A template of a known
    category needs ``min_count_known`` closures; an unknown one needs one.
    """
    window = (
        closures.filter((pl.col("category") != "normal") & pl.col("close_reason").is_not_null())
        .with_columns(_client_key())
        .group_by("close_reason")
        .agg(
            first_seen=pl.col("ts").min(),
            last_seen=pl.col("ts").max(),
            n=pl.len(),
            clients=pl.col("key").unique(),
            category=_most_common("category").struct.field("category"),
            evidence=_earliest_ids(limit),
        )
        .with_columns(template=template_expr(pl.col("close_reason")))
        .filter(pl.col("template").is_not_null())
    )
    known = reasons_before.select(template=template_expr(pl.col("close_reason"))).unique()
    new = (
        window.join(known, on="template", how="anti")
        .sort("first_seen")
        .group_by("template")
        .agg(
            window_start=pl.col("first_seen").min(),
            window_end=pl.col("last_seen").max(),
            count=pl.col("n").sum(),
            clients=pl.col("clients").explode().unique(),
            category=pl.col("category").first(),
            evidence=pl.col("evidence").explode().head(limit),
        )
        .filter(
            (pl.col("window_start") >= learned_at)
            & ((pl.col("category") == "unknown") | (pl.col("count") >= cfg.min_count_known))
        )
    )
    explained = new.with_columns(
        key=pl.col("template"),
        explanation=pl.format(
            "a close reason never seen before, \"{}\", first appeared at {} and closed {} sessions of {}, classified {}.",
            pl.col("template").str.slice(0, 120), _at("window_start"), "count", _clients_text(), "category",
        ),
        action=pl.lit(
            "Read the reason and the evidence closures; if closewatch classifies it as unknown or wrongly, add it to your "
            "catalog file and run `closewatch reclassify`."
        ),
        severity=pl.when(pl.col("category") == "unknown").then(pl.lit("warning")).otherwise(pl.lit("info")),
    )
    return _findings(explained, Pattern.NEW_REASON)
