"""Credential verification for every service: RS256 access tokens and sessions -> Principal."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import jwt
from aiohttp import ClientError, ClientSession, ClientTimeout, DummyCookieJar, web
from cryptography.hazmat.primitives.asymmetric import rsa
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common import keys as keylib
from services.common.observability import Metrics, auth_mode_key
from services.common.problems import ProblemError
from services.common.settings import VerifierSettings
from services.common.store import (
    REVOKED_CHANNEL,
    REVOKED_SET,
    SESSION_STORE,
    make_redis,
    session_key,
    timed,
)

log = logging.getLogger("authscale.verify")

MAX_TOKEN_BYTES = 8192
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti")
ACCEPTED_TYP = frozenset({"at+jwt", "application/at+jwt"})
# Session ids are 32 random bytes, base64url: anything else is refused without a store call.
SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made the request, and with what."""

    sub: str
    username: str
    mode: str  # "jwt" or "session"
    jti: str | None = None
    exp: int | None = None
    family: str | None = None  # refresh-token family of a JWT (its `sid` claim)
    session_id: str | None = None
    csrf: str | None = None


class AuthError(ProblemError):
    """The credential was refused (401); the client sees an opaque message, the log the reason."""

    def __init__(self, reason: str, *, token_sent: bool) -> None:
        challenge = 'Bearer error="invalid_token"' if token_sent else "Bearer"
        detail = "Invalid or expired credentials." if token_sent else "Authentication required."
        super().__init__(401, detail, headers={"WWW-Authenticate": challenge})
        self.reason = reason


# What auth answers for a valid credential whose account is gone; orders passes it on.
ACCOUNT_GONE = "Account not found or disabled."


def unauthorized(detail: str) -> ProblemError:
    """401 with the Bearer challenge, for refusals outside the Verifier (logins, accounts)."""
    return ProblemError(401, detail, headers={"WWW-Authenticate": "Bearer"})


class MissingCredential(AuthError):
    """No bearer token and no session cookie."""

    def __init__(self) -> None:
        super().__init__("no credential", token_sent=False)


class InvalidToken(AuthError):
    """The bearer token broke a verification rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, token_sent=True)


class InvalidSession(AuthError):
    """The session cookie names no live session."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, token_sent=False)


class _UnknownKey(Exception):
    """The token's kid is not among the loaded keys."""


class KeysUnavailable(ProblemError):
    """No verification key has been loaded yet (JWKS never reached)."""

    def __init__(self) -> None:
        super().__init__(
            503, "Token verification keys are not loaded yet.", headers={"Retry-After": "1"}
        )


def _b64url_json(segment: str) -> object:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        return None


