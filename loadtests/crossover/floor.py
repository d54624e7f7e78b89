"""A bare forward on aiohttp's server: an aiohttp app on uvloop that forwards `GET /orders` to
one upstream through the gateway's own upstream client (services/gateway/upstream.py), with the
credential's headers only (Authorization, Cookie) and none of the gateway's work (no path
policing, header hygiene, metrics, access log, failover, edge auth).

The crossover's reference column runs it beside nginx and the gateway: what it spends is what
aiohttp's server and the upstream client cost per proxied request, the least the gateway would
pay without its fast path (services/gateway/edge.py), which serves plain proxied requests in
front of aiohttp's server. Not a service: `python -m loadtests.crossover.floor PORT URL`.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import uvloop
from aiohttp import web
from yarl import URL

from services.gateway.upstream import Address, UpstreamClient

FORWARDED = ("Authorization", "Cookie")  # the credential, whichever carries it
SKIPPED = frozenset({"content-length", "date", "server", "connection", "keep-alive"})


def app(upstream: str) -> web.Application:
    client = web.AppKey("client", UpstreamClient)
    url = URL(upstream)
    assert url.host is not None and url.port is not None
    address = Address(url.host, url.port)

    async def forward(request: web.Request) -> web.Response:
        headers = [(h, request.headers[h]) for h in FORWARDED if h in request.headers]
        answer = await request.app[client].request(
            "GET", address, request.raw_path, headers, None, timeout=5
        )
        kept = [(n, v) for n, v in answer.headers if n.lower() not in SKIPPED]
        return web.Response(status=answer.status, body=answer.body, headers=kept)

    async def session(application: web.Application) -> AsyncIterator[None]:
        application[client] = UpstreamClient(connect_timeout=1)
        yield
        await application[client].close()

    application = web.Application()
    application.cleanup_ctx.append(session)
    application.router.add_get("/orders", forward)
    return application


def main(argv: list[str]) -> None:
    port, upstream = int(argv[0]), argv[1].rstrip("/")
    web.run_app(
        app(upstream),
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
