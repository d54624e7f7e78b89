"""The session store as a Redis Cluster (3 primaries, 3 replicas): sessions spread over the
shards, the push stream and login limits work, and a primary's failure costs its slots a 503
until its replica takes over, then the sessions it had work again; JWTs never notice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from redis.exceptions import MovedError

from devstack.stores import RedisClusterServers
from services.auth.app import create_app as create_auth
from services.auth.settings import Settings as AuthSettings
from services.common.keyspace import session_key
from tests.conftest import KeyMaterial, RedisProcess
from tests.integration.conftest import session_login, signup_and_login


def _cluster(workdir: Path) -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers(workdir)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def shared_cluster(
    redis_available: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisClusterServers]:
    """One cluster for the tests that leave it whole (their users and keys their own)."""
    yield from _cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def cluster(redis_available: None, tmp_path: Path) -> Iterator[RedisClusterServers]:
    """A cluster of the test's own: for a test that fails one of its nodes."""
    yield from _cluster(tmp_path / "cluster")


async def _auth(
    aiohttp_client: Any,
    cluster: RedisClusterServers,
    make_redis: Any,
    key_material: KeyMaterial,
) -> TestClient[Any, Any]:
    data: RedisProcess = make_redis("--appendonly", "yes")
    env = {
        "SESSION_STORE_URL": cluster.url,
        "DATA_STORE_URL": data.url,
        "KEYS_DIR": str(key_material.directory),
        "LOGIN_MAX_FAILURES": "3",
    }
    client: TestClient[Any, Any] = await aiohttp_client(create_auth(AuthSettings.from_env(env)))
    client.session.cookie_jar.clear()
    return client


@pytest.fixture
async def auth(
    aiohttp_client: Any,
    shared_cluster: RedisClusterServers,
    make_redis: Any,
    key_material: KeyMaterial,
) -> TestClient[Any, Any]:
    """auth on the shared cluster."""
    return await _auth(aiohttp_client, shared_cluster, make_redis, key_material)


async def primary_holding(cluster: RedisClusterServers, key: str) -> int:
    """The port of the primary that owns the key's slot."""
    for node in cluster.nodes:
        redis = Redis(port=node.port, socket_timeout=2)
        try:
            role = (await redis.execute_command("ROLE"))[0]  # type: ignore[no-untyped-call]
            if role == b"master" and await redis.exists(key):
                return node.port
        except MovedError:
            continue  # another primary owns the slot
        finally:
            await redis.aclose()
    raise AssertionError(f"no primary holds {key}")


async def test_sessions_spread_over_the_shards_and_work(
    auth: TestClient[Any, Any], shared_cluster: RedisClusterServers
) -> None:
    cluster = shared_cluster
    await signup_and_login(auth, "spread")
    sids = [(await session_login(auth, "spread"))[0] for _ in range(24)]
    owners = {await primary_holding(cluster, session_key(sid)) for sid in sids}
    assert len(owners) == 3  # every primary holds some sessions
    for sid in sids[:5]:
        response = await auth.get("/me", headers={"Cookie": f"sid={sid}"})
        assert response.status == 200 and (await response.json())["auth"] == "session"


async def test_revocations_and_login_limits_on_a_cluster(
    auth: TestClient[Any, Any],
    key_material: KeyMaterial,
    make_redis: Any,
) -> None:
    pair = await signup_and_login(auth, "pushy")
    token = pair["access_token"]
    # The login-failure counter lives in the cluster too: the fourth wrong password is a 429.
    statuses = [
        (await auth.post("/token", json={"username": "limit", "password": "bad password"})).status
        for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    # Logout publishes on the cluster; a verifier subscribed to any node hears it within 1 s.
    response = await auth.post("/logout", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 204
    deadline = time.monotonic() + 1
    while (await auth.get("/me", headers={"Authorization": f"Bearer {token}"})).status != 401:
        assert time.monotonic() < deadline, "the revocation did not arrive through the cluster"
        await asyncio.sleep(0.01)


async def test_a_failed_primary_costs_its_slots_a_503_until_the_replica_takes_over(
    aiohttp_client: Any,
    cluster: RedisClusterServers,
    make_redis: Any,
    key_material: KeyMaterial,
) -> None:
    auth = await _auth(aiohttp_client, cluster, make_redis, key_material)  # its own cluster
    pair = await signup_and_login(auth, "survivor")
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    sids = [(await session_login(auth, "survivor"))[0] for _ in range(12)]
    victim_port = await primary_holding(cluster, session_key(sids[0]))
    victim = next(node for node in cluster.nodes if node.port == victim_port)
    on_victim = []
    for sid in sids:
        if await primary_holding(cluster, session_key(sid)) == victim_port:
            on_victim.append(sid)
    # Wait until the replica has every write (replication is asynchronous).
    primary = Redis(port=victim_port, socket_timeout=5)
    await primary.execute_command("WAIT", 1, 2000)  # type: ignore[no-untyped-call]
    await primary.aclose()
    victim.stop()
    killed = time.monotonic()
    statuses: list[int] = []
    while True:
        response = await auth.get("/me", headers={"Cookie": f"sid={on_victim[0]}"})
        statuses.append(response.status)
        assert response.status in {200, 503}, await response.text()  # never a 500 or a 401
        # JWTs never notice.
        assert (await auth.get("/me", headers=bearer)).status == 200
        if response.status == 200:
            break
        assert time.monotonic() - killed < 20, "the replica never took over"
        await asyncio.sleep(0.1)
    recovered = time.monotonic() - killed
    assert 503 in statuses, statuses  # the slot was really unavailable for a while
    for sid in on_victim:  # the sessions the replica had received work without a new login
        response = await auth.get("/me", headers={"Cookie": f"sid={sid}"})
        assert response.status == 200
    print(f"failover: session requests recovered {recovered:.1f} s after the primary died")
