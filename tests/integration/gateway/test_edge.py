"""The fast path (services/gateway/edge.py): the same answers as aiohttp's server, and the
connection handling of its own (hand-off, pipelining, keep-alive, shutdown).

Two gateways on the services' own server in front of one real upstream, one with the fast path
and one without (aiohttp's server alone); `gateway_fast_path_total` in /metrics says which path
answered.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import KeyMaterial
from tests.integration.conftest import Stores
from tests.integration.gateway.conftest import Served, Upstream, gateway_settings, served

# Set per answer, never equal between two answers.
VARYING = {"date", "x-request-id"}


@pytest.fixture
async def pair(upstream: Upstream) -> AsyncIterator[tuple[Served, Served]]:
    settings = gateway_settings(upstream)
    async with served(settings) as fast, served(settings, front=False) as plain:
        yield fast, plain


async def fast_path_counts(gateway: Served) -> dict[str, float]:
    # On a connection of its own: a handed-off connection stays with aiohttp's server.
    async with aiohttp.request("GET", gateway.make_url("/metrics")) as response:
        text = await response.text()
    pattern = r'gateway_fast_path_total\{result="(\w+)",service="gateway"\} (\S+)'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, text)}


async def answer(gateway: Served, method: str, path: str, **kwargs: object) -> tuple[object, ...]:
    async with gateway.session.request(method, gateway.make_url(path), **kwargs) as response:  # type: ignore[arg-type]
        headers = sorted(
            (name.lower(), value)
            for name, value in response.headers.items()
            if name.lower() not in VARYING
        )
        assert len(response.headers.getall("X-Request-ID")) == 1, response.headers
        assert response.headers["X-Request-ID"] != "upstream-id"
        return response.status, headers, await response.read()


# (method, path, request keywords, answered by the fast path)
SAME = [
    ("GET", "/orders?limit=5", {}, True),
    ("GET", "/orders/0123456789abcdef0123456789abcdef", {}, True),
    ("POST", "/orders", {"json": {"item": "x"}, "headers": {"Idempotency-Key": "k-1"}}, True),
    ("PUT", "/orders/0123456789abcdef0123456789abcdef", {"json": {}}, True),
    ("DELETE", "/orders/0123456789abcdef0123456789abcdef", {}, True),
    ("POST", "/auth/token", {"data": b'{"username": "a"}'}, True),
    ("GET", "/auth/me", {"headers": {"Authorization": "Bearer x", "Cookie": "sid=1; at=2"}}, True),
    ("GET", "/orders/teapot", {}, True),  # an upstream's own status and body
    ("GET", "/orders/nocontent", {}, True),  # 204: no body, no Content-Length
    (
        "GET",
        "/orders",
        {"headers": {"X-Request-ID": "mine-1", "Connection": "keep-alive, X-A"}},
        True,
    ),
    ("GET", "/nowhere", {}, False),  # 404
    ("GET", "/orders/a%2Fb", {}, False),  # 400: an encoded segment
    ("HEAD", "/orders", {}, False),  # a method the fast path leaves to aiohttp
    ("POST", "/orders", {"data": b"x" * (65 * 1024)}, False),  # 413
    ("POST", "/orders", {"data": b"{}", "headers": {"Content-Encoding": "gzip"}}, False),  # 415
    ("GET", "/orders", {"headers": {"X-CSRF-Token": "a b"}}, False),  # 403 from the input rules
]


@pytest.mark.parametrize("method, path, kwargs, fast", SAME)
async def test_both_paths_answer_alike(
    pair: tuple[Served, Served],
    upstream: Upstream,
    method: str,
    path: str,
    kwargs: dict[str, object],
    fast: bool,
) -> None:
    fast_gateway, plain = pair
    before = await fast_path_counts(fast_gateway)
    got = await answer(fast_gateway, method, path, **kwargs)
    after = await fast_path_counts(fast_gateway)
    want = await answer(plain, method, path, **kwargs)
    assert got == want
    assert after.get("served", 0) - before.get("served", 0) == (1 if fast else 0)
    # What the upstream saw is the same too, but for the request id and the gateway's own
    # address in X-Forwarded-Host (the two listen on two ports).
    if fast or len(upstream.seen) == 2:
        own = {b"x-request-id", b"x-forwarded-host"}
        first, second = (
            [(n.lower(), v) for n, v in headers if n.lower() not in own]
            for _, _, headers in upstream.seen
        )
        assert upstream.seen[0][:2] == upstream.seen[1][:2]
        assert first == second
    else:
        assert upstream.seen == []


async def test_plain_requests_take_the_fast_path_and_the_rest_are_handed_off(
    pair: tuple[Served, Served],
) -> None:
    fast, _ = pair
    before = await fast_path_counts(fast)
    for _ in range(3):
        async with fast.session.get(fast.make_url("/orders")) as response:
            assert response.status == 200
    async with fast.session.get(fast.make_url("/nowhere")) as response:
        assert response.status == 404
    after = await fast_path_counts(fast)
    assert after.get("served", 0) - before.get("served", 0) == 3
    # /nowhere, then the scrape (each on a connection of its own, so each was handed off).
    assert after["handed_off"] - before["handed_off"] == 2


async def test_upstream_failure_is_the_same_problem_on_both_paths(upstream: Upstream) -> None:
    settings = gateway_settings(upstream, ORDERS_UPSTREAMS="http://127.0.0.1:9")
    async with served(settings) as fast, served(settings, front=False) as plain:
        got = await answer(fast, "GET", "/orders")
        want = await answer(plain, "GET", "/orders")
    assert got == want
    assert got[0] == 503  # nothing could be sent: unavailable, with Retry-After


async def test_edge_auth_refusal_is_the_same_401_on_both_paths(
    upstream: Upstream, stores: Stores, key_material: KeyMaterial
) -> None:
    settings = gateway_settings(upstream, **stores.env(key_material, GATEWAY_EDGE_AUTH="1"))
    async with served(settings) as fast, served(settings, front=False) as plain:
        for headers in ({}, {"Authorization": "Bearer not-a-jwt"}, {"Cookie": "sid=nope"}):
            got = await answer(fast, "GET", "/orders", headers=headers)
            want = await answer(plain, "GET", "/orders", headers=headers)
            assert got == want
            assert got[0] == 401
    assert upstream.seen == []


async def raw_exchange(port: int, data: bytes, answers: int) -> list[bytes]:
    """Send `data` at once; read `answers` whole responses (Content-Length framed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    try:
        writer.write(data)
        async with asyncio.timeout(10):
            for _ in range(answers):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
                out.append(head + await reader.readexactly(length))
    finally:
        writer.close()
    return out


async def test_pipelined_requests_are_answered_in_order_across_a_hand_off(
    pair: tuple[Served, Served], upstream: Upstream
) -> None:
    fast, _ = pair
    assert fast.port is not None
    get = b"GET /orders?n=%d HTTP/1.1\r\nHost: x\r\n\r\n"
    data = get % 1 + get % 2 + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + get % 3
    answers = await raw_exchange(fast.port, data, 4)
    assert [a.split(b" ", 2)[1] for a in answers] == [b"200"] * 4
    assert b'"status": "ok"' in answers[2]
    assert upstream.paths == ["/orders?n=1", "/orders?n=2", "/orders?n=3"]


async def test_a_head_in_pieces_is_answered(
    pair: tuple[Served, Served], upstream: Upstream
) -> None:
    fast, _ = pair
    assert fast.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", fast.port)
    try:
        for piece in (b"GET /orders HTTP/1.1\r\nHo", b"st: x\r\n", b"Connection: close\r\n\r\n"):
            writer.write(piece)
            await writer.drain()
        async with asyncio.timeout(10):
            whole = await reader.read()
    finally:
        writer.close()
    assert whole.startswith(b"HTTP/1.1 200"), whole
    assert upstream.paths == ["/orders"]


async def test_connection_close_is_honoured(pair: tuple[Served, Served]) -> None:
    fast, _ = pair
    assert fast.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", fast.port)
    try:
        writer.write(b"GET /orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(10):
            whole = await reader.read()  # EOF: the gateway closed
    finally:
        writer.close()
    head = whole.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 200")
    assert b"\r\nConnection: close" in head


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout(
    upstream: Upstream,
) -> None:
    settings = gateway_settings(upstream, KEEPALIVE_TIMEOUT_SECONDS="0.3")
    async with served(settings) as fast:
        assert fast.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", fast.port)
        try:
            writer.write(b"GET /orders HTTP/1.1\r\nHost: x\r\n\r\n")
            started = time.monotonic()
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
                await reader.readexactly(length)
                assert await reader.read() == b""  # EOF, without asking for it
            assert time.monotonic() - started >= 0.3
        finally:
            writer.close()


async def test_shutdown_finishes_the_answer_in_flight(
    aiohttp_server: object, upstream: Upstream
) -> None:
    release = asyncio.Event()
    held = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        if request.path == "/healthz":
            return web.json_response({"status": "ok"})
        held.set()
        await release.wait()
        return web.json_response({"late": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow)
    slow_upstream: TestServer = await aiohttp_server(app)  # type: ignore[operator]
    url = str(slow_upstream.make_url("")).rstrip("/")
    settings = gateway_settings(upstream, ORDERS_UPSTREAMS=url)
    async with aiohttp.ClientSession() as session:
        async with served(settings) as fast:
            pending = asyncio.ensure_future(session.get(fast.make_url("/orders")))
            async with asyncio.timeout(10):
                await held.wait()  # in flight: the slow upstream holds it
            asyncio.get_running_loop().call_soon(release.set)
        response = await pending
        assert response.status == 200
        assert await response.json() == {"late": True}


RAW_SAME = [
    b"GET /orders HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",  # a singleton twice: 400
    b"GET /orders HTTP/1.1\r\nX-A: 1\r\n\r\n",  # no Host: 400
    b"GET /orders HTTP/1.1\r\nHost: x\r\nAccept: a\r\nContent-Type: b\r\nContent-Type: c\r\n\r\n",
    b"GET /orders HTTP/1.1\r\nHost: x\r\nX-Trailing:  v   \r\nX-Empty:\r\n\r\n",
    b"GET /orders HTTP/1.1\r\nHost: x\r\nX-Tab: v\t\r\n\r\n",
    b"GET /orders HTTP/1.0\r\nHost: x\r\n\r\n",  # handed off: HTTP/1.0
    b"GET /orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET http://x/orders HTTP/1.1\r\nHost: x\r\n\r\n",  # absolute-form
    b"GET /orders#frag HTTP/1.1\r\nHost: x\r\n\r\n",
    b"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n",  # llhttp stops for a tunnel
    b"GET /orders HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Key1: 1\r\n\r\n",
    b"GET /orders HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",  # obs-fold
    b"GET /orders HTTP/1.1\nHost: x\n\n",  # bare LF
]


@pytest.mark.parametrize("head", RAW_SAME)
async def test_both_paths_answer_raw_requests_alike(
    pair: tuple[Served, Served], upstream: Upstream, head: bytes
) -> None:
    """What either parser would judge on its own (duplicates, a missing Host, whitespace after
    a value, framing, target forms) ends the same way on both paths, upstream included."""
    statuses = []
    for gateway in pair:
        assert gateway.port is not None
        request = head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            writer.write(request)
            async with asyncio.timeout(10):
                whole = await reader.read()
        finally:
            writer.close()
        statuses.append(whole.split(b" ", 2)[1])
    assert statuses[0] == statuses[1], statuses
    if len(upstream.seen) == 2:
        first, second = (
            [(n.lower(), v) for n, v in headers if n.lower() != b"x-request-id"]
            for _, _, headers in upstream.seen
        )
        assert first == second
    else:
        assert upstream.seen == []


async def test_a_tunnel_request_after_a_fast_one_is_answered(
    pair: tuple[Served, Served], upstream: Upstream
) -> None:
    fast, plain = pair
    statuses = []
    for gateway in (fast, plain):
        assert gateway.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            writer.write(
                b"GET /orders HTTP/1.1\r\nHost: x\r\n\r\n"
                b"CONNECT x:1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            async with asyncio.timeout(10):
                whole = await reader.read()  # both answered, then the connection ends
        finally:
            writer.close()
        statuses.append(re.findall(rb"HTTP/1.1 (\d+)", whole))
    assert statuses[0] == statuses[1]
    assert statuses[0][0] == b"200" and len(statuses[0]) == 2, statuses
