"""Hints in each page's HTML that name the frontend files its first view will need, so a new browser fetches them early.

A browser that has never seen the dashboard loads Streamlit's frontend (about
60 files), opens the page socket, and only when the page's elements arrive
asks for the code that draws them: the chart library, the table, the date
pickers (about 70 more files, 3 MB). Those requests used to start about a
second into a cold view, one after another as each element arrived.
``PreloadHints`` (an ASGI middleware on ``st.App``, see dashboard/server.py)
adds ``<link rel="modulepreload">`` (and font and style preloads) for the
files listed in ``preload.toml`` to the HTML of the page being opened, so
the browser fetches and compiles them while it starts the frontend.

The list is data recorded from a real browser for one Streamlit release
(tests/dashboard/test_preload.py checks it and prints the new one). Under
another release nothing is added; a name that does not exist is skipped.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Awaitable, Callable, MutableMapping
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger("closewatch.dashboard")

LIST = Path(__file__).with_name("preload.toml")
#: The default page (served at the app's root) and the page names as their addresses give them.
DEFAULT_PAGE = "overview"
#: Where Streamlit keeps its frontend, by kind of file; and how each kind is announced.
FOLDERS = {".js": "js", ".css": "css", ".woff2": "media"}
LINKS = {
    ".js": '<link rel="modulepreload" crossorigin href="./static/js/{name}">',
    ".css": '<link rel="preload" as="style" href="./static/css/{name}">',
    ".woff2": '<link rel="preload" as="font" type="font/woff2" crossorigin href="./static/media/{name}">',
}
#: Largest page HTML the middleware rewrites (Streamlit's index.html is about 8 kB); a larger body passes untouched.
MAX_HTML_BYTES = 256 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def streamlit_static() -> Path:
    """The folder of Streamlit's frontend files in this installation."""
    import streamlit

    return Path(streamlit.__file__).parent / "static" / "static"


@cache
def hints() -> dict[str, bytes]:
    """Per page name, the link tags to add to its HTML (empty when the list is for another Streamlit release)."""
    import streamlit

    listed = tomllib.loads(LIST.read_text())
    if listed.get("streamlit") != streamlit.__version__:
        log.info("no preload hints: %s lists Streamlit %s's files, this is %s", LIST.name, listed.get("streamlit"),
                 streamlit.__version__)
        return {}
    static = streamlit_static()
    every = listed.get("every_page", [])
    return {page: _links([*every, *names], static) for page, names in listed.get("pages", {}).items()}


def _links(names: list[str], static: Path) -> bytes:
    """The link tags for the files that exist in this installation, in the list's order."""
    tags = []
    for name in names:
        suffix = Path(name).suffix
        if suffix in LINKS and (static / FOLDERS[suffix] / name).is_file():
            tags.append(LINKS[suffix].format(name=name))
    return "".join(tags).encode()


def _base_path() -> str:
    """Streamlit's ``server.baseUrlPath`` (the app served under a prefix)."""
    from streamlit import config

    return config.get_option("server.baseUrlPath") or ""


def page_of(path: str, root: str = "") -> str | None:
    """The page an address opens ('/' is the default page), or None for anything else (files, the socket, health)."""
    root = "/" + root.strip("/") if root.strip("/") else ""
    if root and not (path == root or path.startswith(root + "/")):
        return None
    name = path[len(root):].strip("/")
    if not name:
        return DEFAULT_PAGE
    return name if "/" not in name else None


class PreloadHints:
    """ASGI middleware: the page HTML Streamlit serves gets the link tags of ``hints()`` for that page, before ``</head>``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        page = page_of(scope.get("path", ""), _base_path()) if scope["type"] == "http" and scope.get("method") == "GET" else None
        tags = hints().get(page, b"") if page else b""
        if not tags:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _Rewrite(send, tags).send)


class _Rewrite:
    """Holds back an HTML response's start until its body is whole, then sends both with the tags in the head."""

    def __init__(self, send: Send, tags: bytes) -> None:
        self.downstream, self.tags = send, tags
        self.start: Message | None = None
        self.body: list[bytes] = []
        self.size = 0
        self.passing = False

    async def send(self, message: Message) -> None:
        if self.passing:
            await self.downstream(message)
        elif message["type"] == "http.response.start":
            self.start = message
            self.passing = not _is_plain_html(message)
            if self.passing:
                await self.downstream(message)
        elif message["type"] == "http.response.body" and self.start is not None:
            await self._body(message)
        else:
            await self.downstream(message)

    async def _body(self, message: Message) -> None:
        assert self.start is not None
        self.body.append(message.get("body", b""))
        self.size += len(self.body[-1])
        whole = not message.get("more_body", False)
        if not whole and self.size <= MAX_HTML_BYTES:
            return
        html, headers = b"".join(self.body), list(self.start.get("headers", []))
        if whole and b"</head>" in html:
            html = html.replace(b"</head>", self.tags + b"</head>", 1)
            headers = [(key, value) for key, value in headers if key.lower() != b"content-length"]
            headers.append((b"content-length", str(len(html)).encode()))
        self.passing = True
        await self.downstream({**self.start, "headers": headers})
        await self.downstream({"type": "http.response.body", "body": html, "more_body": not whole})


def _is_plain_html(start: Message) -> bool:
    """A 200 answer with an uncompressed HTML body (a 304, a compressed or other body passes as it is)."""
    headers = {key.lower(): value for key, value in start.get("headers", [])}
    return (start.get("status") == 200 and headers.get(b"content-type", b"").startswith(b"text/html")
            and b"content-encoding" not in headers)
