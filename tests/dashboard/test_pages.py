"""Every dashboard page through Streamlit's AppTest, on a real DuckDB file.

The shared database holds generator logs loaded through the real ingest
pipeline, with the real detectors run over them; tests that write (uploads,
silences, alert runs) work on their own copy. Numbers on the pages are checked
against SQL run independently on the same file.
"""

from __future__ import annotations

import gzip
import html
import json
import re
import shutil
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs

import polars as pl
import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from closewatch.analysis.catalog import CATEGORIES, catalog_table, load_catalog
from closewatch.analysis.detection import detect
from closewatch import jobs
from closewatch.cli.main import cli
from closewatch.store import Store
from closewatch.dashboard import ui
from closewatch.generator.traffic import GeneratorConfig, generate
from closewatch.ingest.envelopes import get_envelope
from closewatch.ingest.sources import bytes_input, expand_inputs

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
TIMEOUT = 60


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    """Two days of generator logs (with incidents), ingested and analyzed, in a module-wide file."""
    root = tmp_path_factory.mktemp("dashboard")
    config = GeneratorConfig(days=2, sessions_per_day=800, clients=10, seed=7, formats=("jsonl", "csv"))
    generate(root / "logs", config)
    store = Store(root / "demo.duckdb")
    jobs.ingest(store, expand_inputs([str(root / "logs")]))
    detect(store)
    return store.path


@pytest.fixture
def own_db(demo_db: Path, tmp_path: Path) -> Path:
    """A private copy of the demo database, for tests that write."""
    path = tmp_path / "own.duckdb"
    shutil.copy(demo_db, path)
    return path


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No closewatch.toml or alerts.toml of the repo or the user leaks into the app."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLOSEWATCH_CONFIG", raising=False)


def app(db: Path, monkeypatch: pytest.MonkeyPatch, page: str | None = None, **query: str | list[str]) -> AppTest:
    """The app on ``db``, run once (on ``page`` if given, with URL query parameters)."""
    monkeypatch.setenv("CLOSEWATCH_DB", str(db))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    if page:
        at.switch_page(ui.PAGES[page]).run()
    return at


def sql(db: Path, query: str, params: list | None = None):
    return Store(db).query(query, params)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def texts(at: AppTest) -> str:
    """Every markdown, caption, info, warning and success text of the page, joined."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in at.info] + [e.value for e in at.warning] + [e.value for e in at.success]
    return "\n".join(parts)


def no_failures(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def table(at: AppTest, *columns: str, index: int = 0):
    """The index-th table of the page with these columns (AppTest knows the keys of selectable tables only)."""
    return table_element(at, *columns, index=index).value


def table_element(at: AppTest, *columns: str, index: int = 0):
    """The index-th st.dataframe element with these columns, for its display settings (order, formats, placeholder)."""
    matches = [frame for frame in at.dataframe if set(columns) <= set(frame.value.columns)]
    assert len(matches) > index, f"no table with columns {columns}"
    return matches[index]


def column_formats(element) -> dict[str, str]:
    """Each configured column's number format."""
    return {name: spec.get("type_config", {}).get("format") for name, spec in json.loads(element.proto.columns).items()}


ERRORS = ("warning", "error", "critical")
MISSING = ui.MISSING
EXPLORER_ROWS = 100  # the newest closures the Explorer lists (queries.explorer.EXPLORER_ROWS)
ERROR_SQL = "severity IN ('warning', 'error', 'critical')"
SEVERITY_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3}


class _DrawnTable(HTMLParser):
    """The headings, cell texts and cell links of one table drawn by dashboard/drawn.py (``data-key``)."""

    def __init__(self, key: str):
        super().__init__()
        self.key, self.inside, self.cell = key, False, None
        self.heads: list[str] = []
        self.rows: list[list[str]] = []
        self.links: list[list[str | None]] = []
        self.href: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.inside = attrs.get("data-key") == self.key
        elif self.inside and tag == "tr":
            self.rows.append([])
            self.links.append([])
        elif self.inside and tag in ("th", "td"):
            self.cell, self.href = "", None
        elif self.inside and tag == "a" and self.cell is not None:
            self.href = attrs.get("href")

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("th", "td") and self.cell is not None:
            if tag == "th":
                self.heads.append(self.cell.strip())
            else:
                self.rows[-1].append(self.cell.strip())
                self.links[-1].append(self.href)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def drawn_table(at: AppTest, key: str) -> tuple[pl.DataFrame, list[dict[str, str | None]]]:
    """A table drawn as HTML (dashboard/drawn.py): its cells as shown (text) by heading, and each row's links."""
    bodies = [element.proto.body for element in at.get("html") if f'data-key="{key}"' in element.proto.body]
    assert bodies, f"no table {key} on the page"
    parsed = _DrawnTable(key)
    parsed.feed(bodies[0])
    rows = [row for row in parsed.rows if row]
    links = [dict(zip(parsed.heads, row, strict=True)) for row in parsed.links if row]
    return pl.DataFrame(rows, schema=parsed.heads, orient="row"), links


def drawn_sections(at: AppTest, key: str) -> list[str]:
    """The headings of the sections drawn as HTML <details> (dashboard/drawn.py), as text."""
    bodies = [element.proto.body for element in at.get("html") if f'data-key="{key}"' in element.proto.body]
    assert bodies, f"no sections {key} on the page"
    return [html.unescape(re.sub(r"<[^>]+>", "", heading)) for heading in re.findall(r"<summary>(.*?)</summary>", bodies[0])]


def number(text: str) -> int:
    """A count as a page writes it (21,744) back to an int."""
    assert re.fullmatch(r"\d{1,3}(,\d{3})*", text), f"{text!r} is not a count written with thousands separators"
    return int(text.replace(",", ""))


def follow(at: AppTest, href: str) -> AppTest:
    """Open a drawn table's link (a page's address and its query string) as the browser does."""
    path, _, query = href.partition("?")
    page = next(name for name, url in ui.PAGES_URL.items() if url == path)
    at.switch_page(ui.PAGES[page])
    at.query_params.clear()
    for name, values in parse_qs(query).items():
        at.query_params[name] = values if len(values) > 1 or name in LIST_PARAMS else values[0]
    return at.run()


