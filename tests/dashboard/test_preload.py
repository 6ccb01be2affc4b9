"""Each page's HTML names the frontend files its first view loads (dashboard/preload.py, preload.toml).

The browser test is the list's check: it opens every page in a new browser
profile on a real `closewatch dashboard` and compares what the browser loaded
after the page's own HTML with what the page's hints name; when Streamlit is
upgraded it fails and prints the lists to write into preload.toml.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest

from closewatch import jobs
from closewatch.analysis.detection import detect
from closewatch.dashboard import preload, ui
from closewatch.generator.traffic import GeneratorConfig, generate
from closewatch.ingest.sources import expand_inputs
from closewatch.store import Store
from tests.dashboard.browser import STEP_TIMEOUT_MS, free_port, wait_for_server

INDEX = b"<html><head><title>Streamlit</title></head><body></body></html>"


def test_addresses_name_their_page_and_nothing_else():
    assert preload.page_of("/") == preload.page_of("") == "overview"
    assert preload.page_of("/patterns") == "patterns" and preload.page_of("/sql/") == "sql"
    assert preload.page_of("/static/js/index.js") is None and preload.page_of("/_stcore/health") is None
    assert preload.page_of("/dash/explorer", "/dash/") == "explorer" and preload.page_of("/dash", "dash") == "overview"
    assert preload.page_of("/other/explorer", "/dash") is None


def test_the_list_names_every_page_and_files_of_this_streamlit():
    listed = tomllib.loads(preload.LIST.read_text())
    assert set(listed["pages"]) == set(ui.PAGES)
    static = preload.streamlit_static()
    names = [*listed["every_page"], *(name for names in listed["pages"].values() for name in names)]
    missing = [name for name in names if not (static / preload.FOLDERS[Path(name).suffix] / name).is_file()]
    import streamlit

    if listed["streamlit"] == streamlit.__version__:
        assert missing == []
        assert all(preload.hints()[page] for page in ui.PAGES)


def serve(app, path: str) -> tuple[dict, bytes]:
    """One GET through an ASGI app, as the server would run it: the response's start message and its whole body."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send))
    return sent[0], b"".join(message.get("body", b"") for message in sent[1:])


def html_app(body: bytes, status: int = 200, content_type: bytes = b"text/html; charset=utf-8", chunks: int = 1):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
        step = max(1, len(body) // chunks)
        parts = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
        for index, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part, "more_body": index < len(parts) - 1})
    return app


def test_a_page_gets_its_hints_in_the_head_with_its_length_right(monkeypatch):
    monkeypatch.setattr(preload, "hints", lambda: {"overview": b"<link x>", "sql": b"<link y>"})
    start, body = serve(preload.PreloadHints(html_app(INDEX, chunks=3)), "/")
    assert body == INDEX.replace(b"</head>", b"<link x></head>")
    assert dict(start["headers"])[b"content-length"] == str(len(body)).encode()
    assert serve(preload.PreloadHints(html_app(INDEX)), "/sql")[1] == INDEX.replace(b"</head>", b"<link y></head>")


def test_anything_but_a_pages_html_passes_untouched(monkeypatch):
    monkeypatch.setattr(preload, "hints", lambda: {"overview": b"<link x>", "reference": b"<link z>"})
    script = b"console.log('</head>')"
    assert serve(preload.PreloadHints(html_app(script, content_type=b"text/javascript")), "/static/js/a.js")[1] == script
    assert serve(preload.PreloadHints(html_app(INDEX, content_type=b"text/javascript")), "/")[1] == INDEX
    assert serve(preload.PreloadHints(html_app(INDEX, status=404)), "/")[1] == INDEX
    assert serve(preload.PreloadHints(html_app(INDEX)), "/upload")[1] == INDEX  # a page without hints
    big = INDEX + b" " * (preload.MAX_HTML_BYTES + 10)
    assert serve(preload.PreloadHints(html_app(big, chunks=4)), "/reference")[1] == big  # past the bound: as it was


@pytest.fixture(scope="module")
def week_db(tmp_path_factory) -> Path:
    """Two generated days with their detections: every page shows its charts and tables."""
    root = tmp_path_factory.mktemp("preload")
    generate(root / "logs", GeneratorConfig(days=2, sessions_per_day=600, clients=8, seed=3, formats=("jsonl",)))
    store = Store(root / "week.duckdb")
    jobs.ingest(store, expand_inputs([str(root / "logs")]))
    detect(store)
    return store.path


@pytest.mark.slow
def test_each_page_names_what_a_new_browser_loads_for_it(week_db, tmp_path, browser_context):
    import streamlit

    listed = tomllib.loads(preload.LIST.read_text())
    if listed["streamlit"] != streamlit.__version__:
        pytest.skip(f"preload.toml lists Streamlit {listed['streamlit']}'s files; record them for {streamlit.__version__}")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLOSEWATCH_")}
    process = subprocess.Popen([sys.executable, "-m", "closewatch.cli", "--db", str(week_db), "dashboard", "--address",
                                "127.0.0.1", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    own = set(re.findall(r'/static/\w+/([^"]+)"', (preload.streamlit_static().parent / "index.html").read_text()))
    try:
        wait_for_server(url, process)
        missing = {}
        for name in ui.PAGES:
            address = f"{url}/{'' if name == preload.DEFAULT_PAGE else name}"
            html = urllib.request.urlopen(address).read().decode()
            hinted = set(re.findall(r'/static/\w+/([^"]+)"', html)) - own
            assert hinted == set(re.findall(r'/static/\w+/([^"]+)"', preload.hints()[name].decode())), name
            page = browser_context.new_page()
            page.goto(address)
            page.locator('[data-testid="stSidebar"] [data-testid="stCaptionContainer"]', has_text="closures from").wait_for()
            page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=STEP_TIMEOUT_MS)
            page.wait_for_load_state("networkidle")
            loaded = {entry.split("?")[0].split("/")[-1] for entry in
                      page.evaluate("performance.getEntriesByType('resource').map(e => e.name)") if "/static/" in entry}
            page.close()
            missing[name] = sorted(loaded - own - hinted)
        assert not any(missing.values()), f"loaded by a page but not named in preload.toml: {missing}"
    finally:
        process.terminate()
        process.wait(timeout=30)
