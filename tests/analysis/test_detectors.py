"""The pattern detectors on small hand-built closures frames (pure polars, no store)."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

from closewatch.analysis import detectors
from closewatch.vocabulary import PATTERNS
from closewatch.analysis.detectors import DETECTOR_CLOSURE_SCHEMA, FINDING_SCHEMA, activity_of, drop_overlapping
from closewatch.analysis.thresholds import Section, load_thresholds

T0 = datetime(2024, 5, 1)  # naive UTC, as the detectors see timestamps
LIMIT = 5
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

CHUNK_REASON = "Input duration violation: {} ms. Expected between 50 and 1000 ms"
RATE_REASON = "Audio Transmission Rate Exceeded: Received {} sec. audio in 1.0 sec"


# ---------------------------------------------------------------- builders (shared with test_detection)


def closure(ts: datetime, client: str | None = "web-1", category: str = "normal", **fields) -> dict:
    """One closure row; fields: reason, chunk_ms, rate, duration_s, session_id, event_id."""
    return {
        "event_id": fields.get("event_id"),
        "ts": ts,
        "session_id": fields.get("session_id"),
        "client_id": client,
        "category": category,
        "close_reason": fields.get("reason"),
        "chunk_ms": fields.get("chunk_ms"),
        "audio_rate_ratio": fields.get("rate"),
        "session_duration_s": fields.get("duration_s"),
    }


def frame(rows: list[dict]) -> pl.DataFrame:
    """Closures with ids e0001... and sessions s0001... where the row names none."""
    for number, row in enumerate(rows):
        row["event_id"] = row["event_id"] or f"e{number:04d}"
        row["session_id"] = row["session_id"] or f"s{number:04d}"
    return pl.DataFrame(rows, schema=DETECTOR_CLOSURE_SCHEMA)


def every(start: datetime, step: timedelta, n: int, **kwargs) -> list[dict]:
    """n closures, one every step from start."""
    return [closure(start + i * step, **kwargs) for i in range(n)]


def violations(start: datetime, n: int, client: str = "web-7", step: timedelta = MINUTE, chunk_ms: float = 1200) -> list[dict]:
    return every(start, step, n, client=client, category="input_duration_violation",
                 reason=CHUNK_REASON.format(int(chunk_ms)), chunk_ms=chunk_ms)


def background(days: int = 3, clients: tuple[str, ...] = ("app-a", "app-b"), step: timedelta = 10 * MINUTE) -> list[dict]:
    """Healthy traffic: every client closes normally every ``step``."""
    rows = []
    for offset, client in enumerate(clients):
        start = T0 + offset * timedelta(seconds=7)
        rows += every(start, step, int(days * DAY / step), client=client, duration_s=300.0)
    return rows


@pytest.fixture(scope="module")
def thresholds():
    return load_thresholds()


def section(thresholds, name: str, **overrides) -> Section:
    return Section(name, thresholds[name].as_dict() | overrides)


def only(findings: pl.DataFrame) -> dict:
    assert findings.height == 1, findings
    return findings.row(0, named=True)


# ---------------------------------------------------------------- repeated_violation


def violation_findings(closures: pl.DataFrame, cfg, limit: int = LIMIT) -> pl.DataFrame:
    return detectors.repeated_violation(closures.lazy(), activity_of(closures.lazy()), cfg, limit)


def test_repeated_chunk_violations_give_one_finding_with_the_chunk_length(thresholds):
    data = frame(background() + violations(T0 + DAY, 12))
    found = only(violation_findings(data, thresholds["repeated_violation"], LIMIT))
    assert found["pattern"] == "repeated_violation"
    assert found["key"] == "web-7"
    assert found["count"] == 12
    assert (found["window_start"], found["window_end"]) == (T0 + DAY, T0 + DAY + 11 * MINUTE)
    assert "~1200 ms where 50-1000 ms are allowed" in found["explanation"]
    assert "12 protocol violations in 11 min (100% of its closures; mostly input_duration_violation: 12" in found["explanation"]
    assert "now ~1200 ms" in found["action"]
    assert found["severity"] == "error"
    assert len(found["evidence"]) == LIMIT


def test_violations_below_the_count_or_spread_out_are_not_reported(thresholds):
    cfg = thresholds["repeated_violation"]
    too_few = violations(T0, cfg.min_count - 1)
    spread = violations(T0 + DAY, cfg.min_count + 3, client="slow", step=cfg.window + MINUTE)
    assert violation_findings(frame(background() + too_few + spread), cfg, LIMIT).is_empty()


def test_exactly_min_count_within_the_window_is_reported(thresholds):
    cfg = thresholds["repeated_violation"]
    step = cfg.window / cfg.min_count  # min_count events spanning less than one window
    found = violation_findings(frame(violations(T0, cfg.min_count, step=step)), cfg, LIMIT)
    assert found["count"].to_list() == [cfg.min_count]


def test_busy_stretches_closer_than_merge_gap_are_one_episode(thresholds):
    cfg = thresholds["repeated_violation"]
    first = violations(T0, 6)
    second = violations(T0 + 6 * MINUTE + cfg.merge_gap - MINUTE, 6)
    later = violations(T0 + 5 * HOUR, 6)
    found = violation_findings(frame(first + second + later), cfg, LIMIT)
    assert found["count"].to_list() == [12, 6]


def test_a_few_violations_among_many_good_sessions_are_noise(thresholds):
    """The same count that matters for a small client is background for a busy one."""
    cfg = thresholds["repeated_violation"]
    bad = violations(T0, 8, client="busy")
    busy = every(T0, timedelta(seconds=5), 200, client="busy", duration_s=60.0)  # 200 good closures meanwhile
    assert violation_findings(frame(bad + busy), cfg).is_empty()
    found = only(violation_findings(frame(bad + busy), section(thresholds, "repeated_violation", min_share=0.02)))
    assert "(8% of its closures;" in found["explanation"]  # 8 of the 104 closed in minutes 0-7


def test_rate_violations_explain_how_much_faster_than_real_time(thresholds):
    rows = every(T0, MINUTE, 8, client="batch", category="audio_rate_exceeded", reason=RATE_REASON.format(2.1), rate=2.1)
    found = only(violation_findings(frame(rows), thresholds["repeated_violation"], LIMIT))
    assert "~2.1x faster than real time" in found["explanation"]
    assert found["action"].startswith("Pace the stream to real time")


def test_invalid_messages_quote_an_example_reason(thresholds):
    rows = every(T0, MINUTE, 6, client="bot", category="invalid_message", reason='Invalid JSON: {"type": "Terminat')
    found = only(violation_findings(frame(rows), thresholds["repeated_violation"], LIMIT))
    assert 'e.g. "Invalid JSON: {"type": "Terminat"' in found["explanation"]


def test_a_large_episode_is_critical(thresholds):
    cfg = section(thresholds, "repeated_violation", critical_count=20)
    found = only(violation_findings(frame(violations(T0, 25, step=timedelta(seconds=10))), cfg, LIMIT))
    assert found["severity"] == "critical"


def test_violations_without_a_client_still_count_together(thresholds):
    rows = violations(T0, 6, client=None)
    found = only(violation_findings(frame(rows), thresholds["repeated_violation"], LIMIT))
    assert found["key"] == detectors.UNKNOWN_CLIENT


# ---------------------------------------------------------------- frequent_disconnects


def disconnects(rows: list[dict], cfg) -> pl.DataFrame:
    closures = frame(rows).lazy()
    return detectors.frequent_disconnects(closures, activity_of(closures), cfg, LIMIT)


def drops(start: datetime, n: int, client: str = "call-center", step: timedelta = timedelta(seconds=20), **fields) -> list[dict]:
    return every(start, step, n, client=client, category="network_abnormal", **fields)


def test_a_storm_of_abnormal_closures_is_one_burst_finding(thresholds):
    found = only(disconnects(background() + drops(T0 + DAY, 40, duration_s=5.0), thresholds["frequent_disconnects"]))
    assert found["key"] == "call-center"
    assert found["count"] == 40
    assert "lost 40 connections in 13 min (100% of its closures; mostly network_abnormal; up to 30 within 10 min)" in found["explanation"]
    assert "backoff" in found["action"]


def test_a_busy_client_losing_a_few_percent_of_connections_is_no_burst(thresholds):
    cfg = thresholds["frequent_disconnects"]
    lost = drops(T0, 20, client="busy", step=timedelta(seconds=30))
    busy = every(T0, timedelta(seconds=2), 300, client="busy", duration_s=60.0)
    assert disconnects(lost + busy, cfg).is_empty()


def test_a_reconnect_loop_below_the_burst_count_is_found(thresholds):
    cfg = thresholds["frequent_disconnects"]
    loop = drops(T0 + DAY, cfg.loop_min_sessions + 1, client="voicebot", step=timedelta(seconds=40), duration_s=3.0)
    found = only(disconnects(background() + loop, cfg))
    assert found["key"] == "voicebot"
    assert found["count"] == cfg.loop_min_sessions + 1
    assert "reconnected 6 times in a row" in found["explanation"]
    assert "(median 3 s)" in found["explanation"]


def test_a_normal_closure_between_failures_breaks_the_loop(thresholds):
    cfg = thresholds["frequent_disconnects"]
    half = drops(T0 + DAY, 3, client="voicebot", step=timedelta(seconds=40), duration_s=3.0)
    healthy = [closure(T0 + DAY + 100 * timedelta(seconds=1), client="voicebot", duration_s=60.0)]
    rest = drops(T0 + DAY + timedelta(seconds=120), 3, client="voicebot", step=timedelta(seconds=40), duration_s=3.0)
    assert disconnects(half + healthy + rest, cfg).is_empty()


def test_long_sessions_that_drop_are_no_loop(thresholds):
    cfg = thresholds["frequent_disconnects"]
    rows = drops(T0, 8, client="voicebot", step=timedelta(seconds=40), duration_s=cfg.loop_max_session.total_seconds() + 1)
    assert disconnects(rows, cfg).is_empty()


def test_a_client_whose_day_is_mostly_abnormal_is_reported_by_share(thresholds):
    cfg = thresholds["frequent_disconnects"]
    bad = drops(T0, 15, client="flaky", step=HOUR)  # never a burst, never a loop
    good = every(T0 + 30 * MINUTE, HOUR, 10, client="flaky", duration_s=300.0)
    found = only(disconnects(bad + good, cfg))
    assert found["severity"] == "warning"
    assert found["explanation"] == "60% of client flaky's closures on 2024-05-01 were abnormal (15 of 25)."


def test_a_few_closures_all_abnormal_are_not_a_share_finding(thresholds):
    cfg = thresholds["frequent_disconnects"]
    rows = drops(T0, cfg.min_share_closures - 1, client="tiny", step=HOUR)
    assert disconnects(rows, cfg).is_empty()


def test_drop_overlapping_keeps_other_keys_and_other_times():
    def findings(rows):
        return pl.DataFrame(
            [{"pattern": "p", "key": k, "window_start": s, "window_end": e, "count": 1, "severity": "info",
              "explanation": "", "action": "", "evidence": []} for k, s, e in rows],
            schema=FINDING_SCHEMA,
        )

    primary = findings([("a", T0, T0 + HOUR)])
    secondary = findings([("a", T0 + 30 * MINUTE, T0 + 2 * HOUR), ("a", T0 + 2 * HOUR, T0 + 3 * HOUR), ("b", T0, T0 + HOUR)])
    kept = drop_overlapping(secondary, primary)
    assert kept.select("key", "window_start").rows() == [("a", T0 + 2 * HOUR), ("b", T0)]


# ---------------------------------------------------------------- concurrency_saturation


def saturation_findings(closures: pl.DataFrame, cfg, limit: int = LIMIT) -> pl.DataFrame:
    return detectors.concurrency_saturation(closures.lazy(), activity_of(closures.lazy()), cfg, limit)


def refusals(start: datetime, per_minute: list[int], client: str = "dialer") -> list[dict]:
    rows = []
    for minute, n in enumerate(per_minute):
        rows += every(start + minute * MINUTE, timedelta(seconds=60 / max(n, 1)), n, client=client,
                      category="concurrency_limit", reason="Unauthorized Connection: Too many concurrent sessions")
    return rows


def test_a_concurrency_burst_reports_its_peak_minute(thresholds):
    data = frame(background() + refusals(T0 + DAY, [4, 12, 7, 1, 3]))
    found = only(saturation_findings(data, thresholds["concurrency_saturation"], LIMIT))
    assert found["key"] == "dialer"
    assert found["count"] == 4 + 12 + 7 + 3  # the saturated minutes
    assert "(96% of its closures; 4 saturated minutes), peaking at 12 in the minute from 2024-05-02 00:01 UTC" in found["explanation"]
    assert found["severity"] == "warning"


def test_isolated_refusals_are_not_saturation(thresholds):
    cfg = thresholds["concurrency_saturation"]
    rows = refusals(T0, [cfg.min_per_minute - 1] * 30)
    assert saturation_findings(frame(rows), cfg, LIMIT).is_empty()


def test_a_busy_client_refused_now_and_then_is_not_saturated(thresholds):
    cfg = thresholds["concurrency_saturation"]
    busy = every(T0, timedelta(seconds=1), 300, client="dialer", duration_s=60.0)  # 60 good closures a minute
    assert saturation_findings(frame(refusals(T0, [4, 4, 4]) + busy), cfg).is_empty()


def test_bursts_further_apart_than_merge_gap_are_separate(thresholds):
    cfg = section(thresholds, "concurrency_saturation", critical_per_minute=10)
    gap_minutes = int(cfg.merge_gap / MINUTE) + 2
    rows = refusals(T0, [5] + [0] * gap_minutes + [11])
    found = saturation_findings(frame(rows), cfg, LIMIT)
    assert found["severity"].to_list() == ["warning", "critical"]


# ---------------------------------------------------------------- auth_failures


def refusal_findings(closures: pl.DataFrame, cfg, limit: int = LIMIT) -> pl.DataFrame:
    return detectors.auth_failures(closures.lazy(), activity_of(closures.lazy()), cfg, limit)


def test_a_revoked_key_is_reported_with_its_reason(thresholds):
    rows = every(T0, 2 * MINUTE, 6, client="ivr", category="auth_failed", reason="Unauthorized Connection: Invalid API key")
    found = only(refusal_findings(frame(background() + rows), thresholds["auth_failures"], LIMIT))
    assert found["key"] == "ivr"
    assert found["severity"] == "error"
    assert 'refused 6 times in 10 min (100% of its closures; auth_failed), e.g. "Unauthorized Connection: Invalid API key"' in found["explanation"]
    assert "Replace the API key" in found["action"]


def test_an_empty_balance_is_critical(thresholds):
    rows = every(T0, MINUTE, 3, client="ivr", category="account_issue", reason="Unauthorized Connection: Insufficient account balance")
    found = only(refusal_findings(frame(rows), thresholds["auth_failures"], LIMIT))
    assert found["severity"] == "critical"
    assert "add balance" in found["action"]


def test_occasional_refusals_are_not_reported(thresholds):
    cfg = thresholds["auth_failures"]
    rows = every(T0, cfg.window + MINUTE, 10, client="ivr", category="auth_failed")
    assert refusal_findings(frame(rows), cfg, LIMIT).is_empty()


# ---------------------------------------------------------------- expiry_cost_leak


def expiries(rows: list[dict], cfg) -> pl.DataFrame:
    closures = frame(rows).lazy()
    return detectors.expiry_cost_leak(closures, activity_of(closures), cfg, LIMIT)


def test_sessions_left_to_expire_are_billed_per_day(thresholds):
    cfg = thresholds["expiry_cost_leak"]
    known = every(T0 + 3 * HOUR, 2 * HOUR, 4, client="notes", category="session_expired", duration_s=10_800.0)
    unknown = every(T0 + 4 * HOUR, 2 * HOUR, 4, client="notes", category="session_expired")
    found = only(expiries(background() + known + unknown, cfg))
    assert found["count"] == 8
    assert "billed ~24 h (4 with the duration logged, the rest counted at 3 h)" in found["explanation"]
    assert found["severity"] == "error"  # 24 h >= error_hours
    assert "Terminate" in found["action"]


def test_a_few_expiries_a_day_are_normal(thresholds):
    cfg = thresholds["expiry_cost_leak"]
    rows = every(T0, 5 * HOUR, cfg.min_sessions - 1, client="notes", category="session_expired", duration_s=10_800.0)
    assert expiries(rows, cfg).is_empty()


# ---------------------------------------------------------------- error_spike


def hourly(category: str, counts_by_hour: dict[int, int], days: int, start: datetime = T0) -> list[dict]:
    """counts_by_hour[h] closures of the category in hour h of every day."""
    rows = []
    for day in range(days):
        for hour, n in counts_by_hour.items():
            begin = start + day * DAY + hour * HOUR
            rows += every(begin, HOUR / (n + 1), n, client=f"c{hour % 3}", category=category)
    return rows


NO_HISTORY = pl.LazyFrame(schema={"category": pl.String, "bucket": pl.Datetime("us"), "n": pl.UInt32})


def spikes(rows: list[dict], thresholds, days: int, **overrides) -> pl.DataFrame:
    grid = (T0, T0 + days * DAY - HOUR)
    return detectors.error_spike(frame(rows).lazy(), NO_HISTORY, grid, section(thresholds, "error_spike", **overrides), LIMIT)


def test_a_spike_above_the_same_hour_on_previous_days_is_found(thresholds):
    usual = {hour: 3 for hour in range(24)}
    rows = hourly("server_error", usual, days=9)
    rows += every(T0 + 8 * DAY + 14 * HOUR, MINUTE, 60, client="c9", category="server_error")
    found = only(spikes(rows, thresholds, days=9))
    assert found["key"] == "server_error"
    assert (found["window_start"], found["window_end"]) == (T0 + 8 * DAY + 14 * HOUR, T0 + 8 * DAY + 15 * HOUR)
    assert found["count"] == 63
    assert found["explanation"] == (
        "server_error closures rose to 63 in the hour from 2024-05-09 14:00 UTC, "
        "where ~3 per hour is usual (median of the same hour on the previous 7 days)."
    )
    assert found["severity"] == "error"  # 63 >= 10 x 3


def test_a_daily_peak_is_not_a_spike(thresholds):
    """Busy afternoons are compared with earlier afternoons, not with the quiet night."""
    curve = {hour: (40 if 12 <= hour <= 16 else 2) for hour in range(24)}
    assert spikes(hourly("network_abnormal", curve, days=9), thresholds, days=9).is_empty()


def test_a_night_spike_that_would_be_normal_in_the_afternoon_is_found(thresholds):
    curve = {hour: (40 if 12 <= hour <= 16 else 2) for hour in range(24)}
    rows = hourly("network_abnormal", curve, days=9)
    rows += every(T0 + 8 * DAY + 3 * HOUR, MINUTE, 40, client="c9", category="network_abnormal")
    found = only(spikes(rows, thresholds, days=9))
    assert found["window_start"] == T0 + 8 * DAY + 3 * HOUR


def test_without_days_of_history_the_previous_intervals_are_the_baseline(thresholds):
    rows = hourly("server_error", {hour: 2 for hour in range(24)}, days=1)
    rows += every(T0 + DAY + 2 * HOUR, MINUTE, 50, client="c9", category="server_error")
    found = only(spikes(rows, thresholds, days=2))
    assert "median of the previous 24 intervals" in found["explanation"]


def test_adjacent_spiking_hours_are_one_finding(thresholds):
    rows = hourly("server_error", {hour: 3 for hour in range(24)}, days=9)
    for hour in (10, 11, 12):
        rows += every(T0 + 8 * DAY + hour * HOUR, MINUTE, 30 + hour, client="c9", category="server_error")
    found = only(spikes(rows, thresholds, days=9))
    assert found["count"] == 3 * 3 + 30 * 3 + 10 + 11 + 12
    assert "over 3 h from 2024-05-09 10:00 UTC (peak 45 in the hour from 2024-05-09 12:00 UTC)" in found["explanation"]


def test_noise_of_a_large_count_is_not_a_spike(thresholds):
    """A steady 160 an hour may read 174 once: within the count's own noise, even if the MAD is tiny."""
    rows = hourly("going_away", {hour: 160 for hour in range(24)}, days=4)
    rows += every(T0 + 4 * DAY + 5 * HOUR, timedelta(seconds=20), 174, client="c9", category="going_away")
    assert spikes(rows, thresholds, days=5).is_empty()


