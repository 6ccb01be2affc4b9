"""What a user waits for: every dashboard page in headless Chromium on a large store, cold and warm.

A real Streamlit server (`closewatch dashboard`) serves a store of
``--rows`` closures (default 10,000,000; built in seconds by
bench/stores.py, kept at --db and reused), and Debian's chromium, driven by
Playwright as in tests/dashboard/test_e2e.py, opens each page. A page counts
as rendered when all of it is on screen: the sidebar's counts (the last
thing every run draws), each chart drawn, each table painted, the page's own
last element visible, and Streamlit's "running" indicator gone.

- cold: the page's first view in a new browser profile (Streamlit's
  frontend loaded from nothing, a new session) on a server started just for
  it, once it has started: its warmer (dashboard/queries/shared.py) has
  cached the pages' first views, as it does again after every load; the OS
  file cache is warm, as on any server that has run for a while;
- cold-at-start: the Overview opened the moment a new server answers, while
  it is still importing and warming (the worst case: nothing cached);
- warm: the page opened again from another page through the sidebar (as
  users move around; the server's caches filled): median of --runs;
- reload: the page's address loaded again (the browser reloads Streamlit's
  frontend and opens a new session; caches filled): median of --runs. Even
  an empty Streamlit page costs 0.5-1 s of this on a quiet machine (2-3 s
  at load average 7), so it is printed without a target;
- filter: on the warm Explorer, "Reason contains" set to a word; the time
  until the table and its counts show the filtered rows.

- empty-page: the same cold and reload measures on a Streamlit page with
  one title: what Streamlit and the browser alone cost on this machine at
  this moment (no target; read the pages' figures against it).

Targets (issue 16): warm <= 1 s, cold <= 2 s, a filter change <= 1 s.
The machine is shared: the load average is printed with the figures.

Usage: python bench/bench_pages.py [--db PATH] [--rows 10000000] [--runs 3] [--pages Overview,Explorer] [--port 8599]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import result
from bench.stores import ensure_store
from closewatch.dashboard.queries.shared import WARMED

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WARM_TARGET_S, COLD_TARGET_S, FILTER_TARGET_S = 1.0, 2.0, 1.0
STEP_TIMEOUT_MS = 120_000
FILTER_WORD = "violation"


@dataclass(frozen=True)
class Page:
    """A page, its address, its title and the selector of the last element it draws."""

    name: str
    path: str
    last: str  # a CSS selector that must match a visible element
    title: str = ""

    @property
    def heading(self) -> str:
        return self.title or self.name


PAGES = [
    Page("Overview", "", ".st-key-categories_table table"),  # drawn as HTML (dashboard/drawn.py)
    Page("Upload", "upload", "[data-testid=stExpander]", "Upload logs"),
    Page("Explorer", "explorer", ".st-key-closures_table table"),
    Page("Patterns", "patterns", ".st-key-detections_table table"),
    Page("Alerts", "alerts", ".st-key-tools label"),  # the tools (silence, why, backtest) open from this toggle
    Page("SQL", "sql", ".st-key-run_sql button"),
    Page("Reference", "reference", ".st-key-guides details:last-of-type"),
]

#: True once a page is wholly drawn (see the module doc); takes the page's own last selector.
RENDERED_JS = """
([last, title]) => {
  if (document.querySelector('[data-testid="stStatusWidget"], [data-stale="true"]')) return false;
  const h1 = document.querySelector('[data-testid="stMain"] h1');
  if (!h1 || h1.innerText.trim() !== title) return false;
  const sidebar = [...document.querySelectorAll('[data-testid="stSidebar"] [data-testid="stCaptionContainer"]')];
  if (!sidebar.some(e => e.innerText.includes('closures from'))) return false;
  const shown = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && e.checkVisibility(); };
  const lastOne = [...document.querySelectorAll(last)].pop();
  if (!lastOne || !shown(lastOne)) return false;
  for (const chart of document.querySelectorAll('[data-testid="stVegaLiteChart"]')) {
    if (!shown(chart)) continue;  // inside a closed expander
    const drawn = chart.querySelector('canvas, svg.marks');
    if (!drawn || !shown(drawn)) return false;
  }
  for (const grid of document.querySelectorAll('[data-testid="stDataFrame"]')) {
    if (!shown(grid)) continue;
    const canvas = grid.querySelector('canvas');
    if (!canvas || !shown(canvas)) return false;
  }
  return true;
}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`closewatch dashboard` on the store, as a real subprocess, stopped on exit."""

    def __init__(self, db: Path, log: Path, argv: list[str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {key: value for key, value in os.environ.items() if not key.startswith("CLOSEWATCH_")}
        self.log = log.open("ab")
        # `closewatch dashboard` writes its child's output beside the database; read only what this server adds
        self.child_log = db.with_name(db.name + "-logs") / "dashboard.log"
        self.child_log_start = self.child_log.stat().st_size if self.child_log.exists() else 0
        argv = argv or [sys.executable, "-m", "closewatch.cli", "--db", str(db), "dashboard", "--address", "127.0.0.1", "--port"]
        self.process = subprocess.Popen([*argv, str(self.port)], stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True, cwd=log.parent)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"closewatch dashboard exited (status {self.process.returncode}); see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise SystemExit("closewatch dashboard did not answer within 120 s")

    def warmed(self, timeout_s: float = 300) -> float:
        """Wait until the server's warmer has cached the pages' first views (its log says so); seconds waited."""
        clock = time.perf_counter()
        while time.perf_counter() - clock < timeout_s:
            if self.child_log.exists():
                with self.child_log.open("rb") as handle:
                    handle.seek(self.child_log_start)
                    if WARMED.encode() in handle.read():
                        return time.perf_counter() - clock
            time.sleep(0.1)
        raise SystemExit(f"the dashboard did not log {WARMED!r} within {timeout_s:g} s; see {self.child_log}")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


# How often the page is checked for "all drawn". Every animation frame (Playwright's "raf") forces a layout
# each frame, about 0.45 s of the browser's main thread in a cold view: the bench would slow what it measures.
POLL_MS = 50


def rendered(tab, page: Page) -> None:
    tab.wait_for_function(RENDERED_JS, arg=[page.last, page.heading], polling=POLL_MS, timeout=STEP_TIMEOUT_MS)


def open_rendered(tab, url: str, page: Page) -> float:
    """Seconds from asking for the page's address (a new Streamlit session) to all of it drawn."""
    clock = time.perf_counter()
    tab.goto(url, wait_until="commit")
    rendered(tab, page)
    return time.perf_counter() - clock


