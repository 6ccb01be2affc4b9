"""The summary views (schema migration from analysis/summaries.py) on a real store."""

import polars as pl
import pytest

from closewatch.store import Store
from tests.analysis.test_detection import write_closures
from tests.analysis.test_detectors import DAY, HOUR, MINUTE, T0, closure, every, violations


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    store = Store(tmp_path_factory.mktemp("summaries") / "closewatch.duckdb")
    rows = every(T0, HOUR, 20, client="app")  # 20 normal closures on day one
    rows += every(T0 + 30 * MINUTE, HOUR, 5, client="app", category="network_abnormal")
    rows += violations(T0 + DAY, 4, client="kiosk", chunk_ms=1200) + violations(T0 + DAY, 1, client="kiosk", chunk_ms=20)
    rows += violations(T0 + DAY, 2, client="web", chunk_ms=1450)
    rows += [closure(T0 + DAY, client="batch", category="audio_rate_exceeded", rate=r,
                     reason=f"Audio Transmission Rate Exceeded: Received {r} sec. audio in 1.0 sec") for r in (2.0, 2.4, 3.0)]
    rows += [closure(T0 + DAY + HOUR, client=c, category="invalid_message", reason=f"Invalid Message Type: {t}")
             for c, t in (("bot", "KeepAlive"), ("bot", "Foo"), ("web", "Bar"))]
    rows += [closure(T0 + DAY, client="quiet", category="session_expired") for _ in range(3)]
    rows += [closure(T0 + DAY, client="quiet", category="concurrency_limit")]
    write_closures(store, rows)
    with store.transaction() as con:  # the catalog's severities of these categories
        con.execute("""UPDATE closures SET severity = CASE WHEN category IN ('normal', 'session_expired') THEN 'info'
                       WHEN category IN ('network_abnormal', 'concurrency_limit') THEN 'warning' ELSE 'error' END""")
    return store


def test_client_daily_error_rates(store):
    day_one = store.query("SELECT * FROM client_daily_error_rates WHERE client_id = 'app'").row(0, named=True)
    assert (day_one["closures"], day_one["errors"], day_one["disconnects"]) == (25, 5, 5)
    assert day_one["error_rate"] == 0.2
    assert day_one["top_error_category"] == "network_abnormal"
    kiosk = store.query("SELECT violations, refusals, top_error_category FROM client_daily_error_rates WHERE client_id = 'kiosk'")
    assert kiosk.rows() == [(5, 0, "input_duration_violation")]


def test_errors_are_warning_and_above_as_on_the_dashboard(store):
    """An expired session (severity info) is no error; a concurrency refusal (warning) is, in both client views."""
    daily = store.query("SELECT closures, errors, expired, top_error_category FROM client_daily_error_rates WHERE client_id = 'quiet'")
    assert daily.rows() == [(4, 1, 3, "concurrency_limit")]
    overall = store.query("SELECT closures, errors, error_rate FROM client_error_rates WHERE client_id = 'quiet'")
    assert overall.rows() == [(4, 1, 0.25)]


def test_violator_chunk_ms_stats_and_histogram(store):
    stats = store.query("SELECT client_id, violations, min_ms, median_ms, max_ms, too_long, too_short FROM violator_chunk_ms ORDER BY client_id")
    assert stats.rows() == [("kiosk", 5, 20.0, 1200.0, 1200.0, 4, 1), ("web", 2, 1450.0, 1450.0, 1450.0, 2, 0)]
    histogram = store.query("SELECT client_id, bucket_ms, violations FROM violator_chunk_ms_histogram ORDER BY ALL")
    assert histogram.rows() == [("kiosk", 0.0, 1), ("kiosk", 1200.0, 4), ("web", 1400.0, 2)]


def test_violator_audio_rate(store):
    assert store.query("SELECT client_id, violations, median_ratio, max_ratio FROM violator_audio_rate").rows() == [("batch", 3, 2.4, 3.0)]


def test_reason_templates_group_reasons_by_meaning_most_frequent_first(store):
    top = store.query("SELECT template, category, closures, clients, distinct_reasons FROM reason_templates")
    assert top.rows() == [
        ("Input duration violation: <n> ms. Expected between <n> and <n> ms", "input_duration_violation", 7, 2, 3),
        ("Audio Transmission Rate Exceeded: Received <n> sec. audio in <n> sec", "audio_rate_exceeded", 3, 1, 3),
        ("Invalid Message Type: …", "invalid_message", 3, 2, 3),
    ]


def test_users_can_call_the_template_macro_from_read_only_sql(store):
    frame = store.user_query("SELECT reason_template('Input duration violation: 1200 ms') AS t")
    assert frame.equals(pl.DataFrame({"t": ["Input duration violation: <n> ms"]}))
