"""Cached sessions (SESSION_CACHE=push): a hot session costs no store round trip, and every
way a session ends reaches every verifier's cache within 1 s."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from services.common.keyspace import session_key
from services.common.verify import InvalidSession, Verifier
from tests.integration.conftest import (
    AuthClient,
    Stores,
    running_verifier,
    session_client,
    session_login,
)


def cached_verifier(
    stores: Stores, clock: Callable[[], float] = time.time, **settings: Any
) -> contextlib.AbstractAsyncContextManager[Verifier]:
    """A verifier as another service runs it, with SESSION_CACHE=push, subscribed."""
    return running_verifier(stores, clock=clock, service="cached", session_cache="push", **settings)


def store_gets(verifier: Verifier) -> float:
    value = verifier.metrics.registry.get_sample_value(
        "store_calls_total",
        {"service": "cached", "store": "session_store", "op": "get", "result": "ok"},
    )
    return value or 0.0


async def refused_within(verifier: Verifier, sid: str, seconds: float = 1.0) -> float:
    started = time.monotonic()
    while True:
        try:
            await verifier.authenticate_session(sid)
        except InvalidSession:
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, "the cached session still works"
        await asyncio.sleep(0.005)


async def test_a_hot_session_is_read_from_the_store_once(
    auth_client: AuthClient, stores: Stores
) -> None:
    _, sid, csrf = await session_client(auth_client, "hot")
    async with cached_verifier(stores) as verifier:
        for _ in range(50):
            principal = await verifier.authenticate_session(sid)
            assert principal.csrf == csrf and principal.mode == "session"
        assert store_gets(verifier) == 1
        hits = verifier.metrics.registry.get_sample_value(
            "session_cache_total", {"service": "cached", "result": "hit"}
        )
        assert hits == 49


@pytest.mark.parametrize("ending", ["logout", "new login with the old cookie"])
async def test_an_ended_session_leaves_every_cache_within_1_s(
    auth_client: AuthClient, stores: Stores, ending: str
) -> None:
    client, sid, csrf = await session_client(auth_client, "leaver")
    async with cached_verifier(stores) as first, cached_verifier(stores) as second:
        for verifier in (first, second):
            await verifier.authenticate_session(sid)
            assert len(verifier.sessions.cache) == 1  # type: ignore[union-attr, arg-type]
        if ending == "logout":
            response = await client.post(
                "/logout", headers={"Cookie": f"sid={sid}", "X-CSRF-Token": csrf}
            )
            assert response.status == 204
        else:
            await session_login(client, "leaver", cookie=sid)
        for verifier in (first, second):
            await refused_within(verifier, sid)


async def test_a_lost_subscription_empties_the_cache(
    auth_client: AuthClient, stores: Stores
) -> None:
    _, sid, _ = await session_client(auth_client, "cut")
    admin = Redis(port=stores.sessions.port, socket_timeout=2)
    try:
        async with cached_verifier(stores) as verifier:
            cache = verifier.sessions.cache  # type: ignore[union-attr]
            assert cache is not None
            await verifier.authenticate_session(sid)
            # The session ends while the verifier cannot hear it: no message will ever come.
            await admin.client_kill_filter(_type="pubsub")
            await admin.delete(session_key(sid))
            deadline = time.monotonic() + 5
            while not verifier.stream.connected.is_set() or len(cache) or not cache.enabled:
                assert time.monotonic() < deadline, "the cache was never dropped and re-enabled"
                await asyncio.sleep(0.01)
            with pytest.raises(InvalidSession):
                await verifier.authenticate_session(sid)
    finally:
        await admin.aclose()


async def test_no_entry_outlives_the_idle_timeout(auth_client: AuthClient, stores: Stores) -> None:
    now = [time.time()]
    _, sid, _ = await session_client(auth_client, "idler")
    admin = Redis(port=stores.sessions.port, socket_timeout=2)
    try:
        async with cached_verifier(
            stores, lambda: now[0], session_idle_seconds=600, session_touch_seconds=60
        ) as verifier:
            await verifier.authenticate_session(sid)
            # The store's key lapses (its TTL ran out) with no message: the cache still trusts
            # its copy while the idle timeout allows...
            await admin.delete(session_key(sid))
            now[0] += 30
            assert (await verifier.authenticate_session(sid)).sub
            # ...and not one second longer: the store is asked again, and says no.
            now[0] += 600
            with pytest.raises(InvalidSession):
                await verifier.authenticate_session(sid)
    finally:
        await admin.aclose()


async def test_cached_sessions_still_slide_and_still_end_at_the_absolute_timeout(
    auth_client: AuthClient, stores: Stores
) -> None:
    now = [time.time()]
    _, sid, _ = await session_client(auth_client, "slider", clock=lambda: now[0])
    admin = Redis(port=stores.sessions.port, socket_timeout=2)
    try:
        async with cached_verifier(
            stores,
            lambda: now[0],
            session_idle_seconds=20,
            session_touch_seconds=60,
            session_absolute_seconds=200,
        ) as verifier:
            await verifier.authenticate_session(sid)
            for _ in range(3):
                await admin.pexpire(session_key(sid), 500)  # as if 19.5 s had passed unused
                now[0] += 19.5
                assert (await verifier.authenticate_session(sid)).sub  # a cache hit...
                deadline = time.monotonic() + 2
                while await admin.pttl(session_key(sid)) <= 500:  # ...that slid the store's TTL
                    assert time.monotonic() < deadline, "the idle timeout did not slide"
                    await asyncio.sleep(0.01)
            assert store_gets(verifier) == 1
            now[0] += 200
            with pytest.raises(InvalidSession):
                await verifier.authenticate_session(sid)
            deadline = time.monotonic() + 2
            while await admin.exists(session_key(sid)):  # and it is gone from the store too
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
    finally:
        await admin.aclose()