def navigate_rendered(tab, page: Page) -> float:
    """Seconds from a click on the page's link in the sidebar (as users move between pages) to all of it drawn."""
    link = tab.get_by_test_id("stSidebarNav").get_by_role("link", name=page.name)
    clock = time.perf_counter()
    link.click()
    rendered(tab, page)
    return time.perf_counter() - clock


def filter_change(tab, page: Page) -> float:
    """Seconds from typing a word in "Reason contains" (Enter) to the filtered table and counts drawn."""
    caption = tab.get_by_text("closures match").first
    before = caption.inner_text()
    box = tab.get_by_label("Reason contains")
    box.fill(FILTER_WORD)
    clock = time.perf_counter()
    box.press("Enter")
    tab.wait_for_function(
        """([before, last, rendered]) => {
             const caption = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')].find(e => e.innerText.includes('closures match'));
             return caption && caption.innerText !== before && eval(rendered)([last, "Explorer"]);
           }""",
        arg=[before, page.last, RENDERED_JS], polling=POLL_MS, timeout=STEP_TIMEOUT_MS,
    )
    return time.perf_counter() - clock


EMPTY_APP = """
import streamlit as st
st.title("Empty")
st.sidebar.caption("0 closures from 0 files")
"""


def measure(db: Path, pages: list[Page], runs: int, folder: Path, shots: Path | None) -> dict[str, dict[str, float]]:
    """Per page: cold, warm, reload (see the module doc); the Explorer's filter change; the start and the floor."""
    from playwright.sync_api import sync_playwright

    figures: dict[str, dict[str, float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            figures["floor"] = floor(browser, folder, runs)
            if pages[0].name == "Overview":
                with Server(db, folder / "start.log") as server:  # no wait for the warmer: a visitor right at the start
                    figures["start"] = {"cold": open_rendered(fresh_tab(browser), server.url, pages[0])}
                print(f"{'start':<10} cold {figures['start']['cold']:6.2f} s (Overview, the moment the server answers)", flush=True)
            for page in pages:
                with Server(db, folder / f"{page.name.lower()}.log") as server:
                    waited = server.warmed()
                    tab = fresh_tab(browser)
                    url = f"{server.url}/{page.path}"
                    cold = open_rendered(tab, url, page)
                    other = next(p for p in PAGES if p.name != page.name and p.name in ("Upload", "SQL"))
                    warm = []
                    for _ in range(runs):
                        navigate_rendered(tab, other)
                        warm.append(navigate_rendered(tab, page))
                    reload = [open_rendered(tab, url, page) for _ in range(runs)]
                    figures[page.name] = {"cold": cold, "warm": statistics.median(warm), "reload": statistics.median(reload)}
                    print(f"{page.name:<10} cold {cold:6.2f} s   warm {statistics.median(warm):6.2f} s "
                          f"(runs: {', '.join(f'{w:.2f}' for w in warm)})   reload {statistics.median(reload):6.2f} s "
                          f"(runs: {', '.join(f'{w:.2f}' for w in reload)})   [server warmed in {waited:.1f} s]", flush=True)
                    if shots:
                        tab.screenshot(path=str(shots / f"{page.name.lower()}.png"))
                    if page.name == "Explorer":
                        changes = []
                        for _ in range(runs):
                            open_rendered(tab, url, page)
                            changes.append(filter_change(tab, page))
                        figures[page.name]["filter"] = statistics.median(changes)
                        print(f"{'':<10} filter change {statistics.median(changes):6.2f} s "
                              f"(runs: {', '.join(f'{c:.2f}' for c in changes)})", flush=True)
                    tab.context.close()
        finally:
            browser.close()
    return figures


def fresh_tab(browser):
    """A tab in a new browser profile: nothing of Streamlit's frontend cached."""
    return browser.new_context(viewport={"width": 1440, "height": 1100}).new_page()


def floor(browser, folder: Path, runs: int) -> dict[str, float]:
    """The same measures on an empty Streamlit page: what Streamlit and the browser cost on this machine right now."""
    app = folder / "empty_app.py"
    app.write_text(EMPTY_APP)
    argv = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.address", "127.0.0.1", "--server.port"]
    empty = Page("Empty", "", "h1")
    with Server(folder / "unused.duckdb", folder / "empty.log", argv) as server:
        tab = fresh_tab(browser)
        cold = open_rendered(tab, server.url, empty)
        reload = statistics.median(open_rendered(tab, server.url, empty) for _ in range(runs))
        tab.context.close()
    print(f"{'(empty)':<10} cold {cold:6.2f} s   reload {reload:6.2f} s   (an empty Streamlit page: the floor on this machine now)", flush=True)
    return {"cold": cold, "reload": reload}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="Keep the store here (built if missing, reused if present).")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3, help="warm views (and filter changes) per page; the median is reported")
    parser.add_argument("--pages", default="", help="comma-separated page names (default: every page)")
    parser.add_argument("--screenshots", type=Path, help="save each page as it was measured here")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"No chromium at {CHROMIUM}; install Debian's chromium package.")
    wanted = {name.strip().lower() for name in args.pages.split(",") if name.strip()}
    pages = [page for page in PAGES if not wanted or page.name.lower() in wanted]
    if not pages:
        raise SystemExit(f"--pages names none of {', '.join(p.name for p in PAGES)}.")
    with tempfile.TemporaryDirectory(prefix="closewatch-pages-") as tmp:
        folder = Path(tmp)
        db = ensure_store(args.db or folder / "bench.duckdb", args.rows, args.seed)
        if args.screenshots:
            args.screenshots.mkdir(parents=True, exist_ok=True)
        load = os.getloadavg()[0]
        figures = measure(db, pages, max(1, args.runs), folder, args.screenshots)
        print(f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores")
    result("pages/empty-page/cold", figures["floor"]["cold"], "s")
    result("pages/empty-page/reload", figures["floor"]["reload"], "s")
    if "start" in figures:
        result("pages/overview/cold-at-start", figures["start"]["cold"], "s", COLD_TARGET_S)
    for name, figure in figures.items():
        if name in ("floor", "start"):
            continue
        slug = name.lower()
        result(f"pages/{slug}/cold", figure["cold"], "s", COLD_TARGET_S)
        result(f"pages/{slug}/warm", figure["warm"], "s", WARM_TARGET_S)
        result(f"pages/{slug}/reload", figure["reload"], "s")
        if "filter" in figure:
            result(f"pages/{slug}/filter-change", figure["filter"], "s", FILTER_TARGET_S)


if __name__ == "__main__":
    main()
