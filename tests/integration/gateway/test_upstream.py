"""The gateway's upstream client against real sockets: an aiohttp server for the well-behaved
upstream, and scripted asyncio servers for the ones that misbehave (answers cut short, out of
step, too large, too slow, closed connections, answers the gateway could not frame again); at
the end, the gateway itself in front of such an upstream.

Each test states what the client must do with one kind of answer: take it whole, reuse the
connection only when that is safe, and otherwise fail with the error that tells the gateway
whether another replica may be tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.gateway import upstream as upstream_module
from services.gateway.app import create_app
from services.gateway.settings import Settings
from services.gateway.upstream import (
    SWEEP_SECONDS,
    Address,
    Answer,
    AnswerFailed,
    ConnectFailed,
    NoSlot,
    NotSent,
    StaleConnection,
    Unsendable,
    UpstreamClient,
    request_head,
)
from tests.integration.gateway.conftest import PATHS, Served, served

Reply = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Scripted:
    """A raw TCP server: every request head it reads goes to `reply`, which writes the bytes."""

    reply: Reply
    heads: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed: int = 0  # connections that ended (the client closed them, or the reply did)
    server: asyncio.Server | None = None
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def address(self) -> Address:
        assert self.server is not None
        return Address("127.0.0.1", self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    self.heads.append(head)
                    await self.reply(head, reader, writer)
                    await writer.drain()
        finally:
            writer.close()
            self.closed += 1
            self.handlers.discard(task)

    async def until(self, done: Callable[[], bool]) -> None:
        """Poll until `done()` holds (5 s at most)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not done() and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert done()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.handlers):  # a reply still waiting: end it, close its socket
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Reply], Awaitable[Scripted]]]:
    scripts: list[Scripted] = []

    async def start(reply: Reply) -> Scripted:
        script = Scripted(reply)
        script.server = await asyncio.start_server(script._serve, "127.0.0.1", 0)
        scripts.append(script)
        return script

    yield start
    for script in scripts:
        await script.stop()


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    upstream = UpstreamClient(connect_timeout=1.0, limit_per_address=4, idle_seconds=30)
    yield upstream
    await upstream.close()


