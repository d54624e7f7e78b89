"""Building and running a service app the same way everywhere: middlewares, verifier, uvloop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, InvalidHeader, LineTooLong

from services.common import tracing
from services.common.aiohttp_internals import requests_started
from services.common.observability import (
    configure_logging,
    install_observability,
    metrics_key,
    ready_checks_key,
)
from services.common.problems import problem_middleware, problem_response, server_settings_key
from services.common.requests import input_rules_middleware
from services.common.settings import ServerSettings, VerifierSettings
from services.common.store import make_session_store
from services.common.verify import Verifier, timing, verifier_key
from services.common.verify.timing import timings_key

MAX_BODY_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
SERVER_NAME = "authscale"  # not "Python/3.x aiohttp/3.y": no version hints
log = logging.getLogger("authscale.runtime")


def new_app(
    service: str, server: ServerSettings, *, client_max_size: int = MAX_BODY_BYTES
) -> web.Application:
    """An app with problem details, request ids, metrics and health routes installed."""
    app = web.Application(
        middlewares=[problem_middleware, input_rules_middleware], client_max_size=client_max_size
    )
    app[server_settings_key] = server
    install_observability(app, service)
    app.on_response_prepare.append(_own_headers)
    return app


async def _own_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_NAME  # not aiohttp's, with its version
    timings = request.get(timings_key)
    if timings:  # this service's check, then what the services it called sent (SERVER_TIMING)
        timing.write(response.headers, timings)


def add_verifier(
    app: web.Application,
    settings: VerifierSettings,
    clock: Callable[[], float] = time.time,
    *,
    ready_on_store: bool = True,
) -> None:
    """Open the session store and start a Verifier for the app's lifetime (cleanup_ctx).

    ready_on_store: /readyz also needs the session store to answer (False: the keys alone)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        redis = make_session_store(settings.session_store_url, settings.store_timeout_seconds)
        verifier = Verifier(settings, app[metrics_key], redis, clock=clock)
        app[verifier_key] = verifier
        await verifier.start()
        app[ready_checks_key].append(verifier.ready if ready_on_store else verifier.keys_ready)
        try:
            yield
        finally:
            await verifier.close()
            await redis.aclose()

    app.cleanup_ctx.append(context)


