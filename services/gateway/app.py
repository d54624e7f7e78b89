"""The gateway app factory: /auth/* to auth, /orders* to the orders replicas (and /relay/* to
the bench's relay chain when configured), own health routes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from services.common.observability import metrics_key
from services.common.runtime import HandlerFactory, add_verifier, front_key, new_app
from services.common.verify import Principal, check_csrf, verifier_key
from services.gateway import openapi
from services.gateway.edge import Edge, Route
from services.gateway.exchange import TokenExchange
from services.gateway.page import add_page
from services.gateway.proxy import (
    Proxy,
    ReplicaHealth,
    UpstreamPool,
    check_forwardable,
    check_path,
    health_loop,
    origin_form,
)
from services.gateway.settings import Settings
from services.gateway.upstream import UpstreamClient

proxy_key = web.AppKey("proxy", Proxy)
auth_pool_key = web.AppKey("auth_pool", UpstreamPool)
orders_pool_key = web.AppKey("orders_pool", UpstreamPool)
relay_pool_key = web.AppKey("relay_pool", UpstreamPool)
gateway_settings_key = web.AppKey("gateway_settings", Settings)
exchange_key = web.AppKey("exchange", TokenExchange)


AUTH_ROUTE = "/auth/{tail:.*}"
ORDERS_ROUTE = "/orders"
ORDER_ROUTE = "/orders/{tail:.*}"
RELAY_PRIVATE_ROUTE = "/relay/private"
RELAY_PUBLIC_ROUTE = "/relay/public"

# The contract's routes, and nothing else: an upstream's /healthz, /readyz, /metrics and any
# internal endpoint stay on its own address.
AUTH_PATHS = frozenset(
    {
        "/auth/users",
        "/auth/token",
        "/auth/refresh",
        "/auth/session",
        "/auth/logout",
        "/auth/me",
        "/auth/.well-known/jwks.json",
    }
)


def _is_order_path(path: str) -> bool:
    # /orders/{id} with the id one plain segment (check_path saw to "plain").
    return path.startswith("/orders/") and path.count("/") == 2


@dataclass(frozen=True, slots=True)
class Forwarded:
    """One route the gateway forwards. Both of its paths (the aiohttp handler below and the
    fast path, edge.py) decide through this table alone, so they route alike."""

    pattern: str  # the aiohttp resource; its canonical form labels the route's metrics
    pool: web.AppKey[UpstreamPool]
    accepts: Callable[[str], bool]  # a checked request path
    strip: str = ""  # the prefix the upstream does not see (auth serves at its root)
    guarded: bool = False  # the edge checks the credential (GATEWAY_EDGE_AUTH, the hybrid)


CONTRACT_ROUTES = (
    Forwarded(AUTH_ROUTE, auth_pool_key, AUTH_PATHS.__contains__, strip="/auth"),
    Forwarded(ORDERS_ROUTE, orders_pool_key, ORDERS_ROUTE.__eq__, guarded=True),
    Forwarded(ORDER_ROUTE, orders_pool_key, _is_order_path, guarded=True),
)
# The bench's hop chain (docs/API.md, "Bench topology"): routed only when RELAY_UPSTREAMS is
# set. The private chain is guarded like /orders; the public one is the control, unchecked.
RELAY_ROUTES = (
    Forwarded(RELAY_PRIVATE_ROUTE, relay_pool_key, RELAY_PRIVATE_ROUTE.__eq__, guarded=True),
    Forwarded(RELAY_PUBLIC_ROUTE, relay_pool_key, RELAY_PUBLIC_ROUTE.__eq__),
)
routes_key = web.AppKey("forwarded_routes", tuple[Forwarded, ...])


def forwarded_routes(settings: Settings) -> tuple[Forwarded, ...]:
    return CONTRACT_ROUTES + (RELAY_ROUTES if settings.relay_upstreams else ())


def route_for(routes: tuple[Forwarded, ...], path: str) -> Forwarded | None:
    return next((route for route in routes if route.accepts(path)), None)


def routed_path(request: web.Request) -> tuple[Forwarded, str]:
    """The route and plain request path if the gateway forwards it; else 400 (malformed) or
    404."""
    path = check_path(origin_form(request.raw_path))
    route = route_for(request.app[routes_key], path)
    if route is None:
        raise web.HTTPNotFound()
    check_forwardable(request)
    return route, path


async def forward_route(request: web.Request) -> web.Response:
    route, path = routed_path(request)
    settings = request.app[gateway_settings_key]
    proxy = request.app[proxy_key]
    # One deadline for the whole request: the edge's check, the hybrid's exchange, the forward.
    deadline = asyncio.get_running_loop().time() + proxy.timeout
    credential = None
    if route.guarded and (settings.edge_auth or settings.token_exchange):
        # Refuse at the edge: requests without a valid credential never reach the upstream.
        principal = await request.app[verifier_key].authenticate(request)
        credential = await inner_credential(
            request.app, request.method, request.headers, principal, deadline
        )
    return await proxy.forward(
        request,
        request.app[route.pool],
        path[len(route.strip) :],
        credential=credential,
        deadline=deadline,
    )


async def inner_credential(
    app: web.Application,
    method: str,
    headers: Mapping[str, str],
    principal: Principal,
    deadline: float,
) -> str | None:
    """What a guarded route's upstream gets instead of the client's credential: in the hybrid,
    a session becomes an internal bearer token (CSRF checked here first; fetched within the
    request's `deadline`); otherwise None, the client's own."""
    if not (app[gateway_settings_key].token_exchange and principal.mode == "session"):
        return None
    check_csrf(method, headers, principal)
    assert principal.session_id is not None
    return f"Bearer {await app[exchange_key].token_for(principal.session_id, deadline)}"


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """clock: what the verifier checks expiry and idle timeouts against (tests move it)."""
    app = new_app("gateway", settings.server, client_max_size=settings.max_body_bytes)
    app[gateway_settings_key] = settings
    app[auth_pool_key] = UpstreamPool("auth", settings.auth_upstreams)
    app[orders_pool_key] = UpstreamPool(
        "orders", settings.orders_upstreams, keyed_posts=frozenset({ORDERS_ROUTE})
    )
    routes = app[routes_key] = forwarded_routes(settings)
    if settings.relay_upstreams:
        app[relay_pool_key] = UpstreamPool("relay", settings.relay_upstreams)
    if settings.edge_auth or settings.token_exchange:
        # Ready once its keys are loaded: a session store that does not answer fails session
        # requests (503), never the readiness that JWT requests need to keep flowing.
        add_verifier(app, settings.verifier, clock, ready_on_store=False)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        # Sends what the client sent and nothing of its own (no Accept-Encoding, no
        # User-Agent, no cookie jar); passes bodies through undecoded.
        client = UpstreamClient(
            connect_timeout=settings.connect_timeout_seconds,
            limit_per_address=256,
            max_body_bytes=settings.upstream_max_body_bytes,
        )
        # The health probes' own connections: never queued behind client requests.
        probes = UpstreamClient(
            connect_timeout=settings.connect_timeout_seconds, limit_per_address=2
        )
        app[proxy_key] = Proxy(
            client,
            app[metrics_key],
            timeout=settings.upstream_timeout_seconds,
            slot_timeout=settings.connect_timeout_seconds,
            server_timing=settings.verifier.server_timing,
        )
        app[exchange_key] = TokenExchange(
            app[proxy_key], app[auth_pool_key], app[metrics_key], clock
        )
        # Readiness is the gateway's own (its keys, above): replicas down are in /metrics
        # (upstream_calls_total, replicas_healthy) and the log, never a reason to take every
        # gateway out of a load balancer at once.
        pools = [app[key] for key in {route.pool: None for route in routes}]
        health = ReplicaHealth(pools, "gateway")
        app[metrics_key].registry.register(health)
        if settings.dns_refresh_seconds:
            for pool in pools:
                await pool.resolve()
        checker = asyncio.create_task(
            health_loop(
                client,
                pools,
                settings.health_interval_seconds,
                settings.dns_refresh_seconds,
                probes=probes,
            )
        )
        try:
            yield
        finally:
            checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checker
            await client.close()
            await probes.close()
            app[metrics_key].registry.unregister(health)

    app.cleanup_ctx.append(resources)
    spec = json.dumps(openapi.document(bench=bool(settings.relay_upstreams))).encode()

    async def openapi_json(request: web.Request) -> web.Response:
        return web.Response(body=spec, content_type="application/json")

    app.router.add_get("/openapi.json", openapi_json)
    add_page(app, settings)
    # The fast path labels its requests' metrics with these routes' names (the resources').
    labels = []
    for route in routes:
        resource = app.router.add_resource(route.pattern)
        resource.add_route("*", forward_route)
        labels.append(resource.canonical)
    app[front_key] = lambda aiohttp_server: fast_path(app, aiohttp_server, tuple(labels))
    return app


def fast_path(
    app: web.Application,
    aiohttp_server: HandlerFactory,
    labels: tuple[str, ...],
) -> Edge:
    """The connections' front (services/gateway/edge.py), once the app has started."""
    settings = app[gateway_settings_key]
    routes: tuple[Forwarded, ...] = app[routes_key]
    table = [(route, app[route.pool], label) for route, label in zip(routes, labels, strict=True)]

    def route(path: str) -> Route | None:
        # The same decisions as forward_route makes through routed_path().
        for forwarded, pool, label in table:
            if forwarded.accepts(path):
                return pool, path[len(forwarded.strip) :], label, forwarded.guarded
        return None

    async def inner(
        method: str, headers: Mapping[str, str], principal: Principal, deadline: float
    ) -> str | None:
        return await inner_credential(app, method, headers, principal, deadline)

    edge_auth = settings.edge_auth or settings.token_exchange
    return Edge(
        aiohttp_server=aiohttp_server,
        route=route,
        proxy=app[proxy_key],
        metrics=app[metrics_key],
        verifier=app[verifier_key] if edge_auth else None,
        inner_credential=inner,
        keepalive_timeout=settings.server.keepalive_timeout_seconds,
        write_timeout=settings.server.body_timeout_seconds,
        max_body_bytes=settings.max_body_bytes,
    )
