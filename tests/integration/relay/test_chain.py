"""GET /relay/private and /relay/public through the gateway and a chain of three relays.

Each relay is a real `python -m services.relay` process with the common verifier: the private
chain checks the caller's credential once at every hop (each relay's auth_checks_total), the
public one (the bench's control) at none. Both of the gateway's paths route the chain alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout, web
from aiohttp.test_utils import TestClient

from devstack.stack import Ports, Stack
from services.common.runtime import serving
from services.gateway.app import create_app as create_gateway
from services.gateway.settings import Settings as GatewaySettings
from services.relay.app import create_app as create_relay
from services.relay.settings import Settings as RelaySettings
from tests.integration.relay.conftest import (
    HANDED_OFF,
    deltas,
    per_relay,
    relay_checks,
)
from tests.stackutil import Api, running

PROBLEM = "application/problem+json"
RELAYS = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    yield from running(
        tmp_path_factory.mktemp("relay"),
        Ports.free(orders=1, relays=RELAYS),
        SERVER_TIMING="1",
        # Short, so a relay that stops answering is a 504 in a second, not in two.
        RELAY_TIMEOUT_SECONDS="1",
    )


async def credential(api: Api, kind: str) -> tuple[dict[str, str], str]:
    """A fresh user's credential of this kind (headers to send) and the user's id."""
    username, user_id = await api.signup()
    if kind == "jwt":
        return await api.jwt_login(username), user_id
    if kind == "cookie":
        return (await api.cookie_login(username))[0], user_id
    return {"Cookie": (await api.session_login(username))["Cookie"]}, user_id


async def fast_path_served(stack: Stack) -> float:
    """Requests the gateway's fast path answered, scraped on a connection of its own (a scrape
    is handed off, and its connection stays with aiohttp's server)."""
    async with ClientSession(timeout=ClientTimeout(total=10)) as http:
        return await Api(http, stack.gateway_url).metric(
            stack.gateway_url, "gateway_fast_path_total", result="served"
        )


def test_the_stack_runs_the_chain_as_named_processes(stack: Stack) -> None:
    names = [f"relay-{i}" for i in range(1, RELAYS + 1)]
    assert [n for n in stack.service_names if n.startswith("relay-")] == names
    assert [stack.url(n) for n in names] == stack.relay_urls
    assert stack.components["gateway"].env["RELAY_UPSTREAMS"] == stack.relay_urls[0]
    chain = [stack.components[n].env["RELAY_NEXT_URL"] for n in names]
    assert chain == [*stack.relay_urls[1:], ""]
    # The same verifier settings as orders: every design runs on a relay as on orders.
    orders = stack.components["orders-1"].env
    for name in names:
        env = stack.components[name].env
        for variable in ("SESSION_STORE_URL", "DATA_STORE_URL", "JWT_PUBLIC_KEY_FILE"):
            assert env[variable] == orders[variable]


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "aiohttp-path"])
@pytest.mark.parametrize("kind", ["jwt", "cookie", "session"])
async def test_every_hop_checks_the_credential_once(
    api: Api, stack: Stack, kind: str, fast: bool
) -> None:
    headers, user_id = await credential(api, kind)
    extra = {} if fast else HANDED_OFF
    mode = "session" if kind == "session" else "jwt"
    for hops in (3, 2):
        before = await relay_checks(api, stack, mode=mode, result="ok")
        served = await fast_path_served(stack)
        response, body = await api.call(
            "GET", f"/relay/private?hops={hops}", headers={**headers, **extra}
        )
        assert response.status == 200, body
        assert body == {"hops": hops, "sub": user_id}
        after = await relay_checks(api, stack, mode=mode, result="ok")
        assert deltas(after, before) == [1.0] * hops + [0.0] * (RELAYS - hops)
        assert await fast_path_served(stack) - served == (1 if fast else 0)


