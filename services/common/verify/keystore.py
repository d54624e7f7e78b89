"""Verification keys by kid: PEM files, or a JWKS URL refreshed in the background.

An unknown kid triggers at most one refetch per cooldown however many arrive; when auth is
down the last good keys stay. Keys named inside a token (jku, x5u, jwk, x5c) are never fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping

from aiohttp import ClientError, ClientSession, ClientTimeout, DummyCookieJar
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common import keys as keylib
from services.common.settings import VerifierSettings

log = logging.getLogger("authscale.verify")


class KeyStore:
    """Public keys by kid, from PEM files (static) or a JWKS URL (refreshed in the background)."""

    def __init__(
        self,
        settings: VerifierSettings,
        clock: Callable[[], float],
        static: Mapping[str, rsa.RSAPublicKey] | None = None,
    ) -> None:
        """static: use these keys as they are (auth verifies with its own key ring)."""
        self.settings = settings
        self.clock = clock
        self.keys: dict[str, rsa.RSAPublicKey] = dict(static or {})
        self.fetches = 0
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()
        self._http: ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def from_jwks(self) -> bool:
        return self.settings.jwks_url is not None

    async def start(self) -> None:
        if self.keys:
            return
        if not self.from_jwks:
            self.keys = keylib.load_public_files(self.settings.public_key_files)
            return
        self._http = ClientSession(
            timeout=ClientTimeout(total=2.0, connect=1.0), cookie_jar=DummyCookieJar()
        )
        await self.fetch()
        self._task = asyncio.create_task(self._refresh_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http is not None:
            await self._http.close()

    async def fetch(self) -> bool:
        """Fetch the JWKS once; keep the last good keys on any failure."""
        assert self._http is not None and self.settings.jwks_url is not None
        self._last_attempt = self.clock()
        self.fetches += 1
        try:
            async with self._http.get(self.settings.jwks_url, allow_redirects=False) as response:
                if response.status != 200:
                    raise ClientError(f"JWKS answered {response.status}")
                body = await response.content.read(65_536)
            fresh = keylib.parse_jwks(json.loads(body))
        except (ClientError, TimeoutError, ValueError, keylib.UnusableKey) as exc:
            log.warning("JWKS fetch failed, keeping %d known keys: %s", len(self.keys), exc)
            return False
        if fresh:
            self.keys = fresh
        return bool(fresh)

    async def _refresh_loop(self) -> None:
        while True:
            # Retry quickly until the first keys arrive, then at the configured interval.
            await asyncio.sleep(self.settings.jwks_refresh_seconds if self.keys else 1.0)
            async with self._lock:
                await self.fetch()

    async def refetch_for_unknown_kid(self) -> None:
        """Refetch at most once per cooldown, however many unknown kids arrive."""
        if not self.from_jwks:
            return
        async with self._lock:
            if self.clock() - self._last_attempt < self.settings.jwks_cooldown_seconds:
                return
            await self.fetch()
