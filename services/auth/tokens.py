"""Access tokens (RS256, RFC 9068), rotating refresh-token families, and their revocation."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from redis.asyncio import Redis

from services.auth.keyring import KeyRing
from services.auth.users import User
from services.common.keyspace import (
    FAMILY_TOKENS_SUFFIX,
    REFRESH_FAMILY_PREFIX,
    family_key,
    family_tokens_key,
    refresh_key,
    session_tokens_key,
)
from services.common.observability import Metrics
from services.common.problems import ProblemError
from services.common.store import DATA_STORE, SESSION_STORE, SessionStore, timed
from services.common.verify import Principal, RefreshRefused, csrf_digest, revocation

# Spend one refresh token and mint its successor atomically: of two parallel uses exactly one
# wins, and presenting a spent token deletes the family so every token in it stops working.
# KEYS: the presented token's record, the successor's. ARGV: refresh lifetime, the successor's
# access-token jti and exp (remembered per family, so the access tokens of a dead family can be
# revoked too), the family key's prefix and jti-set suffix (the family is read inside), and
# for the cookie carrier the CSRF digest sent with it (checked before anything is spent) and the
# successor's ('' when the refresh token came in the body).
_ROTATE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return {0} end
local rec = cjson.decode(raw)
if ARGV[6] ~= '' and rec.csrf ~= ARGV[6] then return {-2} end
local family = ARGV[4] .. rec.family
if redis.call('EXISTS', family) == 0 then return {0} end
if rec.used then
  redis.call('DEL', family)
  return {-1, rec.family}
end
rec.used = true
redis.call('SET', KEYS[1], cjson.encode(rec), 'KEEPTTL')
local successor = {family = rec.family, sub = rec.sub, username = rec.username}
if ARGV[7] ~= '' then successor.csrf = ARGV[7] end
redis.call('SET', KEYS[2], cjson.encode(successor), 'EX', ARGV[1])
redis.call('EXPIRE', family, ARGV[1])
redis.call('ZADD', family .. ARGV[5], ARGV[3], ARGV[2])
redis.call('EXPIRE', family .. ARGV[5], ARGV[1])
return {1, rec.family, rec.sub, rec.username}
"""


class CsrfRefused(ProblemError):
    """A refresh by cookie without the CSRF token of its family."""

    def __init__(self) -> None:
        super().__init__(403, "Missing or wrong X-CSRF-Token for this credential.")


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    csrf_token: str | None = None  # set for the cookie carrier: its JWT's `csrf` claim binds it

    def body(self) -> dict[str, object]:
        if self.csrf_token is not None:
            # The tokens travel as HttpOnly cookies; the body carries only what script needs.
            return {"csrf_token": self.csrf_token, "expires_in": self.expires_in}
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
        }


def access_claims(
    issuer: str,
    audience: str,
    sub: str,
    username: str,
    family: str,
    jti: str,
    issued: int,
    expires: int,
    csrf: str | None,
) -> dict[str, object]:
    """An access token's claims (RFC 9068), the cookie carrier's with the digest of its CSRF
    token (`csrf`)."""
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        "sub": sub,
        "client_id": "authscale",
        "username": username,
        "sid": family,
        "iat": issued,
        "exp": expires,
        "jti": jti,
    }
    if csrf is not None:
        claims["csrf"] = csrf
    return claims


