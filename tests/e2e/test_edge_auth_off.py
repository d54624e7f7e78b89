"""GATEWAY_EDGE_AUTH=0: the gateway forwards without verifying, and orders still refuses alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.stack import Stack
from tests.stackutil import Api, running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    yield from running(tmp_path_factory.mktemp("edge-off"), GATEWAY_EDGE_AUTH="0")


async def checks(api: Api, url: str) -> float:
    return await api.metric(url, "auth_checks_total")


async def test_orders_verifies_when_the_edge_does_not(api: Api, stack: Stack) -> None:
    urls = [stack.gateway_url, *stack.orders_urls]
    before = [await checks(api, u) for u in urls]
    response, problem = await api.call("GET", "/orders", headers={"Authorization": "Bearer forged"})
    assert response.status == 401 and problem["status"] == 401
    response, _ = await api.call("GET", "/orders")
    assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    after = [await checks(api, u) for u in urls]
    assert after[0] == before[0] == 0  # the gateway has no verifier at all
    assert sum(after[1:]) - sum(before[1:]) == 2  # both refusals came from orders

    username, _ = await api.signup()
    auth = await api.jwt_login(username)
    response, order = await api.call(
        "POST", "/orders", headers=auth, json={"item": "x", "quantity": 1}
    )
    assert response.status == 201 and order["item"] == "x"
