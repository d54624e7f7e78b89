"""The gateway's fast path: its client connections start on a small HTTP/1.1 server of its own
(httptools, the llhttp parser the upstream client uses) that forwards the plain requests, and
hands everything else to aiohttp's server.

Why: aiohttp's server (request and response objects, middlewares, the writer) cost more CPU per
proxied request than the whole forward that nginx does; with it the gateway stayed ~4x nginx
on the same request (the crossover's reference column). Here a request costs its parse, the
checks, the upstream exchange and one write.

What takes the fast path: a whole HTTP/1.1 request already in the buffer (head and
Content-Length body) for a forwarded route (/auth/<contract path>, /orders, /orders/<id>, and
/relay/private and /relay/public when the gateway routes the bench's relay chain) with
GET, POST, PUT, PATCH or DELETE, a plain path, visible-ASCII header fields, no
Transfer-Encoding, Expect, Upgrade or Content-Encoding, a body within MAX_BODY_BYTES, and
tracing off. Anything else (the gateway's own routes, an unknown path, a malformed, unusual or
oversized request, a head or body still on its way) is handed, bytes and connection, to
aiohttp's server before anything is done for it: it answers as it always did, and keeps the
connection. The checks themselves are the ones the aiohttp handlers run (proxy.py, app.py,
the verifier), and tests/integration/gateway/test_edge.py holds both paths to the same
answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from services.common.aiohttp_internals import SINGLETON_HEADERS, cookie_jar
from services.common.observability import (
    REQUEST_ID_HEADER,
    Metrics,
    log_access,
    new_request_id,
    request_id_var,
    valid_request_id,
)
from services.common.problems import PROBLEM_TYPE, ProblemError, problem_body
from services.common.requests import VISIBLE_ONLY_HEADERS, valid_host
from services.common.runtime import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    SERVER_NAME,
    HandlerFactory,
    reset_slow_reader,
)
from services.common.verify import Principal, Verifier, timing
from services.gateway.proxy import (
    DECIDING,
    Headers,
    Proxy,
    UpstreamPool,
    check_path,
    connection_tokens,
    forward_fields,
)

log = logging.getLogger("authscale.gateway")

FAST_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# Requests with these are aiohttp's to answer: framing it does and this server does not.
HANDED_OFF = frozenset(
    {"transfer-encoding", "expect", "upgrade", "content-encoding", "sec-websocket-key1"}
)
# The fields the input rules hold to visible ASCII with no space, as requests.py names them.
VISIBLE_ONLY = frozenset(name.lower() for name in VISIBLE_ONLY_HEADERS)
# The fields the fast path reads itself.
FIRST = frozenset({"authorization", "cookie", "x-request-id", "idempotency-key"})
# Fields aiohttp's request parser refuses to see twice (RFC 9110 singletons): its own list.
SINGLETONS = frozenset(name.lower() for name in SINGLETON_HEADERS)
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_VISIBLE_OR_SPACE = bytes(range(0x20, 0x7F))
# Answers that never carry a body nor a Content-Length (RFC 9110 8.6), as aiohttp writes them.
_EMPTY_BODY = frozenset({204, 304, *range(100, 200)})


class Handoff(Exception):
    """This request is aiohttp's: hand it and the connection over, untouched."""


