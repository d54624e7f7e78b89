"""Building and running a service app the same way everywhere: middlewares, verifier, uvloop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from redis.asyncio import Redis

from services.common.observability import (
    configure_logging,
    install_observability,
    metrics_key,
    ready_checks_key,
)
from services.common.problems import problem_middleware, server_settings_key
from services.common.settings import ServerSettings, VerifierSettings
from services.common.store import make_redis
from services.common.verify import Verifier, verifier_key

MAX_BODY_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
session_redis_key = web.AppKey("session_redis", Redis)


def new_app(
    service: str, server: ServerSettings, *, client_max_size: int = MAX_BODY_BYTES
) -> web.Application:
    """An app with problem details, request ids, metrics and health routes installed."""
    app = web.Application(middlewares=[problem_middleware], client_max_size=client_max_size)
    app[server_settings_key] = server
    install_observability(app, service)
    app.on_response_prepare.append(_hide_server_version)
    return app


async def _hide_server_version(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "authscale"  # not "Python/3.x aiohttp/3.y": no version hints


def add_verifier(app: web.Application, settings: VerifierSettings) -> None:
    """Open the session store and start a Verifier for the app's lifetime (cleanup_ctx)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        redis = make_redis(settings.session_store_url, settings.store_timeout_seconds)
        verifier = Verifier(settings, app[metrics_key], redis)
        app[session_redis_key] = redis
        app[verifier_key] = verifier
        await verifier.start()
        app[ready_checks_key].append(verifier.ready)
        try:
            yield
        finally:
            await verifier.close()
            await redis.aclose()

    app.cleanup_ctx.append(context)


class _FirstRequestDeadline(web.RequestHandler):
    """Close a connection whose first request is not complete within the keep-alive timeout.

    aiohttp's keep-alive timer only acts once a request has been parsed, so a client that
    opens a connection and drips its first request's headers (slowloris) would hold it for
    ever. Later requests on the connection are covered by aiohttp's own timer.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._deadline = asyncio.get_running_loop().call_later(
            self.keepalive_timeout, self._overdue
        )

    def _overdue(self) -> None:
        if self._request_count == 0:
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._deadline.cancel()
        super().connection_lost(exc)


class _GuardedServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _FirstRequestDeadline(self, loop=self._loop, **self._kwargs)


class _GuardedRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # same layout; only the handler it builds differs
        return server


async def _run(app: web.Application, server: ServerSettings) -> None:
    runner = _GuardedRunner(
        app,
        access_log=None,
        shutdown_timeout=5.0,
        keepalive_timeout=server.keepalive_timeout_seconds,
        # Room for an 8 KiB token plus "Bearer ", so the verifier (not the HTTP parser, whose
        # plain-text error echoes the header) answers oversized tokens with a 401 problem.
        max_field_size=MAX_HEADER_BYTES,
        max_line_size=MAX_HEADER_BYTES,
        # After answering without reading the whole body, drain it for at most 1 s (default 10)
        # before closing: a client that trickles its body gets its 408 and the door.
        lingering_time=1.0,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, server.host, server.port).start()
        logging.getLogger("authscale.runtime").info("listening on %s:%d", server.host, server.port)
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(service: str, server: ServerSettings, build: Callable[[], web.Application]) -> None:
    """Configure logging and run the app on uvloop until SIGINT/SIGTERM."""
    configure_logging(service, server.log_level)
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_run(build(), server))
    finally:
        loop.close()