async def test_each_hop_adds_its_own_server_timing_entry(api: Api) -> None:
    headers, _ = await credential(api, "jwt")
    response, _ = await api.call("GET", "/relay/private?hops=3", headers=headers)
    assert response.status == 200
    entries = ", ".join(response.headers.getall("Server-Timing")).split(", ")
    services = [entry.partition(";")[0] for entry in entries]
    assert services == ["gateway", "relay", "relay", "relay"], entries
    assert all("result=ok" in entry for entry in entries)


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "aiohttp-path"])
async def test_no_credential_is_refused_at_the_edge_and_at_every_relay(
    api: Api, stack: Stack, fast: bool
) -> None:
    extra = {} if fast else HANDED_OFF
    before = await relay_checks(api, stack)
    for headers in ({}, {"Authorization": "Bearer not-a-jwt"}, {"Cookie": "sid=nope"}):
        response, problem = await api.call(
            "GET", "/relay/private?hops=3", headers={**headers, **extra}
        )
        assert response.status == 401 and response.content_type == PROBLEM, problem
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await relay_checks(api, stack) == before  # the gateway refused: nothing went on
    # A relay refuses on its own too, as orders does.
    for url in stack.relay_urls:
        async with api.http.get(url + "/relay/private?hops=1") as response:
            assert response.status == 401 and response.content_type == PROBLEM
            assert response.headers["WWW-Authenticate"] == "Bearer"


@contextlib.asynccontextmanager
async def relay(stack: Stack, **env: str) -> AsyncIterator[str]:
    """One more relay, on the stack's stores and keys, served as `python -m services.relay`
    serves it (services/common/runtime.py); yields its base URL."""
    settings = RelaySettings.from_env({**stack.service_env(), "LOG_LEVEL": "WARNING", **env})
    async with serving(create_relay(settings), settings.server, port=0) as port:
        yield f"http://127.0.0.1:{port}"


async def test_a_refusal_at_hop_two_reaches_the_caller(api: Api, stack: Stack) -> None:
    """The first relay accepts the JWT and passes it on as it came; the second, made to expect
    another audience, refuses it: the caller gets that 401, and each hop counted its check."""
    headers, _ = await credential(api, "jwt")
    async with (
        relay(stack, JWT_AUDIENCE="another-audience") as second,
        relay(stack, RELAY_NEXT_URL=second) as first,
    ):
        async with api.http.get(first + "/relay/private?hops=2", headers=headers) as response:
            assert response.status == 401 and response.content_type == PROBLEM
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert await api.metric(first, "auth_checks_total", mode="jwt", result="ok") == 1
        assert await api.metric(second, "auth_checks_total", mode="jwt", result="refused") == 1
        # One hop only: the first relay's own check, and nothing passed on.
        async with api.http.get(first + "/relay/private?hops=1", headers=headers) as response:
            assert response.status == 200
        assert await api.metric(second, "auth_checks_total") == 1


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "aiohttp-path"])
async def test_the_public_chain_checks_nothing(api: Api, stack: Stack, fast: bool) -> None:
    extra = {} if fast else HANDED_OFF
    checks = await relay_checks(api, stack)
    gateway_checks = await api.metric(stack.gateway_url, "auth_checks_total")
    route = {"route": "/relay/public", "status": "200", "auth_mode": "none"}
    served = await per_relay(api, stack, "http_requests_total", **route)
    # A credential sent along changes nothing: no hop reads it, none passes it on.
    for headers in ({}, {"Authorization": "Bearer not-a-jwt"}):
        response, body = await api.call("GET", "/relay/public?hops=3", headers={**headers, **extra})
        assert response.status == 200 and body == {"hops": 3}
        assert "Server-Timing" not in response.headers
    assert await relay_checks(api, stack) == checks
    assert await api.metric(stack.gateway_url, "auth_checks_total") == gateway_checks
    after = await per_relay(api, stack, "http_requests_total", **route)
    assert deltas(after, served) == [2.0, 2.0, 2.0]


BAD_HOPS = ["hops=0", "hops=9", "hops=abc", "hops=", "", "hops=1&hops=1", "hops=-1", "hops=01"]


