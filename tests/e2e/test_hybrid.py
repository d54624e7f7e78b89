"""The hybrid design (GATEWAY_TOKEN_EXCHANGE=on): session outside, a short-lived JWT inside.

A session-cookie request is authenticated and CSRF-checked at the gateway and reaches orders
(and orders' call to auth) as `Authorization: Bearer <internal token>`; internal tokens are
minted by auth's exchange endpoint, never routed by the gateway, and die with the session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import jwt
import pytest

from devstack.stack import Stack
from services.common import exchange
from services.common import keys as keylib
from tests.conftest import token_signer
from tests.stackutil import Api, running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    yield from running(
        tmp_path_factory.mktemp("hybrid"), GATEWAY_TOKEN_EXCHANGE="on", SESSION_CACHE="push"
    )


async def orders_checks(api: Api, stack: Stack, mode: str) -> float:
    return sum(
        [
            await api.metric(url, "auth_checks_total", mode=mode, result="ok")
            for url in stack.orders_urls
        ]
    )


async def internal_token(api: Api, stack: Stack, sid: str) -> str:
    async with api.http.post(
        stack.auth_url + exchange.TOKEN_EXCHANGE_PATH, json=exchange.request_body(sid)
    ) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 60
    return str(body["access_token"])


async def test_sessions_go_downstream_as_internal_tokens(api: Api, stack: Stack) -> None:
    username, _ = await api.signup()
    session = await api.session_login(username)
    jwt_before, session_before = (
        await orders_checks(api, stack, "jwt"),
        await orders_checks(api, stack, "session"),
    )
    response, listed = await api.call("GET", "/orders", headers=session)
    assert response.status == 200 and listed == {"orders": []}
    # CSRF is the gateway's job now: without the token nothing reaches orders.
    no_csrf = {"Cookie": session["Cookie"]}
    order = {"item": "hybrid", "quantity": 2}
    response, _ = await api.call("POST", "/orders", headers=no_csrf, json=order)
    assert response.status == 403
    response, created = await api.call("POST", "/orders", headers=session, json=order)
    assert response.status == 201, created  # orders' call to auth carried the internal token
    assert await orders_checks(api, stack, "session") == session_before
    assert await orders_checks(api, stack, "jwt") == jwt_before + 2
    # Steady state: the gateway's cached internal token serves every further request.
    misses = await api.metric(stack.gateway_url, "token_exchanges_total", result="miss")
    for _ in range(20):
        response, _ = await api.call("GET", f"/orders/{created['id']}", headers=session)
        assert response.status == 200
    assert await api.metric(stack.gateway_url, "token_exchanges_total", result="miss") == misses


async def test_internal_tokens_stay_inside(api: Api, stack: Stack) -> None:
    username, _ = await api.signup()
    session = await api.session_login(username)
    sid = session["Cookie"].removeprefix("sid=")
    # The exchange endpoint is not a contract route.
    response, problem = await api.call(
        "POST", "/auth" + exchange.TOKEN_EXCHANGE_PATH, json=exchange.request_body(sid)
    )
    assert response.status == 404 and problem["status"] == 404
    token = await internal_token(api, stack, sid)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "authscale-internal" and claims["exp"] - claims["iat"] <= 60
    bearer = {"Authorization": f"Bearer {token}"}
    # A client presenting an internal token at the edge is refused; inside it is a credential.
    response, _ = await api.call("GET", "/orders", headers=bearer)
    assert response.status == 401
    async with api.http.get(stack.orders_urls[0] + "/orders", headers=bearer) as direct:
        assert direct.status == 200
    # One signed by anyone else is refused inside too.
    forged = token_signer(keylib.generate_private_key())(
        aud="authscale-internal", sub=claims["sub"], username=username
    )
    async with api.http.get(
        stack.orders_urls[0] + "/orders", headers={"Authorization": f"Bearer {forged}"}
    ) as direct:
        assert direct.status == 401
    # No live session, no internal token.
    async with api.http.post(
        stack.auth_url + exchange.TOKEN_EXCHANGE_PATH, json=exchange.request_body("x" * 43)
    ) as refused:
        assert refused.status == 400 and (await refused.json())["error"] == "invalid_grant"
    async with api.http.post(
        stack.auth_url + exchange.TOKEN_EXCHANGE_PATH,
        json={**exchange.request_body(sid), "grant_type": "password"},
    ) as refused:
        assert refused.status == 400
        assert (await refused.json())["error"] == "unsupported_grant_type"


async def test_logout_revokes_the_sessions_internal_tokens_at_every_hop(
    api: Api, stack: Stack
) -> None:
    username, _ = await api.signup()
    session = await api.session_login(username)
    response, _ = await api.call("GET", "/orders", headers=session)
    assert response.status == 200
    token = await internal_token(api, stack, session["Cookie"].removeprefix("sid="))
    bearer = {"Authorization": f"Bearer {token}"}
    await api.logout(session)
    started = time.monotonic()
    while True:
        statuses = [(await api.call("GET", "/orders", headers=session))[0].status]
        for url in stack.orders_urls:
            async with api.http.get(url + "/orders", headers=bearer) as direct:
                statuses.append(direct.status)
        async with api.http.get(stack.auth_url + "/me", headers=bearer) as direct:
            statuses.append(direct.status)
        if statuses == [401] * 4:
            break
        assert time.monotonic() - started < 1.0, statuses
        await asyncio.sleep(0.01)