#: The Explorer's filters that take several values (multiselects).
LIST_PARAMS = {"code", "category", "severity", "client"}


def select_row(at: AppTest, table_key: str, row: int) -> AppTest:
    """Click a row of an st.dataframe(on_select="rerun") the way the browser reports it."""
    at.session_state[table_key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    return at.run()


# ---------------------------------------------------------------- every page


@pytest.mark.parametrize("page, title", [
    ("overview", "Overview"), ("upload", "Upload logs"), ("explorer", "Explorer"), ("patterns", "Patterns"),
    ("alerts", "Alerts"), ("sql", "SQL"), ("reference", "Reference"),
])
def test_every_page_renders_on_loaded_data(demo_db, monkeypatch, page, title):
    at = app(demo_db, monkeypatch)
    # AppTest drops the entry script's sidebar after switch_page, so the sidebar is checked on the first run
    closures = sql(demo_db, "SELECT count(*) FROM closures").item()
    assert f"{closures:,} closures" in "\n".join(c.value for c in at.sidebar.caption)
    at.switch_page(ui.PAGES[page]).run()
    no_failures(at)
    assert at.title[0].value == title


@pytest.mark.parametrize("page", ["overview", "explorer", "patterns"])
def test_an_empty_database_points_to_the_upload_page(tmp_path, monkeypatch, page):
    at = app(tmp_path / "empty.duckdb", monkeypatch, page)
    no_failures(at)
    assert "No closures loaded yet" in texts(at)
    assert any(link.proto.page == "upload" for link in at.page_link)


def test_a_broken_config_file_is_one_sentence_not_a_traceback(demo_db, tmp_path, monkeypatch):
    config = tmp_path / "broken.toml"
    config.write_text("[store\nlock_timeout_s = 1\n")
    monkeypatch.setenv("CLOSEWATCH_CONFIG", str(config))
    at = app(demo_db, monkeypatch)
    assert not at.exception
    assert at.error and "is not valid TOML" in at.error[0].value


# ---------------------------------------------------------------- overview


def test_overview_kpis_match_the_database(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch)
    no_failures(at)
    total, errors, clients, affected, not_normal = sql(demo_db, f"""
        SELECT count(*), count(*) FILTER (WHERE {ERROR_SQL}), count(DISTINCT client_id),
               count(DISTINCT client_id) FILTER (WHERE {ERROR_SQL}), count(*) FILTER (WHERE category <> 'normal') FROM closures
    """).row(0)
    assert errors < not_normal  # info-level ends (going away, expiry) are in the data and must not count as errors
    assert metric(at, "Sessions closed") == f"{total:,}"
    assert metric(at, "Error share") == f"{errors / total:.1%}"
    assert metric(at, "Clients affected") == f"{affected:,} of {clients:,}"
    top_name, top_count = sql(demo_db, f"""
        SELECT category, count(*) AS n FROM closures WHERE {ERROR_SQL} GROUP BY 1 ORDER BY n DESC, category LIMIT 1
    """).row(0)
    markdown = [m.value for m in at.markdown]
    assert f"#### {top_name}" in markdown  # the name is the card's big text, not a tag
    assert f"Top error category :gray-badge[{top_count:,} errors]" in markdown
    assert "warning, error or critical" in next(m for m in at.metric if m.label == "Error share").help
    first, last = sql(demo_db, "SELECT min(ts), max(ts) FROM closures").row(0)
    assert f"The whole span of the loaded data: {ui.fmt_time(first)} to {ui.fmt_time(last)}" in texts(at)
    chart = next((m.value for m in at.markdown if "<svg" in m.value), "")
    assert "closures per UTC, one bar = " in chart, "the timeline chart is missing"
    busiest = sql(demo_db, "SELECT count(*) AS n FROM closures GROUP BY date_trunc('hour', ts) ORDER BY n DESC LIMIT 1").item()
    assert f": {busiest:,} closures" in chart  # each bar's hover text gives its total


def test_overview_range_from_the_url_narrows_every_number(demo_db, monkeypatch):
    first = sql(demo_db, "SELECT min(ts) FROM closures").item()
    start = (first + timedelta(hours=6)).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=12)  # the page's "to" includes its whole minute
    at = app(demo_db, monkeypatch, **{"from": start.strftime("%Y-%m-%dT%H:%M"), "to": end.strftime("%Y-%m-%dT%H:%M")})
    no_failures(at)
    expected = sql(demo_db, "SELECT count(*) FROM closures WHERE ts >= ? AND ts < ?", [start, end + timedelta(minutes=1)]).item()
    everything = sql(demo_db, "SELECT count(*) FROM closures").item()
    assert 0 < expected < everything
    assert metric(at, "Sessions closed") == f"{expected:,}"
    # the links to the rows carry the same range
    link = next(each for each in at.page_link if each.value == "All closures")
    assert f"from={start:%Y-%m-%dT%H}%3A00" in link.proto.query_string


def test_overview_links_lead_to_the_rows_behind_each_number(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch)
    links = {link.value: link.proto for link in at.page_link}
    errors = sql(demo_db, f"SELECT count(*) FROM closures WHERE {ERROR_SQL}").item()
    error_link = links[f"{errors:,} errors"]
    assert error_link.page == "explorer"
    assert sorted(error_link.query_string.split("&")) == sorted(f"severity={name}" for name in ERRORS)
    # and the Explorer behind it counts exactly the number on the link
    at.switch_page(ui.PAGES["explorer"])
    at.query_params.update({"severity": list(ERRORS)})
    at.run()
    assert f"{errors:,} closures match" in texts(at)


def test_clicking_a_top_client_opens_the_explorer_filtered_to_it(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch)
    clients, links = drawn_table(at, "clients_table")
    client, errors = clients["client"][0], number(clients["errors"][0])
    follow(at, links[0]["client"])
    no_failures(at)
    assert at.title[0].value == "Explorer"
    assert at.multiselect(key="client").value == [client]
    assert sorted(at.multiselect(key="severity").value) == sorted(ERRORS)
    expected = sql(demo_db, f"SELECT count(*) FROM closures WHERE client_id = ? AND {ERROR_SQL}", [client]).item()
    assert f"{expected:,} closures match" in texts(at)
    assert errors == expected  # the number in the row clicked is the number of rows it opens


