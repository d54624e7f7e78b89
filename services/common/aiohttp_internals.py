"""Every aiohttp internal the services rely on, in one place.

aiohttp has no public API for these. The lock (uv.lock) pins the aiohttp they were written
against; tests/unit/common/test_aiohttp_internals.py checks each of them and fails naming the
aiohttp version when a lock refresh moves one, so a refresh cannot break them silently.

- `parse_cookie_header`: the parser behind `web.Request.cookies`. The gateway's fast path must
  read the `sid` and `at` cookies exactly as the aiohttp handlers do, or the two paths could
  judge one request differently; `cookie_jar` is what `web.Request.cookies` makes of it, for
  the fast path and for the micro-benchmark that prices a credential carried by a cookie.
- `SINGLETON_HEADERS`: the fields aiohttp's request parser refuses to see twice; the fast path
  hands such requests to aiohttp rather than keep a list of its own that could drift.
- `requests_started()`: whether a connection's handler has begun any request, for the bound on
  a connection handed over by the fast path (its first request must come within what is left
  of the keep-alive timeout, not a fresh one).
"""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp._cookie_helpers import parse_cookie_header
from aiohttp.http_parser import SINGLETON_HEADERS

AIOHTTP_VERSION = aiohttp.__version__

__all__ = [
    "AIOHTTP_VERSION",
    "SINGLETON_HEADERS",
    "cookie_jar",
    "parse_cookie_header",
    "requests_started",
]


def cookie_jar(header: str) -> dict[str, str]:
    """What `web.Request.cookies` holds for this Cookie field: every cookie's name and value."""
    return {name: morsel.value for name, morsel in parse_cookie_header(header)}


def requests_started(handler: web.RequestHandler) -> int:
    """How many requests the handler has begun on its connection."""
    return handler._request_count
