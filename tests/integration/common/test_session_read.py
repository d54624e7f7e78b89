"""An uncached session check (SESSION_CACHE=off) reads the store every time; what it keeps
is only the decoding of the exact bytes it read."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from services.common.keyspace import session_key
from services.common.verify import InvalidSession
from services.common.verify import sessions as sessions_module
from tests.integration.conftest import AuthClient, Stores, running_verifier, session_client


async def test_a_changed_record_is_read_as_it_now_is(
    auth_client: AuthClient, stores: Stores
) -> None:
    _, sid, csrf = await session_client(auth_client, "changed")
    store = Redis.from_url(stores.sessions.url)
    try:
        async with running_verifier(stores) as verifier:
            first = await verifier.authenticate_session(sid)
            assert first.csrf == csrf and first.username == "changed"
            assert await verifier.authenticate_session(sid) == first  # same bytes, same principal
            stored = await store.get(session_key(sid))
            assert stored is not None
            record = json.loads(stored)
            record["csrf"] = "rotated-" + csrf[:20]
            await store.set(session_key(sid), json.dumps(record), keepttl=True)
            assert (await verifier.authenticate_session(sid)).csrf == record["csrf"]
            await store.set(session_key(sid), b"{not json", keepttl=True)
            with pytest.raises(InvalidSession) as corrupt:
                await verifier.authenticate_session(sid)
            assert corrupt.value.reason == "corrupt session record"
            await store.delete(session_key(sid))  # ended: refused at once, decoded or not
            with pytest.raises(InvalidSession) as ended:
                await verifier.authenticate_session(sid)
            assert ended.value.reason == "unknown or expired session"
    finally:
        await store.aclose()


async def test_the_decoded_records_kept_are_bounded(
    auth_client: AuthClient, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions_module, "DECODED_SIZE", 2)
    _, first, _ = await session_client(auth_client, "bounded")
    others = []
    for name in ("bounded-2", "bounded-3"):
        _, sid, _ = await session_client(auth_client, name)
        others.append(sid)
    async with running_verifier(stores) as verifier:
        assert verifier.sessions is not None
        for sid in (first, *others, first):
            assert (await verifier.authenticate_session(sid)).session_id == sid
        kept = {sid for sid, _ in verifier.sessions._decoded}
        assert len(kept) == 2 and kept == {others[1], first}  # the oldest went first