def test_small_absolute_jumps_stay_quiet(thresholds):
    """From 0 to min_count - 1 is a big ratio but not worth a page."""
    rows = hourly("idle_timeout", {hour: 0 for hour in range(24)}, days=9)
    rows += every(T0 + 8 * DAY, MINUTE, thresholds["error_spike"].min_count - 1, client="c9", category="idle_timeout")
    assert spikes(rows, thresholds, days=9).is_empty()


def test_history_before_the_window_feeds_the_baseline(thresholds):
    """The window holds one day; the counts of the seven days before come in as history."""
    cfg = thresholds["error_spike"]
    history = pl.LazyFrame(
        {
            "category": ["server_error"] * 7 * 24,
            "bucket": [T0 + h * HOUR for h in range(7 * 24)],
            "n": [3] * (7 * 24),
        },
        schema={"category": pl.String, "bucket": pl.Datetime("us"), "n": pl.UInt32},
    )
    today = every(T0 + 7 * DAY + 5 * HOUR, MINUTE, 40, client="c9", category="server_error")
    found = detectors.error_spike(frame(today).lazy(), history, (T0, T0 + 8 * DAY - HOUR), cfg, LIMIT)
    assert "same hour on the previous 7 days" in only(found)["explanation"]


# ---------------------------------------------------------------- new_reason

