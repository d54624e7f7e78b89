"""The gateway served both ways it can be: aiohttp's server alone (the test client's), and the
services' own server (services/common/runtime.py `serving`) with the fast path in front
(services/gateway/edge.py). Tests that take `gateway` run against both."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.common.runtime import serving
from services.gateway.app import create_app
from services.gateway.settings import Settings

PATHS = ["aiohttp", "fast"]


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound for the whole test and never listening: every connection to it is
    refused, and nothing else (a server started meanwhile, the gateway's own outgoing
    connection) can take it, as it could a port found free and let go."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@dataclass
class Upstream:
    """What reached the upstream: forwarded requests only (health probes carry no request id)."""

    server: TestServer
    seen: list[tuple[str, str, list[tuple[bytes, bytes]]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def paths(self) -> list[str]:
        return [path for _, path, _ in self.seen]


@pytest.fixture
async def upstream(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Upstream:
    recorder: Upstream

    async def record(request: web.Request) -> web.Response:
        if "X-Request-ID" in request.headers:
            recorder.seen.append((request.method, request.raw_path, list(request.raw_headers)))
        if request.path.endswith("/teapot"):
            return web.Response(status=418, body=b"short and stout")
        if request.path.endswith("/nocontent"):
            return web.Response(status=204)
        # The services answer with their own request id: the gateway's must replace it.
        headers = {"X-Upstream": "yes", "X-Request-ID": "upstream-id"}
        return web.json_response({"upstream": True}, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    recorder = Upstream(await aiohttp_server(app))
    return recorder


class Served:
    """A gateway on the services' own server, called like aiohttp's TestClient."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session = session
        self.port: int | None = port

    def make_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def request(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.session.request(method, self.make_url(path), **kwargs)

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("POST", path, **kwargs)


@contextlib.asynccontextmanager
async def served(settings: Settings, *, front: bool = True) -> AsyncIterator[Served]:
    """The gateway as `python -m services.gateway` runs it, on a free loopback port."""
    app = create_app(settings)
    async with (
        serving(app, settings.server, port=0, front=front) as port,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
    ):
        yield Served(session, port)


def gateway_settings(upstream: Upstream, **env: str) -> Settings:
    return Settings.from_env(
        {
            "HOST": "127.0.0.1",
            "AUTH_UPSTREAMS": upstream.url,
            "ORDERS_UPSTREAMS": upstream.url,
            # Routing is under test here, not credentials: orders requests pass the edge as is.
            "GATEWAY_EDGE_AUTH": "0",
            "HEALTH_INTERVAL_SECONDS": "60",
            **env,
        }
    )


@pytest.fixture(params=PATHS)
async def gateway(
    request: pytest.FixtureRequest,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    upstream: Upstream,
) -> AsyncIterator[TestClient[Any, Any] | Served]:
    settings = gateway_settings(upstream)
    if request.param == "aiohttp":
        yield await aiohttp_client(create_app(settings))
        return
    async with served(settings) as gateway:
        yield gateway