def reset_slow_reader(transport: asyncio.Transport) -> None:
    """End a connection whose client stopped reading its responses."""
    log.warning("closing a connection whose client stopped reading its responses")
    # A reset, not a close: a close would leave the unread responses in the kernel's send
    # buffer until the client finally reads them.
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _GuardedHandler(web.RequestHandler):
    """aiohttp's connection handler, with bounds on slow clients and quiet parse errors.

    - A connection whose first request is not complete by `first_request_by` (loop time;
      default: the keep-alive timeout from now) is closed. A connection the gateway's fast path
      hands over comes with what is left of its own idle deadline, so a client that drips a
      request's head cannot hold it for a fresh keep-alive timeout after the hand-over.
    - A connection whose client stops reading (the write buffer stays above its high-water mark)
      for `write_timeout` seconds is reset, so slow readers are bounded like slow writers.
    - A request HTTP cannot parse gets a 400 (431 if too large) problem without echoing it,
      and one warning line instead of aiohttp's text/plain answer and ERROR traceback.
    """

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        write_timeout: float = 10.0,
        first_request_by: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._event_loop = loop
        self._write_timeout = write_timeout
        self._first_request_by = first_request_by
        self._first_request_deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        loop = self._event_loop
        by = self._first_request_by
        if by is None:
            by = loop.time() + self.keepalive_timeout
        self._first_request_deadline = loop.call_at(by, self._first_request_overdue)

    def _first_request_overdue(self) -> None:
        if requests_started(self) == 0:
            self.force_close()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._write_deadline = self._event_loop.call_later(self._write_timeout, self._write_overdue)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _write_overdue(self) -> None:
        self._write_deadline = None
        transport = self.transport
        if transport is None:
            return
        reset_slow_reader(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        for deadline in (self._first_request_deadline, self._write_deadline):
            if deadline is not None:
                deadline.cancel()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            status, detail = self._parse_error(exc)
            # The parser's message quotes the request: log what failed, not what was sent.
            log.warning(
                "unparsable request from %s answered %d: %s",
                request.remote,
                status,
                _parse_reason(exc),
            )
        elif status == 504:
            detail = "The request took too long to handle."
            log.warning("handler timed out on %s %s", request.method, request.path)
        else:
            detail = "Internal error; see the service log."
            log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        if request.writer.output_size > 0:
            raise ConnectionError("the response had started; the connection is broken")
        response = problem_response(status, detail, headers={"Server": SERVER_NAME})
        response.force_close()
        return response

    @staticmethod
    def _parse_error(exc: HttpProcessingError) -> tuple[int, str]:
        if isinstance(exc, LineTooLong):  # the request line or a header field
            return 431, "The request line or a header field is too large."
        if exc.message.startswith("Too many headers"):
            return 431, "The request has too many header fields."
        return 400, "The request is not valid HTTP/1.1."


def _parse_reason(exc: HttpProcessingError) -> str:
    """The parser's own short reason (llhttp's "Invalid header value char"), never the bytes."""
    if isinstance(exc, LineTooLong | InvalidHeader):
        return type(exc).__name__
    reason, quoted, _ = exc.message.partition(":\n")
    return f"{type(exc).__name__}: {reason[:100]}" if quoted else type(exc).__name__


# What builds aiohttp's handler for one connection: `first_request_by` (loop time) bounds its
# first request (None: the keep-alive timeout from now).
HandlerFactory = Callable[..., asyncio.Protocol]


class Front(Protocol):
    """What a service may put in front of aiohttp's server on its connections (the gateway's
    fast path): a protocol factory that hands connections to aiohttp's as it sees fit."""

    def __call__(self) -> asyncio.Protocol: ...

    async def shutdown(self, grace: float) -> None: ...


# Set by an app that has a front: given the factory of aiohttp's handlers, the front (built
# after the app's startup, so it can hold what startup made).
front_key: web.AppKey[Callable[[HandlerFactory], Front]] = web.AppKey("front")


@contextlib.asynccontextmanager
async def serving(
    app: web.Application, server: ServerSettings, *, port: int | None = None, front: bool = True
) -> AsyncIterator[int]:
    """Serve `app` on server.host (and `port`, else server.port) with the services' limits and
    the app's front, if it has one and tracing is off (front=False: aiohttp's server alone),
    until the block ends; yields the port it listens on.

    The listening socket is the services' own (asyncio's create_server, public API), so the
    connections start on the front or on the guarded handler without reaching into aiohttp's
    sites; the runner runs the app's startup and cleanup and shuts the handlers down."""
    handler_kwargs: dict[str, Any] = {
        "access_log": None,
        "keepalive_timeout": server.keepalive_timeout_seconds,
        # Room for an 8 KiB token plus "Bearer ", so the verifier answers oversized tokens
        # with a 401 problem (the parser would answer 431).
        "max_field_size": MAX_HEADER_BYTES,
        "max_line_size": MAX_HEADER_BYTES,
        "max_headers": MAX_HEADERS,
        # Compressed bodies are refused (415) before they are read: never inflate them.
        "auto_decompress": False,
        # After answering without reading the whole body, drain it for at most 1 s (default
        # 10) before closing: a client that trickles its body gets its 408 and the door.
        "lingering_time": 1.0,
    }
    runner = web.AppRunner(app, shutdown_timeout=5.0, **handler_kwargs)
    await runner.setup()
    loop = asyncio.get_running_loop()
    aiohttp_server = runner.server
    assert aiohttp_server is not None

    def handler(first_request_by: float | None = None) -> asyncio.Protocol:
        return _GuardedHandler(
            aiohttp_server,
            loop=loop,
            # A client that stops reading is cut off as late as one whose body stops arriving.
            write_timeout=server.body_timeout_seconds,
            first_request_by=first_request_by,
            **handler_kwargs,
        )

    fronted: Front | None = None
    make_front = app.get(front_key)
    factory: Callable[[], asyncio.Protocol] = handler
    if front and make_front is not None and not tracing.enabled():
        # Traced requests take aiohttp's path: its instrumentation makes the server spans.
        fronted = make_front(handler)
        factory = fronted
    port = server.port if port is None else port
    listener: asyncio.Server | None = None
    try:
        listener = await loop.create_server(factory, server.host, port, backlog=128)
        yield listener.sockets[0].getsockname()[1]
    finally:
        if listener is not None:
            listener.close()  # no new connection; those open are answered below
        if fronted is not None:
            # Before aiohttp's shutdown: answers in flight still need what the app holds.
            await fronted.shutdown(5.0)
        await runner.cleanup()


async def _run(app: web.Application, server: ServerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serving(app, server):
        log.info("listening on %s:%d", server.host, server.port)
        # Everything built so far (modules, app, keys) lives as long as the process: keep it out
        # of the collector's full passes, which would otherwise walk it again and again.
        gc.collect()  # start-up's garbage goes now, not into the frozen generation
        gc.freeze()
        await stop.wait()


def serve(service: str, server: ServerSettings, build: Callable[[], web.Application]) -> None:
    """Configure logging (and tracing, if asked for) and run the app on uvloop until
    SIGINT/SIGTERM."""
    configure_logging(service, server.log_level)
    tracing.configure(service, os.environ)
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        with tracing.flushed():
            loop.run_until_complete(_run(build(), server))
    finally:
        loop.close()
