"""The server-drawn chart and tables (dashboard/drawn.py): what they show, and that log text cannot become markup."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import polars as pl

from closewatch.dashboard import drawn

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def test_a_table_writes_counts_codes_times_and_missing_values_like_every_page():
    frame = pl.DataFrame({"close_code": [1006, None], "closures": [21744, 3], "last": [T0, None], "reason": ["gone", None]},
                         schema={"close_code": pl.Int64, "closures": pl.Int64, "last": pl.Datetime("us", "UTC"), "reason": pl.String})
    markup = drawn.table_html(frame, "t")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", markup)
    assert cells == ["1006", "21,744", "2026-03-01 10:00:00", "gone", "-", "3", "-", "-"]
    assert 'data-key="t"' in markup


def test_text_from_logs_is_shown_never_run():
    frame = pl.DataFrame({"reason": ['<script>alert("x")</script><img src=x onerror=alert(1)>']})
    markup = drawn.table_html(frame, "t", {"reason": drawn.Column(link=lambda row: drawn.page_href("explorer", q=row["reason"]))})
    assert markup.count("<script>") == 1  # the page's own link script only
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img" in markup
    assert "<img" not in markup
    href = re.search(r'<a href="([^"]*)"', markup).group(1)
    assert '"' not in href and "<" not in href and href.startswith("explorer?q=%3Cscript%3E")


def test_links_switch_page_inside_the_app_and_keep_every_filter():
    frame = pl.DataFrame({"client": ["acme & co"], "errors": [4]})
    markup = drawn.table_html(frame, "t", {"client": drawn.Column(
        link=lambda row: drawn.page_href("explorer", client=row["client"], severity=["error", "critical"], q="", at=None))})
    assert '<a href="explorer?client=acme+%26+co&amp;severity=error&amp;severity=critical" target="_self" data-page-link>acme &amp; co</a>' in markup
    assert "PopStateEvent" in markup and "a[data-page-link]" in drawn.NAV_SCRIPT


def test_a_share_is_a_bar_and_a_percentage():
    markup = drawn.table_html(pl.DataFrame({"share": [0.25, 1.5]}), "t", {"share": drawn.Column("error rate", kind="share")})
    assert "<th" in markup and ">error rate</th>" in markup
    assert re.findall(r'width:([\d.]+)%"></span></span>([\d.]+%)', markup) == [("25.0", "25.0%"), ("100.0", "150.0%")]


def timeline() -> pl.DataFrame:
    rows = [(T0, "auth", 5), (T0, "normal", 100), (T0 + timedelta(hours=1), "normal", 40), (T0 + timedelta(hours=1), "odd", 2),
            (T0 + timedelta(hours=1), "auth", 1), (T0 + timedelta(hours=1), "auth", 2)]
    return pl.DataFrame(rows, schema={"bucket": pl.Datetime("us", "UTC"), "category": pl.String, "closures": pl.Int64}, orient="row")


def test_each_bar_says_its_total_and_breakdown_on_hover():
    svg = drawn.stacked_bars_svg(timeline(), "category", 3600, {"normal": "#111111", "auth": "#222222"}, "UTC, one bar = 1 h")
    titles = re.findall(r"<title>(.*?)</title>", svg, re.S)
    assert titles == ["2026-03-01 10:00 UTC: 105 closures\nnormal: 100\nauth: 5",
                      "2026-03-01 11:00 UTC: 45 closures\nnormal: 40\nauth: 3\nodd: 2"]
    # stacked in the order of the colors, then what they do not name, in grey; the legend in the same order
    assert re.findall(r'<path d="[^"]*" fill="([^"]*)"/>', svg) == ["#111111", "#222222", "#bab0ac"]
    legend = re.findall(r"<text x=\"\d+\" y=\"\d+\" fill=\"currentColor\">(\w+)</text>", svg)
    assert legend == ["normal", "auth", "odd"]
    assert "UTC, one bar = 1 h" in svg and ">closures</text>" in svg
    assert "\n\n" not in svg  # Markdown would end the chart's HTML block at a blank line


def test_bar_heights_are_proportional_to_the_counts():
    frame = pl.DataFrame({"bucket": [T0, T0 + timedelta(hours=1)], "category": ["a", "a"], "closures": [100, 50]},
                         schema={"bucket": pl.Datetime("us", "UTC"), "category": pl.String, "closures": pl.Int64})
    svg = drawn.stacked_bars_svg(frame, "category", 3600, {"a": "#000000"}, "x")
    heights = [float(h) for h in re.findall(r"v([\d.]+)h", re.search(r'<path d="([^"]*)"', svg).group(1))]
    assert len(heights) == 2 and abs(heights[0] - 2 * heights[1]) < 0.05


def test_closures_without_a_time_are_left_off_the_time_axis():
    frame = pl.concat([timeline(), pl.DataFrame({"bucket": [None], "category": ["auth"], "closures": [7]},
                                                schema=timeline().schema)])
    titles = re.findall(r"<title>(.*?)</title>", drawn.stacked_bars_svg(frame, "category", 3600, {}, "x"), re.S)
    assert [title.split(":")[0] for title in titles] == ["2026-03-01 10", "2026-03-01 11"]


def test_an_empty_timeline_is_an_empty_chart():
    empty = timeline().clear()
    assert "<path" not in drawn.stacked_bars_svg(empty, "category", 3600, {}, "x")


def test_ticks_are_round_and_cover_the_data():
    assert drawn.nice_ticks(183_000) == [0, 50_000, 100_000, 150_000, 200_000]
    assert drawn.nice_ticks(7) == [0, 2, 4, 6, 8]
    assert drawn.nice_ticks(0) == [0, 1]
    first = datetime(2026, 3, 1, 10, 17, tzinfo=UTC)
    ticks = drawn.time_ticks(first, first + timedelta(days=2))
    assert 1 < len(ticks) <= 8 and all(first <= t <= first + timedelta(days=2) for t in ticks)
    assert all(t.minute == 0 and t.hour % 6 == 0 for t in ticks)


def test_sections_open_as_asked_and_their_links_stay_in_the_app():
    markup = drawn.sections_html([drawn.Section("a", "x"), drawn.Section("b", drawn.page_link("explorer?category=a&q=1", "<see>"), True)],
                                 "guides")
    assert re.findall(r"<details( open)?><summary>(\w)</summary>", markup) == [("", "a"), (" open", "b")]
    assert '<a href="explorer?category=a&amp;q=1" target="_self" data-page-link>&lt;see&gt;</a>' in markup
    assert 'data-key="guides"' in markup and drawn.NAV_SCRIPT in markup
