"""Fixtures for one service app at a time against real redis-server processes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from services.auth.app import create_app as create_auth
from services.auth.settings import Settings as AuthSettings
from services.common.observability import Metrics
from services.common.settings import VerifierSettings
from services.common.store import make_session_store
from services.common.verify import Verifier
from tests.conftest import AUDIENCE, ISSUER, KeyMaterial, RedisProcess


@dataclass
class Stores:
    sessions: RedisProcess
    data: RedisProcess

    def env(self, key_material: KeyMaterial, **extra: str) -> dict[str, str]:
        return {
            "SESSION_STORE_URL": self.sessions.url,
            "DATA_STORE_URL": self.data.url,
            "KEYS_DIR": str(key_material.directory),
            "JWT_PUBLIC_KEY_FILE": str(key_material.directory / "public.pem"),
            **extra,
        }


@pytest.fixture
def stores(make_redis: Callable[..., RedisProcess]) -> Stores:
    return Stores(make_redis(), make_redis("--appendonly", "yes", "--appendfsync", "always"))


AuthClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def auth_client(aiohttp_client: Any, stores: Stores, key_material: KeyMaterial) -> AuthClient:
    async def factory(clock: Callable[[], float] = time.time, **extra: str) -> TestClient[Any, Any]:
        settings = AuthSettings.from_env(stores.env(key_material, **extra))
        client: TestClient[Any, Any] = await aiohttp_client(create_auth(settings, clock=clock))
        # Tests send cookies explicitly, so that nothing rides along by accident.
        client.session.cookie_jar.clear()
        return client

    return factory


async def signup_and_login(
    client: TestClient[Any, Any], username: str, password: str = "correct horse"
) -> dict[str, Any]:
    response = await client.post("/users", json={"username": username, "password": password})
    assert response.status == 201, await response.text()
    response = await client.post("/token", json={"username": username, "password": password})
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def session_login(
    client: TestClient[Any, Any],
    username: str,
    password: str = "correct horse",
    cookie: str | None = None,
) -> tuple[str, str]:
    headers = {"Cookie": f"sid={cookie}"} if cookie else {}
    response = await client.post(
        "/session", json={"username": username, "password": password}, headers=headers
    )
    assert response.status == 200, await response.text()
    sid = response.cookies["sid"].value
    client.session.cookie_jar.clear()
    return sid, (await response.json())["csrf_token"]


async def session_client(
    auth_client: AuthClient, username: str, **settings: Any
) -> tuple[TestClient[Any, Any], str, str]:
    """An auth client made with `settings`, and a user signed up on it and logged in with a
    session: the client, the session id and the session's CSRF token."""
    client = await auth_client(**settings)
    await signup_and_login(client, username)
    sid, csrf = await session_login(client, username)
    return client, sid, csrf


@contextlib.asynccontextmanager
async def running_verifier(
    stores: Stores,
    key_material: KeyMaterial | None = None,
    *,
    clock: Callable[[], float] = time.time,
    service: str = "other",
    **settings: Any,
) -> AsyncIterator[Verifier]:
    """Another verifier on the same stores, as another service runs it, its push stream
    followed (settings: VerifierSettings fields, e.g. session_cache="push")."""
    config = VerifierSettings(
        issuer=ISSUER,
        audience=AUDIENCE,
        session_store_url=stores.sessions.url,
        data_store_url=stores.data.url,
        **settings,
    )
    redis = make_session_store(stores.sessions.url, 0.5)
    keys = {key_material.kid: key_material.private.public_key()} if key_material else None
    verifier = Verifier(config, Metrics(service), redis, clock=clock, static_keys=keys)
    await verifier.start()
    try:
        await asyncio.wait_for(verifier.stream.connected.wait(), 5)
        yield verifier
    finally:
        await verifier.close()
        await redis.aclose()