def test_categories_reconcile_between_the_overview_and_the_reference(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch)
    no_failures(at)
    overview, _ = drawn_table(at, "categories_table")
    assert overview["category"].is_unique().all(), "one row per category, whatever severities it holds"
    shown = dict(zip(overview["category"], map(number, overview["closures"]), strict=True))
    at.switch_page(ui.PAGES["reference"]).run()
    no_failures(at)
    loaded = {}
    for label in drawn_sections(at, "guides"):
        found = re.search(r"\((\w+)\): ([\d,]+) closures loaded", label)
        if found and found.group(2) != "0":
            loaded[found.group(1)] = int(found.group(2).replace(",", ""))
    assert shown == loaded
    assert shown == dict(sql(demo_db, "SELECT category, count(*) FROM closures GROUP BY 1").iter_rows())
    assert sum(shown.values()) == sql(demo_db, "SELECT count(*) FROM closures").item()


def test_top_reasons_name_the_close_code_and_hold_only_errors(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch)
    reasons, links = drawn_table(at, "reasons_table")
    assert set(reasons["severity"]) <= set(ERRORS)
    expected = sql(demo_db, f"""
        SELECT close_code, count(*) AS n FROM closures WHERE {ERROR_SQL} GROUP BY close_code, close_reason, category, severity
        ORDER BY n DESC, close_code LIMIT 10
    """)
    assert [number(n) for n in reasons["closures"]] == expected["n"].to_list()
    assert reasons["code"].to_list() == [str(code) for code in expected["close_code"]]  # 1006, never 1,006
    assert reasons.columns[:2] == ["closures", "code"]  # the code right beside the count, before the reason
    # going away without a reason is two different things: 1001 (info, not an error) and 1012 (warning)
    going_away = reasons.filter(pl.col("category") == "going_away")
    assert set(going_away["code"]) <= {"1012"}
    # a click opens exactly those closures: code, reason, category and severity
    row = reasons["code"].to_list().index("1006")
    follow(at, links[row]["reason"])
    no_failures(at)
    assert at.multiselect(key="code").value == ["1006"]
    assert f"{reasons['closures'][row]} closures match" in texts(at)


def test_every_count_is_written_with_thousands_separators(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch)
    categories, _ = drawn_table(at, "categories_table")
    expected = dict(sql(demo_db, "SELECT category, count(*) FROM closures GROUP BY 1").iter_rows())
    assert max(expected.values()) >= 1000  # so a separator must show
    assert dict(zip(categories["category"], categories["closures"], strict=True)) == {name: f"{n:,}" for name, n in expected.items()}
    assert next(m for m in at.metric if m.label == "Sessions closed").value == f"{sql(demo_db, 'SELECT count(*) FROM closures').item():,}"
    at.switch_page(ui.PAGES["explorer"]).run()
    explorer, _ = drawn_table(at, "closures_table")
    codes = sql(demo_db, f"SELECT close_code FROM closures WHERE category <> 'normal' ORDER BY ts DESC LIMIT {EXPLORER_ROWS}")["close_code"]
    # 1006, never 1,006; a missing code reads "-", never "None"
    assert explorer["code"].to_list() == [MISSING if code is None else str(code) for code in codes]


# ---------------------------------------------------------------- explorer


def test_explorer_filters_from_the_url_and_counts_the_matches(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch, "explorer")
    at.multiselect(key="category").set_value(["input_duration_violation", "audio_rate_exceeded"])
    at.text_input(key="q").set_value("violation")
    at.run()
    no_failures(at)
    expected = sql(demo_db, """
        SELECT count(*) FROM closures
        WHERE category IN ('input_duration_violation', 'audio_rate_exceeded') AND contains(lower(close_reason), 'violation')
    """).item()
    assert expected > 0
    assert f"{expected:,} closures match" in texts(at)
    shown, _ = drawn_table(at, "closures_table")
    assert set(shown["category"]) == {"input_duration_violation"}
    assert {"action", "retry safe"} <= set(shown.columns)


def test_explorer_opens_one_closure_with_advice_and_its_neighbours(demo_db, monkeypatch):
    event_id, session, client, action, retry = sql(demo_db, """
        SELECT event_id, session_id, client_id, action, retry_safe FROM closures
        WHERE category = 'input_duration_violation' AND session_id IS NOT NULL AND chunk_ms IS NOT NULL ORDER BY ts LIMIT 1
    """).row(0)
    at = app(demo_db, monkeypatch, "explorer", event=event_id)
    no_failures(at)
    shown = texts(at)
    assert action in shown and ui.RETRY_ADVICE[retry] in shown
    assert "chunks were" in shown  # the number read out of the reason, in words
    assert ":red-badge[input_duration_violation]" in shown
    session_rows = table(at, "session_id", "event_id", index=0)
    assert set(session_rows["session_id"]) == {session}
    neighbours = table(at, "client_id", "event_id", index=1)
    assert set(neighbours["client_id"]) == {client} and event_id in set(neighbours["event_id"])


def test_clicking_an_explorer_row_opens_that_closure(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch, "explorer", category=["input_duration_violation", "auth_failed"])
    shown, links = drawn_table(at, "closures_table")
    newest = sql(demo_db, """SELECT event_id, category FROM closures WHERE category IN ('input_duration_violation', 'auth_failed')
                             ORDER BY ts DESC LIMIT 1""").row(0, named=True)
    query = parse_qs(links[0]["time (UTC)"].partition("?")[2])
    assert query["event"] == [newest["event_id"]] and query["category"] == ["input_duration_violation", "auth_failed"]
    follow(at, links[0]["time (UTC)"])
    no_failures(at)
    assert f"-badge[{newest['category']}]" in texts(at)
    assert at.multiselect(key="category").value == ["input_duration_violation", "auth_failed"]  # the filters stay
    assert table(at, "client_id", "event_id", index=1)["event_id"].isin([newest["event_id"]]).any()


