"""End to end in a real headless Chromium: `closewatch up` on a temporary database, then the app as a user sees it.

`closewatch up` runs as a real subprocess (loading the demo logs, starting the live demo writer, the
scheduler and the Streamlit server); Debian's chromium, driven by Playwright,
sees live demo closes reach the store, pauses the writer so the numbers hold
still, opens the app, uploads a sample file, sees the counts change, runs a SQL
query and opens the alerts page. The screenshots it takes are the README's
pictures: they go to test-artifacts/screenshots/, or to $CLOSEWATCH_SCREENSHOTS if set
(`CLOSEWATCH_SCREENSHOTS=docs/images ./run test tests/dashboard/test_e2e.py` refreshes the README's).
Finally SIGTERM must stop `up` and all of its children.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from closewatch.store import Store
from tests.dashboard.browser import CHROMIUM, free_port, open_page, settle

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_logs" / "closures.jsonl"
START_TIMEOUT_S = 180
ERRORS = "severity IN ('warning', 'error', 'critical')"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium package is not installed (apt-get install chromium)"),
]


def screenshots_dir() -> Path:
    folder = Path(os.environ.get("CLOSEWATCH_SCREENSHOTS", REPO / "test-artifacts" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def closewatch_up(tmp_path: Path):
    """`closewatch up` on a fresh database in tmp_path; yields (url, process, db path); stops it afterwards."""
    port = free_port()
    db = tmp_path / "e2e.duckdb"
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLOSEWATCH_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "closewatch.cli", "up", "--db", str(db), "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            pytest.fail("closewatch up exited early:\n" + "".join(output))
        output.append(line)
        if "closewatch is up:" in line:
            break
    else:
        process.kill()
        pytest.fail("closewatch up did not start in time:\n" + "".join(output))
    url = re.search(r"http://\S+", output[-1]).group(0)
    assert url == f"http://localhost:{port}"
    assert any("loading the demo logs" in line for line in output), output
    try:
        yield url, process, db
    finally:
        if process.poll() is None:
            children = psutil.Process(process.pid).children(recursive=True)
            process.kill()
            process.wait()
            for child in children:  # a writer the test paused would not act on the signal its dying parent sends
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.resume()
                    child.kill()


def metric_value(page, label: str) -> str:
    card = page.get_by_test_id("stMetric").filter(has_text=label).first
    return card.get_by_test_id("stMetricValue").inner_text().strip()


def shoot(page, name: str) -> None:
    page.screenshot(path=str(screenshots_dir() / f"{name}.png"))


def scroll_to(locator) -> None:
    """Bring an element to the top of the view, so the screenshot shows what follows it."""
    locator.evaluate("element => element.scrollIntoView({block: 'start'})")
    locator.page.wait_for_timeout(500)


def count_closures(db: Path) -> int:
    return Store(db, lock_timeout_s=60).query("SELECT count(*) FROM closures").item()


def query(db: Path, sql: str, params: list | None = None):
    return Store(db, lock_timeout_s=60).query(sql, params)


def drawn_column(page, key: str, header: str) -> list[str]:
    """The texts of one column of a table drawn as HTML (dashboard/drawn.py), by its heading."""
    table = page.locator(f"table[data-key='{key}']")
    table.wait_for()
    headers = table.locator("thead th").all_text_contents()
    return table.locator(f"tbody td:nth-child({headers.index(header) + 1})").all_text_contents()


def drawn_first_row(page, key: str) -> dict[str, str]:
    """The first row of a table drawn as HTML (dashboard/drawn.py), as shown, by heading."""
    table = page.locator(f"table[data-key='{key}']")
    table.wait_for()
    headers = table.locator("thead th").all_text_contents()
    return dict(zip(headers, table.locator("tbody tr").first.locator("td").all_text_contents(), strict=True))


def hold_the_live_demo_still(children: list[psutil.Process], db: Path) -> psutil.Process:
    """Pause the live demo's writer (SIGSTOP) and wait until the scheduler stored what it wrote, so the counts
    this test compares with the pages hold still. Returns the writer, to resume before stopping `up`."""
    writer = next(child for child in children if "closewatch.generator.live" in " ".join(child.cmdline()))
    writer.suspend()
    live = db.with_name(db.name + "-logs") / "demo" / "live.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        written = len(live.read_text().splitlines()) if live.exists() else 0
        if query(db, "SELECT coalesce(sum(lines), 0) FROM follow_state").item() >= written:
            return writer
        time.sleep(1)
    raise AssertionError("the scheduler did not store the live demo's lines within 60 s")


def test_closewatch_up_in_a_real_browser(closewatch_up, browser_page):
    url, process, db = closewatch_up
    page = browser_page
    children = psutil.Process(process.pid).children(recursive=True)
    words = {"scheduler", "closewatch.dashboard.streamlit_run"}  # the scheduler, and Streamlit with its warmer
    assert words <= {word for child in children for word in child.cmdline() if word in words}
    # the live demo moves: its writer's closes reach the store through the scheduler's follower
    loaded = count_closures(db)
    deadline = time.monotonic() + 120
    while count_closures(db) == loaded:
        assert time.monotonic() < deadline, "no live demo traffic reached the store in 120 s"
        time.sleep(1)
    # then it holds still (its writer paused), so the numbers below can be checked against the store
    writer = hold_the_live_demo_still(children, db)

    # Overview on the demo data
    open_page(page, url, "Overview")
    before = int(metric_value(page, "Sessions closed").replace(",", ""))
    assert before == count_closures(db) > 0
    top, errors = query(db, f"""
        SELECT category, count(*) AS n FROM closures WHERE {ERRORS} GROUP BY 1 ORDER BY n DESC, category LIMIT 1""").row(0)
    card = page.locator(".st-key-top_category")
    card.get_by_role("heading", name=top, exact=True).wait_for()  # the top category by name, in full
    assert card.get_by_text(f"{errors:,} errors").is_visible()
    page.locator(".st-key-timeline svg").wait_for()  # the timeline, drawn on the server
    shoot(page, "overview")
    # a client's link opens the Explorer on its errors inside the running app: no reload, so the window lives on
    link = page.locator(".st-key-clients_table a").first
    client = link.inner_text()
    page.evaluate("window.sameApp = true")
    link.click()
    page.get_by_role("heading", name="Explorer", exact=True).wait_for()
    settle(page)
    assert page.evaluate("window.sameApp === true"), "the link reloaded the app instead of switching page"
    assert f"client={client}" in page.url
    client_errors = query(db, f"SELECT count(*) FROM closures WHERE client_id = '{client}' AND {ERRORS}").item()
    page.get_by_text(f"{client_errors:,} closures match").wait_for()

    # Upload a sample file through the browser's file chooser
    open_page(page, f"{url}/upload", "Upload logs")
    page.get_by_text(re.compile("Up to 1 GB per file")).wait_for()  # the configured limit, stated
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(SAMPLE))
    page.get_by_text(SAMPLE.name).first.wait_for()
    page.get_by_role("button", name="Load files").click()
    page.get_by_role("heading", name="Result").wait_for()
    settle(page)
    shoot(page, "upload")
    after = count_closures(db)
    assert after > before

    # the counts change on the other pages right away
    open_page(page, url, "Overview")
    assert metric_value(page, "Sessions closed") == f"{after:,}"

    # Explorer's default view: the newest closures that are not normal, advice before the reason text
    open_page(page, f"{url}/explorer", "Explorer")
    row = drawn_first_row(page, "closures_table")
    newest = query(db, "SELECT DISTINCT category FROM closures WHERE ts = (SELECT max(ts) FROM closures WHERE category <> 'normal')")
    assert row["category"] != "normal" and row["category"] in newest["category"].to_list(), row
    assert list(row)[:5] == ["time (UTC)", "category", "severity", "retry safe", "action"], list(row)
    normal = query(db, "SELECT count(*) FROM closures WHERE category = 'normal'").item()
    page.get_by_text(f"{normal:,} normal closures are hidden").wait_for()
    shoot(page, "explorer")
    # a closure's time opens it under the table, inside the running app
    page.evaluate("window.sameApp = true")
    page.locator("table[data-key='closures_table'] tbody a").first.click()
    page.get_by_role("heading", name="Closure").wait_for()
    assert "event=" in page.url and page.evaluate("window.sameApp === true")

    # Explorer, filtered through the URL, with one closure opened
    event_id = Store(db).query(
        "SELECT event_id FROM closures WHERE category = 'input_duration_violation' AND chunk_ms IS NOT NULL ORDER BY ts LIMIT 1").item()
    open_page(page, f"{url}/explorer?category=input_duration_violation&event={event_id}", "Explorer")
    page.get_by_text("What to do:").first.wait_for()
    scroll_to(page.get_by_role("heading", name="Closure"))
    shoot(page, "explorer-closure")

    # Patterns: open the first detection
    open_page(page, f"{url}/patterns", "Patterns")
    severities = drawn_column(page, "detections_table", "severity")
    ranks = [("critical", "error", "warning", "info").index(name) for name in severities]
    assert severities and ranks == sorted(ranks), severities  # the most severe first
    shoot(page, "patterns")
    # a detection's link opens it under the table, inside the running app
    page.evaluate("window.sameApp = true")
    page.locator(".st-key-detections_table tbody a").first.click()
    page.get_by_text("What to do:").first.wait_for()
    assert "detection=" in page.url and page.evaluate("window.sameApp === true")
    detection, pattern, key = Store(db).query(
        "SELECT detection_id, pattern, key FROM detections ORDER BY pattern = 'repeated_violation' DESC, count DESC LIMIT 1").row(0)
    open_page(page, f"{url}/patterns?detection={detection}", "Patterns")
    page.get_by_text("What to do:").first.wait_for()
    scroll_to(page.get_by_role("heading", name=f"{pattern}: {key}"))
    page.get_by_test_id("stVegaLiteChart").first.wait_for()
    settle(page)
    shoot(page, "patterns-finding")

    # SQL: run a query, see its rows
    open_page(page, f"{url}/sql", "SQL")
    editor = page.get_by_label("Query")
    editor.fill("SELECT category, count(*) AS closures FROM closures GROUP BY 1 ORDER BY 2 DESC")
    editor.press("Control+Enter")
    settle(page)
    page.get_by_role("button", name="Run").click()
    page.get_by_text(re.compile(r"\d+ rows in [\d,]+ ms")).wait_for()
    settle(page)
    categories = Store(db).query("SELECT count(DISTINCT category) FROM closures").item()
    assert page.get_by_text(re.compile(rf"^{categories} rows in")).count() == 1
    page.get_by_role("button", name="Parquet").wait_for()
    settle(page)
    shoot(page, "sql")

    # a refused query is one sentence on the page
    editor.fill("SELECT * FROM read_csv('/etc/passwd')")
    editor.press("Control+Enter")
    settle(page)
    page.get_by_role("button", name="Run").click()
    page.get_by_text("Refused: queries cannot read or write files").wait_for()

    # Alerts: rules, state and the scheduler's health (it has run by now)
    open_page(page, f"{url}/alerts", "Alerts")
    page.get_by_role("heading", name="Scheduler health").wait_for()
    shoot(page, "alerts")
    critical = query(db, """
        SELECT key FROM detections
        WHERE severity = 'critical' AND window_end >= (SELECT max(ts) FROM closures) - INTERVAL 7 DAY ORDER BY window_start DESC
    """)["key"].to_list()
    assert critical, "the demo holds no open critical finding to show"
    card = page.get_by_test_id("stMetric").filter(has_text="Open findings").first
    assert card.get_by_text(f"{len(critical):,} critical").is_visible()
    scroll_to(page.get_by_role("heading", name="Open findings"))
    listed = drawn_column(page, "open_findings_table", "key")
    assert listed[:len(critical)] == critical, listed  # the criticals lead the list the Patterns page marks open
    shoot(page, "alerts-findings")
    demo_start = Store(db).query("SELECT min(ts) FROM closures WHERE source_file LIKE '%demo%'").item()
    open_page(page, f"{url}/alerts?bt_from={demo_start:%Y-%m-%dT00:00}", "Alerts")  # the demo week, not the older upload
    page.get_by_role("button", name="Backtest", exact=True).click()  # the first rule; the link to a range opened the tools
    page.get_by_text(re.compile(r"would (not )?have fired")).wait_for()
    settle(page)
    scroll_to(page.get_by_role("heading", name="Backtest a rule"))
    shoot(page, "alerts-backtest")

    open_page(page, f"{url}/reference", "Reference")
    shoot(page, "reference")

    # SIGTERM stops `up` and its children cleanly
    writer.resume()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=40) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [child.cmdline() for child in alive]


def test_streamlit_run_serves_the_same_app(tmp_path, browser_page):
    """`streamlit run dashboard/app.py` from the repository: the same navigation, on the database in $CLOSEWATCH_DB."""
    db = tmp_path / "plain.duckdb"
    Store(db).query("SELECT 1")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLOSEWATCH_")} | {"CLOSEWATCH_DB": str(db)}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port)],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page = browser_page
        deadline = time.monotonic() + 60
        while True:
            try:
                open_page(page, f"http://localhost:{port}/upload", "Upload logs")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        nav = page.get_by_test_id("stSidebarNav")
        labels = [text.strip().splitlines()[-1] for text in nav.get_by_role("link").all_inner_texts()]  # after the icon
        assert labels == [
            "Overview", "Upload", "Explorer", "Patterns", "Alerts", "SQL", "Reference"]
        page.get_by_text("Up to 1 GB per file").wait_for()  # dashboard/.streamlit/config.toml was read
        page.get_by_text("plain.duckdb").wait_for()
    finally:
        server.terminate()
        server.wait(timeout=20)