NEW = "Model Deprecated: speech_model 'universal-streaming-beta' is no longer served"


def reasons(*texts: str) -> pl.LazyFrame:
    return pl.LazyFrame({"close_reason": list(texts)}, schema={"close_reason": pl.String})


def test_a_reason_never_seen_before_is_new(thresholds):
    rows = every(T0 + 2 * DAY, MINUTE, 4, client="captions", category="unknown", reason=NEW)
    rows += every(T0 + 2 * DAY, MINUTE, 2, client="web", category="unknown", reason=NEW.replace("beta", "v2"))
    rows += violations(T0 + 2 * DAY, 3, chunk_ms=1500)
    before = reasons(CHUNK_REASON.format(1200))
    found = only(detectors.new_reason(frame(rows).lazy(), before, T0 + DAY, thresholds["new_reason"], LIMIT))
    assert found["key"] == "Model Deprecated: speech_model '…' is no longer served"
    assert found["count"] == 6
    assert "closed 6 sessions of 2 clients (captions, web), classified unknown" in found["explanation"]
    only_one = every(T0 + 2 * DAY, MINUTE, 2, client="captions", category="unknown", reason=NEW)
    single = only(detectors.new_reason(frame(only_one).lazy(), reasons(), T0 + DAY, thresholds["new_reason"], LIMIT))
    assert "closed 2 sessions of client captions, classified unknown" in single["explanation"]
    assert found["severity"] == "warning"
    assert found["window_start"] == T0 + 2 * DAY


