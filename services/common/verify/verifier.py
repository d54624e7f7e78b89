"""One call for every credential: `await verifier.authenticate(request) -> Principal`.

The Authorization header judges a request alone if present; else the session cookie. JWTs are
checked on the CPU (cache, then decode) against the pushed denylist; sessions are read from the
session store through their owner, verify.sessions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common import tracing
from services.common.observability import Metrics, auth_mode_key
from services.common.problems import ProblemError
from services.common.settings import VerifierSettings
from services.common.store import SessionStore
from services.common.verify.errors import (
    AuthError,
    InvalidSession,
    InvalidToken,
    KeysUnavailable,
    MissingCredential,
    RevocationsUnavailable,
    UnknownKey,
)
from services.common.verify.jwt import TokenCache, decode_access_token
from services.common.verify.keystore import KeyStore
from services.common.verify.principal import Principal
from services.common.verify.revocation import RevocationList
from services.common.verify.sessions import Sessions
from services.common.verify.stream import PushStream
from services.common.verify.timing import entry, timings_key

log = logging.getLogger("authscale.verify")


class Verifier:
    """Verifies both credential types for one service; opened and closed with its app."""

    def __init__(
        self,
        settings: VerifierSettings,
        metrics: Metrics,
        session_redis: SessionStore | None,
        *,
        clock: Callable[[], float] = time.time,
        static_keys: Mapping[str, rsa.RSAPublicKey] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.keystore = KeyStore(settings, clock, static_keys)
        metrics.info.labels(metrics.service, settings.revocation).set(1)
        self.revocations = RevocationList(
            settings.data_store_url, settings.store_timeout_seconds, clock
        )
        self.sessions: Sessions | None = None
        # Whether tokens are judged against the pushed revocation list (then it must be loaded).
        self.follows_revocations = False
        # One subscription feeds whatever this verifier keeps in memory from the session store.
        self.stream = PushStream(settings.session_store_url, settings.store_timeout_seconds)
        if session_redis is not None:
            self.sessions = Sessions(session_redis, metrics, settings, clock)
            if settings.revocation == "push":
                self.stream.follow(self.revocations.follower())
                self.follows_revocations = True
            if self.sessions.cache is not None:
                self.stream.follow(self.sessions.cache.follower())
        self._cache = TokenCache(settings.token_cache_size)

    async def start(self) -> None:
        await self.keystore.start()
        await self.revocations.start()
        await self.stream.start()

    async def close(self) -> None:
        await self.stream.close()
        await self.revocations.close()
        await self.keystore.close()
        if self.sessions is not None:
            self.sessions.close()

    # -- request entry point ------------------------------------------------------------------

    async def authenticate(self, request: web.Request) -> Principal:
        """Judge the request's credential; its mode is recorded on the request either way, and
        with SERVER_TIMING its Server-Timing entry (written by the app's response hook)."""
        authorization = request.headers.get("Authorization")
        timings = request.setdefault(timings_key, []) if self.settings.server_timing else None
        mode, check = self.judge(authorization, lambda: request.cookies, timings)
        request[auth_mode_key] = mode
        return await check

    def judge(
        self,
        authorization: str | None,
        cookies: Callable[[], Mapping[str, str]],
        timings: list[str] | None = None,
    ) -> tuple[str, Awaitable[Principal]]:
        """Which credential judges (`mode`: jwt, session or none) and the check of it.

        The Authorization header alone if present; else the `at` cookie (a JWT carried by a
        cookie); else the session cookie. `cookies` is read only without the header. The
        gateway's fast path (services/gateway/edge.py) calls this with the fields it parsed.
        timings: where the check's Server-Timing entry goes (None: not recorded).
        """
        at = sid = None
        if authorization is None:
            jar = cookies()
            at = jar.get(self.settings.access_cookie_name)
            if not at:
                sid = jar.get(self.settings.cookie_name)
        mode = "jwt" if authorization is not None or at else ("session" if sid else "none")
        return mode, self._check(mode, authorization, at, sid, timings)

    async def _check(
        self,
        mode: str,
        header: str | None,
        at: str | None,
        sid: str | None,
        timings: list[str] | None = None,
    ) -> Principal:
        start = time.perf_counter()
        carrier = "header" if header is not None else "cookie"
        cost = ("off", 0)  # the cache's answer and the store round trips, for `timings`
        # One frame for the whole check: the span is a shared null context when tracing is off.
        try:
            with tracing.span(tracing.VERIFY_SPAN, credential=mode, carrier=carrier):
                if header is not None or at:
                    token = at or ""
                    if header is not None:
                        scheme, _, token = header.partition(" ")
                        if scheme.lower() != "bearer" or not token.strip():
                            raise InvalidToken("Authorization header is not a bearer token")
                        token = token.strip()
                    if timings is not None:
                        cost = (self._token_cost(token), 0)
                    # authenticate_token() inline: no coroutine unless the key is unknown.
                    try:
                        principal = self.verify_token(token)
                    except UnknownKey:
                        principal = await self._after_refetch(token)
                elif sid:
                    if timings is not None and self.sessions is not None:
                        cost = self.sessions.cost(sid)
                    principal = await self.authenticate_session(sid)
                else:
                    raise MissingCredential()
        except AuthError as exc:
            elapsed = time.perf_counter() - start
            self.metrics.observe_auth(mode, "refused", elapsed)
            log.info("credential refused: %s", exc.reason)
            if timings is not None:
                timings.append(self._timing(mode, carrier, cost, "refused", elapsed))
            raise
        except ProblemError:
            elapsed = time.perf_counter() - start
            self.metrics.observe_auth(mode, "unavailable", elapsed)
            if timings is not None:
                timings.append(self._timing(mode, carrier, cost, "unavailable", elapsed))
            raise
        elapsed = time.perf_counter() - start
        self.metrics.observe_auth(mode, "ok", elapsed)
        if timings is not None:
            credential = "internal" if principal.internal else mode
            timings.append(self._timing(credential, carrier, cost, "ok", elapsed))
        return principal

    def _token_cost(self, token: str) -> str:
        """Whether verify_token() is about to find the token in its cache (no await between)."""
        if not self._cache.size:
            return "off"
        return "hit" if self._cache.get(token, self.clock()) is not None else "miss"

    def _timing(
        self, credential: str, carrier: str, cost: tuple[str, int], result: str, seconds: float
    ) -> str:
        return entry(
            self.metrics.service,
            credential=credential,
            carrier=carrier if credential != "none" else "none",
            cache=cost[0],
            store=cost[1],
            result=result,
            seconds=seconds,
        )

    # -- JWT ----------------------------------------------------------------------------------

    async def authenticate_token(self, token: str) -> Principal:
        try:
            return self.verify_token(token)
        except UnknownKey:
            return await self._after_refetch(token)

    async def _after_refetch(self, token: str) -> Principal:
        """A token signed by a key not (yet) known: the JWKS fetched again, then once more."""
        await self.keystore.refetch_for_unknown_kid()
        try:
            return self.verify_token(token)
        except UnknownKey:
            if not self.keystore.keys:
                raise KeysUnavailable() from None
            raise

    def verify_token(self, token: str) -> Principal:
        """Verify an access token with the loaded keys (CPU only, no I/O)."""
        now = self.clock()
        principal = self._cache.get(token, now)
        if principal is None:
            principal = decode_access_token(token, self.keystore.keys, self.settings, now)
            self._cache.put(token, principal, now)
            tracing.annotate("cache", "miss")
        else:
            tracing.annotate("cache", "hit")
        assert principal.jti is not None
        if self.follows_revocations and not self.revocations.loaded:
            raise RevocationsUnavailable()
        if principal.jti in self.revocations:
            raise InvalidToken("token revoked")
        return principal

    # -- sessions -----------------------------------------------------------------------------

    def authenticate_session(self, session_id: str) -> Awaitable[Principal]:
        """The session's check (not a coroutine itself: one frame fewer per check)."""
        if self.sessions is None:
            raise InvalidSession("sessions are not configured")
        return self.sessions.read(session_id)

    # -- readiness ----------------------------------------------------------------------------

    async def keys_ready(self) -> None:
        """Ready to verify tokens: the keys are loaded, and the revocation list where tokens
        are judged against it."""
        if not self.keystore.keys:
            raise RuntimeError("no verification keys")
        if self.follows_revocations and not self.revocations.loaded:
            raise RuntimeError("revocation list not loaded")

    async def ready(self) -> None:
        """Ready to verify every credential: the keys are loaded and the session store answers."""
        await self.keys_ready()
        if self.sessions is not None:
            async with asyncio.timeout(self.settings.store_timeout_seconds):
                await self.sessions.redis.ping()


verifier_key = web.AppKey("verifier", Verifier)