def test_the_sortable_grid_lists_the_newest_thousand_and_a_row_opens_its_closure(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch, "explorer")
    assert drawn_table(at, "closures_table")[0].height == EXPLORER_ROWS
    at.toggle(key="grid").set_value(True).run()
    no_failures(at)
    rows = at.dataframe(key="closures_grid").value
    expected = sql(demo_db, "SELECT event_id FROM closures WHERE category <> 'normal' ORDER BY ts DESC LIMIT 1000")["event_id"]
    assert rows["event_id"].tolist() == expected.to_list() and len(rows) > EXPLORER_ROWS
    select_row(at, "closures_grid", 3)
    no_failures(at)
    assert table(at, "client_id", "event_id", index=2)["event_id"].isin([rows.iloc[3]["event_id"]]).any()


def test_explorer_default_hides_normal_closures_and_leads_with_advice(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch, "explorer")
    no_failures(at)
    rows, links = drawn_table(at, "closures_table")
    assert "normal" not in set(rows["category"])
    newest_not_normal = sql(demo_db, "SELECT event_id FROM closures WHERE category <> 'normal' ORDER BY ts DESC LIMIT 1").item()
    assert parse_qs(links[0]["time (UTC)"].partition("?")[2])["event"] == [newest_not_normal]
    matched, normal = sql(demo_db, "SELECT count(*) FILTER (WHERE category <> 'normal'), count(*) FILTER (WHERE category = 'normal') FROM closures").row(0)
    assert f"{matched:,} closures match" in texts(at) and f"{normal:,} normal closures are hidden" in texts(at)
    order = rows.columns
    assert order[:5] == ["time (UTC)", "category", "severity", "retry safe", "action"] and order[-1] == "reason"
    # the switch shows them again, and naming the category does too
    at.toggle(key="normal").set_value(True).run()
    assert f"{matched + normal:,} closures match" in texts(at)
    at.toggle(key="normal").set_value(False)
    at.multiselect(key="category").set_value(["normal"]).run()
    assert f"{normal:,} closures match" in texts(at)
    assert set(drawn_table(at, "closures_table")[0]["category"]) == {"normal"}
    # the Overview's "All closures" link switches them on through the URL
    at = app(demo_db, monkeypatch)
    link = next(link.proto for link in at.page_link if link.value == "All closures")
    assert link.query_string == "normal=true"
    at = app(demo_db, monkeypatch, "explorer", normal="true")
    assert f"{matched + normal:,} closures match" in texts(at) and at.toggle(key="normal").value is True


# ---------------------------------------------------------------- upload


def jsonl(rows: list[tuple[str, str, int, str, str]]) -> bytes:
    lines = [json.dumps({"ts": ts, "session_id": sid, "close_code": code, "close_reason": reason, "client_id": client})
             for ts, sid, code, reason, client in rows]
    return ("\n".join(lines) + "\n").encode()


UPLOAD_A = jsonl([
    ("2026-12-01T10:00:00Z", "up-1", 3008, "Session Expired: Maximum session duration exceeded", "uploader"),
    ("2026-12-01T10:01:00Z", "up-2", 3007, "Input duration violation: 1500 ms. Expected between 50 and 1000 ms", "uploader"),
    ("2026-12-01T10:02:00Z", "up-3", 1000, "", "uploader"),
]) + b"this line is not json\n"
UPLOAD_B = b"ts,session_id,close_code,close_reason,client_id\n2026-12-01T11:00:00Z,up-4,1006,,uploader\n2026-12-01T11:05:00Z,up-5,3009,Unauthorized Connection: Too many concurrent sessions,uploader\n"


def test_upload_several_files_through_the_file_uploader(own_db, monkeypatch):
    at = app(own_db, monkeypatch, "upload")
    before = sql(own_db, "SELECT count(*) FROM closures").item()
    at.file_uploader(key="files").set_value([
        ("incident.jsonl", UPLOAD_A, "application/json"),
        ("export.csv.gz", gzip.compress(UPLOAD_B), "application/gzip"),
    ])
    at.button[0].click().run()
    no_failures(at)
    results = table(at, "file", "accepted", "duplicates").set_index("file")
    assert column_formats(table_element(at, "file", "accepted"))["accepted"] == "%,d"  # counts read like every other count
    assert results.loc["incident.jsonl", ["format", "accepted", "duplicates", "rejected"]].tolist() == ["jsonl", 3, 0, 1]
    assert results.loc["export.csv.gz", ["format", "accepted", "rejected"]].tolist() == ["csv", 2, 0]
    assert "line 4: line is not valid JSON" in "\n".join(code.value for code in at.code)
    assert sql(own_db, "SELECT count(*) FROM closures").item() == before + 5
    # the files loaded just now head "Recently loaded files", newest first, with their counts
    recent, _ = drawn_table(at, "recent_batches")
    newest = sql(own_db, "SELECT source_file, accepted FROM ingest_batches ORDER BY finished_at DESC LIMIT 2")
    assert list(zip(recent["source_file"][:2], recent["accepted"][:2], strict=True)) == [
        (name, f"{count:,}") for name, count in newest.iter_rows()]
    assert {name.rsplit("/", 1)[-1] for name in recent["source_file"][:2]} == {"incident.jsonl", "export.csv.gz"}
    # the other pages show the new rows right away (their cache is keyed on the latest batch)
    at.switch_page(ui.PAGES["overview"]).run()
    assert metric(at, "Sessions closed") == f"{before + 5:,}"
    # the same file again adds nothing and says so
    at.switch_page(ui.PAGES["upload"]).run()
    at.file_uploader(key="files").set_value(("incident.jsonl", UPLOAD_A, "application/json"))
    at.button[0].click().run()
    again = table(at, "file", "accepted", "duplicates").iloc[0]
    assert (again["accepted"], again["duplicates"]) == (0, 3)


def journald_export(closes: list[tuple[str, int, str]], unit: str) -> bytes:
    """`journalctl -o json` lines of a service whose messages are JSON closes that name no client."""
    envelope = get_envelope("journald")
    timed = [(datetime.fromisoformat(ts), json.dumps({"ts": ts, "close_code": code, "close_reason": reason}))
             for ts, code, reason in closes]
    return ("\n".join(envelope.wrap(timed, {"unit": unit, "host": "voice-01"})) + "\n").encode()