def test_reasons_first_seen_while_learning_are_not_new(thresholds):
    rows = every(T0 + HOUR, MINUTE, 3, client="captions", category="unknown", reason=NEW)
    assert detectors.new_reason(frame(rows).lazy(), reasons(), T0 + DAY, thresholds["new_reason"], LIMIT).is_empty()


def test_normal_closures_and_blank_reasons_are_never_new(thresholds):
    rows = every(T0 + 2 * DAY, MINUTE, 3, reason="Terminated by the user")
    rows += every(T0 + 2 * DAY, MINUTE, 3, client="x", category="network_abnormal", reason="   ")
    assert detectors.new_reason(frame(rows).lazy(), reasons(), T0 + DAY, thresholds["new_reason"], LIMIT).is_empty()


# ---------------------------------------------------------------- every detector


def _with_activity(name: str):
    def run(closures: pl.LazyFrame, thresholds) -> pl.DataFrame:
        return getattr(detectors, name)(closures, activity_of(closures), thresholds[name], LIMIT)
    return run


def _error_spike(closures: pl.LazyFrame, thresholds) -> pl.DataFrame:
    return detectors.error_spike(closures, NO_HISTORY, (T0, T0 + 9 * DAY - HOUR), thresholds["error_spike"], LIMIT)


def _new_reason(closures: pl.LazyFrame, thresholds) -> pl.DataFrame:
    return detectors.new_reason(closures, reasons(), T0 + DAY, thresholds["new_reason"], LIMIT)


