"""A verifier that judges tokens against the pushed revocation list (JWT_REVOCATION=push) never
accepts a token before it has loaded that list from its durable record: until then it is not
ready and answers 503, not 200 (a restarted service would accept every revoked token) and not
401 (the token may be good). Real Redis processes; the data store, holding the record, is down
at the start and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from services.common.keyspace import REVOKED_SET
from services.common.observability import Metrics
from services.common.settings import VerifierSettings
from services.common.store import make_session_store
from services.common.verify import InvalidToken, RevocationsUnavailable, Verifier
from tests.conftest import AUDIENCE, ISSUER, KeyMaterial
from tests.integration.conftest import Stores


@contextlib.asynccontextmanager
async def push_verifier(stores: Stores, key_material: KeyMaterial) -> AsyncIterator[Verifier]:
    """A verifier judging tokens against the pushed revocation list, started (whatever the
    stores' state) and closed afterwards."""
    config = VerifierSettings(
        issuer=ISSUER,
        audience=AUDIENCE,
        session_store_url=stores.sessions.url,
        data_store_url=stores.data.url,
        revocation="push",
        store_timeout_seconds=0.5,
    )
    redis = make_session_store(stores.sessions.url, 0.5)
    keys = {key_material.kid: key_material.private.public_key()}
    verifier = Verifier(config, Metrics("loaded"), redis, static_keys=keys)
    await verifier.start()
    try:
        yield verifier
    finally:
        await verifier.close()
        await redis.aclose()


async def test_no_token_is_judged_before_the_revocation_record_is_loaded(
    stores: Stores, key_material: KeyMaterial, make_token: Callable[..., str]
) -> None:
    revoked_jti = "revoked-before-the-restart"
    # Revoked while the data store was up (its append-only file keeps it across the restart):
    # written after the store came back, the record could be loaded, empty, by the stream's
    # reconnect before the write landed, and the verifier would never hear of it.
    record = Redis(port=stores.data.port)
    try:
        await record.zadd(REVOKED_SET, {revoked_jti: time.time() + 300})
    finally:
        await record.aclose()
    stores.data.stop()  # the durable record cannot be read
    async with push_verifier(stores, key_material) as verifier:
        good, revoked = make_token(), make_token(jti=revoked_jti)
        with pytest.raises(RuntimeError, match="revocation list"):
            await verifier.keys_ready()
        for token in (good, revoked):
            with pytest.raises(RevocationsUnavailable) as refused:
                verifier.verify_token(token)
            assert refused.value.status == 503

        stores.data.start()
        deadline = time.monotonic() + 15
        while not verifier.revocations.loaded:  # the stream's next connect reloads it
            assert time.monotonic() < deadline, "the revocation record was never loaded"
            await asyncio.sleep(0.05)
        await verifier.keys_ready()
        assert verifier.verify_token(good).jti is not None
        with pytest.raises(InvalidToken):
            verifier.verify_token(revoked)


async def test_a_record_readable_at_start_is_loaded_before_the_stream_connects(
    stores: Stores, key_material: KeyMaterial, make_token: Callable[..., str]
) -> None:
    """The session store down, the data store up: the list is loaded at start, so JWTs keep
    working (the contract: a session store outage does not stop JWT requests)."""
    record = Redis(port=stores.data.port)
    try:
        await record.zadd(REVOKED_SET, {"gone": time.time() + 300})
    finally:
        await record.aclose()
    stores.sessions.stop()
    async with push_verifier(stores, key_material) as verifier:
        assert verifier.revocations.loaded
        await verifier.keys_ready()
        assert verifier.verify_token(make_token()).jti is not None
        with pytest.raises(InvalidToken):
            verifier.verify_token(make_token(jti="gone"))