def test_upload_reads_inside_a_chosen_envelope_and_names_the_client_from_a_label(own_db, monkeypatch):
    at = app(own_db, monkeypatch, "upload")
    export = journald_export([("2026-12-01T12:00:00+00:00", 3008, "Session Expired: Maximum session duration exceeded"),
                              ("2026-12-01T12:01:00+00:00", 1011, "Internal server error")], unit="dictation.service")
    at.file_uploader(key="files").set_value(("journal.json", export, "application/json"))
    at.selectbox(key="envelope").set_value("journald")
    at.text_input(key="client_from").set_value("unit")
    at.button[0].click().run()
    no_failures(at)
    result = table(at, "file", "accepted").iloc[0]
    assert (result["accepted"], result["rejected"]) == (2, 0)
    stored = sql(own_db, "SELECT client_id, close_code FROM closures WHERE source_file = 'journal.json' ORDER BY ts")
    assert stored.rows() == [("dictation.service", 3008), ("dictation.service", 1011)]


def test_upload_inside_the_wrong_envelope_says_so_and_stores_nothing(own_db, monkeypatch):
    at = app(own_db, monkeypatch, "upload")
    before = sql(own_db, "SELECT count(*) FROM closures").item()
    at.file_uploader(key="files").set_value(("plain.jsonl", UPLOAD_A, "application/json"))
    at.selectbox(key="envelope").set_value("docker-json")
    at.button[0].click().run()
    assert not at.exception
    assert table(at, "file", "accepted").iloc[0]["accepted"] == 0
    assert any("plain.jsonl" in w.value and "inside a docker-json envelope; is it the right envelope?" in w.value
               for w in at.warning)
    assert sql(own_db, "SELECT count(*) FROM closures").item() == before


def test_upload_states_its_size_limit_and_reports_unreadable_files(own_db, monkeypatch):
    at = app(own_db, monkeypatch, "upload")
    assert "per file" in "\n".join(c.value for c in at.caption) and "maxUploadSize" in "\n".join(c.value for c in at.caption)
    at.file_uploader(key="files").set_value(("notes.txt", b"hello\nworld\n", "text/plain"))
    at.button[0].click().run()
    assert not at.exception
    assert any("notes.txt" in w.value for w in at.warning)


def test_a_load_by_another_process_shows_on_the_next_rerun(own_db, monkeypatch):
    at = app(own_db, monkeypatch)
    before = metric(at, "Sessions closed")
    jobs.ingest(Store(own_db), [bytes_input("cli.jsonl", UPLOAD_A)])
    at.run()
    after = sql(own_db, "SELECT count(*) FROM closures").item()
    assert before != metric(at, "Sessions closed") == f"{after:,}"


# ---------------------------------------------------------------- patterns


def test_patterns_lists_detections_and_opens_one_with_evidence(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch, "patterns")
    no_failures(at)
    stored = sql(demo_db, "SELECT count(*) FROM detections").item()
    shown, links = drawn_table(at, "detections_table")
    assert stored > 0 and shown.height == stored
    chosen = parse_qs(links[0]["pattern"].partition("?")[2])["detection"][0]
    follow(at, links[0]["pattern"])
    no_failures(at)
    pattern, explanation, evidence = sql(demo_db, "SELECT pattern, explanation, len(evidence) FROM detections WHERE detection_id = ?",
                                         [chosen]).row(0)
    assert pattern == shown["pattern"][0]
    assert explanation in [i.value for i in at.info]
    assert len(table(at, "event_id", "close_reason")) == min(evidence, 200)
    assert at.get("vega_lite_chart"), "the window chart is missing"


def test_patterns_without_detections_offers_to_run_them(own_db, monkeypatch):
    with Store(own_db).transaction() as con:
        con.execute("DELETE FROM detections")
    at = app(own_db, monkeypatch, "patterns")
    assert "No detections yet" in texts(at)
    at.button(key="run_detection").click().run()
    no_failures(at)
    assert sql(own_db, "SELECT count(*) FROM detections").item() > 0
    assert drawn_table(at, "detections_table")[0].height > 0


def test_patterns_lead_with_the_most_severe_and_show_whole_explanations(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch, "patterns")
    shown, _ = drawn_table(at, "detections_table")
    assert shown["severity"].n_unique() > 1
    ranks = [SEVERITY_RANK[name] for name in shown["severity"]]
    assert ranks == sorted(ranks)
    for (_,), group in shown.group_by("severity", maintain_order=True):
        starts = group["from (UTC)"].to_list()
        assert starts == sorted(starts, reverse=True)  # newest first within a severity
    assert shown.columns[0] == "severity"
    assert shown.columns.index("explanation") == 4  # right after what and whom it is about, never off screen
    explanations = sql(demo_db, "SELECT explanation FROM detections")["explanation"].to_list()
    assert set(shown["explanation"]) == set(explanations)  # whole, never cut short
    body = next(e.proto.body for e in at.get("html") if 'data-key="detections_table"' in e.proto.body)
    assert re.search(r'style="min-width:(\d+)px">explanation</th>', body).group(1) == "500"  # a wide column, wrapped


# ---------------------------------------------------------------- alerts


