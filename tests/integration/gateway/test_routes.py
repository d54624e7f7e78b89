"""The gateway forwards the contract's routes only, and never a header value it would change.

A real gateway app in front of a real HTTP upstream that records every request it receives, so
"refused at the gateway" means the upstream never saw the request. Every test runs on aiohttp's
server alone and on the services' own server with the fast path in front (conftest.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.integration.gateway.conftest import Served, Upstream

PROBLEM = "application/problem+json"


Gateway = TestClient[Any, Any] | Served


FORWARDED = [
    ("POST", "/auth/users", "/users"),
    ("POST", "/auth/token", "/token"),
    ("POST", "/auth/refresh", "/refresh"),
    ("POST", "/auth/session", "/session"),
    ("POST", "/auth/logout", "/logout"),
    ("GET", "/auth/me", "/me"),
    ("GET", "/auth/.well-known/jwks.json", "/.well-known/jwks.json"),
    ("POST", "/orders", "/orders"),
    ("GET", "/orders?limit=5", "/orders?limit=5"),
    ("GET", "/orders/0123456789abcdef0123456789abcdef", "/orders/0123456789abcdef0123456789abcdef"),
]


@pytest.mark.parametrize("method, path, upstream_path", FORWARDED)
async def test_contract_routes_are_forwarded(
    gateway: Gateway, upstream: Upstream, method: str, path: str, upstream_path: str
) -> None:
    response = await gateway.request(method, path)
    assert response.status == 200, await response.text()
    assert upstream.seen == [(method, upstream_path, upstream.seen[0][2])]


NOT_FORWARDED = [
    "/auth/metrics",
    "/auth/healthz",
    "/auth/readyz",
    "/auth/anything",
    "/auth/token/exchange",
    "/auth/internal/token",
    "/auth/users/someone",
    "/auth/.well-known/openid-configuration",
    "/orders/x/y",
    "/orders/0123456789abcdef0123456789abcdef/metrics",
]


@pytest.mark.parametrize("path", NOT_FORWARDED)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_other_paths_are_404_without_reaching_an_upstream(
    gateway: Gateway, upstream: Upstream, method: str, path: str
) -> None:
    response = await gateway.request(method, path, json={})
    assert response.status == 404
    assert response.content_type == PROBLEM
    assert (await response.json())["status"] == 404
    assert upstream.seen == []


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_the_gateways_own_routes_stay(
    gateway: Gateway, upstream: Upstream, path: str
) -> None:
    response = await gateway.get(path)
    assert response.status in (200, 503)  # /readyz follows the replicas' probed health
    assert upstream.seen == []


async def raw_request(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        async with asyncio.timeout(10):
            return await reader.read()  # the request says Connection: close
    finally:
        writer.close()


def status_and_body(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.mark.parametrize(
    "header, status",
    [
        (b"X-Note: k\x80", 400),  # the client would have forwarded "k"
        (b"User-Agent: probe\xff\xfe", 400),
        (b"Idempotency-Key: k\x80", 422),  # a header the services read: that header's failure
        (b"Authorization: Bearer a\xffb", 401),
        (b"Cookie: sid=\xff", 401),
        (b"X-CSRF-Token: \xff", 403),
    ],
)
async def test_headers_that_cannot_be_forwarded_unchanged_are_refused(
    gateway: Gateway, upstream: Upstream, header: bytes, status: int
) -> None:
    assert gateway.port is not None
    answer = await raw_request(
        gateway.port,
        b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n" + header + b"\r\n\r\n{}",
    )
    got, problem = status_and_body(answer)
    assert (got, problem["status"]) == (status, status), answer
    assert upstream.seen == []


async def test_header_values_reach_the_upstream_byte_for_byte(
    gateway: Gateway, upstream: Upstream
) -> None:
    assert gateway.port is not None
    sent = [
        (b"Idempotency-Key", b"k-\x21~"),
        (b"X-Note", "caf\u00e9 \u2603".encode()),  # valid UTF-8 survives the round trip
        (b"X-Tabbed", b"a\tb"),
    ]
    answer = await raw_request(
        gateway.port,
        b"GET /orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + b"".join(name + b": " + value + b"\r\n" for name, value in sent)
        + b"\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer
    [(_, _, received)] = upstream.seen
    for pair in sent:
        assert pair in received


async def test_the_gateway_adds_no_content_negotiation_of_its_own(
    gateway: Gateway, upstream: Upstream
) -> None:
    """Bodies pass through undecoded: asking the upstream for gzip on a client's behalf would
    hand that client gzip it never asked for. What the client sent goes through as sent."""
    assert gateway.port is not None
    answer = await raw_request(
        gateway.port, b"GET /orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer
    answer = await raw_request(
        gateway.port,
        b"GET /orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Accept-Encoding: gzip\r\nAccept: application/json\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer
    bare, negotiated = (dict(received) for _, _, received in upstream.seen)
    for name in (b"Accept-Encoding", b"Accept", b"User-Agent"):
        assert name not in bare, bare
    assert negotiated[b"Accept-Encoding"] == b"gzip"
    assert negotiated[b"Accept"] == b"application/json"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP", "identity, gzip"])
async def test_compressed_bodies_are_refused_before_forwarding(
    gateway: Gateway, upstream: Upstream, encoding: str
) -> None:
    response = await gateway.post(
        "/orders",
        data=b"\x1f\x8b\x08\x00",
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert response.status == 415
    assert response.content_type == PROBLEM
    assert upstream.seen == []


async def test_identity_encoding_is_forwarded(gateway: Gateway, upstream: Upstream) -> None:
    response = await gateway.post(
        "/orders", json={"item": "x"}, headers={"Content-Encoding": "identity"}
    )
    assert response.status == 200
    assert upstream.paths == ["/orders"]
