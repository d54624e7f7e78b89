"""The hybrid (GATEWAY_TOKEN_EXCHANGE=on) over the relay chain: a session is checked at the
gateway and every relay gets, and checks, the internal token in its place."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.stack import Ports, Stack
from tests.integration.relay.conftest import HANDED_OFF, deltas, relay_checks
from tests.stackutil import Api, running

RELAYS = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    yield from running(
        tmp_path_factory.mktemp("relay-hybrid"),
        Ports.free(orders=1, relays=RELAYS),
        GATEWAY_TOKEN_EXCHANGE="on",
        SERVER_TIMING="1",
    )


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "aiohttp-path"])
async def test_every_relay_checks_the_internal_token(api: Api, stack: Stack, fast: bool) -> None:
    username, user_id = await api.signup()
    session = await api.session_login(username)
    extra = {} if fast else HANDED_OFF
    jwt_before = await relay_checks(api, stack, mode="jwt", result="ok")
    session_before = await relay_checks(api, stack, mode="session")
    response, body = await api.call(
        "GET", f"/relay/private?hops={RELAYS}", headers={"Cookie": session["Cookie"], **extra}
    )
    assert response.status == 200 and body == {"hops": RELAYS, "sub": user_id}
    # Each relay verified a bearer JWT (the internal token), none a session.
    jwt_after = await relay_checks(api, stack, mode="jwt", result="ok")
    assert deltas(jwt_after, jwt_before) == [1.0] * RELAYS
    assert await relay_checks(api, stack, mode="session") == session_before
    entries = ", ".join(response.headers.getall("Server-Timing")).split(", ")
    credentials = [
        (entry.partition(";")[0], entry.partition("credential=")[2].partition(" ")[0])
        for entry in entries
    ]
    assert credentials == [("gateway", "session"), *[("relay", "internal")] * RELAYS]


async def test_the_public_chain_needs_no_exchange(api: Api, stack: Stack) -> None:
    exchanges = await api.metric(stack.gateway_url, "token_exchanges_total")
    username, _ = await api.signup()
    session = await api.session_login(username)
    response, body = await api.call(
        "GET", f"/relay/public?hops={RELAYS}", headers={"Cookie": session["Cookie"]}
    )
    assert response.status == 200 and body == {"hops": RELAYS}
    assert await api.metric(stack.gateway_url, "token_exchanges_total") == exchanges
    # The private chain, with the same session, does exchange it (the count is a live one).
    response, _ = await api.call(
        "GET", "/relay/private?hops=1", headers={"Cookie": session["Cookie"]}
    )
    assert response.status == 200
    assert await api.metric(stack.gateway_url, "token_exchanges_total") == exchanges + 1
