"""The gateway's HTTP/1.1 client to its upstreams: keep-alive connections per replica on asyncio
protocols, every answer parsed by httptools (llhttp, the parser Node.js and aiohttp's server use).

Why not aiohttp's ClientSession, which the other services use for their calls out: per proxied
request it cost the gateway ~130 us of CPU on the bench machine against ~35 us for this client
(py-spy: request and response objects, timer handles, stream readers, cookie and redirect
machinery), and made the gateway ~6.5x nginx on the same request. The gateway only talks to the
project's own services, so it needs little, and this module is that little:

- one request at a time per connection, HTTP/1.1 keep-alive, `Content-Length` bodies; the answer
  read whole (the contract's bodies are small; `max_body_bytes` bounds it, as `max_head_bytes`
  bounds its head) and framed by llhttp (Content-Length, chunked, 1xx skipped, 204/304, HEAD,
  a body until the close); trailer fields are dropped, never merged into the headers;
- every wait bounded: the TCP connect by `connect_timeout`, the whole exchange (waiting for a
  free connection included) by `request()`'s `timeout`. The answer's wait has no timer of its
  own: one sweep every SWEEP_SECONDS, while exchanges are in flight, fails those past their
  deadline (an `asyncio.timeout()` per request cost ~8 us of the gateway's CPU, the sweep
  well under one), so an exchange ends at most SWEEP_SECONDS after its deadline;
- a connection is reused only after a whole answer the upstream allowed to keep alive, never
  after an error, a timeout or a cancellation; idle ones are dropped after `idle_seconds` (10 s,
  below the services' 15 s keep-alive, so the upstream is rarely the one closing them), and
  one the upstream closed anyway is retried once on a new connection when that is safe (the
  request never went out, or its method is idempotent), as aiohttp's client does;
- a request head it builds is refused (`Unsendable`) if a name is not a token or a value or the
  target holds a CR, LF or NUL: nothing a caller passes can split the request;
- `ConnectFailed` (nothing was sent: any request may go to another replica) is told apart from
  `AnswerFailed` (the request may have been processed).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, cast

import httptools


class UpstreamError(Exception):
    """No whole answer from the upstream."""


class ConnectFailed(UpstreamError):
    """The TCP connection was never made: nothing was sent."""


class AnswerFailed(UpstreamError):
    """The request may have been sent, but no whole, well-formed answer came back."""


class StaleConnection(AnswerFailed):
    """A kept-alive connection the upstream closed: before the request was written (`sent`
    False: safe to send anywhere) or after it, before any byte of the answer."""

    def __init__(self, why: str, *, sent: bool) -> None:
        super().__init__(why)
        self.sent = sent


class Unsendable(ValueError):
    """A request this client will not put on the wire (it could split or smuggle a request)."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]  # as the upstream sent them, in order
    body: bytes


