"""The page for people at `/` (services/gateway/static/: HTML, CSS, one script; no build step)
and GET /design, which tells it which design this gateway runs.

The files are read once when the app is built and served from memory under a fixed list of
paths: nothing on disk is reachable by a request's path. Every answer carries a strict
Content-Security-Policy (scripts, styles and requests from this origin only; no inline script,
no frames), so the page can do nothing a contract client could not.
"""

from __future__ import annotations

import json
from importlib import resources

from aiohttp import web

from services.common.problems import Handler
from services.common.verify.cookies import describe as describe_cookies
from services.gateway.settings import Settings

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page changes with the code: revalidate rather than run a stale script.
    "Cache-Control": "no-cache",
}
# Request path -> (file in static/, its media type).
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/page.css": ("page.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
DESIGN_PATH = "/design"


def design(settings: Settings) -> dict[str, object]:
    """The settings that choose where state is checked, as the variables name them, and the
    credential cookies' attributes (a script never sees Set-Cookie). Nothing secret."""
    verifier = settings.verifier
    on_off = {True: "on", False: "off"}
    return {
        "SESSION_CACHE": verifier.session_cache,
        "GATEWAY_TOKEN_EXCHANGE": on_off[settings.token_exchange],
        "JWT_REVOCATION": verifier.revocation,
        "GATEWAY_EDGE_AUTH": on_off[settings.edge_auth or settings.token_exchange],
        "SERVER_TIMING": on_off[verifier.server_timing],
        "COOKIE_SECURE": on_off[verifier.cookie_secure],
        "cookies": describe_cookies(verifier),
    }


def add_page(app: web.Application, settings: Settings) -> None:
    static = resources.files("services.gateway") / "static"
    for path, (name, media_type) in FILES.items():
        body = (static / name).read_bytes()
        headers = {"Content-Type": media_type, **SECURITY_HEADERS}
        app.router.add_get(path, _serving(body, headers))
    body = json.dumps(design(settings)).encode()
    headers = {"Content-Type": "application/json", **SECURITY_HEADERS}
    app.router.add_get(DESIGN_PATH, _serving(body, headers))


def _serving(body: bytes, headers: dict[str, str]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    return handler
