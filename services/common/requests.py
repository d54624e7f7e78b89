"""Input rules every service (the gateway included) applies before any handler runs.

The headers the services read must be visible ASCII, and request bodies must not be compressed.
aiohttp decodes header bytes as UTF-8 with surrogateescape, so a stray 0xFF arrives as '\\udcff'
and would later break PyJWT, redis-py or `.encode()` with a 500: refuse it here, as the failure
of the header that carried it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from aiohttp import web

from services.common.problems import Handler, ProblemError
from services.common.verify import AuthError, InvalidSession, InvalidToken

log = logging.getLogger("authscale.requests")


# Credentials carry spaces ("Bearer x", "a=1; b=2"); tokens and keys are one visible word.
# str methods, not a regex: this runs on every request and a JWT is ~1 KB (isascii is O(1),
# isprintable a C scan; for ASCII text "printable" is exactly 0x20-0x7e).
def _printable(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _visible(value: str) -> bool:
    return value.isascii() and value.isprintable() and " " not in value


def _all_match(request: web.Request, name: str, allowed: Callable[[str], bool]) -> bool:
    return all(map(allowed, request.headers.getall(name, ())))


# Keys and tokens: one visible word each (the gateway's fast path hands these to aiohttp's
# server when they hold a space, so the answer comes from here).
VISIBLE_ONLY_RULES = (
    ("X-CSRF-Token", 403, "X-CSRF-Token must be visible ASCII."),
    ("Idempotency-Key", 422, "Idempotency-Key must be 1-255 visible ASCII characters."),
)
VISIBLE_ONLY_HEADERS = tuple(name for name, _, _ in VISIBLE_ONLY_RULES)


def check_headers(request: web.Request) -> None:
    """Refuse a read header holding anything but visible ASCII, as that header's failure."""
    refusal: AuthError | None = None
    if not _all_match(request, "Authorization", _printable):
        refusal = InvalidToken("Authorization header is not visible ASCII")
    elif not _all_match(request, "Cookie", _printable):
        refusal = InvalidSession("Cookie header is not visible ASCII")
    if refusal is not None:
        log.info("credential refused: %s", refusal.reason)
        raise refusal
    for name, status, detail in VISIBLE_ONLY_RULES:
        if not _all_match(request, name, _visible):
            raise ProblemError(status, detail)


# RFC 9110 7.2 / RFC 3986 3.2.2: an IP literal, or a reg-name (an IPv4 address is one), then
# an optional port. Not empty (RFC 9110 4.2.1), no space, no userinfo ("a b@c"), nothing a URL
# parser could read otherwise.
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::[0-9]*)?")


def valid_host(value: str) -> bool:
    """Whether a Host field value is a URI authority's host and port, as RFC 9110 wants."""
    return _HOST.fullmatch(value) is not None


def check_host(request: web.Request) -> None:
    """A 400 problem for a Host field that is not a host and port (RFC 9112 3.2)."""
    hosts = request.headers.getall("Host", ())
    if len(hosts) > 1 or not all(map(valid_host, hosts)):
        raise ProblemError(400, "The Host header is not a valid host and port.")


def check_content_encoding(request: web.Request) -> None:
    """Refuse a compressed request body (415) before anything reads or inflates it."""
    codings = {
        token.strip().lower()
        for value in request.headers.getall("Content-Encoding", [])
        for token in value.split(",")
    }
    if codings - {"", "identity"}:
        raise ProblemError(
            415,
            "Request bodies must not be compressed (Content-Encoding: identity only).",
            headers={"Accept-Encoding": "identity"},  # RFC 7694
        )


@web.middleware
async def input_rules_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Unrouted requests keep their 404/405: there is nothing to protect behind them.
    check_host(request)
    if request.match_info.http_exception is None:
        check_headers(request)
        check_content_encoding(request)
    return await handler(request)
