"""Verifier keys from auth's JWKS URL: refresh, unknown-kid cooldown, auth outage."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from services.auth.app import create_app as create_auth
from services.auth.settings import Settings as AuthSettings
from services.common.observability import Metrics
from services.common.settings import VerifierSettings
from services.common.verify import InvalidToken, Verifier
from tests.conftest import AUDIENCE, ISSUER, KeyMaterial
from tests.integration.conftest import Stores


async def test_jwks_keys_unknown_kid_cooldown_and_outage(
    aiohttp_server: Any,
    aiohttp_client: Any,
    stores: Stores,
    key_material: KeyMaterial,
    make_token: Any,
) -> None:
    server = await aiohttp_server(create_auth(AuthSettings.from_env(stores.env(key_material))))
    settings = VerifierSettings(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url=str(server.make_url("/.well-known/jwks.json")),
        jwks_cooldown_seconds=30,
        revocation="off",
    )
    now = [time.time()]
    verifier = Verifier(settings, Metrics("jwks-test"), None, clock=lambda: now[0])
    await verifier.start()
    try:
        assert list(verifier.keystore.keys) == [key_material.kid]
        assert verifier.keystore.fetches == 1
        assert (await verifier.authenticate_token(make_token())).sub == "user-1"

        async def flood() -> None:
            results = await asyncio.gather(
                *(
                    verifier.authenticate_token(make_token(headers={"kid": uuid.uuid4().hex}))
                    for _ in range(50)
                ),
                return_exceptions=True,
            )
            assert all(isinstance(r, InvalidToken) and r.reason == "unknown kid" for r in results)

        # A flood of unknown kids causes at most one fetch per cooldown, and each is refused.
        await flood()
        assert verifier.keystore.fetches == 1  # the startup fetch is within the cooldown
        now[0] += 31
        await flood()
        assert verifier.keystore.fetches == 2
        await flood()
        assert verifier.keystore.fetches == 2

        # Auth goes away: the last good keys keep verifying.
        await server.close()
        assert not await verifier.keystore.fetch()
        assert list(verifier.keystore.keys) == [key_material.kid]
        assert (await verifier.authenticate_token(make_token())).username == "alice"
    finally:
        await verifier.close()
