"""The relay app factory: verifier, the client for the next relay, routes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, web

from services.common.runtime import add_verifier, new_app
from services.relay.routes import next_client_key, routes, settings_key
from services.relay.settings import Settings


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """clock: what the verifier checks expiry and idle timeouts against (tests move it)."""
    app = new_app("relay", settings.server)
    app[settings_key] = settings
    add_verifier(app, settings.verifier, clock)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        # As orders calls auth: one client session, a fixed timeout, no cookie jar (a cookie
        # goes on only when the handler puts it there).
        limit = settings.timeout_seconds
        client = ClientSession(
            timeout=ClientTimeout(total=limit, connect=limit), cookie_jar=DummyCookieJar()
        )
        app[next_client_key] = client
        try:
            yield
        finally:
            await client.close()

    app.cleanup_ctx.append(resources)
    app.add_routes(routes)
    return app