class KeyStore:
    """Public keys by kid, from PEM files (static) or a JWKS URL (refreshed in the background)."""

    def __init__(self, settings: VerifierSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self.keys: dict[str, rsa.RSAPublicKey] = {}
        self.fetches = 0
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()
        self._http: ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def from_jwks(self) -> bool:
        return self.settings.jwks_url is not None

    def set_static(self, keys: dict[str, rsa.RSAPublicKey]) -> None:
        """Use these keys as they are (the auth service verifies with its own key ring)."""
        self.keys = dict(keys)

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


class RevocationList:
    """Revoked jtis held in memory (JWT_REVOCATION=push).

    Fed by the session store's channel (the fast path) and loaded whole from the durable record
    in the data store at start and after every reconnect, so a session store that restarts empty
    never brings a revoked token back.
    """

    def __init__(
        self,
        url: str | None,
        durable_url: str,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self.url = url
        self.durable_url = durable_url
        self.timeout = timeout
        self.redis: Redis | None = None
        self.durable: Redis | None = None
        self.clock = clock
        self.revoked: dict[str, float] = {}
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __contains__(self, jti: str) -> bool:
        return jti in self.revoked

    def add(self, jti: str, exp: float) -> None:
        if exp > self.clock():
            self.revoked[jti] = exp

    def prune(self) -> None:
        now = self.clock()
        self.revoked = {jti: exp for jti, exp in self.revoked.items() if exp > now}

    async def start(self) -> None:
        if self.url is None:  # JWT_REVOCATION=off: nothing to follow
            return
        # A client of its own without retries: redis-py would otherwise reconnect and
        # resubscribe silently, and the revocations published meanwhile would never be loaded.
        self.redis = make_redis(self.url, self.timeout, retries=0)
        self.durable = make_redis(self.durable_url, self.timeout)
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.redis is not None:
            await self.redis.aclose()
        if self.durable is not None:
            await self.durable.aclose()

    async def _reload(self) -> None:
        """Replace the list with the durable record; on failure the old list stays."""
        assert self.durable is not None
        entries = await self.durable.zrangebyscore(
            REVOKED_SET, self.clock(), "+inf", withscores=True
        )
        revoked: dict[str, float] = {}
        for jti, score in cast(list[tuple[bytes, float]], entries):
            revoked[jti.decode()] = float(score)
        self.revoked = revoked

    async def _run(self) -> None:
        assert self.redis is not None
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub()
            try:
                # Subscribe first, then load: a revocation published in between is not lost.
                await pubsub.subscribe(REVOKED_CHANNEL)
                await self._reload()
                self.connected.set()
                backoff = 0.1
                last_prune = self.clock()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._apply(message.get("data"))
                    if self.clock() - last_prune > 60:
                        self.prune()
                        last_prune = self.clock()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                if self.connected.is_set():
                    log.warning("revocation stream lost, reconnecting: %s", type(exc).__name__)
                self.connected.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _apply(self, data: object) -> None:
        text = data.decode() if isinstance(data, bytes) else str(data)
        jti, _, exp = text.partition(" ")
        try:
            self.add(jti, float(exp))
        except ValueError:
            log.warning("ignoring malformed revocation message")


class Verifier:
    """One call for both credential types: `await verifier.authenticate(request) -> Principal`."""

    def __init__(
        self,
        settings: VerifierSettings,
        metrics: Metrics,
        session_redis: Redis | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.session_redis = session_redis
        self.clock = clock
        self.keystore = KeyStore(settings, clock)
        metrics.info.labels(metrics.service, settings.revocation).set(1)
        push = settings.revocation == "push" and session_redis is not None
        self.revocations = RevocationList(
            settings.session_store_url if push else None,
            settings.data_store_url,
            settings.store_timeout_seconds,
            clock,
        )
        self._cache: dict[str, Principal] = {}
        self._touched: dict[str, float] = {}
        self._background: set[asyncio.Task[object]] = set()

    async def start(self) -> None:
        await self.keystore.start()
        await self.revocations.start()

    async def close(self) -> None:
        await self.revocations.close()
        await self.keystore.close()
        for task in list(self._background):
            task.cancel()

    # -- request entry point ------------------------------------------------------------------

    async def authenticate(self, request: web.Request) -> Principal:
        start = time.perf_counter()
        header = request.headers.get("Authorization")
        sid = request.cookies.get(self.settings.cookie_name) if header is None else None
        # A request with a bearer token is judged by the token alone.
        mode = "jwt" if header is not None else ("session" if sid else "none")
        request[auth_mode_key] = mode
        try:
            if header is not None:
                scheme, _, token = header.partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    raise InvalidToken("Authorization header is not a bearer token")
                principal = await self.authenticate_token(token.strip())
            elif sid:
                principal = await self.authenticate_session(sid)
            else:
                raise MissingCredential()
        except AuthError as exc:
            self.metrics.observe_auth(mode, "refused", time.perf_counter() - start)
            log.info("credential refused: %s", exc.reason)
            raise
        except ProblemError:
            self.metrics.observe_auth(mode, "unavailable", time.perf_counter() - start)
            raise
        self.metrics.observe_auth(mode, "ok", time.perf_counter() - start)
        return principal

    # -- JWT ----------------------------------------------------------------------------------

    async def authenticate_token(self, token: str) -> Principal:
        try:
            return self.verify_token(token)
        except _UnknownKey:
            await self.keystore.refetch_for_unknown_kid()
            try:
                return self.verify_token(token)
            except _UnknownKey:
                if not self.keystore.keys:
                    raise KeysUnavailable() from None
                raise InvalidToken("unknown kid") from None

    def verify_token(self, token: str) -> Principal:
        """Verify an access token with the loaded keys (CPU only, no I/O)."""
        now = self.clock()
        cached = self._cache.get(token)
        if cached is not None:
            assert cached.exp is not None and cached.jti is not None
            if now < cached.exp:
                if cached.jti in self.revocations:
                    raise InvalidToken("token revoked")
                return cached
            del self._cache[token]
        principal = self._decode(token, now)
        assert principal.jti is not None
        if principal.jti in self.revocations:
            raise InvalidToken("token revoked")
        if self.settings.token_cache_size and principal.exp is not None and now < principal.exp:
            if len(self._cache) >= self.settings.token_cache_size:
                # Drop the oldest entry: dicts keep insertion order.
                self._cache.pop(next(iter(self._cache)))
            self._cache[token] = principal
        return principal

    def _decode(self, token: str, now: float) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("token larger than 8 KiB")
        header_segment, dot, _ = token.partition(".")
        header = _b64url_json(header_segment) if dot else None
        if not isinstance(header, dict):
            raise InvalidToken("malformed token header")
        if header.get("alg") != "RS256":
            raise InvalidToken("algorithm is not RS256")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYP:
            raise InvalidToken("typ is not at+jwt")
        if "crit" in header:
            raise InvalidToken("crit header present")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("kid missing")
        key = self.keystore.keys.get(kid)
        if key is None:
            raise _UnknownKey(kid)
        leeway = self.settings.leeway_seconds
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=["RS256"],
                issuer=self.settings.issuer,
                audience=self.settings.audience,
                leeway=leeway,
                # Time claims are checked below against our clock, so tests can move it.
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "strict_aud": True,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"{type(exc).__name__}: {exc}") from None
        sub, jti, exp, iat = claims["sub"], claims["jti"], claims["exp"], claims["iat"]
        if not isinstance(sub, str) or not sub or not isinstance(jti, str) or not jti:
            raise InvalidToken("sub and jti must be non-empty strings")
        nbf = claims.get("nbf", iat)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat, nbf)):
            raise InvalidToken("exp, iat and nbf must be integers")
        if exp <= now - leeway:
            raise InvalidToken("ExpiredSignatureError: token has expired")
        if iat > now + leeway or nbf > now + leeway:
            raise InvalidToken("ImmatureSignatureError: token is not valid yet")
        username = claims.get("username")
        family = claims.get("sid")
        return Principal(
            sub=sub,
            username=username if isinstance(username, str) else "",
            mode="jwt",
            jti=jti,
            exp=exp,
            family=family if isinstance(family, str) else None,
        )

    # -- sessions -----------------------------------------------------------------------------

    async def authenticate_session(self, session_id: str) -> Principal:
        if not SESSION_ID_RE.fullmatch(session_id):
            raise InvalidSession("malformed session id")
        if self.session_redis is None:
            raise InvalidSession("sessions are not configured")
        raw = await timed(
            self.metrics, SESSION_STORE, "get", self.session_redis.get(session_key(session_id))
        )
        if raw is None:
            raise InvalidSession("unknown or expired session")
        try:
            data = json.loads(raw)
            sub, username, csrf = str(data["sub"]), str(data["username"]), str(data["csrf"])
            created_at = float(data["created_at"])
        except (ValueError, KeyError, TypeError):
            raise InvalidSession("corrupt session record") from None
        now = self.clock()
        absolute_end = created_at + self.settings.session_absolute_seconds
        if now >= absolute_end:
            self._spawn(self.session_redis.delete(session_key(session_id)))
            raise InvalidSession("session passed its absolute timeout")
        self._touch(session_id, now, absolute_end)
        return Principal(
            sub=sub, username=username, mode="session", session_id=session_id, csrf=csrf
        )

    def _touch(self, session_id: str, now: float, absolute_end: float) -> None:
        """Slide the idle timeout, at most once per SESSION_TOUCH_SECONDS per process."""
        assert self.session_redis is not None
        last = self._touched.get(session_id)
        # Never wait longer than a quarter of the idle timeout, or an active session could lapse.
        interval = min(self.settings.session_touch_seconds, self.settings.session_idle_seconds / 4)
        if last is not None and now - last < interval:
            return
        if len(self._touched) > 100_000:
            self._touched.clear()
        self._touched[session_id] = now
        ttl = max(math.ceil(min(self.settings.session_idle_seconds, absolute_end - now)), 1)
        # EXPIRE on a deleted key does nothing, so a logout is never undone.
        self._spawn(self.session_redis.expire(session_key(session_id), ttl))

    def forget_session(self, session_id: str) -> None:
        self._touched.pop(session_id, None)

    def _spawn(self, call: object) -> None:
        async def run() -> object:
            try:
                async with asyncio.timeout(self.settings.store_timeout_seconds):
                    return await call  # type: ignore[misc]
            except (RedisError, OSError, TimeoutError):
                return None

        task: asyncio.Task[object] = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- readiness ----------------------------------------------------------------------------

    async def ready(self) -> None:
        if not self.keystore.keys:
            raise RuntimeError("no verification keys")
        if self.session_redis is not None:
            async with asyncio.timeout(self.settings.store_timeout_seconds):
                await self.session_redis.ping()


def require_csrf(request: web.Request, principal: Principal) -> None:
    """Cookie-authenticated unsafe requests must echo the session's CSRF token."""
    if principal.mode != "session" or request.method in {"GET", "HEAD", "OPTIONS"}:
        return
    sent = request.headers.get("X-CSRF-Token", "")
    if not principal.csrf or not hmac.compare_digest(sent.encode(), principal.csrf.encode()):
        raise ProblemError(403, "Missing or wrong X-CSRF-Token for this session.")


verifier_key = web.AppKey("verifier", Verifier)