class Request:
    """One parsed request: the httptools callbacks fill it."""

    __slots__ = (
        "complete",
        "fields",
        "first",
        "keep_alive",
        "length",
        "method",
        "parser",
        "plain",
        "url",
    )

    def __init__(self) -> None:
        # Dropped once the head is parsed (a cycle the collector would otherwise clear).
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.fields: list[tuple[str, str]] = []
        # The first value of each FIRST field (headers.get()), and of each SINGLETONS one.
        self.first: dict[str, str] = {}
        self.url = b""
        self.length = 0
        self.complete = False
        self.plain = False  # HTTP/1.1, no upgrade
        self.keep_alive = False
        self.method = ""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.fields) >= MAX_HEADERS:
            raise Handoff()
        # llhttp strips the whitespace before a value; aiohttp's parser also strips the
        # whitespace after it, and so does this.
        value = value.rstrip(b" \t")
        if value.translate(None, _VISIBLE_OR_SPACE):  # a control or non-ASCII byte (a tab
            raise Handoff()  # too): aiohttp's to judge; a bytes scan, not str.isprintable()
        text = value.decode("ascii")
        lower = name.decode("ascii").lower()  # llhttp accepts token characters only
        if lower in HANDED_OFF:
            raise Handoff()
        if lower in SINGLETONS:  # twice is a 400 from aiohttp's parser: it answers that
            if lower in self.first:
                raise Handoff()
            self.first[lower] = text
        if lower == "content-length":
            if self.length or not text.isdigit():
                raise Handoff()
            self.length = int(text)
        elif lower in VISIBLE_ONLY and " " in text:
            raise Handoff()
        elif lower in FIRST:
            self.first.setdefault(lower, text)
        elif lower == "connection" and not DECIDING.isdisjoint(connection_tokens(text)):
            raise Handoff()  # names a field the gateway decides on: aiohttp's side answers 400
        self.fields.append((name.decode("ascii"), text))

    def on_headers_complete(self) -> None:
        # Read now: llhttp resets its flags once a message without a body is complete.
        parser = self.parser
        assert parser is not None
        self.complete = True
        self.plain = parser.get_http_version() == "1.1" and not parser.should_upgrade()
        self.keep_alive = parser.should_keep_alive()
        self.method = parser.get_method().decode("ascii")


# The pool, the path it is sent, the metric's route label, and whether the edge checks it.
Route = tuple[UpstreamPool, str, str, bool]
InnerCredential = Callable[[str, Mapping[str, str], Principal, float], Awaitable[str | None]]