class Tokens:
    def __init__(
        self,
        keyring: KeyRing,
        data: Redis,
        sessions: SessionStore,
        metrics: Metrics,
        *,
        issuer: str,
        audience: str,
        access_seconds: int,
        refresh_seconds: int,
        internal_audience: str,
        internal_seconds: int,
        clock: Callable[[], float],
    ) -> None:
        self.keyring = keyring
        self.data = data
        self.sessions = sessions
        self.metrics = metrics
        self.issuer = issuer
        self.audience = audience
        self.access_seconds = access_seconds
        self.refresh_seconds = refresh_seconds
        self.internal_audience = internal_audience
        self.internal_seconds = internal_seconds
        self.clock = clock
        self._rotate = data.register_script(_ROTATE)

    def sign_access(
        self, sub: str, username: str, family: str, jti: str, issued: int, csrf: str | None
    ) -> str:
        return self._sign(
            access_claims(
                self.issuer,
                self.audience,
                sub,
                username,
                family,
                jti,
                issued,
                issued + self.access_seconds,
                csrf,
            )
        )

    def _sign(self, claims: dict[str, object]) -> str:
        return jwt.encode(
            claims,
            self.keyring.signing_key,
            algorithm="RS256",
            headers={"kid": self.keyring.signing_kid, "typ": "at+jwt"},
        )

    async def exchange(self, session: Principal) -> tuple[str, int]:
        """The hybrid: a short-lived internal token for a live session (RFC 8693 exchange).

        Its jti is remembered under the session, so ending the session revokes it everywhere.
        """
        assert session.session_id is not None
        jti, issued = uuid.uuid4().hex, int(self.clock())
        lifetime = self.internal_seconds
        key = session_tokens_key(session.session_id)
        pipe = self.sessions.pipeline(transaction=True)
        pipe.zadd(key, {jti: issued + lifetime})
        pipe.zremrangebyscore(key, "-inf", issued - 60)
        pipe.expire(key, lifetime + 60)
        await timed(self.metrics, SESSION_STORE, "record_internal_token", pipe.execute())
        token = self._sign(
            {
                "iss": self.issuer,
                "aud": self.internal_audience,
                "sub": session.sub,
                "client_id": "authscale-gateway",
                "username": session.username,
                "iat": issued,
                "exp": issued + lifetime,
                "jti": jti,
            }
        )
        return token, lifetime

    async def revoke_session_tokens(self, session_id: str) -> None:
        """A session ended: every internal token minted for it is revoked at every hop."""
        key = session_tokens_key(session_id)
        pipe = self.sessions.pipeline(transaction=True)
        pipe.zrangebyscore(key, self.clock(), "+inf", withscores=True)
        pipe.delete(key)
        live, _ = await timed(self.metrics, SESSION_STORE, "end_internal_tokens", pipe.execute())
        await self.revoke_jtis({jti.decode(): float(exp) for jti, exp in live})

    async def issue(self, user: User, *, cookie: bool = False) -> TokenPair:
        """A new family: access token plus its first refresh token (and a CSRF token for the
        cookie carrier, bound to the access token and remembered by the refresh token)."""
        family = uuid.uuid4().hex
        refresh = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32) if cookie else None
        csrf = csrf_digest(csrf_token) if csrf_token else None
        fields: dict[str, str] = {"family": family, "sub": user.id, "username": user.username}
        if csrf is not None:
            fields["csrf"] = csrf
        record = json.dumps(fields)
        jti, issued = uuid.uuid4().hex, int(self.clock())
        pipe = self.data.pipeline(transaction=True)
        pipe.set(family_key(family), user.id, ex=self.refresh_seconds)
        pipe.set(refresh_key(refresh), record, ex=self.refresh_seconds)
        pipe.zadd(family_tokens_key(family), {jti: issued + self.access_seconds})
        pipe.expire(family_tokens_key(family), self.refresh_seconds)
        await timed(self.metrics, DATA_STORE, "issue_refresh", pipe.execute())
        access = self.sign_access(user.id, user.username, family, jti, issued, csrf)
        return TokenPair(access, refresh, self.access_seconds, csrf_token)

    async def rotate(self, refresh: str, *, cookie_csrf: str | None = None) -> TokenPair:
        """Spend a refresh token for a new pair. cookie_csrf: the X-CSRF-Token sent with a
        refresh token that came as a cookie ('' if none was sent); None for the body carrier."""
        if not refresh or len(refresh) > 256:
            raise RefreshRefused()
        cookie = cookie_csrf is not None
        if cookie and not cookie_csrf:
            raise CsrfRefused()
        sent = csrf_digest(cookie_csrf) if cookie_csrf else ""
        csrf_token = secrets.token_urlsafe(32) if cookie else None
        csrf = csrf_digest(csrf_token) if csrf_token else None
        successor = secrets.token_urlsafe(32)
        jti, issued = uuid.uuid4().hex, int(self.clock())
        result = await timed(
            self.metrics,
            DATA_STORE,
            "rotate_refresh",
            self._rotate(
                keys=[refresh_key(refresh), refresh_key(successor)],
                args=[
                    self.refresh_seconds,
                    jti,
                    issued + self.access_seconds,
                    REFRESH_FAMILY_PREFIX,
                    FAMILY_TOKENS_SUFFIX,
                    sent,
                    csrf or "",
                ],
            ),
        )
        if result[0] == -1:
            # A spent token came back: someone holds a copy. Its family is dead; so are the
            # access tokens issued in it.
            await self.revoke_family(result[1].decode())
        if result[0] == -2:
            raise CsrfRefused()  # nothing was spent
        if result[0] != 1:
            raise RefreshRefused()
        family, sub, username = (part.decode() for part in result[1:4])
        access = self.sign_access(sub, username, family, jti, issued, csrf)
        return TokenPair(access, successor, self.access_seconds, csrf_token)

    async def revoke_family_of(self, refresh: str, sub: str) -> None:
        """Logout with a refresh token: its family dies if it belongs to the caller."""
        if not refresh or len(refresh) > 256:
            return
        raw = await timed(
            self.metrics, DATA_STORE, "get_refresh", self.data.get(refresh_key(refresh))
        )
        if raw is None:
            return
        record = json.loads(raw)
        if record.get("sub") == sub:
            await self.revoke_family(str(record["family"]))

    async def revoke_family(self, family: str) -> None:
        """End a family: no more refreshes, and every unexpired access token from it revoked."""
        pipe = self.data.pipeline(transaction=True)
        pipe.delete(family_key(family))
        pipe.zrangebyscore(family_tokens_key(family), self.clock(), "+inf", withscores=True)
        pipe.delete(family_tokens_key(family))
        _, live, _ = await timed(self.metrics, DATA_STORE, "revoke_family", pipe.execute())
        await self.revoke_jtis({jti.decode(): float(exp) for jti, exp in live})

    async def revoke_access(self, principal: Principal) -> None:
        assert principal.jti is not None and principal.exp is not None
        await self.revoke_jtis({principal.jti: float(principal.exp)})

    async def revoke_jtis(self, jtis: dict[str, float]) -> None:
        await revocation.publish(self.data, self.sessions, self.metrics, jtis, now=self.clock())