@pytest.mark.parametrize("query", BAD_HOPS)
@pytest.mark.parametrize("route", ["private", "public"])
async def test_bad_hops_is_a_400_problem(api: Api, stack: Stack, route: str, query: str) -> None:
    headers = (await credential(api, "jwt"))[0] if route == "private" else {}
    passed_on = {"route": f"/relay/{route}", "status": "200"}
    before = await per_relay(api, stack, "http_requests_total", **passed_on)
    response, problem = await api.call("GET", f"/relay/{route}?{query}", headers=headers)
    assert response.status == 400 and response.content_type == PROBLEM
    assert problem["status"] == 400 and "hops" in problem["detail"]
    # Refused by relay-1: no hop answered 200, none was called.
    assert await per_relay(api, stack, "http_requests_total", **passed_on) == before
    # The same at a relay's own address: its input rules, not the gateway's.
    async with api.http.get(f"{stack.relay_urls[0]}/relay/{route}?{query}", headers=headers) as r:
        assert r.status == 400 and r.content_type == PROBLEM


async def test_more_hops_than_relays_is_the_last_relays_400(api: Api) -> None:
    response, problem = await api.call("GET", f"/relay/public?hops={RELAYS + 1}")
    assert response.status == 400 and response.content_type == PROBLEM
    assert "last of its chain" in problem["detail"]


@pytest.mark.parametrize("path", ["/relay", "/relay/", "/relay/other", "/relay/public/x"])
async def test_only_the_two_relay_routes_are_routed(api: Api, path: str) -> None:
    response, _ = await api.call("GET", path + "?hops=1")
    assert response.status in (400, 404)  # "/relay/" is a malformed path (an empty segment)


async def test_without_relay_upstreams_the_gateway_does_not_route_them(
    aiohttp_client: Any,
) -> None:
    gateway = create_gateway(GatewaySettings.from_env({"GATEWAY_EDGE_AUTH": "0"}))
    client: TestClient[web.Request, web.Application] = await aiohttp_client(gateway)
    for route in ("private", "public"):
        response = await client.get(f"/relay/{route}?hops=1")
        assert response.status == 404


def stack_log(stack: Stack) -> str:
    return (stack.workdir / "stack.log").read_text() if stack.workdir else ""


async def test_a_relay_whose_next_is_down_answers_503_then_recovers(api: Api, stack: Stack) -> None:
    await asyncio.to_thread(stack.kill, f"relay-{RELAYS}")
    try:
        response, problem = await api.call("GET", f"/relay/public?hops={RELAYS}")
        assert response.status == 503 and response.content_type == PROBLEM, problem
        assert response.headers["Retry-After"] == "1"
        assert problem["detail"] == "The next relay is unavailable."
        response, body = await api.call("GET", f"/relay/public?hops={RELAYS - 1}")
        assert response.status == 200 and body == {"hops": RELAYS - 1}
    finally:
        stack.start_component(f"relay-{RELAYS}")
        await asyncio.to_thread(stack.wait_ready, f"relay-{RELAYS}")
    response, _ = await api.call("GET", f"/relay/public?hops={RELAYS}")
    assert response.status == 200
    assert "Traceback" not in stack_log(stack)


async def test_a_relay_whose_next_stalls_answers_504(api: Api, stack: Stack) -> None:
    headers, _ = await credential(api, "jwt")
    stack.send_signal(f"relay-{RELAYS}", signal.SIGSTOP)
    try:
        response, problem = await api.call("GET", f"/relay/private?hops={RELAYS}", headers=headers)
        assert response.status == 504 and response.content_type == PROBLEM, problem
        assert problem["detail"] == "The next relay did not answer in time."
    finally:
        stack.send_signal(f"relay-{RELAYS}", signal.SIGCONT)
    response, _ = await api.call("GET", f"/relay/private?hops={RELAYS}", headers=headers)
    assert response.status == 200
    assert "Traceback" not in stack_log(stack)
