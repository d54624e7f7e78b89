"""The orders app factory: data store, verifier, client for the auth call, routes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, web

from services.common.observability import metrics_key, ready_checks_key
from services.common.runtime import add_verifier, new_app
from services.common.store import make_redis
from services.orders.routes import auth_client_key, routes, settings_key, store_key
from services.orders.settings import Settings
from services.orders.store import OrderStore


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """clock: what the verifier checks expiry and idle timeouts against (tests move it)."""
    app = new_app("orders", settings.server)
    app[settings_key] = settings
    add_verifier(app, settings.verifier, clock)
    timeout = settings.verifier.store_timeout_seconds

    async def resources(app: web.Application) -> AsyncIterator[None]:
        data = make_redis(settings.verifier.data_store_url, timeout)
        app[store_key] = OrderStore(
            data,
            app[metrics_key],
            idempotency_seconds=settings.idempotency_seconds,
        )
        limit = settings.account_check_timeout_seconds
        client = ClientSession(
            timeout=ClientTimeout(total=limit, connect=limit), cookie_jar=DummyCookieJar()
        )
        app[auth_client_key] = client

        async def data_ready() -> None:
            await data.ping()

        app[ready_checks_key].append(data_ready)
        try:
            yield
        finally:
            await client.close()
            await data.aclose()

    app.cleanup_ctx.append(resources)
    app.add_routes(routes)
    return app
