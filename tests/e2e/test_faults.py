"""Failure behaviour of the contract on a launched stack of its own: stores, auth, replicas fail."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from devstack.stack import Stack
from devstack.stores import redis_ping
from tests.e2e.conftest import Api
from tests.stackutil import running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    """A stack only these tests break, so the contract tests never see a half-broken one."""
    yield from running(tmp_path_factory.mktemp("faults"))


def restore(stack: Stack, name: str) -> None:
    stack.start_component(name)
    stack.wait_ready(name, 30)


async def test_session_store_stalled(api: Api, stack: Stack) -> None:
    username, _ = await api.signup()
    jwt, session = await api.jwt_login(username), await api.session_login(username)
    port = stack.components["session-store"].port
    stall = subprocess.Popen(
        ["redis-cli", "-p", str(port), "DEBUG", "SLEEP", "3"], stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 2
        while redis_ping(port) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        status, seconds = await api.timed_call("GET", "/orders", headers=session)
        assert status == 503 and seconds < 1.0, (status, seconds)
        status, seconds = await api.timed_call("GET", "/orders", headers=jwt)
        assert status == 200, status
    finally:
        stall.wait(10)


async def test_session_store_down(api: Api, stack: Stack) -> None:
    username, _ = await api.signup()
    jwt, session = await api.jwt_login(username), await api.session_login(username)
    stack.kill("session-store")
    try:
        await api.session_store_down(session, jwt, item="offline")
    finally:
        restore(stack, "session-store")


async def test_auth_down_jwt_orders_keep_working(api: Api, stack: Stack) -> None:
    username, _ = await api.signup()
    jwt = await api.jwt_login(username)
    stack.kill("auth")
    try:
        status, _ = await api.timed_call("GET", "/orders", headers=jwt)
        assert status == 200
        response, created = await api.call(
            "POST", "/orders", headers=jwt, json={"item": "no auth", "quantity": 1}
        )
        assert response.status == 201, created
        response, _ = await api.call("GET", f"/orders/{created['id']}", headers=jwt)
        assert response.status == 200
        response, problem = await api.call("GET", "/auth/me", headers=jwt)
        assert response.status == 503 and problem["status"] == 503  # no auth replica to send to
        assert int(response.headers["Retry-After"]) >= 1
    finally:
        restore(stack, "auth")


async def test_orders_replica_down_gets_keep_succeeding(api: Api, stack: Stack) -> None:
    username, _ = await api.signup()
    jwt = await api.jwt_login(username)
    _, order = await api.call(
        "POST", "/orders", headers=jwt, json={"item": "replicated", "quantity": 1}
    )
    stack.kill("orders-1")
    try:
        statuses = [
            (await api.call("GET", f"/orders/{order['id']}", headers=jwt))[0].status
            for _ in range(40)
        ]
        assert statuses == [200] * 40
        statuses = [(await api.call("GET", "/orders", headers=jwt))[0].status for _ in range(10)]
        assert statuses == [200] * 10
    finally:
        restore(stack, "orders-1")


async def test_data_store_crash_loses_no_acknowledged_order(api: Api, stack: Stack) -> None:
    username, _ = await api.signup()
    jwt = await api.jwt_login(username)

    async def create(i: int) -> str | None:
        response, body = await api.call(
            "POST", "/orders", headers=jwt, json={"item": f"durable-{i}", "quantity": 1}
        )
        return body["id"] if response.status == 201 else None

    before = [await create(i) for i in range(20)]
    assert all(before)
    # Keep writing while the data store is killed: every 201 must survive the crash.
    writer = asyncio.gather(*(create(i) for i in range(20, 80)))
    await asyncio.sleep(0)  # let the writes start before the crash
    stack.kill("data-store", signal.SIGKILL)
    acknowledged = [order_id for order_id in [*before, *await writer] if order_id]
    assert len(acknowledged) >= 20
    try:
        status, seconds = await api.timed_call("GET", "/orders", headers=jwt)
        assert status == 503 and seconds < 1.0, (status, seconds)
    finally:
        restore(stack, "data-store")
    deadline = time.monotonic() + 10
    while True:
        response, listed = await api.call("GET", "/orders?limit=100", headers=jwt)
        if response.status == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert response.status == 200
    stored = {o["id"] for o in listed["orders"]}
    assert set(acknowledged) <= stored
    for order_id in acknowledged:
        response, _ = await api.call("GET", f"/orders/{order_id}", headers=jwt)
        assert response.status == 200


async def test_data_store_stalled_answers_503_and_a_replay_makes_one_order(
    api: Api, stack: Stack
) -> None:
    """A data store that stops answering (a stalled fsync looks like this from outside): a write
    gets 503 problem details after at most two store timeouts (auth's account check, then the
    write: 1 s by default, where a store that is down answers at once); once the store is back,
    the client's replay with the same Idempotency-Key makes exactly one order, whether or not the
    stalled write was applied."""
    username, _ = await api.signup()
    jwt = await api.jwt_login(username)
    item = "stalled-" + uuid.uuid4().hex[:8]
    write = {"headers": {**jwt, "Idempotency-Key": item}, "json": {"item": item, "quantity": 2}}
    stack.send_signal("data-store", signal.SIGSTOP)
    try:
        started = time.monotonic()
        response, problem = await api.call("POST", "/orders", **write)
        seconds = time.monotonic() - started
        assert response.status == 503 and seconds < 1.5, (response.status, seconds)
        assert response.content_type == "application/problem+json" and problem["status"] == 503
    finally:
        stack.send_signal("data-store", signal.SIGCONT)
    deadline = time.monotonic() + 10
    while (replay := await api.call("POST", "/orders", **write))[0].status != 201:
        assert replay[0].status == 503 and time.monotonic() < deadline, replay
        await asyncio.sleep(0.05)
    response, listed = await api.call("GET", "/orders?limit=100", headers=jwt)
    assert response.status == 200
    assert [o["id"] for o in listed["orders"] if o["item"] == item] == [replay[1]["id"]]


async def test_revoked_jwt_stays_revoked_after_the_session_store_loses_everything(
    api: Api, stack: Stack
) -> None:
    """A session store restarted empty (wiped, every connection cut) brings no token back."""
    from redis.asyncio import Redis

    username, _ = await api.signup()
    revoked = await api.jwt_login(username)
    await api.logout(revoked)
    deadline = time.monotonic() + 5
    while await api.every_hop(stack, revoked) != [401] * 4:
        assert time.monotonic() < deadline, "logout never took effect everywhere"
        await asyncio.sleep(0.02)
    store = Redis(port=stack.components["session-store"].port, socket_timeout=2)
    try:
        subscribers = int((await store.pubsub_numsub("revoked:jti"))[0][1])
        assert subscribers == 4  # gateway, two orders replicas, auth
        await store.flushall()
        for kind in ("pubsub", "normal"):
            await store.client_kill_filter(_type=kind, skipme=True)
        # Every verifier notices, reconnects and reloads its list; only then is it a fair check.
        deadline = time.monotonic() + 10
        while int((await store.pubsub_numsub("revoked:jti"))[0][1]) < subscribers:
            assert time.monotonic() < deadline, "verifiers never resubscribed"
            await asyncio.sleep(0.05)
    finally:
        await store.aclose()
    # A process restarted after the wipe loads the list from the durable record too.
    stack.restart("orders-1")
    for _ in range(3):
        assert await api.every_hop(stack, revoked) == [401] * 4
    fresh = await api.jwt_login(username)
    assert await api.every_hop(stack, fresh) == [200] * 4


async def test_login_flood_through_the_gateway_is_shed_never_502(
    api: Api, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two waves of 400 parallel logins of unknown names (800 in all): 401, 429 or 503 with
    Retry-After, never 502; throughout, the gateway stays ready and JWT requests to orders,
    which need no auth, keep answering 200; auth stays in rotation."""
    username, _ = await api.signup()
    jwt = await api.jwt_login(username)

    async def failed_calls(outcome: str) -> float:
        return await api.metric(
            stack.gateway_url, "upstream_calls_total", upstream="auth", result=outcome
        )

    async def login(name: str, password: str) -> int:
        response, _ = await api.call(
            "POST", "/auth/token", json={"username": name, "password": password}
        )
        if response.status == 503:
            assert int(response.headers["Retry-After"]) >= 1
        return response.status

    errors_before = await failed_calls("error")
    flooding = True
    watched: list[tuple[int, int]] = []  # (GET /readyz, JWT GET /orders) while the flood runs

    async def watch() -> None:
        while flooding:
            ready, _ = await api.call("GET", "/readyz")
            orders, _ = await api.call("GET", "/orders", headers=jwt)
            watched.append((ready.status, orders.status))
            await asyncio.sleep(0.05)  # the watcher's own pace, not a synchronisation

    watcher = asyncio.create_task(watch())
    statuses: list[int] = []
    try:
        for wave in range(2):
            statuses += await asyncio.gather(
                *(login(f"flood{wave}{i:04d}x", "flood password") for i in range(400))
            )
    finally:
        flooding = False
        await watcher
    counts = {status: statuses.count(status) for status in sorted(set(statuses))}
    with capsys.disabled():
        print(f"\nlogin flood: {len(statuses)} logins, answers {counts}; {len(watched)} probes")
    assert set(counts) <= {401, 429, 503}, counts
    assert counts.get(503, 0) >= 1, counts  # the flood was heavy enough to be shed
    assert len(watched) >= 5 and set(watched) == {(200, 200)}, watched
    # The gateway did not mark the busy auth replica down: the next login goes straight through.
    assert await login(username, "correct horse") == 200
    # No call to auth broke or timed out after it was sent (a 502 or 504).
    assert await failed_calls("error") == errors_before
