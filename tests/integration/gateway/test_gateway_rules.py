"""The contract's gateway rules (docs/API.md, "Gateway rules"), on both of the gateway's paths:
what it sends again to another replica, one deadline per request, the Connection fields it
refuses, the forwarding fields it owns, Host and the absolute form, readiness that an upstream
or the session store cannot take away, and the idle bound of a connection handed to aiohttp.

The upstreams here are scripted raw servers (tests/integration/gateway/conftest.py has the
well-behaved one): each records what reached it and answers, resets or stalls as told.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from services.gateway.proxy import DECIDING, Replica, UpstreamPool, health_loop
from services.gateway.upstream import UpstreamClient
from tests.conftest import KeyMaterial
from tests.integration.conftest import Stores
from tests.integration.gateway.conftest import Served, Upstream, gateway_settings, served

PATHS = [True, False]  # the fast path in front, or aiohttp's server alone
OK_BODY = b'{"ok": true}'


@dataclass
class Scripted:
    """A raw HTTP/1.1 upstream: /healthz is always 200; other requests are recorded, then
    answered ("ok"), reset after the whole request was read ("reset"), or never answered
    ("stall"), as `behaviour` says."""

    behaviour: str
    seen: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *fields = head.decode("latin-1").split("\r\n")[:-2]
                method, target, _ = line.split(" ")
                headers: dict[str, list[str]] = {}
                for raw in fields:
                    name, _, value = raw.partition(":")
                    headers.setdefault(name.strip().lower(), []).append(value.strip())
                length = int(headers.get("content-length", ["0"])[0])
                if length:
                    await reader.readexactly(length)
                if target != "/healthz":
                    self.seen.append((method, target, headers))
                    if self.behaviour == "reset":
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        writer.transport.abort()
                        return
                    if self.behaviour == "stall":
                        await reader.read()  # until the gateway gives up and closes
                        return
                body = OK_BODY
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def scripted(*behaviours: str) -> AsyncIterator[list[Scripted]]:
    upstreams = [Scripted(b) for b in behaviours]
    for upstream in upstreams:
        upstream.server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    try:
        yield upstreams
    finally:
        for upstream in upstreams:
            assert upstream.server is not None
            upstream.server.close()


def settings_for(auth: list[Scripted], orders: list[Scripted], **env: str) -> dict[str, str]:
    return {
        "AUTH_UPSTREAMS": ",".join(u.url for u in auth),
        "ORDERS_UPSTREAMS": ",".join(u.url for u in orders),
        **env,
    }


@contextlib.asynccontextmanager
async def gateway_for(upstream: Upstream, front: bool, **env: str) -> AsyncIterator[Served]:
    async with served(gateway_settings(upstream, **env), front=front) as gateway:
        yield gateway


async def call(
    gateway: Served, method: str, path: str, **kwargs: object
) -> tuple[int, dict[str, str], bytes]:
    async with gateway.session.request(method, gateway.make_url(path), **kwargs) as response:  # type: ignore[arg-type]
        return response.status, dict(response.headers), await response.read()


def attempts(*upstreams: Scripted) -> int:
    return sum(len(u.seen) for u in upstreams)


# -- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("front", PATHS)
@pytest.mark.parametrize("path", ["/auth/refresh", "/auth/token", "/auth/users"])
async def test_a_post_to_auth_is_never_sent_twice(
    upstream: Upstream, front: bool, path: str
) -> None:
    """A replayed refresh would spend the token twice and revoke the family: even with an
    Idempotency-Key, a POST to auth that may have been processed goes to no other replica."""
    async with scripted("reset", "reset") as auth:
        env = settings_for(auth, [], ORDERS_UPSTREAMS=upstream.url)
        async with gateway_for(upstream, front, **env) as gateway:
            status, _, body = await call(
                gateway,
                "POST",
                path,
                json={"refresh_token": "x"},
                headers={"Idempotency-Key": "k1"},
            )
    assert status == 502, body
    assert json.loads(body)["status"] == 502
    assert attempts(*auth) == 1


@pytest.mark.parametrize("front", PATHS)
async def test_a_keyed_order_is_sent_again_and_an_unkeyed_one_is_not(
    upstream: Upstream, front: bool
) -> None:
    async with scripted("reset", "reset") as orders:
        env = settings_for([], orders, AUTH_UPSTREAMS=upstream.url)
        async with gateway_for(upstream, front, **env) as gateway:
            keyed, _, _ = await call(
                gateway, "POST", "/orders", json={"item": "a"}, headers={"Idempotency-Key": "k1"}
            )
            assert attempts(*orders) == 2  # the key makes a replay harmless
            unkeyed, _, _ = await call(gateway, "POST", "/orders", json={"item": "b"})
            assert attempts(*orders) == 3  # one more, never two
            for verb in ("PUT", "PATCH", "DELETE"):
                await call(gateway, verb, "/orders/0123456789abcdef0123456789abcdef")
            assert attempts(*orders) == 6  # once each: only GET and HEAD are resent
            fetched, _, _ = await call(gateway, "GET", "/orders")
            assert attempts(*orders) == 8
    assert (keyed, unkeyed, fetched) == (502, 502, 502)


@pytest.mark.parametrize("front", PATHS)
async def test_a_request_never_sent_goes_to_the_next_replica_whatever_its_method(
    upstream: Upstream, front: bool, refused_port: int
) -> None:
    refused = f"http://127.0.0.1:{refused_port}"
    async with scripted("ok") as (live,):
        env = {
            "AUTH_UPSTREAMS": f"{refused},{live.url}",
            "ORDERS_UPSTREAMS": f"{refused},{live.url}",
        }
        async with gateway_for(upstream, front, **env) as gateway:
            for _ in range(2):  # whichever replica the round robin starts at
                status, _, _ = await call(gateway, "POST", "/auth/token", json={})
                assert status == 200
                status, _, _ = await call(gateway, "POST", "/orders", json={})
                assert status == 200
    assert [m for m, _, _ in live.seen] == ["POST"] * 4


@pytest.mark.parametrize("front", PATHS)
async def test_no_replica_to_send_to_is_503_with_retry_after(
    upstream: Upstream, front: bool, refused_port: int
) -> None:
    refused = f"http://127.0.0.1:{refused_port}"
    async with gateway_for(upstream, front, AUTH_UPSTREAMS=refused) as gateway:
        status, headers, body = await call(gateway, "POST", "/auth/token", json={})
    assert status == 503, body
    assert int(headers["Retry-After"]) >= 1
    assert headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("front", PATHS)
async def test_one_deadline_bounds_the_whole_request_retries_included(
    upstream: Upstream, front: bool
) -> None:
    async with scripted("stall", "stall") as orders:
        env = settings_for([], orders, AUTH_UPSTREAMS=upstream.url, UPSTREAM_TIMEOUT_SECONDS="1")
        async with gateway_for(upstream, front, **env) as gateway:
            loop = asyncio.get_running_loop()
            started = loop.time()
            status, _, body = await call(gateway, "GET", "/orders")
            took = loop.time() - started
    assert status == 504, body
    # Two replicas with a timeout each would take 2 s; one deadline ends near 1 s. The bound
    # is generous for a loaded machine and still well under two timeouts.
    assert 0.9 <= took < 1.8, took


# -- Connection and forwarding fields --------------------------------------------------------


@pytest.mark.parametrize("front", PATHS)
async def test_connection_naming_a_field_the_gateway_decides_on_is_400(
    upstream: Upstream, front: bool
) -> None:
    async with gateway_for(upstream, front) as gateway:
        for name in sorted(DECIDING):
            status, _, body = await call(
                gateway,
                "POST",
                "/orders",
                json={"item": "x"},
                headers={
                    "Connection": f"keep-alive, {name.title()}",
                    "Idempotency-Key": "k1",
                    "Authorization": "Bearer x",
                },
            )
            assert status == 400, (name, body)
            assert name in json.loads(body)["detail"].lower()
        # Naming another field is allowed (and strips it); keep-alive and close alone too.
        status, _, _ = await call(
            gateway, "GET", "/orders", headers={"Connection": "keep-alive, X-Other", "X-Other": "1"}
        )
    assert status == 200
    assert len(upstream.seen) == 1
    assert b"x-other" not in {n.lower() for n, _ in upstream.seen[0][2]}


@pytest.mark.parametrize("front", PATHS)
async def test_the_gateway_owns_the_forwarding_fields_and_drops_the_overrides(
    upstream: Upstream, front: bool
) -> None:
    sent = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "X-HTTP-Method-Override": "DELETE",
        "X-Original-URL": "/admin",
        "X-Rewrite-URL": "/admin",
        "X-Forwarded-Port": "443",
        "X-HTTP-Method": "DELETE",
        "X-Method-Override": "DELETE",
        # What a CGI-style upstream would read as X-Forwarded-For, X-Original-URL, X-User.
        "X_Forwarded_For": "203.0.113.9",
        "X_Original_URL": "/admin",
        "X_User": "admin",
    }
    async with gateway_for(upstream, front) as gateway:
        status, _, _ = await call(gateway, "GET", "/orders", headers=sent)
        host = f"127.0.0.1:{gateway.port}"
    assert status == 200
    ((_, _, raw),) = upstream.seen
    got: dict[bytes, list[bytes]] = {}
    for name, value in raw:
        got.setdefault(name.lower(), []).append(value)
    assert got[b"x-forwarded-for"] == [b"127.0.0.1"]
    assert got[b"x-forwarded-host"] == [host.encode()]
    assert got[b"x-forwarded-proto"] == [b"http"]
    for name in (b"x-http-method-override", b"x-original-url", b"x-rewrite-url"):
        assert name not in got
    for name in (b"x-forwarded-port", b"x-http-method", b"x-method-override"):
        assert name not in got
    assert [n for n in got if b"_" in n] == []


async def raw_exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


@pytest.mark.parametrize("front", PATHS)
@pytest.mark.parametrize("host", ["a b@c", "user@host", "host/path", "[::1", ""])
async def test_an_invalid_host_is_400(upstream: Upstream, front: bool, host: str) -> None:
    async with gateway_for(upstream, front) as gateway:
        assert gateway.port is not None
        answer = await raw_exchange(
            gateway.port,
            f"GET /orders HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(),
        )
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"application/problem+json" in answer
    assert upstream.seen == []


@pytest.mark.parametrize("front", PATHS)
async def test_an_absolute_form_target_is_routed_by_its_path(
    upstream: Upstream, front: bool
) -> None:
    async with gateway_for(upstream, front) as gateway:
        assert gateway.port is not None
        answer = await raw_exchange(
            gateway.port,
            b"GET http://shop.example:8080/orders?limit=5 HTTP/1.1\r\nHost: ignored\r\n"
            b"Connection: close\r\n\r\n",
        )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    ((method, target, raw),) = upstream.seen
    assert (method, target) == ("GET", "/orders?limit=5")
    forwarded = {n.lower(): v for n, v in raw}
    assert forwarded[b"x-forwarded-host"] == b"shop.example:8080"  # RFC 9112 3.2.2


# -- readiness and probes --------------------------------------------------------------------


async def readyz(gateway: Served) -> int:
    async with gateway.session.get(gateway.make_url("/readyz")) as response:
        return response.status


async def test_readiness_is_the_gateways_own(
    upstream: Upstream, stores: Stores, key_material: KeyMaterial, refused_port: int
) -> None:
    """Keys loaded: ready, with every auth replica refused and the session store gone; the
    replicas down show in /metrics instead (tests/e2e/test_faults.py: JWT requests go on)."""
    port = refused_port
    nowhere = f"http://127.0.0.1:{port}"
    env = stores.env(
        key_material,
        GATEWAY_EDGE_AUTH="1",
        AUTH_UPSTREAMS=nowhere,
        SESSION_STORE_URL=f"redis://127.0.0.1:{port}/0",
        STORE_TIMEOUT_SECONDS="0.2",
        HEALTH_INTERVAL_SECONDS="0.05",
    )
    async with gateway_for(upstream, True, **env) as gateway:
        deadline = asyncio.get_running_loop().time() + 5
        while True:  # the probes have marked auth down
            async with gateway.session.get(gateway.make_url("/metrics")) as response:
                text = await response.text()
            down = 'gateway_upstream_replicas{service="gateway",state="down",upstream="auth"} 1.0'
            if down in text:
                break
            assert asyncio.get_running_loop().time() < deadline, text
            await asyncio.sleep(0.05)
        assert await readyz(gateway) == 200


async def test_health_probes_do_not_wait_behind_client_requests() -> None:
    """Every connection slot to a replica held by a stalled client request: the probe, on its
    own client, still finds the replica healthy."""
    async with scripted("stall") as (busy,):
        traffic = UpstreamClient(connect_timeout=1, limit_per_address=1)
        probes = UpstreamClient(connect_timeout=1, limit_per_address=1)
        pool = UpstreamPool("orders", (busy.url,))
        replica: Replica = pool.replicas[0]
        held = asyncio.create_task(
            traffic.request("GET", replica.address, "/orders", (), None, timeout=30)
        )
        checker = asyncio.create_task(health_loop(traffic, [pool], 0.05, 0, probes=probes))
        try:
            deadline = asyncio.get_running_loop().time() + 5
            while len(busy.seen) < 1:  # the stalled request holds the only slot
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
            for _ in range(10):  # ten rounds of probes: never marked down
                await asyncio.sleep(0.06)
                assert replica.healthy
        finally:
            for task in (held, checker):
                task.cancel()
            await asyncio.gather(held, checker, return_exceptions=True)
            await traffic.close()
            await probes.close()


# -- a connection handed to aiohttp keeps its idle deadline ---------------------------------


async def test_a_handed_over_connection_keeps_its_idle_deadline(upstream: Upstream) -> None:
    """After a fast-path answer the connection idles; a head dripped in after 1.5 of its 2 s
    goes to aiohttp, which must close it when the 2 s are up, not 2 s after the hand-over."""
    async with gateway_for(upstream, True, KEEPALIVE_TIMEOUT_SECONDS="2") as gateway:
        assert gateway.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        loop = asyncio.get_running_loop()
        try:
            writer.write(b"GET /orders HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            idle_from = loop.time()
            await asyncio.sleep(1.5)  # the client's own pace: part of the attack, not a wait
            closed_at = None
            for byte in b"GET /orders HTTP/1.1\r\nHost: x\r\nX-Slow: ":
                try:
                    writer.write(bytes([byte]))
                    await writer.drain()
                except ConnectionError:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        if await reader.read(1) == b"":
                            closed_at = loop.time()
                            break
            if closed_at is None:
                async with asyncio.timeout(10):
                    await reader.read()
                closed_at = loop.time()
        finally:
            writer.close()
    # Closed when its 2 s idle ran out (plus a beat), not at 1.5 + 2 = 3.5 s.
    assert closed_at - idle_from < 2.9, closed_at - idle_from


async def test_a_deadline_given_by_the_request_bounds_a_later_call(upstream: Upstream) -> None:
    """The hybrid's exchange and forward share the client request's deadline: a call made
    late in the request gets what is left of it, not a fresh upstream timeout."""
    from services.common.observability import Metrics
    from services.common.problems import ProblemError
    from services.gateway.proxy import Proxy

    async with scripted("stall") as (stalled,):
        client = UpstreamClient(connect_timeout=1)
        proxy = Proxy(client, Metrics("gateway"), timeout=5.0, slot_timeout=1.0)
        pool = UpstreamPool("auth", (stalled.url,))
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            with pytest.raises(ProblemError) as refused:
                await proxy.send(
                    "POST", pool, "/internal/x", [], b"{}", resend=True, deadline=started + 0.5
                )
        finally:
            await client.close()
    took = loop.time() - started
    assert refused.value.status == 504
    assert 0.4 <= took < 2.0, took  # what was left of the request's time, not the 5 s timeout