#: Every detector, called as the detection job calls it.
RUNNERS = {
    "repeated_violation": _with_activity("repeated_violation"),
    "frequent_disconnects": _with_activity("frequent_disconnects"),
    "concurrency_saturation": _with_activity("concurrency_saturation"),
    "auth_failures": _with_activity("auth_failures"),
    "expiry_cost_leak": _with_activity("expiry_cost_leak"),
    "error_spike": _error_spike,
    "new_reason": _new_reason,
}

#: For each detector, an incident it must find (the same incidents as the detector's own tests above).
INCIDENTS = {
    "repeated_violation": lambda: violations(T0 + DAY, 12),
    "frequent_disconnects": lambda: drops(T0 + DAY, 40, duration_s=5.0),
    "concurrency_saturation": lambda: refusals(T0 + DAY, [4, 12, 7, 1, 3]),
    "auth_failures": lambda: every(T0, 2 * MINUTE, 6, client="ivr", category="auth_failed", reason="Unauthorized Connection: Invalid API key"),
    "expiry_cost_leak": lambda: every(T0 + 3 * HOUR, 2 * HOUR, 4, client="notes", category="session_expired", duration_s=10_800.0),
    "error_spike": lambda: hourly("server_error", {hour: 3 for hour in range(24)}, days=9)
    + every(T0 + 8 * DAY + 14 * HOUR, MINUTE, 60, client="c9", category="server_error"),
    "new_reason": lambda: every(T0 + 2 * DAY, MINUTE, 4, client="captions", category="unknown", reason=NEW),
}


def test_every_pattern_has_a_detector_here():
    assert set(RUNNERS) == set(INCIDENTS) == set(PATTERNS)


@pytest.mark.parametrize("name", PATTERNS)
def test_quiet_traffic_and_an_empty_frame_give_no_findings_with_the_contract_schema(thresholds, name):
    for rows in (background(), []):
        found = RUNNERS[name](frame(rows).lazy(), thresholds)
        assert found.is_empty()
        assert found.schema == pl.Schema(FINDING_SCHEMA)


@pytest.mark.parametrize("name", PATTERNS)
def test_an_incident_among_quiet_traffic_gives_a_finding_of_its_pattern(thresholds, name):
    """The counterpart of the quiet test: the same call finds something, so silence above is not an accident."""
    found = RUNNERS[name](frame(background() + INCIDENTS[name]()).lazy(), thresholds)
    assert found.height >= 1
    assert found.schema == pl.Schema(FINDING_SCHEMA)
    assert set(found["pattern"]) == {name}
    assert found["evidence"].list.len().min() >= 1
