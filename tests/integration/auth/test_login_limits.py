"""Login limits under concurrency: the per-account failure limit and the hashing queue bound."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

from tests.integration.conftest import AuthClient, signup_and_login

PROBLEM = "application/problem+json"


async def _statuses(responses: list[Any]) -> Counter[int]:
    for response in responses:
        assert response.content_type == PROBLEM, await response.text()
    return Counter(response.status for response in responses)


async def test_parallel_wrong_passwords_get_at_most_the_limit_of_401s(
    auth_client: AuthClient,
) -> None:
    client = await auth_client(LOGIN_MAX_FAILURES="5", LOGIN_WINDOW_SECONDS="120")
    await signup_and_login(client, "burst")
    for path in ("/token", "/session"):
        name = "burst" if path == "/token" else "ghost-" + uuid.uuid4().hex[:8]
        burst = await asyncio.gather(
            *(
                client.post(path, json={"username": name, "password": f"wrong {i}"})
                for i in range(20)
            )
        )
        counts = await _statuses(burst)
        assert set(counts) <= {401, 429}, counts
        assert counts[401] <= 5 and counts[429] >= 15, counts
        for response in burst:
            if response.status == 429:
                assert int(response.headers["Retry-After"]) >= 1
    # The account is locked: the right password inside the window is refused too.
    for path in ("/token", "/session"):
        locked = await client.post(path, json={"username": "burst", "password": "correct horse"})
        assert locked.status == 429, await locked.text()


async def test_a_success_clears_the_count_and_a_shed_login_counts_nothing(
    auth_client: AuthClient,
) -> None:
    client = await auth_client(LOGIN_MAX_FAILURES="2", LOGIN_WINDOW_SECONDS="120")
    await signup_and_login(client, "settle")
    for _ in range(3):  # fail once, succeed: the count starts again each time
        wrong = await client.post("/token", json={"username": "settle", "password": "nope nope"})
        assert wrong.status == 401
        right = await client.post(
            "/token", json={"username": "settle", "password": "correct horse"}
        )
        assert right.status == 200, await right.text()


async def test_a_login_flood_is_shed_with_503_and_a_real_login_is_not_held_up(
    auth_client: AuthClient,
) -> None:
    # Slow hashes (ARGON2_TIME_COST=12: ~0.2 s each here) make the difference plain whatever else
    # the machine is doing: unbounded, the real user would wait for the whole flood, 40 hashes on
    # two threads (~4 s); shed, at most the queue bound and one hash of its own.
    queue = 0.3
    client = await auth_client(
        LOGIN_QUEUE_SECONDS=str(queue), LOGIN_MAX_FAILURES="1000", ARGON2_TIME_COST="12"
    )
    await signup_and_login(client, "realuser")

    async def login(username: str, password: str) -> tuple[Any, float]:
        started = time.monotonic()
        response = await client.post("/token", json={"username": username, "password": password})
        await response.read()
        return response, time.monotonic() - started

    flood = [login("flood" + uuid.uuid4().hex[:10], "whatever pw") for _ in range(40)]
    tasks = [asyncio.ensure_future(call) for call in flood]
    await asyncio.sleep(0)  # the flood is queued before the real user arrives
    real_response, real_seconds = await login("realuser", "correct horse")
    answers = await asyncio.gather(*tasks)
    counts = Counter(response.status for response, _ in answers)
    assert set(counts) <= {401, 503}, counts
    assert counts[503] >= 1, counts
    for response, _ in answers:
        if response.status == 503:
            assert response.content_type == PROBLEM
            assert int(response.headers["Retry-After"]) >= 1
    assert real_response.status in {200, 503}, real_response.status
    assert real_seconds < 2.0, real_seconds
    metrics = await (await client.get("/metrics")).text()
    assert 'logins_shed_total{service="auth"}' in metrics
    # Shed logins are not verdicts on a password: once the flood is over, the user logs in.
    deadline = time.monotonic() + 10
    while True:
        response, _ = await login("realuser", "correct horse")
        if response.status == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert response.status == 200
