"""Per-hop Server-Timing through the whole stack: with SERVER_TIMING=1 every hop that checks a
credential adds one entry and the gateway passes the downstream ones on; off, no answer carries
the header at all. Both the gateway's fast path and its aiohttp path (a chunked body) are seen."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import ClientResponse, ClientSession, ClientTimeout, DummyCookieJar

from devstack.stack import Stack
from services.common.verify import timing
from tests.stackutil import Api, running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    yield from running(tmp_path_factory.mktemp("timing"), SERVER_TIMING="1")


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with ClientSession(timeout=ClientTimeout(total=10), cookie_jar=DummyCookieJar()) as http:
        yield Api(http, stack.gateway_url)


def entries(response: ClientResponse) -> list[timing.Timing]:
    return timing.parse(response.headers.getall(timing.HEADER, []))


def hops(response: ClientResponse) -> list[tuple[str, str, str]]:
    return [(t.service, t.desc["credential"], t.desc["result"]) for t in entries(response)]


async def test_each_verifying_hop_adds_one_entry(api: Api) -> None:
    username, _ = await api.signup()
    bearer = await api.jwt_login(username)
    response, _ = await api.call("GET", "/orders", headers=bearer)
    assert response.status == 200
    assert hops(response) == [("gateway", "jwt", "ok"), ("orders", "jwt", "ok")]
    for entry in entries(response):
        assert entry.dur_ms >= 0 and entry.desc["store"] == "0"
        assert entry.desc["cache"] in {"hit", "miss"}
    # A create also asks auth about the account: three hops, in order.
    response, _ = await api.call(
        "POST", "/orders", headers=bearer, json={"item": "t", "quantity": 1}
    )
    assert response.status == 201
    assert hops(response) == [
        ("gateway", "jwt", "ok"),
        ("orders", "jwt", "ok"),
        ("auth", "jwt", "ok"),
    ]

    # The gateway's aiohttp path (a chunked body is handed to it) writes the same entries.
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"item": "t", "quantity": 1}'

    response, _ = await api.call(
        "POST",
        "/orders",
        headers={**bearer, "Content-Type": "application/json"},
        data=chunks(),
    )
    assert response.status == 201
    assert [h[0] for h in hops(response)] == ["gateway", "orders", "auth"]


async def test_a_session_costs_a_store_round_trip_at_each_hop(api: Api) -> None:
    username, _ = await api.signup()
    session = await api.session_login(username)
    response, _ = await api.call("GET", "/orders", headers=session)
    assert response.status == 200
    assert [(t.service, t.desc["credential"], t.desc["store"]) for t in entries(response)] == [
        ("gateway", "session", "1"),
        ("orders", "session", "1"),
    ]


async def test_a_refusal_is_the_refusing_hops_entry_alone(api: Api) -> None:
    response, _ = await api.call("GET", "/orders")
    assert response.status == 401
    assert hops(response) == [("gateway", "none", "refused")]
    username, _ = await api.signup()
    bearer = await api.jwt_login(username)
    await api.logout(bearer)
    await api.refused_within(bearer)
    response, _ = await api.call("GET", "/auth/me", headers=bearer)
    assert response.status == 401 and hops(response) == [("auth", "jwt", "refused")]


async def test_off_no_answer_carries_the_header(
    tmp_path_factory: pytest.TempPathFactory, redis_available: None
) -> None:
    for stack in running(tmp_path_factory.mktemp("timing-off")):
        async with ClientSession(timeout=ClientTimeout(total=10)) as http:
            api = Api(http, stack.gateway_url)
            username, _ = await api.signup()
            for headers in (await api.jwt_login(username), await api.session_login(username), {}):
                for method, path, body in (
                    ("GET", "/orders", None),
                    ("POST", "/orders", {"item": "t", "quantity": 1}),
                    ("GET", "/auth/me", None),
                ):
                    response, _ = await api.call(method, path, headers=headers, json=body)
                    assert response.status in {200, 201, 401}
                    assert timing.HEADER not in response.headers, (method, path, headers)
