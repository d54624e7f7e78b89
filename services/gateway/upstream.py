"""The gateway's HTTP/1.1 client to its upstreams: keep-alive connections per replica on asyncio
protocols, every answer parsed by httptools (llhttp, the parser Node.js and aiohttp's server use).

Why not aiohttp's ClientSession, which the other services use for their calls out: per proxied
request it cost the gateway ~130 us of CPU on the bench machine against ~35 us for this client
(py-spy: request and response objects, timer handles, stream readers, cookie and redirect
machinery), and made the gateway ~6.5x nginx on the same request. The gateway only talks to the
project's own services, so it needs little, and this module is that little:

- one request at a time per connection, HTTP/1.1 keep-alive, `Content-Length` bodies; the answer
  read whole (the contract's bodies are small; `max_body_bytes`, 1 MiB unless the gateway says
  otherwise, bounds it, as `max_head_bytes` bounds its head and the interim answers before it)
  and framed by llhttp (Content-Length, chunked, 1xx skipped, 204/304, HEAD, a body until the
  close); trailer fields are dropped, never merged into the headers;
- nothing is taken that the gateway could not frame again itself: an answer whose transfer
  coding is anything but `chunked` (the body would be still coded), a 101 or any upgrade, more
  than MAX_INTERIM_ANSWERS interim answers, or anything llhttp refuses is `AnswerFailed`, and
  `Answer.headers` holds end-to-end fields only (no hop-by-hop field, nor one the answer's
  `Connection` names), so no caller has to remember to strip them;
- every wait bounded: the TCP connect by `connect_timeout`, the whole exchange (waiting for a
  free connection included) by `request()`'s `timeout`. The answer's wait has no timer of its
  own: one sweep every SWEEP_SECONDS, while exchanges are in flight, fails those past their
  deadline (an `asyncio.timeout()` per request cost ~8 us of the gateway's CPU, the sweep
  well under one), so an exchange ends at most SWEEP_SECONDS after its deadline;
- a connection is reused only after a whole answer the upstream allowed to keep alive, never
  after an error, a timeout or a cancellation; idle ones are dropped after `idle_seconds` (10 s,
  below the services' 15 s keep-alive, so the upstream is rarely the one closing them), and
  one the upstream closed anyway is retried once on a new connection when that is safe (the
  request never went out, or the caller says it may go twice: `retry_sent`), as aiohttp's
  client does;
- a request head it builds is refused (`Unsendable`) if a name is not a token or a value or the
  target holds a CR, LF or NUL: nothing a caller passes can split the request;
- `NotSent` (nothing was sent: any request may go to another replica; `ConnectFailed` when no
  connection could be made, `NoSlot` when none was free within `slot_timeout`) is told apart
  from `AnswerFailed` (the request may have been processed).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, NoReturn, cast

import httptools


class UpstreamError(Exception):
    """No whole answer from the upstream."""


class NotSent(UpstreamError):
    """Nothing of the request went out: any method may go to another replica."""


class ConnectFailed(NotSent):
    """The TCP connection was never made: refused or unreachable (`refused` True, an OSError),
    or not made within the connect timeout (`refused` False)."""

    def __init__(self, why: str, *, refused: bool) -> None:
        super().__init__(why)
        self.refused = refused


class NoSlot(NotSent):
    """Every connection to the address stayed busy for `slot_timeout`: the request waited for
    one and never went out (a busy replica, not a dead one)."""


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
    # End-to-end fields as the upstream sent them, in order: no hop-by-hop field (_HOP_BY_HOP)
    # and none the answer's Connection header names.
    headers: list[tuple[str, str]]
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


# At most this many interim (1xx) answers before the real one: the contract's services send
# none, and a stream of them must not keep an exchange busy (their bytes also count against
# the head limit).
MAX_INTERIM_ANSWERS = 4

# Fields that concern one connection only (RFC 9110 7.6.1, and the Proxy- ones of HTTP/1.0
# proxies): never passed on, in either direction (the gateway's proxy drops them from requests).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_HOP_BY_HOP = frozenset(name.encode() for name in HOP_BY_HOP)  # as llhttp hands them over
# Those and Content-Length, which frames the body: one set lookup per header field finds them.
_SPECIAL = _HOP_BY_HOP | {b"content-length"}


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one exchange at a time, the answer parsed as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_head: int, max_body: int) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        # Bytes of the header fields so far (interim answers' included), then of the body and
        # trailers.
        self._size = 0
        self._head_seen = 0  # bytes received before the head was complete
        self._in_body = False  # the head is complete: header callbacks now carry trailers
        self._received = False  # any byte of the answer to the current exchange
        self._interim = 0  # interim answers so far in this exchange
        # Of the answer's head, only when it has them (None otherwise: nothing to allocate):
        self._named: set[str] | None = None  # the field names its Connection header lists
        self._codings: list[bytes] | None = None  # its Transfer-Encoding values
        self._length: bytes | None = None  # its Content-Length value
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
        # HttpParserUpgrade is no HttpParserError: a 101 the callbacks did not refuse first
        # (llhttp stops at any upgrade it sees) must not escape into the event loop either.
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(f"a malformed answer ({type(exc).__name__})")  # unless refused already
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
                self._refuse("an answer body over the limit")
            return
        if self._size > self._max_head:
            self._refuse("an answer head over the limit")
        lower = name.lower()
        if lower in _SPECIAL and self._hop(lower, value):
            return
        if not value.isascii():
            # obs-text: the fast path would relay the bytes and aiohttp's writer drop them, so
            # the two paths would answer differently; the services never send any.
            self._refuse("an answer header value that is not ASCII")
        self._headers.append((name.decode("ascii"), value.decode("ascii")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status > 599:  # RFC 9110 15: three digits, 1xx to 5xx
            self._refuse(f"an answer status out of range ({status})")
        if status < 200:
            # An interim answer: its fields' bytes stay counted (_size is not reset), so a
            # stream of them meets the head limit, and their number is bounded too.
            if status == 101:  # or llhttp would stop, and the rest is not HTTP any more
                self._refuse("an upgrade (101) answer")
            self._interim += 1
            if self._interim > MAX_INTERIM_ANSWERS:
                self._refuse(f"more than {MAX_INTERIM_ANSWERS} interim (1xx) answers")
            return
        self._size = 0
        self._in_body = True
        if self._codings is not None or self._length is not None:
            self._check_framing()
        if self._head_only:
            # A HEAD answer has no body, which llhttp is not told: finish here, never reuse.
            self._complete(reusable=False)

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_body:
            self._refuse("an answer body over the limit")
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
            self._headers = []
            self._body = []
            self._named = self._codings = self._length = None
            return
        self._complete(reusable=self._parser.should_keep_alive())

    # -- the client's side -------------------------------------------------------------------

    def _hop(self, lower: bytes, value: bytes) -> bool:
        """Note what a framing or hop-by-hop field says; True if it is not passed on."""
        if lower == b"content-length":
            self._length = value
            return False
        if lower == b"transfer-encoding":
            if self._codings is None:
                self._codings = []
            self._codings.append(value)
        elif lower == b"connection":
            if self._named is None:
                self._named = set()
            # A field name is a token: ASCII, so Latin-1 decodes it whatever else is there.
            self._named.update(t.strip().lower() for t in value.decode("latin-1").split(","))
        return True

    def _check_framing(self) -> None:
        """Refuse a body the gateway could not frame again as it is, or one sure to be over the
        limit (before any of it is read)."""
        codings = self._codings
        if codings is not None and (len(codings) != 1 or codings[0].strip().lower() != b"chunked"):
            # gzip, chunked: llhttp takes the chunks off, the gzip stays, and no header says so.
            self._refuse("an answer with a transfer coding other than chunked")
        length = self._length
        if length is not None and self._has_body():
            digits = length.strip()  # llhttp has checked it: digits, and no overflow
            if len(digits) > 18 or int(digits or b"0") > self._max_body:
                self._refuse("an answer body over the limit")

    def _has_body(self) -> bool:
        """The answer may carry a body: a HEAD, 204 or 304 answer's Content-Length is of one it
        does not carry."""
        return not self._head_only and self._parser.get_status_code() not in (204, 304)

    def _until_close(self) -> bool:
        """The answer's body runs until the connection closes (RFC 9112 6.3, item 8)."""
        return self._has_body() and self._codings is None and self._length is None

    def _complete(self, *, reusable: bool) -> None:
        waiter, self._waiter = self._waiter, None
        headers, self._headers = self._headers, []
        body, self._body = self._body, []
        if waiter is None or waiter.done():
            return
        named = self._named
        if named:  # fields the upstream meant for this connection only (RFC 9110 7.6.1)
            headers = [(n, v) for n, v in headers if n.lower() not in named]
        self.reusable = reusable and not self.closed
        waiter.set_result(Answer(self._parser.get_status_code(), headers, b"".join(body)))

    def _fail(self, why: str, *, stale: bool = False) -> None:
        self._fail_with(StaleConnection(why, sent=True) if stale else AnswerFailed(why))

    def _refuse(self, why: str) -> NoReturn:
        """From a parser callback: fail the exchange, close the connection, and stop llhttp
        (the exception ends feed_data, which data_received expects)."""
        self._fail(why)
        self.close()
        raise AnswerFailed(why)

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
        self._interim = 0
        self._named = self._codings = self._length = None
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
        max_body_bytes: int = 1024 * 1024,
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
        slot_timeout: float | None = None,
        retry_sent: bool = False,
    ) -> Answer:
        """One exchange, whole within `timeout` seconds (waiting for a connection, connecting
        and the answer; TimeoutError past it). Raises Unsendable before anything is sent,
        NotSent if nothing went out (ConnectFailed: no connection could be made; NoSlot: every
        connection to `address` stayed busy for `slot_timeout` seconds, when that comes before
        the deadline), AnswerFailed if no whole answer came. A cancelled or timed-out
        exchange's connection is closed.

        retry_sent: the request may be sent twice, so it goes once more on a new connection
        when a kept-alive one is closed by the upstream after the request was written (before
        any answer). Without it only a request that never went out is sent again."""
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
            await self._wait_for_slot(loop, address, deadline, slot_timeout)
        try:
            if self._closed:
                raise ConnectFailed("the client is closed", refused=False)
            connection = self._reuse(loop, address) or await self._connect(loop, address, deadline)
            # Exchanges are awaited here, not in a helper: one coroutine frame fewer to
            # enter and resume on every proxied request.
            self._watch(loop, connection, deadline)
            try:
                return await connection.exchange(message, head_only=method == "HEAD")
            except StaleConnection as exc:
                if exc.sent and not retry_sent:
                    raise
                # Closed by the upstream while idle: nothing of this request was answered.
                self._deadlines.pop(connection, None)
                self._release(loop, address, connection)
                try:
                    connection = await self._connect(loop, address, deadline)
                except NotSent as failed:
                    if exc.sent:  # the first one went out: it may have been processed
                        raise exc from failed
                    raise
                self._watch(loop, connection, deadline)
                return await connection.exchange(message, head_only=method == "HEAD")
            finally:
                self._deadlines.pop(connection, None)
                self._release(loop, address, connection)
        finally:
            self._free_slot(address)

    async def _wait_for_slot(
        self,
        loop: asyncio.AbstractEventLoop,
        address: Address,
        deadline: float,
        slot_timeout: float | None,
    ) -> None:
        """Queue for a slot of `address` until one passes to this request; TimeoutError at the
        deadline, NoSlot after `slot_timeout` if that comes first."""
        slot_by = deadline if slot_timeout is None else loop.time() + slot_timeout
        waiter: asyncio.Future[None] = loop.create_future()
        queue = self._waiting.setdefault(address, collections.deque())
        queue.append(waiter)
        try:
            async with asyncio.timeout_at(min(slot_by, deadline)):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._free_slot(address)  # passed to it just as it gave up: pass it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
            if isinstance(exc, TimeoutError) and slot_by < deadline:
                raise NoSlot(f"no free connection within {slot_timeout:g} s") from None
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
            raise ConnectFailed(
                f"no connection within {self._connect_timeout:g} s", refused=False
            ) from None
        except OSError as exc:  # refused, unreachable, a name that does not resolve
            raise ConnectFailed(type(exc).__name__, refused=True) from None
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
        request still waiting for a connection fails with ConnectFailed (refused False)."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        if self._sweeper is not None and not self._deadlines:
            self._sweeper.cancel()
            self._sweeper = None
        # Let the transports run their close callbacks before the loop goes away.
        await asyncio.sleep(0)
