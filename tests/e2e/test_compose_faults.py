"""The contract's failure behaviour (docs/API.md, "Failure behaviour") under `docker compose up`.

A project of its own, which only these tests break (the contract tests in test_compose_stack.py
never see a half-broken one), failed the way containers fail: an orders replica killed under a
steady stream of requests, the data store killed right after a 201, the session store stopped
and started again (empty). Last, a re-`up` with JWT_REVOCATION=off, the stateless variant.

Skipped, with the reason, only where no Docker engine answers (tests/e2e/composeutil.py).
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Iterator

import jwt
import pytest

from tests.e2e.composeutil import ComposeStack, compose_project, gateway_metrics, metric_sum
from tests.stackutil import Api

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def stack(compose_image: str) -> Iterator[ComposeStack]:
    yield from compose_project(compose_image, label="faults")


def inside_orders(stack: ComposeStack, headers: dict[str, str]) -> list[int]:
    """GET /orders on every orders replica's own address (not through the gateway)."""
    return [
        stack.http_inside("orders", 8082, "/orders", headers, index=n)[0]
        for n in stack.replicas("orders")
    ]


def wait_healthy(stack: ComposeStack, container: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while stack.docker("inspect", "-f", "{{.State.Health.Status}}", container).strip() != (
        "healthy"
    ):
        assert time.monotonic() < deadline, f"{container[:12]} never became healthy"
        time.sleep(0.25)


async def test_an_orders_container_killed_under_load(api: Api, stack: ComposeStack) -> None:
    """A steady stream of idempotent GETs through the gateway, and one orders replica killed
    (SIGKILL) in the middle of it: every request still gets its 200, none fails or hangs."""
    replicas = stack.running("orders")
    assert len(replicas) >= 2, "the faults need two orders replicas or more"
    username, _ = await api.signup()
    bearer = await api.jwt_login(username)
    response, order = await api.call(
        "POST", "/orders", headers=bearer, json={"item": "steady", "quantity": 1}
    )
    assert response.status == 201, order
    paths = ["/orders", f"/orders/{order['id']}"]
    answers: list[tuple[float, int]] = []
    stop = asyncio.Event()

    async def client(n: int) -> None:
        while not stop.is_set():
            response, _ = await api.call("GET", paths[n % 2], headers=bearer)
            answers.append((time.monotonic(), response.status))

    workers = [asyncio.create_task(client(n)) for n in range(6)]
    try:
        await asyncio.sleep(1.0)
        killed_at = time.monotonic()
        await asyncio.to_thread(stack.docker, "kill", replicas[0])
        # Past the gateway's health checks (every 1 s) and its DNS refresh (every 5 s), which
        # drops the dead replica's address.
        await asyncio.sleep(7.0)
    finally:
        stop.set()
        failures = [r for r in await asyncio.gather(*workers, return_exceptions=True) if r]
    try:
        assert not failures, f"client errors: {failures}"
        state = stack.docker("inspect", "-f", "{{.State.Running}}", replicas[0]).strip()
        assert state == "false", "the killed replica came back during the test"
        before = sum(1 for at, _ in answers if at < killed_at)
        after = len(answers) - before
        statuses = collections.Counter(status for _, status in answers)
        print(f"\ncompose faults: {before} GETs before the kill, {after} after: {statuses}")
        assert statuses == {200: len(answers)}, statuses
        assert before >= 10 and after >= 50, (before, after)
    finally:
        stack.up()  # starts the killed container again (the same one)


async def test_the_data_store_killed_right_after_a_201_keeps_the_order(
    api: Api, stack: ComposeStack
) -> None:
    """Acknowledged means on disk (AOF, fsync always, on a volume): a SIGKILL right after the 201
    loses nothing; meanwhile orders requests get 503 within 1 s."""
    username, _ = await api.signup()
    bearer = await api.jwt_login(username)
    response, created = await api.call(
        "POST", "/orders", headers=bearer, json={"item": "durable", "quantity": 3}
    )
    assert response.status == 201, created
    (data_store,) = stack.running("data-store")
    stack.docker("kill", data_store)
    try:
        for _ in range(3):
            status, seconds = await api.timed_call("GET", "/orders", headers=bearer)
            assert status == 503 and seconds < 1.0, (status, seconds)
    finally:
        stack.docker("start", data_store)
    # Until every orders replica has reconnected (each answers 503 until it has): poll both
    # reads, which the gateway spreads over the replicas, until neither is a 503.
    deadline = time.monotonic() + 30
    while True:
        response, fetched = await api.call("GET", f"/orders/{created['id']}", headers=bearer)
        listing, listed = await api.call("GET", "/orders", headers=bearer)
        back = response.status != 503 and listing.status != 503
        if back or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert response.status == 200 and fetched == created, (response.status, fetched)
    assert listing.status == 200 and [o["id"] for o in listed["orders"]] == [created["id"]]
    wait_healthy(stack, data_store)


async def test_the_session_store_stopped_and_restarted(api: Api, stack: ComposeStack) -> None:
    """Stopped: session requests get 503 within 1 s, JWT requests keep working. Started again
    (empty: it keeps nothing on disk): sessions have ended (401, log in again), and a JWT revoked
    before the restart stays refused, even by verifiers started afterwards, which can only know
    it from the durable record in the data store."""
    username, _ = await api.signup()
    bearer = await api.jwt_login(username)
    session = await api.session_login(username)
    revoked = await api.jwt_login(username)
    await api.logout(revoked)
    await api.refused_within(revoked, "the logout took more than 1 s to take effect")

    stack.run("stop", "session-store")
    try:
        await api.session_store_down(session, bearer, item="no session store", revoked=revoked)
    finally:
        stack.run("start", "session-store")

    # Back, and empty: the session is gone (401, not 503), a new login works.
    deadline = time.monotonic() + 30
    while (status := (await api.call("GET", "/orders", headers=session))[0].status) == 503:
        assert time.monotonic() < deadline, "session requests still get 503 after the restart"
        await asyncio.sleep(0.1)
    assert status == 401
    fresh = await api.session_login(username)
    assert (await api.call("GET", "/orders", headers=fresh))[0].status == 200

    # Verifiers started now (the gateway, an orders replica) find the session store empty; the
    # revocation still holds, at the edge and inside.
    gateway, orders = stack.running("gateway")[0], stack.running("orders")[0]
    stack.docker("restart", gateway, orders)
    for container in (gateway, orders):
        wait_healthy(stack, container)
    assert (await api.call("GET", "/orders", headers=revoked))[0].status == 401
    assert (await api.call("GET", "/orders", headers=bearer))[0].status == 200
    assert inside_orders(stack, revoked) == [401] * len(stack.running("orders"))
    assert inside_orders(stack, bearer) == [200] * len(stack.running("orders"))


async def test_jwt_revocation_off_keeps_a_logged_out_token_until_exp(
    api: Api, stack: ComposeStack
) -> None:
    """JWT_REVOCATION=off (a re-`up`, which recreates only the app containers): logout cannot
    revoke an access token, which works until its exp, as the contract says."""
    before = stack.containers()
    seconds = stack.up(JWT_REVOCATION="off")
    print(f"\ncompose faults: re-up with JWT_REVOCATION=off in {seconds:.1f} s")
    after = stack.containers()
    for service in ("session-store", "data-store", "keys", "seed"):
        assert after[service] == before[service], f"{service} was recreated"
    for service in ("auth", "orders", "gateway"):
        assert not after[service] & before[service], f"{service} still runs JWT_REVOCATION=push"
    metrics = gateway_metrics(stack)
    assert metric_sum(metrics, "authscale_info", jwt_revocation="off") == 1
    assert metric_sum(metrics, "authscale_info", jwt_revocation="push") == 0

    username, _ = await api.signup()
    bearer = await api.jwt_login(username)
    claims = jwt.decode(bearer["Authorization"].split()[1], options={"verify_signature": False})
    await api.logout(bearer)
    await asyncio.sleep(1.5)  # longer than the revocation lag the push design promises
    assert (await api.call("GET", "/orders", headers=bearer))[0].status == 200
    response, me = await api.call("GET", "/auth/me", headers=bearer)
    assert response.status == 200 and me["username"] == username
    assert inside_orders(stack, bearer) == [200] * len(stack.running("orders"))
    assert claims["exp"] > time.time(), json.dumps(claims)
