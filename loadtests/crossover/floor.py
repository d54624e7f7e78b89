"""The floor under any aiohttp gateway: a bare aiohttp app on uvloop that forwards
`GET /orders` to one upstream through one ClientSession, with the credential's headers only
(Authorization, Cookie) and none of the gateway's checks (no path policing, header hygiene,
metrics, failover, edge auth).

The crossover's reference column runs it beside nginx and the gateway: what the gateway spends
above it is the cost of its own work, and what it spends itself is what aiohttp's server and
client cost per proxied request. Not a service: `python -m loadtests.crossover.floor PORT URL`.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import uvloop
from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, TCPConnector, web
from yarl import URL

FORWARDED = ("Authorization", "Cookie")  # the credential, whichever carries it


def app(upstream: str) -> web.Application:
    client = web.AppKey("client", ClientSession)

    async def forward(request: web.Request) -> web.Response:
        headers = {h: request.headers[h] for h in FORWARDED if h in request.headers}
        url = URL(upstream + request.raw_path, encoded=True)
        async with request.app[client].get(url, headers=headers) as answer:
            body = await answer.read()
            return web.Response(status=answer.status, body=body, content_type=answer.content_type)

    async def session(application: web.Application) -> AsyncIterator[None]:
        application[client] = ClientSession(
            connector=TCPConnector(limit=100),
            auto_decompress=False,
            cookie_jar=DummyCookieJar(),
            timeout=ClientTimeout(total=5),
        )
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
