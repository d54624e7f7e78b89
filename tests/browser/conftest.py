"""A real browser against the launched stack: Debian's Chromium driven by Playwright.

The stack's gateway listens on http://127.0.0.1:GW. Test pages come from a small aiohttp server
on another free port (the "other origin"), reached either as http://127.0.0.1:PAGES (same site as
the gateway, cross-origin: cookies are scoped by host, not port) or as http://localhost:PAGES (a
different site altogether).
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, web
from playwright.async_api import Browser, BrowserContext, async_playwright

from devstack.stack import Stack
from tests.stackutil import Api, running

CHROMIUM_PACKAGE = "chromium"  # Debian's; scripts/install-browser.sh installs it
# Playwright adds most quiet-start switches itself and a fresh temporary --user-data-dir per
# launch; these make sure nothing reaches for the network beyond the pages under test.
CHROMIUM_ARGS = [
    "--no-sandbox",  # Chromium refuses to run as root with its sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Even so, Debian's build looks up Google's update and account hosts at start: answer every
    # name but localhost with "not found" inside the browser, so no DNS query leaves it (the
    # pages under test are addressed by 127.0.0.1 and localhost).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
TIMEOUT_MS = 10_000


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    yield from running(tmp_path_factory.mktemp("browser-stack"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            f"Chromium is not installed: apt-get install -y {CHROMIUM_PACKAGE} "
            "(Debian's package; or run scripts/install-browser.sh)"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh cookie jar per test."""
    fresh = await browser.new_context()
    fresh.set_default_timeout(TIMEOUT_MS)
    try:
        yield fresh
    finally:
        await fresh.close()


class Pages:
    """Serves HTML that a test registers by path, on 127.0.0.1 (and so also as localhost)."""

    def __init__(self) -> None:
        self.port = 0
        self.html: dict[str, str] = {}

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"

    def serve(self, path: str, html: str) -> None:
        self.html[path] = html

    async def handle(self, request: web.Request) -> web.Response:
        html = self.html.get(request.path)
        if html is None:
            raise web.HTTPNotFound()
        return web.Response(text=html, content_type="text/html")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pages() -> AsyncIterator[Pages]:
    served = Pages()
    app = web.Application()
    app.router.add_get("/{tail:.*}", served.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # a free port, held from here on: no race with other tests
    served.port = sock.getsockname()[1]
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield served
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="module")
async def api(stack: Stack) -> AsyncIterator[Api]:
    """The HTTP client of tests/conftest.py, on this package's (module-scoped) event loop."""
    async with ClientSession(timeout=ClientTimeout(total=10), cookie_jar=DummyCookieJar()) as http:
        yield Api(http, stack.gateway_url)