class Edge:
    """The fast path of one gateway app: what it needs, its open connections, and the factory
    of their protocol (built once the app has started: the proxy lives as long as the app)."""

    def __init__(
        self,
        *,
        aiohttp_server: HandlerFactory,
        route: Callable[[str], Route | None],
        proxy: Proxy,
        metrics: Metrics,
        verifier: Verifier | None,
        inner_credential: InnerCredential,
        keepalive_timeout: float,
        write_timeout: float,
        max_body_bytes: int,
    ) -> None:
        """route: a checked path's pool, upstream path, label and whether it is guarded, None
        if not forwarded; verifier: checks the credential of guarded routes (None: edge auth
        off)."""
        self.aiohttp_server = aiohttp_server
        self.route = route
        self.proxy = proxy
        self.metrics = metrics
        self.verifier = verifier
        self.inner_credential = inner_credential
        self.keepalive_timeout = keepalive_timeout
        self.write_timeout = write_timeout
        self.max_body_bytes = max_body_bytes
        self.connections: set[Connection] = set()
        self.closing = False
        self.drained = asyncio.Event()  # set as connections end while closing
        # Plain counts on the hot path, read by /metrics when it is scraped.
        self.served = self.handed_off = 0
        metrics.registry.register(_Counts(self, metrics.service))
        self._date = ("", 0)

    def __call__(self) -> asyncio.Protocol:
        return Connection(self)

    def date(self) -> str:
        now = int(time.time())
        if self._date[1] != now:
            self._date = (formatdate(now, usegmt=True), now)
        return self._date[0]

    async def shutdown(self, grace: float) -> None:
        """Close idle connections now and busy ones after their answer, within `grace` s."""
        self.closing = True
        for connection in list(self.connections):
            connection.close_when_idle()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while self.connections:
                    await self.drained.wait()
                    self.drained.clear()
        answers = [c.task for c in self.connections if c.task is not None and not c.task.done()]
        for task in answers:  # past the grace: what the app holds is about to close
            task.cancel()
        await asyncio.gather(*answers, return_exceptions=True)
        for connection in list(self.connections):
            connection.abort()

    def forget(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if self.closing:
            self.drained.set()


class Connection(asyncio.Protocol):
    """One client connection while it stays on the fast path."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.buffer = bytearray()
        self.busy = False  # a request is being answered
        self.eof = False
        self.write_paused = False
        self.reading_paused = False
        self.idle_since = self.loop.time()
        self.idle_timer: asyncio.TimerHandle | None = None
        self.write_timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None  # the answer in flight, kept referenced

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, tuple) and peer else None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.edge.connections.add(self)
        self._arm_idle_timer(self.edge.keepalive_timeout)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy and not self.write_paused:
            self._next()
        transport = self.transport  # None once handed off
        if (
            transport is not None
            and not self.reading_paused
            and len(self.buffer) > self.edge.max_body_bytes + MAX_HEADER_BYTES
        ):
            # Requests piling up while one is answered, or while the client does not read its
            # answers: stop reading until the next one can start.
            self.reading_paused = True
            transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        # With nothing to answer the transport closes; else it stays to answer what came.
        return bool(self.busy or self.buffer)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.write_timer = self.loop.call_later(self.edge.write_timeout, self._write_overdue)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None
        if not self.busy:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.edge.forget(self)
        for timer in (self.idle_timer, self.write_timer):
            if timer is not None:
                timer.cancel()
        self.transport = None

    # -- the connection's life ------------------------------------------------------------------

    def _next(self) -> None:
        """Start on the next request in the buffer, hand the connection over, or wait."""
        transport = self.transport
        if transport is None or self.write_paused:
            return
        if self.edge.closing or (self.eof and not self.buffer):
            transport.close()  # shutting down: no new request starts
            return
        if not self.buffer:
            self.idle_since = self.loop.time()
            return
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        try:
            request, url, body, stop = self._parse()
            routed = self.edge.route(check_path(url))
        except (
            Handoff,
            ProblemError,
            httptools.HttpParserError,
            httptools.HttpParserUpgrade,  # CONNECT: llhttp stops for the tunnel
            ValueError,
        ):
            self._hand_off()
            return
        if routed is None or request.method not in FAST_METHODS:
            self._hand_off()
            return
        del self.buffer[:stop]
        self.busy = True
        self.edge.served += 1
        self.task = self.loop.create_task(
            self._answer(request, url, body, routed, request.keep_alive and not self.eof)
        )

    def _parse(self) -> tuple[Request, str, bytes | None, int]:
        """The request at the head of the buffer if it is all there and plain, and where it
        ends; Handoff otherwise. The buffer is left as it is."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or end + 4 > MAX_HEADER_BYTES:
            raise Handoff()  # a head on its way (or a slow one): aiohttp bounds and reads it
        request = Request()
        assert request.parser is not None
        try:
            request.parser.feed_data(bytes(self.buffer[: end + 4]))
        finally:
            request.parser = None
        host = request.first.get("host")
        if not (request.complete and request.plain) or host is None or not valid_host(host):
            raise Handoff()  # HTTP/1.1 without a valid Host is a 400 from aiohttp's side
        if request.url[:1] != b"/":  # absolute-form or asterisk-form: aiohttp's to judge
            raise Handoff()
        start, stop = end + 4, end + 4 + request.length
        if request.length > self.edge.max_body_bytes or len(self.buffer) < stop:
            raise Handoff()  # aiohttp answers 413, or waits for the rest within its bounds
        body = bytes(self.buffer[start:stop]) if request.length else None
        url = request.url.decode("ascii")  # UnicodeDecodeError is a ValueError
        return request, url, body, stop

    def _hand_off(self) -> None:
        """aiohttp's server takes the connection over, with every byte not yet answered."""
        transport = self.transport
        assert transport is not None
        self.edge.forget(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.edge.handed_off += 1
        # Its first request must come within what is left of this connection's idle time,
        # not a fresh keep-alive timeout (a client dripping a head would hold it twice as long).
        handler = self.edge.aiohttp_server(
            first_request_by=self.idle_since + self.edge.keepalive_timeout
        )
        transport.set_protocol(handler)
        handler.connection_made(transport)
        data, self.buffer = bytes(self.buffer), bytearray()
        self.transport = None
        if self.reading_paused:
            transport.resume_reading()
        if data:
            handler.data_received(data)
        if self.eof:
            handler.eof_received()

    async def _answer(
        self,
        request: Request,
        url: str,
        body: bytes | None,
        routed: Route,
        keep_alive: bool,
    ) -> None:
        edge = self.edge
        pool, path, label, guarded = routed
        method, fields, first = request.method, request.fields, request.first
        incoming = first.get("x-request-id", "")
        rid = incoming if valid_request_id(incoming) else new_request_id()
        token = request_id_var.set(rid)
        start = time.perf_counter()
        # One deadline for the whole request: the check, the hybrid's exchange, the forward.
        deadline = self.loop.time() + edge.proxy.timeout
        mode = "none"
        status = 500
        timings: list[str] | None = None  # this hop's Server-Timing entry (SERVER_TIMING)
        try:
            try:
                credential = None
                if edge.verifier is not None and guarded:
                    if edge.verifier.settings.server_timing:
                        timings = []
                    mode, check = edge.verifier.judge(
                        first.get("authorization"),
                        lambda: cookie_jar(first.get("cookie", "")),
                        timings,
                    )
                    principal = await check
                    if principal.mode == "session":  # the hybrid's exchange (CSRF first)
                        headers = CIMultiDictProxy(CIMultiDict(fields))
                        credential = await edge.inner_credential(
                            method, headers, principal, deadline
                        )
                status, payload, answer = await edge.proxy.relay(
                    method,
                    pool,
                    path,
                    url,
                    forward_fields(fields, self.remote, rid),
                    body,
                    credential=credential,
                    deadline=deadline,
                )  # the upstream's headers fit to forward (Proxy.send filters them)
            except ProblemError as error:
                status, payload = (
                    error.status,
                    problem_body(error.status, error.detail, title=error.title, extra=error.extra),
                )
                answer = [("Content-Type", PROBLEM_TYPE), *error.headers.items()]
                if error.headers.get("Connection", "").lower() == "close":
                    keep_alive = False
            except Exception:
                log.exception("unhandled error on %s %s", method, url.partition("?")[0])
                status = 500
                payload = problem_body(
                    500, "Internal error; see the service log for the request id."
                )
                answer = [("Content-Type", PROBLEM_TYPE)]
            if edge.closing:
                keep_alive = False
            if timings:  # first, before the entries passed on from downstream
                answer = [(timing.HEADER, ", ".join(timings)), *answer]
            self._write(status, answer, payload, rid, keep_alive)
        finally:
            elapsed = time.perf_counter() - start
            edge.metrics.observe_request(label, method, status, mode, elapsed)
            log_access(method, url.partition("?")[0], status, mode, elapsed)
            request_id_var.reset(token)
            self.busy = False
            self.idle_since = self.loop.time()
            if not keep_alive:
                self.close_when_idle(now=True)
            else:
                self._next()

    def _write(
        self, status: int, headers: Headers, body: bytes, rid: str, keep_alive: bool
    ) -> None:
        """The answer as aiohttp's server writes it: no body nor Content-Length where the status
        has none, application/octet-stream for a body of no stated type, Date, Server."""
        transport = self.transport
        if transport is None:
            return
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"]
        typed = False
        for name, value in headers:
            lines.append(f"{name}: {value}\r\n")
            typed = typed or name.lower() == "content-type"
        if status in _EMPTY_BODY:
            body = b""
        else:
            if body and not typed:
                lines.append("Content-Type: application/octet-stream\r\n")
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append(
            f"Date: {self.edge.date()}\r\nServer: {SERVER_NAME}\r\n{REQUEST_ID_HEADER}: {rid}\r\n"
        )
        if not keep_alive:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        transport.write("".join(lines).encode("utf-8", "surrogateescape") + body)

    # -- closing --------------------------------------------------------------------------------

    def close_when_idle(self, *, now: bool = False) -> None:
        if self.transport is None:
            return
        if now or not self.busy:
            self.transport.close()
        else:
            self.eof = True  # closes after the answer in flight

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _arm_idle_timer(self, delay: float) -> None:
        self.idle_timer = self.loop.call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        """Close a connection idle for the keep-alive timeout; look again when it could be."""
        if self.transport is None:
            return
        timeout = self.edge.keepalive_timeout
        if self.busy or self.buffer:  # answering (bounded by the upstream timeout): not idle
            self._arm_idle_timer(timeout)
            return
        idle_for = self.loop.time() - self.idle_since
        if idle_for >= timeout:
            self.transport.close()
            return
        self._arm_idle_timer(timeout - idle_for)

    def _write_overdue(self) -> None:
        """A client that stopped reading its answers: reset, as the aiohttp side does."""
        self.write_timer = None
        transport = self.transport
        if transport is None:
            return
        reset_slow_reader(transport)


class _Counts(Collector):
    """gateway_fast_path_total: requests the fast path answered (served) or handed to aiohttp's
    server with their connection (handed_off)."""

    def __init__(self, edge: Edge, service: str) -> None:
        self.edge = edge
        self.service = service

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "gateway_fast_path",
            "Requests the gateway's fast path answered (served) or handed to aiohttp's server "
            "with their connection (handed_off)",
            labels=["service", "result"],
        )
        family.add_metric([self.service, "served"], self.edge.served)
        family.add_metric([self.service, "handed_off"], self.edge.handed_off)
        yield family