async def gated(start: Callable[[Reply], Awaitable[Scripted]]) -> tuple[Scripted, asyncio.Event]:
    """An upstream that answers each request only once the event is set."""
    gate = asyncio.Event()

    async def held(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await gate.wait()
        w.write(answer())

    return await start(held), gate


async def ask(
    client: UpstreamClient, address: Address, target: str = "/", method: str = "GET"
) -> Answer:
    """One request, bounded as the gateway bounds it."""
    return await client.request(method, address, target, [], None, timeout=5)


def answer(body: bytes = b"ok", *, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_a_whole_answer_and_the_connection_kept(
    aiohttp_server: Callable[..., Awaitable[TestServer]], client: UpstreamClient
) -> None:
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append((request.method, request.raw_path, dict(request.headers), await request.read()))
        return web.json_response({"n": len(seen)}, headers={"X-Upstream": "yes"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    server = await aiohttp_server(app)
    assert server.port is not None
    address = Address("127.0.0.1", server.port)

    got = await client.request(
        "GET", address, "/orders?limit=2", [("Authorization", "Bearer t")], None, timeout=5
    )
    assert got.status == 200 and got.body == b'{"n": 1}'
    assert ("X-Upstream", "yes") in got.headers
    posted = await client.request("POST", address, "/orders", [], b'{"a":1}', timeout=5)
    assert posted.status == 200
    empty = await ask(client, address, "/orders", "POST")
    assert empty.status == 200

    (m1, p1, h1, b1), (m2, _, h2, b2), (_, _, h3, b3) = seen
    assert (m1, p1, b1) == ("GET", "/orders?limit=2", b"")
    assert h1["Host"] == f"127.0.0.1:{server.port}" and h1["Authorization"] == "Bearer t"
    assert "Content-Length" not in h1  # a GET without a body says nothing of one
    # Nothing of the client's own: no User-Agent, Accept or Accept-Encoding added.
    assert not {"User-Agent", "Accept", "Accept-Encoding"} & set(h1)
    assert (m2, b2, h2["Content-Length"]) == ("POST", b'{"a":1}', "7")
    assert (b3, h3["Content-Length"]) == (b"", "0")
    # Three requests, one connection: kept alive and reused.
    assert client.idle_connections(address) == 1


async def test_a_chunked_answer_is_read_whole(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    async def chunked(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await w.drain()
        w.write(b"3\r\nabc\r\n")
        await w.drain()
        w.write(b"2\r\nde\r\n0\r\n\r\n")

    server = await scripted(chunked)
    got = await ask(client, server.address)
    assert (got.status, got.body) == (200, b"abcde")
    again = await ask(client, server.address)
    assert again.body == b"abcde" and server.connections == 1


async def test_interim_answers_are_skipped(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    async def early_hints(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        w.write(answer(b"final", extra=b"X-Final: 1\r\n"))

    server = await scripted(early_hints)
    got = await ask(client, server.address)
    assert (got.status, got.body) == (200, b"final")
    assert got.headers == [("Content-Length", "5"), ("X-Final", "1")]


async def test_head_and_no_content_answers_have_no_body(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    async def reply(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if head.startswith(b"HEAD"):
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")  # and no body: HEAD
        else:
            w.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    server = await scripted(reply)
    got = await ask(client, server.address, "/", "HEAD")
    assert (got.status, got.body, got.headers) == (200, b"", [("Content-Length", "1000")])
    assert client.idle_connections(server.address) == 0  # llhttp still waits for a body: closed
    await server.until(lambda: server.closed == 1)
    none = await ask(client, server.address, "/x", "DELETE")
    assert (none.status, none.body) == (204, b"")
    assert client.idle_connections(server.address) == 1


async def test_connection_close_is_honoured(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    async def closing(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(answer(extra=b"Connection: close\r\n"))

    server = await scripted(closing)
    for _ in range(3):
        got = await ask(client, server.address)
        assert got.body == b"ok"
    assert server.connections == 3 and client.idle_connections(server.address) == 0


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed before"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", "closed before"),
        (b"NOT HTTP AT ALL\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "malformed"),
        (b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", "malformed"),
    ],
)
async def test_a_broken_answer_fails_and_is_not_reused(
    scripted: Callable[[Reply], Awaitable[Scripted]],
    client: UpstreamClient,
    raw: bytes,
    why: str,
) -> None:
    async def broken(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(raw)
        await w.drain()
        w.close()

    server = await scripted(broken)
    with pytest.raises(AnswerFailed, match=why):
        await ask(client, server.address)
    assert client.idle_connections(server.address) == 0


async def test_answers_over_the_limits_fail(
    scripted: Callable[[Reply], Awaitable[Scripted]],
) -> None:
    async def large(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if b"/body" in head:
            w.write(answer(b"x" * 5000))
        else:
            w.write(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: %s\r\n" % (b"p" * 3000) + answer()[17:])

    server = await scripted(large)
    small = UpstreamClient(connect_timeout=1, max_head_bytes=2048, max_body_bytes=4096)
    try:
        with pytest.raises(AnswerFailed, match="body over the limit"):
            await ask(small, server.address, "/body")
        with pytest.raises(AnswerFailed, match="head over the limit"):
            await ask(small, server.address, "/head")
        assert small.idle_connections(server.address) == 0
    finally:
        await small.close()


async def test_a_second_unasked_answer_closes_the_connection(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    async def twice(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        # The second would answer the next request, and carry its own headers.
        w.write(answer(b"one") + answer(b"two", extra=b"Set-Cookie: sid=evil\r\n"))

    server = await scripted(twice)
    first = await ask(client, server.address)
    # The unasked answer leaks nothing into the asked one (a Set-Cookie of its own, say).
    assert (first.body, first.headers) == (b"one", [("Content-Length", "3")])
    second = await ask(client, server.address)
    assert second.body == b"one"  # from a new connection, not the stale "two"
    assert server.connections == 2


async def test_a_slow_answer_times_out_and_its_connection_is_dropped(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    release = asyncio.Event()

    async def slow(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if b"/slow" in head:
            await release.wait()
        w.write(answer())

    server = await scripted(slow)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await client.request("GET", server.address, "/slow", [], None, timeout=0.2)
    # Past the deadline, within one sweep of it.
    assert 0.2 <= loop.time() - started < 0.2 + SWEEP_SECONDS + 2
    release.set()
    assert client.idle_connections(server.address) == 0
    await server.until(lambda: server.closed == 1)  # closed, not leaked
    # The late answer to /slow can never be taken as the answer to the next request.
    got = await ask(client, server.address, "/fast")
    assert got.body == b"ok" and server.connections == 2


async def test_each_exchange_keeps_its_own_deadline(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    release = asyncio.Event()

    async def held(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await release.wait()
        w.write(answer(head.split(b" ")[1]))

    server = await scripted(held)
    short = asyncio.create_task(
        client.request("GET", server.address, "/short", [], None, timeout=0.2)
    )
    long = asyncio.create_task(client.request("GET", server.address, "/long", [], None, timeout=5))
    with pytest.raises(TimeoutError):
        await short
    assert not long.done()  # the sweep that ended /short left /long alone
    release.set()
    assert (await long).body == b"/long"
    await server.until(lambda: server.closed == 1)  # /short's connection only


async def test_a_cancelled_request_drops_its_connection(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    started = asyncio.Event()

    async def hang(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        started.set()
        await r.read()  # no answer, ever: until the client closes the connection

    server = await scripted(hang)
    task = asyncio.create_task(ask(client, server.address))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.idle_connections(server.address) == 0
    await server.until(lambda: server.closed == 1)  # closed, not leaked


async def test_nothing_listening_is_a_connect_failure(
    client: UpstreamClient, refused_port: int
) -> None:
    with pytest.raises(ConnectFailed):
        await ask(client, Address("127.0.0.1", refused_port))


async def test_an_unreachable_upstream_is_a_connect_failure_in_time() -> None:
    # A listener whose accept queue is full drops new SYNs: the connect hangs, and only the
    # client's own connect timeout ends it.
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        address = Address("127.0.0.1", full.getsockname()[1])
        fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", address.port))
            fillers.append(s)
        client = UpstreamClient(connect_timeout=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            with pytest.raises(ConnectFailed) as failed:
                await ask(client, address)
            assert not failed.value.refused  # timed out: maybe only busy, not refused
            assert loop.time() - started < 3  # the connect timeout, not the 5 s request timeout
            # A request whose own deadline comes before the connect timeout: its deadline.
            patient = UpstreamClient(connect_timeout=5)
            started = loop.time()
            try:
                with pytest.raises(TimeoutError):
                    await patient.request("GET", address, "/", [], None, timeout=0.3)
            finally:
                await patient.close()
            assert loop.time() - started < 3
        finally:
            await client.close()
            for s in fillers:
                s.close()


async def test_connections_per_address_are_capped(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    server, gate = await gated(scripted)
    tasks = [asyncio.create_task(ask(client, server.address)) for _ in range(10)]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while server.connections < 4 and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert server.connections == 4  # limit_per_address: the other six wait for one
    gate.set()
    answers = await asyncio.gather(*tasks)
    assert [a.body for a in answers] == [b"ok"] * 10 and server.connections == 4


async def test_idle_connections_expire(
    scripted: Callable[[Reply], Awaitable[Scripted]],
) -> None:
    async def ok(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(answer())

    server = await scripted(ok)
    client = UpstreamClient(connect_timeout=1, idle_seconds=0.1)
    try:
        await ask(client, server.address)
        await ask(client, server.address)
        assert server.connections == 1  # kept while fresh
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.15
        while loop.time() < deadline:  # let its idle time run out
            await asyncio.sleep(0.02)
        await ask(client, server.address)
        assert server.connections == 2  # the expired one was not reused ...
        await server.until(lambda: server.closed == 1)  # ... but closed
        deadline = loop.time() + 0.15
        while loop.time() < deadline:
            await asyncio.sleep(0.02)
        client.prune()  # what the gateway's health loop does every interval
        await server.until(lambda: server.closed == 2)
        assert server.address not in client.addresses()  # nothing held for it any more
    finally:
        await client.close()


async def test_the_upstream_closing_an_idle_connection_is_noticed(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    async def once(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(answer())
        await w.drain()
        w.close()  # without saying Connection: close

    server = await scripted(once)
    await ask(client, server.address)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while client.idle_connections(server.address) and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert client.idle_connections(server.address) == 0
    assert (await ask(client, server.address)).body == b"ok"


@pytest.mark.parametrize(
    "method, target, headers",
    [
        ("GET", "/a b", []),
        ("GET", "/a\r\nX-Evil: 1", []),
        ("GET", "a", []),
        ("GE T", "/", []),
        ("GET", "/", [("X-A", "1\r\nX-Evil: 1")]),
        ("GET", "/", [("X-A", "1\nX-Evil: 1")]),
        ("GET", "/", [("X-A", "1\r")]),
        ("GET", "/", [("X-A", "1\x00")]),
        ("GET", "/", [("X A", "1")]),
        ("GET", "/", [("X-A:", "1")]),
        ("GET", "/", [("X-A", "\udcff")]),
    ],
)
def test_nothing_can_split_the_request(
    method: str, target: str, headers: list[tuple[str, str]]
) -> None:
    with pytest.raises(Unsendable):
        request_head(method, Address("127.0.0.1", 1), target, headers, None)


def test_a_name_judged_before_is_judged_alike_and_the_memory_of_names_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upstream_module, "_NAMES", {})
    address = Address("127.0.0.1", 1)
    for _ in range(2):  # the second time from what was kept
        with pytest.raises(Unsendable, match="not a token"):
            request_head("GET", address, "/", [("X-Ok", "1"), ("X Bad", "1")], None)
        head = request_head("GET", address, "/", [("X-Ok", "1"), ("HOST", "evil")], None)
        assert b"X-Ok: 1\r\n" in head and b"evil" not in head
        assert upstream_module._NAMES == {"X-Ok": True, "HOST": False}
    many = [(f"X-Made-Up-{i}", "1") for i in range(3 * upstream_module._NAMES_KEPT)]
    head = request_head("GET", address, "/", many, None)
    assert head.count(b"X-Made-Up-") == len(many)  # all sent, not all remembered
    assert len(upstream_module._NAMES) <= upstream_module._NAMES_KEPT


def test_the_client_frames_the_message_itself() -> None:
    head = request_head(
        "POST",
        Address("::1", 8082),
        "/orders?x=%20",
        [
            ("Host", "evil"),
            ("Content-Length", "99"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("X-Request-ID", "abc"),
            ("X-Name", "caf\u00e9"),
        ],
        5,
    )
    assert head == (
        b"POST /orders?x=%20 HTTP/1.1\r\nHost: [::1]:8082\r\nX-Request-ID: abc\r\n"
        b"X-Name: caf\xc3\xa9\r\nContent-Length: 5\r\n\r\n"
    )


async def test_a_closed_client_sends_nothing(
    scripted: Callable[[Reply], Awaitable[Scripted]],
) -> None:
    async def ok(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(answer())

    server = await scripted(ok)
    client = UpstreamClient(connect_timeout=1)
    await ask(client, server.address)
    await client.close()
    assert client.idle_connections(server.address) == 0
    with pytest.raises(ConnectFailed):
        await ask(client, server.address)
    assert len(server.heads) == 1


async def test_a_kept_alive_connection_closed_under_a_request_is_retried_when_safe(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    # The upstream answers, then closes each connection as the next request reaches it: the
    # race a kept-alive connection loses when the upstream's keep-alive ends.
    async def one_each(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if len(server.heads) % 2 == 1:
            w.write(answer())
        else:
            w.transport.abort()

    server = await scripted(one_each)
    assert (await ask(client, server.address)).body == b"ok"
    # The caller says it may go twice: sent again on a new connection, answered.
    again = await client.request(
        "GET", server.address, "/again", [], None, timeout=5, retry_sent=True
    )
    assert again.body == b"ok"
    assert server.connections == 2
    # Otherwise (whatever the method) the caller hears the request may have been processed.
    with pytest.raises(StaleConnection, match="kept-alive connection closed") as posted:
        await client.request("POST", server.address, "/orders", [], b"{}", timeout=5)
    assert posted.value.sent and not isinstance(posted.value, NotSent)
    assert (await ask(client, server.address)).body == b"ok"  # a new connection: answered
    with pytest.raises(StaleConnection, match="kept-alive connection closed") as got:
        await ask(client, server.address, "/no-retry")
    assert got.value.sent
    assert [h.split(b" ")[1] for h in server.heads] == [
        b"/",
        b"/again",
        b"/again",
        b"/orders",
        b"/",
        b"/no-retry",
    ]


async def test_a_connection_closed_while_idle_is_never_written_to(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    async def ok(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(answer())

    server = await scripted(ok)
    await ask(client, server.address)
    for task in list(server.handlers):  # the upstream ends the idle connection
        task.cancel()
    await server.until(lambda: server.closed == 1)
    posted = await client.request("POST", server.address, "/orders", [], b"{}", timeout=5)
    assert posted.body == b"ok" and server.connections == 2


async def test_trailers_are_dropped_and_304_keeps_the_connection(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    big = b"y" * 70_000  # more than the head limit: trailers are not counted as head

    async def reply(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if b"/trailers" in head:
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n")
            w.write(b"%x\r\n%s\r\n0\r\nX-Sum: 1\r\nSet-Cookie: sid=evil\r\n\r\n" % (len(big), big))
        else:
            w.write(b'HTTP/1.1 304 Not Modified\r\nContent-Length: 123\r\nETag: "a"\r\n\r\n')

    server = await scripted(reply)
    got = await ask(client, server.address, "/trailers")
    assert got.body == big
    assert got.headers == []  # Transfer-Encoding and Trailer are the connection's, not passed on
    unchanged = await ask(client, server.address, "/etag")
    assert (unchanged.status, unchanged.body) == (304, b"")
    assert server.connections == 1 and client.idle_connections(server.address) == 1


async def test_a_body_until_the_close_is_read_whole(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    async def old(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        await w.drain()
        w.close()

    server = await scripted(old)
    got = await ask(client, server.address)
    assert (got.status, got.body) == (200, b"all of it")
    assert client.idle_connections(server.address) == 0


async def test_a_header_line_without_end_is_cut_off_at_the_limit(
    scripted: Callable[[Reply], Awaitable[Scripted]],
) -> None:
    async def endless(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nX-Long: ")
        for _ in range(400):  # 400 x 16 KiB = 6.4 MiB if nobody stopped reading
            w.write(b"z" * 16384)
            await w.drain()

    server = await scripted(endless)
    small = UpstreamClient(connect_timeout=1, max_head_bytes=64 * 1024)
    try:
        with pytest.raises(AnswerFailed, match="head over the limit"):
            await ask(small, server.address)
    finally:
        await small.close()


async def test_a_request_waiting_for_a_connection_is_bounded_and_the_next_one_gets_it(
    scripted: Callable[[Reply], Awaitable[Scripted]],
) -> None:
    # Queued behind a held connection, a request fails at its own deadline without going
    # out; the connection, once freed, passes over it to the next request still waiting.
    server, gate = await gated(scripted)
    client = UpstreamClient(connect_timeout=1, limit_per_address=1)
    try:
        first = asyncio.create_task(ask(client, server.address))
        await server.until(lambda: len(server.heads) == 1)
        gave_up = asyncio.create_task(
            client.request("GET", server.address, "/gave-up", [], None, timeout=0.2)
        )
        # Tasks start in the order they were made: /gave-up queues first.
        patient = asyncio.create_task(ask(client, server.address, "/patient"))
        with pytest.raises(TimeoutError):
            await gave_up
        gate.set()
        assert (await first).body == b"ok" and (await patient).body == b"ok"
        # The one that gave up never went out; the slot passed over it to the next in line.
        assert [h.split(b" ")[1] for h in server.heads] == [b"/", b"/patient"]
        assert server.connections == 1  # one connection, reused in turn
        assert client._busy[server.address] == 0  # every slot given back, none twice
    finally:
        await client.close()


async def test_closing_the_client_fails_the_requests_still_queued(
    scripted: Callable[[Reply], Awaitable[Scripted]],
) -> None:
    server, gate = await gated(scripted)
    client = UpstreamClient(connect_timeout=1, limit_per_address=1)
    first = asyncio.create_task(ask(client, server.address))
    await server.until(lambda: len(server.heads) == 1)
    queued = asyncio.create_task(ask(client, server.address, "/queued"))
    await asyncio.sleep(0)  # let it queue on the connection limit
    await client.close()
    gate.set()
    assert (await first).body == b"ok"  # in flight: answered, then its connection closed
    with pytest.raises(ConnectFailed, match="closed"):
        await queued
    await server.until(lambda: server.closed == 1)
    assert len(server.heads) == 1


# -- What an upstream answers is not trusted (issue 23) ---------------------------------------


def loop_errors() -> list[dict[str, object]]:
    """What the running loop's exception handler receives from now on (an exception escaping
    a protocol callback lands there, and from there in the log with its traceback)."""
    seen: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: seen.append(context))
    return seen


@pytest.mark.parametrize(
    "fields, rest",
    [
        (b"Transfer-Encoding: gzip, chunked\r\n", b"2\r\n\x1f\x8b\r\n0\r\n\r\n"),
        (b"Transfer-Encoding: gzip\r\n", b"\x1f\x8b until the close"),
        (b"Transfer-Encoding: chunked, chunked\r\n", b"2\r\nok\r\n0\r\n\r\n"),
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"2\r\nok\r\n0\r\n\r\n"),
        (b"Transfer-Encoding: identity\r\nContent-Length: 2\r\n", b"ok"),
    ],
)
async def test_a_transfer_coding_other_than_chunked_fails(
    scripted: Callable[[Reply], Awaitable[Scripted]],
    client: UpstreamClient,
    fields: bytes,
    rest: bytes,
) -> None:
    async def coded(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n" + rest)

    server = await scripted(coded)
    with pytest.raises(AnswerFailed):
        await ask(client, server.address)
    assert client.idle_connections(server.address) == 0
    await server.until(lambda: server.closed == 1)  # closed, never reused


async def test_chunked_in_any_case_is_taken(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    async def chunked(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding:  Chunked \r\n\r\n2\r\nok\r\n0\r\n\r\n")

    server = await scripted(chunked)
    got = await ask(client, server.address)
    assert (got.status, got.body, got.headers) == (200, b"ok", [])


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        # The bytes after a 101 are another protocol's: llhttp stops at them.
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n\x81\x05",
        # An interim answer first, then the upgrade.
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    ],
)
async def test_an_upgrade_fails_and_nothing_escapes_the_protocol(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient, raw: bytes
) -> None:
    errors = loop_errors()

    async def upgrade(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(raw)

    server = await scripted(upgrade)
    with pytest.raises(AnswerFailed, match="upgrade"):
        await ask(client, server.address)
    assert client.idle_connections(server.address) == 0
    await server.until(lambda: server.closed == 1)
    assert errors == []


async def test_interim_answers_are_bounded_in_number(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    hint = b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"

    async def hints(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        count = int(head.split(b" ")[1][1:])
        w.write(hint * count + answer(b"final"))

    server = await scripted(hints)
    limit = upstream_module.MAX_INTERIM_ANSWERS
    got = await ask(client, server.address, f"/{limit}")
    assert (got.status, got.body) == (200, b"final")
    with pytest.raises(AnswerFailed, match="interim"):
        await ask(client, server.address, f"/{limit + 1}")
    with pytest.raises(AnswerFailed, match="interim"):  # 100 KB of them, in one write
        await ask(client, server.address, f"/{100_000 // len(hint)}")
    assert client.idle_connections(server.address) == 0


async def test_interim_answers_count_against_the_head_limit(
    scripted: Callable[[Reply], Awaitable[Scripted]],
) -> None:
    # Three interim answers, each well within the head limit, together over it.
    hint = b"HTTP/1.1 103 Early Hints\r\nLink: <%s>\r\n\r\n" % (b"a" * 900)

    async def hints(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(hint * 3 + answer())

    server = await scripted(hints)
    small = UpstreamClient(connect_timeout=1, max_head_bytes=2048)
    try:
        with pytest.raises(AnswerFailed, match="head over the limit"):
            await ask(small, server.address)
    finally:
        await small.close()


async def test_the_body_limit_is_one_mebibyte_unless_told(
    scripted: Callable[[Reply], Awaitable[Scripted]],
) -> None:
    limit = 1024 * 1024

    async def big(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        target = head.split(b" ")[1]
        if target == b"/announced":  # over the limit by its Content-Length: never sent
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (limit + 1))
            await r.read()  # and no body: the client must not wait for one
        elif target == b"/bodiless":
            status = b"200 OK" if head.startswith(b"HEAD") else b"304 Not Modified"
            w.write(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n" % (status, 8 * limit))
        elif target == b"/chunked":
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(2 * limit // 65536):
                w.write(b"10000\r\n" + b"c" * 65536 + b"\r\n")
                await w.drain()
            w.write(b"0\r\n\r\n")
        else:
            w.write(answer(b"x" * limit))

    server = await scripted(big)
    client = UpstreamClient(connect_timeout=1)
    try:
        assert len((await ask(client, server.address, "/whole")).body) == limit
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(AnswerFailed, match="body over the limit"):
            await ask(client, server.address, "/announced")
        assert loop.time() - started < 4  # refused on its head, not at the 5 s deadline
        with pytest.raises(AnswerFailed, match="body over the limit"):
            await ask(client, server.address, "/chunked")
        # A HEAD or 304 answer's length is of a body it does not carry: taken.
        for method in ("HEAD", "GET"):
            got = await ask(client, server.address, "/bodiless", method)
            assert got.headers == [("Content-Length", str(8 * limit))] and got.body == b""
        assert server.connections == 4  # /whole's reused by /announced; HEAD's not reused
    finally:
        await client.close()


async def test_answer_headers_are_end_to_end_only(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    async def hop(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(
            b"HTTP/1.1 200 OK\r\n"
            b"Connection: X-Internal-Secret\r\n"
            b"x-internal-secret: s3cret\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"X-Kept: yes\r\n"
            b"connection: x-other ,X-THIRD,, keep-alive\r\n"
            b"X-Other: 1\r\n"
            b"X-Third: 3\r\n"
            b"Proxy-Connection: keep-alive\r\n"
            b"Proxy-Authenticate: Basic\r\n"
            b"TE: trailers\r\n"
            b"Trailer: X-Sum\r\n"
            b"Upgrade: h2c\r\n"
            b"Content-Type: text/plain\r\n"
            b"Transfer-Encoding: chunked\r\n"
            b"\r\n2\r\nok\r\n0\r\nX-Sum: 1\r\n\r\n"
        )

    server = await scripted(hop)
    got = await ask(client, server.address)
    assert got.headers == [("X-Kept", "yes"), ("Content-Type", "text/plain")]
    assert got.body == b"ok"
    assert client.idle_connections(server.address) == 1  # none of it ends the keep-alive


@pytest.mark.parametrize("where", ["head", "body"])
async def test_a_dripping_answer_ends_at_the_deadline(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient, where: str
) -> None:
    whole = answer(b"d" * 100)
    start = whole.index(b"\r\n\r\n") + 4 if where == "body" else 5

    async def drip(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(whole[:start])
        for byte in whole[start:]:
            await w.drain()
            await asyncio.sleep(0.3)  # the upstream's pace, not the test's synchronisation
            w.write(bytes([byte]))

    server = await scripted(drip)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await client.request("GET", server.address, "/", [], None, timeout=1.0)
    # Every byte arrived in time; the exchange as a whole did not (a correctness bound).
    assert loop.time() - started < 1.0 + 0.5
    await server.until(lambda: server.closed == 1)


async def test_nothing_listening_is_a_refused_connect(client: UpstreamClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        with pytest.raises(ConnectFailed) as failed:
            await ask(client, Address("127.0.0.1", probe.getsockname()[1]))
    assert failed.value.refused and isinstance(failed.value, NotSent)


async def test_no_free_connection_within_the_slot_timeout_is_not_sent(
    scripted: Callable[[Reply], Awaitable[Scripted]],
) -> None:
    server, gate = await gated(scripted)
    client = UpstreamClient(connect_timeout=1, limit_per_address=1)
    loop = asyncio.get_running_loop()
    try:
        first = asyncio.create_task(ask(client, server.address))
        await server.until(lambda: len(server.heads) == 1)
        started = loop.time()
        with pytest.raises(NoSlot) as waited:
            await client.request(
                "POST", server.address, "/busy", [], b"{}", timeout=5, slot_timeout=0.1
            )
        assert isinstance(waited.value, NotSent) and not isinstance(waited.value, ConnectFailed)
        assert loop.time() - started < 4  # the slot timeout, not the 5 s deadline
        # The deadline before the slot timeout: TimeoutError, as without one.
        with pytest.raises(TimeoutError):
            await client.request("GET", server.address, "/", [], None, timeout=0.1, slot_timeout=5)
        gate.set()
        assert (await first).body == b"ok"
        got = await client.request(
            "GET", server.address, "/next", [], None, timeout=5, slot_timeout=0
        )
        assert got.body == b"ok"
        assert [h.split(b" ")[1] for h in server.heads] == [b"/", b"/next"]  # /busy never went
        assert client._busy[server.address] == 0
    finally:
        await client.close()


async def test_a_sent_request_whose_retry_cannot_connect_may_have_been_processed(
    scripted: Callable[[Reply], Awaitable[Scripted]], client: UpstreamClient
) -> None:
    async def once(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if len(server.heads) == 1:
            w.write(answer())
            return
        assert server.server is not None
        server.server.close()  # nothing listens any more: the retry's connect is refused
        w.transport.abort()

    server = await scripted(once)
    await ask(client, server.address)
    with pytest.raises(StaleConnection) as failed:
        await client.request("GET", server.address, "/", [], None, timeout=5, retry_sent=True)
    # The first attempt went out: not NotSent, though the retry never connected.
    assert failed.value.sent and isinstance(failed.value.__cause__, ConnectFailed)
    assert len(server.heads) == 2


# -- ... and through the gateway, both ways it serves ------------------------------------------

# What the hostile upstream answers, by the path the gateway forwards.
HOSTILE = {
    b"/orders/gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"4\r\n\x1f\x8b\x08\x00\r\n0\r\n\r\n",
    b"/orders/big": answer(b"b" * (2 * 1024 * 1024)),
    b"/orders/upgrade": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\n\r\n",
    # 100 KB of Early Hints before the real answer.
    b"/orders/hints": b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n" * 2000
    + answer(b"final"),
    b"/orders/secret": answer(
        b'{"ok": true}',
        extra=b"Connection: X-Internal-Secret\r\nX-Internal-Secret: s3cret\r\n"
        b"Content-Type: application/json\r\n",
    ),
    b"/orders/sized": answer(b"s" * 100_000),
    # A status past 5xx, and a header value of bytes the aiohttp path would drop.
    b"/orders/weird": b"HTTP/1.1 999 Weird\r\nContent-Length: 2\r\n\r\nok",
    b"/orders/obstext": answer(b"ok", extra=b"X-A: \xff\xfe\r\n"),
}

StartGateway = Callable[..., contextlib.AbstractAsyncContextManager[TestClient[Any, Any] | Served]]


@pytest.fixture(params=PATHS)
async def hostile_gateway(
    request: pytest.FixtureRequest,
    scripted: Callable[[Reply], Awaitable[Scripted]],
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> StartGateway:
    """A gateway (on aiohttp's server alone, or with its fast path) whose every upstream is
    the hostile one; `env` adds settings."""

    async def hostile(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(HOSTILE.get(head.split(b" ")[1], answer()))  # /healthz and the rest: 200 ok

    server = await scripted(hostile)

    @contextlib.asynccontextmanager
    async def start(**env: str) -> AsyncIterator[TestClient[Any, Any] | Served]:
        url = f"http://127.0.0.1:{server.address.port}"
        settings = Settings.from_env(
            {
                "HOST": "127.0.0.1",
                "AUTH_UPSTREAMS": url,
                "ORDERS_UPSTREAMS": url,
                "GATEWAY_EDGE_AUTH": "0",  # the answers are under test, not credentials
                "HEALTH_INTERVAL_SECONDS": "60",
                **env,
            }
        )
        if request.param == "aiohttp":
            yield await aiohttp_client(create_app(settings))
            return
        async with served(settings) as gateway:
            yield gateway

    return start


@pytest.mark.parametrize(
    "path",
    [
        "/orders/gzip",
        "/orders/big",
        "/orders/upgrade",
        "/orders/hints",
        "/orders/weird",
        "/orders/obstext",
    ],
)
async def test_an_answer_the_gateway_could_not_reframe_is_a_502_problem(
    hostile_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    errors = loop_errors()
    async with hostile_gateway() as gateway, await gateway.get(path) as response:
        body = await response.read()
        assert response.status == 502, body
        assert response.headers["Content-Type"] == "application/problem+json"
        assert json.loads(body)["status"] == 502
        assert b"\x1f\x8b" not in body and b"bbbb" not in body
    assert errors == []
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert tracebacks == []


async def test_fields_the_upstream_names_in_connection_never_reach_the_client(
    hostile_gateway: StartGateway,
) -> None:
    async with hostile_gateway() as gateway, await gateway.get("/orders/secret") as response:
        assert response.status == 200 and await response.json() == {"ok": True}
        assert "X-Internal-Secret" not in response.headers
        assert "s3cret" not in str(response.headers)


async def test_the_gateway_passes_its_upstream_body_limit(
    hostile_gateway: StartGateway,
) -> None:
    async with hostile_gateway() as gateway, await gateway.get("/orders/sized") as response:
        assert response.status == 200 and len(await response.read()) == 100_000
    async with (
        hostile_gateway(UPSTREAM_MAX_BODY_BYTES="65536") as gateway,
        await gateway.get("/orders/sized") as response,
    ):
        assert response.status == 502
        assert response.headers["Content-Type"] == "application/problem+json"
