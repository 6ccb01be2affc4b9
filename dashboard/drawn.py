"""Charts and small tables drawn on the server as SVG and HTML, so a first visit does not load a chart or grid library.

A cold page view (a new browser, nothing cached) pays for every frontend
bundle its elements pull in: on the Overview, Vega (``st.altair_chart``) and
the Glide data grid (``st.dataframe``) were about 1-1.5 s of the browser's CPU
(issue 16, measured with bench/bench_pages.py). A stacked bar chart and a
table of ten or twenty rows need none of it: here they are markup, sent in the
page's own message and painted by the browser directly (``st.html``).

- ``stacked_bars``: bars per time bucket stacked by a series, with a UTC time
  axis, a count axis with grid lines, a legend, and each bar's breakdown as
  its hover text (an SVG ``<title>``).
- ``table``: an HTML table formatted like ``ui.table`` (times to the second in
  UTC, counts with thousands separators, "-" for missing values), with optional
  share bars and links. A link to another page (``page_link``) switches page
  inside the running app, as ``st.page_link`` does, rather than reloading it.

Everything from the data is escaped (``html.escape``): reasons and client ids
come from logs.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import polars as pl
import streamlit as st

MISSING = "-"
#: Width of the chart's drawing in SVG units; the SVG is scaled to the page's width (text scales with it).
CHART_WIDTH = 1200
CHART_MARGIN = {"left": 64, "right": 230, "top": 12, "bottom": 44}
FONT = "font-family:'Source Sans',sans-serif;font-size:15px"
#: In-app page switches for links marked ``data-page-link``: the address changes and Streamlit's own
#: back/forward handler (a ``popstate``) runs the page with its query string in the same session, as a
#: click on ``st.page_link`` does. Without JavaScript the link still works: it loads the page anew.
NAV_SCRIPT = """<script>
if (!window.closewatchLinks) {
  window.closewatchLinks = true;
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a[data-page-link]");
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    window.history.pushState(null, "", link.href);
    window.dispatchEvent(new PopStateEvent("popstate"));
  });
}
</script>"""
TABLE_STYLE = """<style>
.cw-table-box { overflow: auto; border: 1px solid rgba(128,128,128,.25); border-radius: .5rem; }
.cw-table { border-collapse: collapse; width: 100%; font-size: 14px; line-height: 1.35; }
.cw-table th { position: sticky; top: 0; background: var(--cw-head, rgba(240,242,246,1)); font-weight: 600;
  text-align: left; color: rgba(49,51,63,.75); }
.cw-table th, .cw-table td { padding: 5px 9px; border-bottom: 1px solid rgba(128,128,128,.18); vertical-align: top; }
.cw-table td.num, .cw-table th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.cw-table td.time { white-space: nowrap; }
.cw-table tr:last-child td { border-bottom: none; }
.cw-table tr:hover td { background: rgba(128,128,128,.07); }
.cw-bar { display: inline-block; width: 70px; height: 8px; margin-right: 6px; border-radius: 4px;
  background: rgba(128,128,128,.2); vertical-align: middle; overflow: hidden; }