def closewatch(db: Path, *args: str) -> None:
    result = CliRunner().invoke(cli, ["--db", str(db), *args], obj={}, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_alerts_page_shows_rules_state_history_and_scheduler_health(own_db, monkeypatch):
    at = app(own_db, monkeypatch, "alerts")
    no_failures(at)
    assert "has not run on this database yet" in texts(at)
    closewatch(own_db, "scheduler", "--once")
    at.run()
    no_failures(at)
    firing = sql(own_db, "SELECT count(*) FROM alert_state WHERE state = 'firing'").item()
    assert metric(at, "Firing") == str(firing)
    rules, _ = drawn_table(at, "rules_table")
    assert rules.height == len(data_rules()) and sum(map(number, rules["firing"])) == firing
    health, _ = drawn_table(at, "health_table")
    assert set(health["job"]) == {"ingest", "analyze", "evaluate", "deliver"}
    assert set(health["outcome"]) == {"ok"}
    transitions = sql(own_db, "SELECT rule, to_state FROM alert_events ORDER BY event_time DESC, rule, group_key")
    assert transitions.height > 0, "the scheduler's run over the demo data recorded no state change to show"
    history, _ = drawn_table(at, "history_table")
    assert list(zip(history["rule"], history["to_state"], strict=True)) == list(transitions.head(200).iter_rows())


def test_alerts_page_shows_the_followed_logs_with_offset_rate_and_lag(own_db, monkeypatch, tmp_path):
    at = app(own_db, monkeypatch, "alerts")
    no_failures(at)
    assert "No log is followed" in texts(at)
    log = tmp_path / "live.log"
    log.write_text("".join(json.dumps({"ts": f"2026-03-02T09:00:{n:02d}Z", "session_id": f"s{n}", "close_code": 1000,
                                       "client_id": "web"}) + "\n" for n in range(30)))
    from closewatch.ingest.follow import FileFollower
    from closewatch.jobs.following import enrich_with_catalog

    FileFollower(Store(own_db), [str(log)], enrich_with_catalog(None)).tick()  # one pass of `closewatch follow`
    at.run()
    no_failures(at)
    followed, _ = drawn_table(at, "followed_table")
    assert {"lines/s", "last line's close (UTC)", "lag (s)", "error"} <= set(followed.columns)
    assert followed["path"].to_list() == [str(log)]
    assert followed["offset (bytes)"].to_list() == [f"{log.stat().st_size:,}"] and followed["lines"].to_list() == ["30"]
    assert followed["lag (bytes)"].to_list() == ["0"] and followed["status"].to_list() == ["following"]


def data_rules():
    from closewatch.alerts.rules import load_rules

    return load_rules().rules


def test_alerts_page_lists_the_findings_the_patterns_page_marks_open(own_db, monkeypatch):
    with Store(own_db).transaction() as con:  # an old finding, a month before the data: closed on both pages
        con.execute("""
            INSERT INTO detections SELECT 'old-finding', pattern, key, window_start - INTERVAL 30 DAY, window_end - INTERVAL 30 DAY,
                   count, 'critical', 'An old incident.', action, evidence, detected_at FROM detections LIMIT 1
        """)
    expected = sql(own_db, """
        SELECT detection_id FROM detections WHERE window_end >= (SELECT max(ts) FROM closures) - INTERVAL 7 DAY
    """)["detection_id"].to_list()
    assert "old-finding" not in expected and len(expected) > 0
    at = app(own_db, monkeypatch, "patterns")
    marked, listed = shown_detections(at)
    assert marked == set(expected) and "old-finding" in listed
    at.switch_page(ui.PAGES["alerts"]).run()
    no_failures(at)
    listed, _ = drawn_table(at, "open_findings_table")
    opened = sql(own_db, "SELECT pattern, key, explanation FROM detections WHERE detection_id IN (SELECT unnest(?::VARCHAR[]))",
                 [expected])
    assert sorted(zip(listed["pattern"], listed["key"], listed["explanation"], strict=True)) == sorted(opened.iter_rows())
    ranks = [SEVERITY_RANK[name] for name in listed["severity"]]
    assert ranks == sorted(ranks)
    critical = int((listed["severity"] == "critical").sum())
    assert metric(at, "Open findings") == f"{len(expected):,}"
    card = next(m for m in at.metric if m.label == "Open findings")
    assert critical > 0 and card.delta == f"{critical:,} critical"  # the most severe first, by itself
    assert f"{critical:,} critical" in card.help
    assert "Open findings" in [h.value for h in at.subheader]
    # and each pattern rule says how many findings of its pattern are open, beside its state
    rules = {row["rule"]: row for row in drawn_table(at, "rules_table")[0].iter_rows(named=True)}
    spikes = sql(own_db, "SELECT count(*) FROM detections WHERE pattern = 'error_spike' AND detection_id IN (SELECT unnest(?::VARCHAR[]))",
                 [expected]).item()
    assert number(rules["error-spike"]["open findings"]) == spikes > 0
    threshold = rules["repeated-violations"]
    assert threshold["kind"] != "-" and threshold["open findings"] == "-"  # a threshold rule: "-"


def shown_detections(at: AppTest) -> tuple[set[str], set[str]]:
    """The ids of the detections the Patterns page marks open, and of all it lists (from each row's link)."""
    shown, links = drawn_table(at, "detections_table")
    ids = [parse_qs(link["pattern"].partition("?")[2])["detection"][0] for link in links]
    return {i for i, is_open in zip(ids, shown["open"], strict=True) if is_open == "yes"}, set(ids)


def test_how_long_a_finding_stays_open_is_a_setting(demo_db, tmp_path, monkeypatch):
    (tmp_path / "closewatch.toml").write_text('[dashboard]\nopen_findings = "6h"\n')  # the app runs in tmp_path
    expected = set(sql(demo_db, """
        SELECT detection_id FROM detections WHERE window_end >= (SELECT max(ts) FROM closures) - INTERVAL 6 HOUR
    """)["detection_id"])
    every = sql(demo_db, "SELECT count(*) FROM detections").item()
    assert 0 < len(expected) < every  # the shorter window closes some findings the 7-day default keeps open
    at = app(demo_db, monkeypatch, "patterns")
    assert shown_detections(at)[0] == expected
    assert "within 6 h of the newest loaded closure" in texts(at)
    at.switch_page(ui.PAGES["alerts"]).run()
    assert metric(at, "Open findings") == f"{len(expected):,}"


def alert_tools(db: Path, monkeypatch: pytest.MonkeyPatch, page: str = "alerts") -> AppTest:
    """The Alerts page with its tools (silence, why, backtest) opened by their toggle, as a user opens them."""
    at = app(db, monkeypatch, page)
    at.toggle(key="tools").set_value(True).run()
    return at


def test_the_alerts_tools_wait_behind_their_toggle_and_a_backtest_link_opens_them(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch, "alerts")
    no_failures(at)
    assert at.toggle(key="tools").value is False
    assert not [b for b in at.button if b.key == "run_backtest"] and not at.get("form")
    at.toggle(key="tools").set_value(True).run()
    assert at.button(key="run_backtest") and at.selectbox(key="silence_rule")
    linked = app(demo_db, monkeypatch, "alerts", bt_from="2026-11-16T00:00")
    assert linked.toggle(key="tools").value is True and linked.button(key="run_backtest")


def test_silence_and_unsilence_from_the_alerts_page(own_db, monkeypatch):
    at = alert_tools(own_db, monkeypatch, "alerts")
    at.selectbox(key="silence_rule").set_value("disconnect-storm")
    at.text_input(key="silence_for").set_value("2h")
    at.text_input(key="silence_comment").set_value("ISP maintenance")
    next(b for b in at.button if b.label == "Silence").click().run()
    no_failures(at)
    rule, comment, hours = sql(own_db, """
        SELECT rule, comment, round(epoch(expires_at - created_at) / 3600) FROM alert_silences WHERE ended_at IS NULL
    """).row(0)
    assert (rule, comment, hours) == ("disconnect-storm", "ISP maintenance", 2)
    assert metric(at, "Active silences") == "1"
    at.text_input(key="unsilence_target").set_value("disconnect-storm")
    next(b for b in at.button if b.label == "Unsilence").click().run()
    no_failures(at)
    assert sql(own_db, "SELECT count(*) FROM alert_silences WHERE ended_at IS NULL").item() == 0
    assert metric(at, "Active silences") == "0"


def test_a_bad_silence_duration_is_one_sentence(own_db, monkeypatch):
    at = alert_tools(own_db, monkeypatch, "alerts")
    at.text_input(key="silence_for").set_value("soon")
    next(b for b in at.button if b.label == "Silence").click().run()
    assert not at.exception
    assert at.error and "is not a duration" in at.error[0].value


def test_a_broken_rules_file_is_named_and_the_state_still_shows(own_db, tmp_path, monkeypatch):
    (tmp_path / "alerts.toml").write_text('[[rules]]\nname = "spike"\nkind = "threshold"\nwindow = "soon"\n')
    at = app(own_db, monkeypatch, "alerts")  # the app runs in tmp_path, so ./alerts.toml is the rules file
    assert not at.exception
    assert len(at.error) == 1 and "alerts.toml" in at.error[0].value and "spike" in at.error[0].value
    assert "Scheduler health" in [h.value for h in at.subheader]
    assert metric(at, "Firing") == "0"


def test_backtest_draws_a_rules_firings_over_the_timeline(demo_db, monkeypatch):
    at = alert_tools(demo_db, monkeypatch, "alerts")
    at.selectbox(key="backtest_rule").set_value("concurrency-saturation")
    at.button(key="run_backtest").click().run()
    no_failures(at)
    assert len(at.get("vega_lite_chart")) >= 1
    episodes = table(at, "rule", "fired_at")
    assert len(episodes) >= 1 and set(episodes["rule"]) == {"concurrency-saturation"}


def test_a_backtest_band_says_why_it_fired(demo_db, monkeypatch):
    at = alert_tools(demo_db, monkeypatch, "alerts")
    at.selectbox(key="backtest_rule").set_value("concurrency-saturation")
    at.button(key="run_backtest").click().run()
    no_failures(at)
    episodes = table(at, "rule", "fired_at")
    bands = at.selectbox(key="band_why")
    assert len(bands.options) == len(episodes) + 1
    bands.set_value(bands.options[1]).run()  # the first band
    no_failures(at)
    assert len(table(at, "rule", "fired_at")) == len(episodes)  # the backtest stays while a band is explained
    why = table(at, "eval_time", "reason")
    fired = why[why["state"].str.endswith("→ firing") & why["state"].str.startswith(("inactive", "pending", "resolved"))]
    assert len(fired) == 1 and "holds; fired" in fired["reason"].iloc[0]
    assert fired["eval_time"].iloc[0].to_pydatetime() == episodes["fired_at"].iloc[0].to_pydatetime()
    assert any("explorer" in str(link.proto.page) for link in at.get("page_link"))


def test_backtest_compares_the_rules_in_force_with_edited_rules(demo_db, monkeypatch):
    from closewatch.alerts.rules import DEFAULT_RULES

    text = DEFAULT_RULES.read_text(encoding="utf-8")
    head, tail = text.split('name = "concurrency-saturation"', 1)
    edited = head + 'name = "concurrency-saturation"' + tail.replace("\nvalue = 5\n", "\nvalue = 100000\n", 1)  # a bound it never reaches
    at = alert_tools(demo_db, monkeypatch, "alerts")
    at.selectbox(key="backtest_rule").set_value("concurrency-saturation")
    at.text_area(key="bt_candidate").set_value(edited)
    at.button(key="run_backtest").click().run()
    no_failures(at)
    assert len(at.get("vega_lite_chart")) >= 1
    changes = table(at, "change", "old_fired_at", "new_fired_at")
    assert len(changes) >= 1 and set(changes["change"]) == {"only_old"}
    assert any("lost by the edit (only_old)" in caption.value for caption in at.caption)
    at.text_area(key="bt_candidate").set_value("[[rules]]\nname = 'x'\nkind = 'nope'\n")
    at.button(key="run_backtest").click().run()
    assert not at.exception and at.error and "edited rules.toml" in at.error[0].value


def test_why_explains_a_firing_group_and_a_quiet_moment(alerted_db, monkeypatch):
    at = alert_tools(alerted_db, monkeypatch, "alerts")
    no_failures(at)
    firing = sql(alerted_db, "SELECT rule, group_key FROM alert_state WHERE state = 'firing' ORDER BY rule, group_key").rows()
    assert firing, "the scheduler's run over the demo data left nothing firing to explain"
    choices = at.selectbox(key="why_group_choice").options
    assert len(choices) >= len(firing) + 1 and choices[-1] == "Another rule, group or moment"
    at.button(key="run_why").click().run()  # the first choice: the group's recent evaluation times, ending firing
    no_failures(at)
    why = table(at, "eval_time", "reason")
    assert why["state"].iloc[-1].endswith("firing") and why["group"].iloc[-1] == (firing[0][1] or "")
    at.button(key="run_backtest").click().run()  # another action: the explanation stays
    assert table(at, "eval_time", "reason")["state"].iloc[-1].endswith("firing")
    at.selectbox(key="why_group_choice").set_value("Another rule, group or moment").run()
    at.selectbox(key="why_rule").set_value("auth-failures")
    at.text_input(key="why_at").set_value("2000-01-01 00:00")
    at.button(key="run_why").click().run()
    no_failures(at)
    quiet = table(at, "eval_time", "reason")
    assert len(quiet) == 1 and quiet["notified"].tolist() == [False] and "does not hold" in quiet["reason"].iloc[0]


# ---------------------------------------------------------------- SQL


def test_sql_runs_a_query_and_offers_csv_and_parquet(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch, "sql")
    at.text_area(key="sql_text").set_value("SELECT client_id, count(*) AS n FROM closures GROUP BY 1 ORDER BY n DESC, 1")
    at.button(key="run_sql").click().run()
    no_failures(at)
    shown = table(at, "client_id", "n")
    expected = sql(demo_db, "SELECT client_id, count(*) AS n FROM closures GROUP BY 1 ORDER BY n DESC, 1")
    assert shown["client_id"].tolist() == expected["client_id"].to_list()
    assert shown["n"].tolist() == expected["n"].to_list()
    assert {b.label for b in at.get("download_button")} == {"CSV", "Parquet"}
    element = table_element(at, "client_id", "n")
    assert column_formats(element)["n"] == "%,d" and element.proto.placeholder == "NULL"


def test_the_schema_beside_the_editor_lists_every_table_with_closures_open(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch, "sql")
    no_failures(at)
    headings = drawn_sections(at, "schema")
    assert headings[0] == "closures" and {"ingest_batches", "detections"} <= set(headings)
    body = next(e.proto.body for e in at.get("html") if 'data-key="schema"' in e.proto.body)
    assert body.count("<details open>") == 1 and "<details open><summary>closures</summary>" in body
    columns = sql(demo_db, "SELECT column_name FROM information_schema.columns WHERE table_name = 'closures'")["column_name"]
    assert all(f"<code>{name}</code>" in body for name in columns)


def test_choosing_an_example_puts_it_in_the_editor(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch, "sql")
    examples = {q["title"]: q["sql"].strip() for q in ui.load_toml("examples.toml")["query"]}
    assert len(examples) >= 12
    title = "Unknown codes and reasons (extend the catalog)"
    at.selectbox(key="example").set_value(title).run()
    assert at.text_area(key="sql_text").value == examples[title]


@pytest.mark.parametrize("query, refusal", [
    ("SELECT * FROM read_csv('/etc/passwd')", "cannot read or write files"),
    ("COPY closures TO '{tmp}/leak.csv'", "files"),
    ("ATTACH '{tmp}/other.duckdb' AS other", "attach"),
    ("SET enable_external_access = true", "cannot be changed"),
    ("DELETE FROM closures", "read-only"),
])
def test_sql_refuses_files_writes_and_settings_in_one_sentence(demo_db, tmp_path, monkeypatch, query, refusal):
    at = app(demo_db, monkeypatch, "sql")
    at.text_area(key="sql_text").set_value(query.format(tmp=tmp_path))
    at.button(key="run_sql").click().run()
    assert not at.exception
    assert len(at.error) == 1 and refusal in at.error[0].value.lower()
    message = at.error[0].value
    assert "\n" not in message and "Traceback" not in message and message.startswith("Refused:")
    assert not (tmp_path / "leak.csv").exists() and not (tmp_path / "other.duckdb").exists()
    assert sql(demo_db, "SELECT count(*) FROM closures").item() > 0


@pytest.fixture(scope="module")
def alerted_db(demo_db: Path, tmp_path_factory) -> Path:
    """The demo database after one scheduler run, so the alert tables hold state, history and job runs."""
    path = tmp_path_factory.mktemp("alerted") / "alerted.duckdb"
    shutil.copy(demo_db, path)
    closewatch(path, "scheduler", "--once")
    return path


EXAMPLES = ui.load_toml("examples.toml")["query"]


@pytest.mark.parametrize("example", EXAMPLES, ids=[query["title"] for query in EXAMPLES])
def test_every_example_query_answers_on_the_demo_data(alerted_db, example):
    """Each example runs under the SQL page's restrictions and returns rows with named columns (an empty answer is a broken example)."""
    answer = Store(alerted_db).user_query(example["sql"], limit=5)
    assert answer.height > 0, f"{example['title']!r} returns no rows on the demo data"
    assert answer.width > 0 and all(name.strip() for name in answer.columns)


# ---------------------------------------------------------------- reference


def test_reference_shows_the_catalog_and_a_guide_per_category(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch, "reference")
    no_failures(at)
    shown, _ = drawn_table(at, "catalog_table")
    expected = catalog_table(load_catalog())
    assert shown.height == expected.height
    assert shown["category"].to_list() == expected["category"].to_list()
    assert {"code", "reason pattern", "severity", "retry safe", "recommended action"} <= set(shown.columns)
    labels = drawn_sections(at, "guides")
    counts = dict(sql(demo_db, "SELECT category, count(*) FROM closures GROUP BY 1").iter_rows())
    for category in CATEGORIES:
        assert any(f"({category}): {counts.get(category, 0):,} closures loaded" in label for label in labels), category
    # each guide with closures links to them in the Explorer
    guides = next(e.proto.body for e in at.get("html") if 'data-key="guides"' in e.proto.body)
    loaded = [category for category in CATEGORIES if counts.get(category)]
    assert re.findall(r'<a href="explorer\?category=(\w+)"', guides) == loaded


def test_the_guides_cover_every_category_with_causes_and_steps():
    guides = ui.load_toml("guides.toml")
    assert set(guides) == set(CATEGORIES)
    for category, guide in guides.items():
        assert guide["summary"] and guide["causes"] and guide["steps"], category