class Address(NamedTuple):
    """Where a replica listens: host (a name or an IP, IPv6 without brackets) and port.

    A tuple: it keys the connection pools several times per request, and a tuple's hash is
    computed in C (a frozen dataclass's runs Python code each time)."""

    host: str
    port: int

    @property
    def authority(self) -> str:
        """The Host header's value."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"  # RFC 9110 5.6.2
_TOKEN = re.compile(f"{_TCHAR}+")
_TARGET = re.compile(r"/[\x21-\x7e]*")  # origin-form, visible ASCII only
# The client frames the message itself: these never come from the caller.
_OWN = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


# Header names already judged: True to send, False for the client's own (_OWN). A request
# carries the same few names again and again; a new one is checked once (bounded, so names a
# client makes up cannot grow it without end: past the bound each is checked every time).
_NAMES: dict[str, bool] = {}
_NAMES_KEPT = 1024
_NAME_KEPT_CHARS = 64  # longer names are judged every time: the memory stays small


def _judge_name(name: str) -> bool:
    if _TOKEN.fullmatch(name) is None:
        raise Unsendable(f"header name {name[:64]!r} is not a token")
    sendable = name.lower() not in _OWN
    if len(_NAMES) < _NAMES_KEPT and len(name) <= _NAME_KEPT_CHARS:
        _NAMES[name] = sendable
    return sendable


def request_head(
    method: str,
    address: Address,
    target: str,
    headers: Iterable[tuple[str, str]],
    body_length: int | None,
) -> bytes:
    """The request line and headers, ready for the wire, or Unsendable."""
    if _TOKEN.fullmatch(method) is None or _TARGET.fullmatch(target) is None:
        raise Unsendable("the method or the request target cannot be sent")
    lines = []
    for name, value in headers:
        sendable = _NAMES.get(name)
        if sendable is None:
            sendable = _judge_name(name)
        if sendable:
            lines.append(f"{name}: {value}\r\n")
    block = "".join(lines)
    # Each line ends in the one CR LF put there above: any other CR, LF or NUL came in a value.
    if block.count("\n") != len(lines) or block.count("\r") != len(lines) or "\0" in block:
        raise Unsendable("a header value holds a CR, LF or NUL")
    if body_length is None and method in _BODY_METHODS:
        body_length = 0
    length = "" if body_length is None else f"Content-Length: {body_length}\r\n"
    head = f"{method} {target} HTTP/1.1\r\nHost: {address.authority}\r\n{block}{length}\r\n"
    try:
        return head.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: bytes that were not UTF-8 when they came in
        raise Unsendable("a header holds bytes that cannot be sent") from None


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one exchange at a time, the answer parsed as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_head: int, max_body: int) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._size = 0  # bytes of the header fields so far, then of the body and trailers
        self._head_seen = 0  # bytes received before the head was complete
        self._in_body = False  # the head is complete: header callbacks now carry trailers
        self._received = False  # any byte of the answer to the current exchange
        self._max_head = max_head
        self._max_body = max_body
        self._head_only = False
        self.reusable = False  # True after a whole answer the upstream lets us keep alive
        self.closed = False
        self.used = False  # carried an exchange before
        self.idle_since = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and self._in_body and self._until_close():
            # Framed by the close (no Content-Length, not chunked): the body is complete now.
            self._complete(reusable=False)
        elif self._received or not self.used:
            self._fail("the connection closed before a whole answer")
        else:
            self._fail("the kept-alive connection closed before any answer", stale=True)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing was asked: an upstream out of step
            self.close()
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:  # also an upgrade we never asked for
            self._fail(f"a malformed answer ({type(exc).__name__})")
            self.close()
            return
        if not self._in_body and self._waiter is not None:
            # httptools holds a header line until it ends: bound the head as it arrives.
            self._head_seen += len(data)
            if self._head_seen > self._max_head:
                self._fail("an answer head over the limit")
                self.close()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiter is None:  # a second answer after the one asked for: stop parsing
            self.close()
            raise AnswerFailed("an answer nobody asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._size += len(name) + len(value)
        if self._in_body:  # a trailer field: dropped, never merged into the header section
            if self._size > self._max_body:
                self._fail("an answer body over the limit")
                self.close()
            return
        if self._size > self._max_head:
            self._fail("an answer head over the limit")
            self.close()
            return
        # As aiohttp decodes them: the bytes survive a round trip.
        self._headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        self._size = 0
        status = self._parser.get_status_code()
        self._in_body = status >= 200
        if self._head_only and status >= 200:
            # A HEAD answer has no body, which llhttp is not told: finish here, never reuse.
            self._complete(reusable=False)

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_body:
            self._fail("an answer body over the limit")
            self.close()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
            self._headers = []
            self._body = []
            return
        self._complete(reusable=self._parser.should_keep_alive())

    # -- the client's side -------------------------------------------------------------------

    def _until_close(self) -> bool:
        """The answer's body runs until the connection closes (RFC 9112 6.3, item 8)."""
        framing = {"content-length", "transfer-encoding"}
        status = self._parser.get_status_code()
        if status in (204, 304) or self._head_only:
            return False
        return not any(name.lower() in framing for name, _ in self._headers)

    def _complete(self, *, reusable: bool) -> None:
        waiter, self._waiter = self._waiter, None
        headers, self._headers = self._headers, []
        body, self._body = self._body, []
        if waiter is None or waiter.done():
            return
        self.reusable = reusable and not self.closed
        waiter.set_result(Answer(self._parser.get_status_code(), headers, b"".join(body)))

    def _fail(self, why: str, *, stale: bool = False) -> None:
        self._fail_with(StaleConnection(why, sent=True) if stale else AnswerFailed(why))

    def _fail_with(self, error: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def expire(self) -> None:
        """The exchange's deadline passed: it fails with TimeoutError, the connection closes
        (a late answer must never be taken for the next request's)."""
        self._fail_with(TimeoutError())
        self.close()

    def close(self) -> None:
        self.closed = True
        self.reusable = False
        if self._transport is not None:
            self._transport.close()

    async def exchange(self, message: bytes, *, head_only: bool) -> Answer:
        assert self._transport is not None and self._waiter is None
        if self.closed or self._transport.is_closing():
            raise StaleConnection("the connection closed while idle", sent=False)
        self._headers = []
        self._body = []
        self._size = 0
        self._head_seen = 0
        self._in_body = False
        self._received = False
        self._head_only = head_only
        self.reusable = False
        waiter: asyncio.Future[Answer] = self._loop.create_future()
        self._waiter = waiter
        self._transport.write(message)
        try:
            return await waiter
        finally:
            self.used = True


# How often the exchanges in flight are checked against their deadlines.
SWEEP_SECONDS = 0.05

# Safe to send twice: a kept-alive connection the upstream closed just as the request went out
# gets the request once more on a new connection (as aiohttp's client does).
_RETRIED_ON_STALE = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class UpstreamClient:
    """Keep-alive connection pools, one per upstream address, at most `limit_per_address`
    connections each."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        limit_per_address: int = 256,
        idle_seconds: float = 10.0,
        max_head_bytes: int = 64 * 1024,
        max_body_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._limit = limit_per_address
        self._idle_seconds = idle_seconds
        self._max_head = max_head_bytes
        self._max_body = max_body_bytes
        self._idle: dict[Address, collections.deque[_Connection]] = {}
        # Per address: requests holding one of its `limit_per_address` slots, and those waiting
        # for one (first come, first served; a freed slot passes straight to the next).
        self._busy: collections.Counter[Address] = collections.Counter()
        self._waiting: dict[Address, collections.deque[asyncio.Future[None]]] = {}
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the one it runs on, once known
        # Exchanges in flight and their deadlines, and the sweep that enforces them.
        self._deadlines: dict[_Connection, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    async def request(
        self,
        method: str,
        address: Address,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
        *,
        # A parameter, not the caller's asyncio.timeout(): the sweep enforces it (module doc).
        timeout: float,  # noqa: ASYNC109
    ) -> Answer:
        """One exchange, whole within `timeout` seconds (waiting for a connection, connecting
        and the answer; TimeoutError past it). Raises Unsendable before anything is sent,
        ConnectFailed if no connection could be made, AnswerFailed if no whole answer came. A
        cancelled or timed-out exchange's connection is closed."""
        head = request_head(method, address, target, headers, None if body is None else len(body))
        message = head + body if body else head
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # A slot: counted inline while one is free (an asyncio.Semaphore was five calls a
        # request), waited for within the deadline otherwise.
        if self._busy[address] < self._limit and not self._waiting.get(address):
            self._busy[address] += 1
        else:
            await self._wait_for_slot(loop, address, deadline)
        try:
            if self._closed:
                raise ConnectFailed("the client is closed")
            connection = self._reuse(loop, address) or await self._connect(loop, address, deadline)
            # Exchanges are awaited here, not in a helper: one coroutine frame fewer to
            # enter and resume on every proxied request.
            self._watch(loop, connection, deadline)
            try:
                return await connection.exchange(message, head_only=method == "HEAD")
            except StaleConnection as exc:
                if exc.sent and method not in _RETRIED_ON_STALE:
                    raise
                # Closed by the upstream while idle: nothing of this request was answered.
                self._deadlines.pop(connection, None)
                self._release(loop, address, connection)
                connection = await self._connect(loop, address, deadline)
                self._watch(loop, connection, deadline)
                return await connection.exchange(message, head_only=method == "HEAD")
            finally:
                self._deadlines.pop(connection, None)
                self._release(loop, address, connection)
        finally:
            self._free_slot(address)

    async def _wait_for_slot(
        self, loop: asyncio.AbstractEventLoop, address: Address, deadline: float
    ) -> None:
        """Queue for a slot of `address` until one passes to this request, or the deadline."""
        waiter: asyncio.Future[None] = loop.create_future()
        queue = self._waiting.setdefault(address, collections.deque())
        queue.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._free_slot(address)  # passed to it just as it gave up: pass it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
            raise

    def _free_slot(self, address: Address) -> None:
        """The slot passes to the first request still waiting for one, else it is free."""
        queue = self._waiting.get(address)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._busy[address] -= 1

    def _watch(
        self, loop: asyncio.AbstractEventLoop, connection: _Connection, deadline: float
    ) -> None:
        """The exchange about to start on `connection` fails if it still runs at `deadline`."""
        self._deadlines[connection] = deadline
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)

    def _sweep(self) -> None:
        """Fail the exchanges past their deadline; look again while any is in flight."""
        loop = self._loop
        assert loop is not None
        self._sweeper = None
        now = loop.time()
        try:
            for connection in [c for c, d in self._deadlines.items() if d <= now]:
                del self._deadlines[connection]
                connection.expire()
        finally:  # the next sweep is never lost, whatever an expiry raised
            if self._deadlines:
                self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)

    def _reuse(self, loop: asyncio.AbstractEventLoop, address: Address) -> _Connection | None:
        idle = self._idle.get(address)
        if not idle:
            return None
        oldest = loop.time() - self._idle_seconds
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be stale
            if not connection.closed and connection.idle_since >= oldest:
                return connection
            connection.close()
        return None

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, address: Address, deadline: float
    ) -> _Connection:
        """A new connection within `connect_timeout` (ConnectFailed past it), or TimeoutError
        if the exchange's deadline comes first."""
        connect_by = loop.time() + self._connect_timeout
        try:
            async with asyncio.timeout_at(min(connect_by, deadline)):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, self._max_head, self._max_body),
                    address.host,
                    address.port,
                )
        except TimeoutError:
            if deadline < connect_by:
                raise
            raise ConnectFailed(f"no connection within {self._connect_timeout:g} s") from None
        except OSError as exc:
            raise ConnectFailed(type(exc).__name__) from None
        return connection

    def _release(
        self, loop: asyncio.AbstractEventLoop, address: Address, connection: _Connection
    ) -> None:
        """Keep the connection for the next request if its last exchange ended cleanly."""
        if not connection.reusable or connection.closed or self._closed:
            connection.close()
            return
        connection.reusable = False  # until its next exchange ends cleanly
        connection.idle_since = loop.time()
        idle = self._idle.get(address)
        if idle is None:
            idle = self._idle[address] = collections.deque()
        idle.append(connection)

    def prune(self) -> None:
        """Close connections idle longer than `idle_seconds` (or closed by the upstream) and
        forget addresses with nothing open and nothing waiting. The gateway calls it from its
        health loop, so an address gone from DNS does not keep sockets open."""
        if self._loop is None:
            return
        oldest = self._loop.time() - self._idle_seconds
        for address in set(self._idle) | set(self._busy):
            idle = self._idle.get(address)
            while idle and (idle[0].closed or idle[0].idle_since < oldest):
                idle.popleft().close()
            if not idle and not self._busy[address] and not self._waiting.get(address):
                self._idle.pop(address, None)
                self._waiting.pop(address, None)
                del self._busy[address]

    def idle_connections(self, address: Address) -> int:
        """How many open connections to `address` wait for a request (for tests and metrics)."""
        return sum(not c.closed for c in self._idle.get(address, ()))

    def addresses(self) -> set[Address]:
        """The addresses the client holds anything for (connections, waiters)."""
        return set(self._idle) | set(self._busy) | set(self._waiting)

    async def close(self) -> None:
        """Close every idle connection now and every busy one when its exchange ends; a
        request still waiting for a connection fails with ConnectFailed."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        if self._sweeper is not None and not self._deadlines:
            self._sweeper.cancel()
            self._sweeper = None
        # Let the transports run their close callbacks before the loop goes away.
        await asyncio.sleep(0)