.cw-bar > span { display: block; height: 100%; background: #ff4b4b; }
</style>"""


# ---------------------------------------------------------------- tables


@dataclass(frozen=True)
class Column:
    """How one column of a ``table`` is shown: its heading, its width and what a cell is."""

    label: str | None = None
    #: "text", "count" (thousands separators), "code" (a number that is a name: no separator),
    #: "number" (``number_format``, printf style), "share" (a bar and a percentage of 0..1),
    #: "time" (UTC to the second), "minute" (UTC to the minute)
    kind: str | None = None
    #: The cell as a link: its address from the row (a page's path and query string for an in-app link)
    link: Callable[[dict[str, Any]], str | None] | None = None
    width: int | None = None  # pixels; None: as wide as its content asks
    help: str | None = None  # the heading's hover text
    number_format: str = "%g"


#: st.column_config widths in pixels ("medium" and unset: as the content asks).
WIDTHS = {"small": 90, "large": 360}


def columns_from_config(config: Mapping[str, Any]) -> tuple[dict[str, Column], set[str]]:
    """The columns described by an ``st.column_config`` mapping, and the names it hides (mapped to None).

    So one configuration serves a page's st.dataframe and its drawn tables alike.
    """
    columns: dict[str, Column] = {}
    hidden = set()
    for name, spec in config.items():
        if spec is None:
            hidden.add(name)
            continue
        if isinstance(spec, str):
            columns[name] = Column(spec)
            continue
        kind, number_format = None, "%g"
        type_config = spec.get("type_config") or {}
        shown_as = type_config.get("type")
        if shown_as == "number":
            number_format = type_config.get("format") or "%g"
            kind = {"%d": "code", "%,d": "count"}.get(number_format, "number")
        elif shown_as == "datetime":
            kind = "time" if "ss" in (type_config.get("format") or "ss") else "minute"
        elif shown_as == "progress":
            kind = "share"
        width = spec.get("width")
        columns[name] = Column(spec.get("label"), kind, None, WIDTHS.get(width) if isinstance(width, str) else width,
                               spec.get("help"), number_format)
    return columns, hidden


def page_href(page: str, **params: Any) -> str:
    """The address of a dashboard page with query parameters (lists repeat their name); empty values are dropped."""
    kept = {key: value for key, value in params.items() if value not in (None, "", [], ())}
    return page + ("?" + urlencode(kept, doseq=True) if kept else "")


def table(frame: pl.DataFrame, key: str, columns: Mapping[str, Column] | None = None, order: Sequence[str] | None = None,
          max_height: int | None = None, placeholder: str = MISSING) -> None:
    """``frame`` as an HTML table in a container named ``key`` (so pages and tests find it); see the module doc."""
    with st.container(key=key):
        st.html(table_html(frame, key, columns, order, max_height, placeholder), unsafe_allow_javascript=True)


def table_html(frame: pl.DataFrame, key: str, columns: Mapping[str, Column] | None = None, order: Sequence[str] | None = None,
               max_height: int | None = None, placeholder: str = MISSING) -> str:
    """The markup of ``table`` (style, table and the in-app link script)."""
    columns = dict(columns or {})
    names = [name for name in (order or frame.columns) if name in frame.columns]
    specs = {name: _spec(name, frame.schema[name], columns.get(name)) for name in names}
    head = "".join(
        f'<th class="{_align(spec.kind)}"{_attr("title", spec.help)}{_width(spec.width)}>{html.escape(spec.label or name)}</th>'
        for name, spec in specs.items())
    body = []
    for row in frame.iter_rows(named=True):
        cells = []
        for name, spec in specs.items():
            content = _cell(row[name], spec, placeholder)
            target = spec.link(row) if spec.link else None
            if target:
                content = _in_app_link(target, content)
            cells.append(f'<td class="{_align(spec.kind)}">{content}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    box = f' style="max-height:{int(max_height)}px"' if max_height else ""
    return (f'{TABLE_STYLE}<div class="cw-table-box"{box}><table class="cw-table" data-key="{html.escape(key)}">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{NAV_SCRIPT}')


def _spec(name: str, dtype: pl.DataType, given: Column | None) -> Column:
    """The column's spec with its kind filled in from its type when not given."""
    given = given or Column()
    kind = given.kind
    if kind is None:
        if isinstance(dtype, pl.Datetime):
            kind = "time"
        elif dtype.is_integer():
            kind = "code" if name.endswith("code") else "count"  # a code is a name, not a quantity
        else:
            kind = "text"
    return Column(given.label or name, kind, given.link, given.width, given.help, given.number_format)


def _cell(value: Any, spec: Column, placeholder: str) -> str:
    kind = spec.kind
    if value is None or value == "":
        return html.escape(placeholder)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return html.escape(", ".join(map(str, value)))
    if kind == "number" and isinstance(value, int | float):
        try:
            return html.escape(spec.number_format % value)
        except (TypeError, ValueError):
            return html.escape(str(value))
    if isinstance(value, float) and kind not in ("share",):
        return f"{value:,.6g}"
    if kind == "count":
        return f"{value:,}"
    if kind == "code":
        return html.escape(str(value))
    if kind == "share":
        fill = max(0.0, min(1.0, float(value))) * 100
        return f'<span class="cw-bar"><span style="width:{fill:.1f}%"></span></span>{float(value):.1%}'
    if kind in ("time", "minute") and isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return moment.strftime("%Y-%m-%d %H:%M:%S" if kind == "time" else "%Y-%m-%d %H:%M")
    return html.escape(str(value))


def _align(kind: str | None) -> str:
    return {"count": "num", "number": "num", "share": "num", "time": "time", "minute": "time"}.get(kind or "", "")


def _attr(name: str, value: str | None) -> str:
    return f' {name}="{html.escape(value)}"' if value else ""


def _width(pixels: int | None) -> str:
    return f' style="min-width:{int(pixels)}px"' if pixels else ""


# ---------------------------------------------------------------- sections that open and close


DETAILS_STYLE = """<style>
.cw-details details { border: 1px solid rgba(128,128,128,.25); border-radius: .5rem; margin-bottom: .5rem; }
.cw-details summary { cursor: pointer; padding: .6rem 1rem; }
.cw-details summary:hover { color: #ff4b4b; }
.cw-details .cw-body { padding: 0 1rem .6rem 1rem; }
.cw-details ul, .cw-details ol { margin: .2rem 0 .6rem 0; }
.cw-details code { font-size: .8em; background: rgba(128,128,128,.12); padding: .1em .3em; border-radius: .25rem; }
</style>"""


@dataclass(frozen=True)
class Section:
    """One section of ``sections``: its heading (markup) and its body (markup); ``opened`` shows it open at first."""

    heading: str
    body: str
    opened: bool = False


def sections(items: Sequence[Section], key: str) -> None:
    """Sections that open on a click, as HTML ``<details>`` in a container named ``key``.

    Each ``st.expander`` costs a first view about 30 ms of the browser's main thread (15 of them 0.4-0.5 s,
    measured); a ``<details>`` element is the browser's own. Headings and bodies are markup: escape what
    comes from data (``html.escape``).
    """
    with st.container(key=key):
        st.html(sections_html(items, key), unsafe_allow_javascript=True)


def sections_html(items: Sequence[Section], key: str) -> str:
    """The markup of ``sections`` (style, the sections and the in-app link script)."""
    parts = [f'<details{" open" if item.opened else ""}><summary>{item.heading}</summary><div class="cw-body">{item.body}</div></details>'
             for item in items]
    return f'{DETAILS_STYLE}<div class="cw-details" data-key="{html.escape(key)}">{"".join(parts)}</div>{NAV_SCRIPT}'


def page_link(href: str, label: str) -> str:
    """A link to a dashboard page that switches page inside the app (see ``NAV_SCRIPT``)."""
    return _in_app_link(href, html.escape(label))


def _in_app_link(href: str, markup: str) -> str:
    """``markup`` (already escaped) as a link that ``NAV_SCRIPT`` turns into an in-app page switch."""
    return f'<a href="{html.escape(href)}" target="_self" data-page-link>{markup}</a>'


# ---------------------------------------------------------------- charts


def stacked_bars(frame: pl.DataFrame, series: str, bucket_s: int, colors: Mapping[str, str], x_title: str,
                 y_title: str = "closures", value: str = "closures", height: int = 300, key: str = "chart") -> None:
    """A stacked bar chart of ``frame`` (bucket, ``series``, ``value``) in a container named ``key``."""
    with st.container(key=key):
        # st.html's sanitiser keeps HTML only and drops SVG; Markdown passes an HTML block (a div on its own
        # lines, up to a blank line, which the SVG never holds) as it is. Everything from the data is escaped.
        svg = stacked_bars_svg(frame, series, bucket_s, colors, x_title, y_title, value, height)
        st.markdown(f"<div>\n{svg}\n</div>", unsafe_allow_html=True)


def stacked_bars_svg(frame: pl.DataFrame, series: str, bucket_s: int, colors: Mapping[str, str], x_title: str,
                     y_title: str = "closures", value: str = "closures", height: int = 300) -> str:
    """The SVG of ``stacked_bars``: one path per series (a rectangle per bucket), one hover target per bar.

    ``colors`` orders the stack (bottom first) and the legend; a series it
    does not name is drawn after them in grey. Rows without a bucket (closures whose log gave no time)
    have no place on a time axis and are left out, as Vega left them out.
    """
    sums = frame.filter(pl.col("bucket").is_not_null()).group_by("bucket", series).agg(pl.col(value).sum()).sort("bucket")
    order = [name for name in colors if name in set(sums[series].to_list())]
    order += sorted(set(sums[series].drop_nulls().to_list()) - set(order))
    per_bucket: dict[datetime, dict[str, int]] = {}
    for bucket, name, count in sums.iter_rows():
        per_bucket.setdefault(bucket, {})[name] = int(count)
    left, right, top, bottom = (CHART_MARGIN[side] for side in ("left", "right", "top", "bottom"))
    plot_w, plot_h = CHART_WIDTH - left - right, height - top - bottom
    if not per_bucket:
        return f'<svg viewBox="0 0 {CHART_WIDTH} {height}" width="100%" role="img"></svg>'
    first, last = min(per_bucket), max(per_bucket) + timedelta(seconds=bucket_s)
    span_s = max((last - first).total_seconds(), 1.0)
    x_of = lambda moment: left + (moment - first).total_seconds() / span_s * plot_w
    peak = max(sum(counts.values()) for counts in per_bucket.values())
    ticks = nice_ticks(peak)
    top_value = ticks[-1] or 1
    y_of = lambda count: top + plot_h - count / top_value * plot_h
    bar_w = max(plot_w * bucket_s / span_s - (1 if plot_w * bucket_s / span_s > 3 else 0), 0.6)
    paths: dict[str, list[str]] = {name: [] for name in order}
    hovers = []
    for bucket in sorted(per_bucket):
        counts = per_bucket[bucket]
        x = x_of(bucket)
        base = 0
        for name in order:
            count = counts.get(name, 0)
            if count <= 0:
                continue
            y0, y1 = y_of(base), y_of(base + count)
            paths[name].append(f"M{x:.1f} {y1:.1f}h{bar_w:.1f}v{y0 - y1:.2f}h{-bar_w:.1f}z")
            base += count
        lines = [f"{bucket:%Y-%m-%d %H:%M} UTC: {base:,} {y_title}"]
        lines += [f"{name}: {counts[name]:,}" for name in order if counts.get(name)]
        hovers.append(f'<rect x="{x:.1f}" y="{top}" width="{bar_w:.1f}" height="{plot_h}" fill="transparent">'
                      f'<title>{html.escape(chr(10).join(lines))}</title></rect>')
    parts = [f'<svg viewBox="0 0 {CHART_WIDTH} {height}" width="100%" role="img" style="{FONT}" '
             f'aria-label="{html.escape(y_title)} per {html.escape(x_title)}">']
    for tick in ticks:  # grid lines and the count axis
        y = y_of(tick)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="rgba(128,128,128,.25)"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="currentColor" fill-opacity=".7">{tick:,}</text>')
    parts.append(f'<text transform="translate(14 {top + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle" '
                 f'fill="currentColor">{html.escape(y_title)}</text>')
    for name in order:
        parts.append(f'<path d="{"".join(paths[name])}" fill="{colors.get(name, "#bab0ac")}"/>')
    for moment in time_ticks(first, last):
        x = x_of(moment)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 5}" stroke="currentColor" stroke-opacity=".5"/>'
                     f'<text x="{x:.1f}" y="{top + plot_h + 18}" text-anchor="middle" fill="currentColor" fill-opacity=".7">'
                     f'{moment:%b %d %H:%M}</text>')
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="currentColor" stroke-opacity=".5"/>')
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle" fill="currentColor">{html.escape(x_title)}</text>')
    parts.extend(hovers)
    legend_x = left + plot_w + 24
    parts.append(f'<text x="{legend_x}" y="{top + 10}" font-weight="600" fill="currentColor">{html.escape(series)}</text>')
    for index, name in enumerate(order):
        y = top + 28 + index * 17
        parts.append(f'<rect x="{legend_x}" y="{y - 10}" width="11" height="11" rx="2" fill="{colors.get(name, "#bab0ac")}"/>'
                     f'<text x="{legend_x + 17}" y="{y}" fill="currentColor">{html.escape(str(name))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def nice_ticks(peak: float, count: int = 5) -> list[int]:
    """Round tick values from 0 to at least ``peak`` (1, 2 or 5 times a power of ten apart)."""
    if peak <= 0:
        return [0, 1]
    raw = peak / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(int(step), 1)
    return list(range(0, int(math.ceil(peak / step)) * step + 1, step))


#: Candidate steps of the time axis, in seconds; the smallest giving at most 8 labels wins.
TIME_STEPS_S = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400)


def time_ticks(first: datetime, last: datetime, most: int = 8) -> list[datetime]:
    """UTC moments on round steps between ``first`` and ``last``, at most ``most`` of them."""
    span_s = (last - first).total_seconds()
    step = next((s for s in TIME_STEPS_S if span_s / s <= most), TIME_STEPS_S[-1])
    epoch = datetime(1970, 1, 1, tzinfo=first.tzinfo)
    start = math.ceil((first - epoch).total_seconds() / step) * step
    return [epoch + timedelta(seconds=s) for s in range(int(start), int((last - epoch).total_seconds()) + 1, step)]
