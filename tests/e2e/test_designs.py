"""The designs between the two extremes, end to end on a launched stack: cached sessions
(SESSION_CACHE=push on every verifier) and the JWT carried by a cookie."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from devstack.stack import Stack
from tests.stackutil import Api, running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    yield from running(tmp_path_factory.mktemp("designs"), SESSION_CACHE="push")


async def refused_everywhere_within(
    api: Api, stack: Stack, headers: dict[str, str], seconds: float = 1.0
) -> None:
    started = time.monotonic()
    while await api.every_hop(stack, headers) != [401] * 4:
        assert time.monotonic() - started < seconds, "the credential still works at some hop"
        await asyncio.sleep(0.01)


async def test_cached_sessions_skip_the_store_and_logout_reaches_every_hop(
    api: Api, stack: Stack
) -> None:
    username, _ = await api.signup()
    session = await api.session_login(username)
    assert await api.every_hop(stack, session) == [200] * 4  # every verifier has it cached now
    urls = [stack.gateway_url, *stack.orders_urls]
    before = [await api.metric(u, "store_calls_total", store="session_store") for u in urls]
    hits_before = await api.metric(stack.gateway_url, "session_cache_total", result="hit")
    for _ in range(20):
        response, _ = await api.call("GET", "/orders", headers=session)
        assert response.status == 200
    assert await api.metric(stack.gateway_url, "session_cache_total", result="hit") >= (
        hits_before + 20
    )
    # Not one session-store call at the gateway or either orders replica for those 20.
    for url, count in zip(urls, before, strict=True):
        assert await api.metric(url, "store_calls_total", store="session_store") == count, url
    await api.logout(session)
    await refused_everywhere_within(api, stack, session)


async def test_jwt_in_a_cookie_through_the_gateway(api: Api, stack: Stack) -> None:
    username, _ = await api.signup()
    cookie, csrf_token = await api.cookie_login(username)
    order = {"item": "cookie-carried", "quantity": 1}
    # An unsafe request by cookie without the CSRF token changes nothing.
    response, _ = await api.call("POST", "/orders", headers=cookie, json=order)
    assert response.status == 403
    response, listed = await api.call("GET", "/orders", headers=cookie)
    assert response.status == 200 and listed["orders"] == []
    csrf = {**cookie, "X-CSRF-Token": csrf_token}
    response, created = await api.call("POST", "/orders", headers=csrf, json=order)
    assert response.status == 201, created  # gateway, orders and auth all verified the cookie
    assert await api.every_hop(stack, cookie) == [200] * 4
    assert (await api.logout(csrf)).cookies["at"]["max-age"] == "0"
    await refused_everywhere_within(api, stack, cookie)
