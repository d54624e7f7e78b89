"""Access tokens (RS256, RFC 9068), rotating refresh-token families, sessions and revocation."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt
from redis.asyncio import Redis

from services.auth.keyring import KeyRing
from services.auth.users import User
from services.common.observability import Metrics
from services.common.problems import ProblemError
from services.common.store import (
    DATA_STORE,
    REVOKED_CHANNEL,
    REVOKED_SET,
    SESSION_STORE,
    session_key,
    timed,
)
from services.common.verify import Principal, unauthorized

# Spend one refresh token and mint its successor atomically: of two parallel uses exactly one
# wins, and presenting a spent token deletes the family so every token in it stops working.
# ARGV: refresh lifetime, the successor's access-token jti and exp (remembered per family, so
# the access tokens of a dead family can be revoked too).
_ROTATE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return {0} end
local rec = cjson.decode(raw)
local family = 'rfamily:' .. rec.family
if redis.call('EXISTS', family) == 0 then return {0} end
if rec.used then
  redis.call('DEL', family)
  return {-1, rec.family}
end
rec.used = true
redis.call('SET', KEYS[1], cjson.encode(rec), 'KEEPTTL')
local successor = {family = rec.family, sub = rec.sub, username = rec.username}
redis.call('SET', KEYS[2], cjson.encode(successor), 'EX', ARGV[1])
redis.call('EXPIRE', family, ARGV[1])
redis.call('ZADD', family .. ':jtis', ARGV[3], ARGV[2])
redis.call('EXPIRE', family .. ':jtis', ARGV[1])
return {1, rec.family, rec.sub, rec.username}
"""


def refresh_key(token: str) -> str:
    # Only a hash is stored: a copy of the data store does not yield usable refresh tokens.
    return "refresh:" + hashlib.sha256(token.encode()).hexdigest()


def family_key(family: str) -> str:
    return "rfamily:" + family


def family_tokens_key(family: str) -> str:
    """Sorted set of the access-token jtis issued in a family, scored by their exp."""
    return family_key(family) + ":jtis"


def _refused() -> ProblemError:
    return unauthorized("Invalid refresh token.")


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int

    def body(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
        }


class Tokens:
    def __init__(
        self,
        keyring: KeyRing,
        data: Redis,
        sessions: Redis,
        metrics: Metrics,
        *,
        issuer: str,
        audience: str,
        access_seconds: int,
        refresh_seconds: int,
        session_idle_seconds: int,
    ) -> None:
        self.keyring = keyring
        self.data = data
        self.sessions = sessions
        self.metrics = metrics
        self.issuer = issuer
        self.audience = audience
        self.access_seconds = access_seconds
        self.refresh_seconds = refresh_seconds
        self.session_idle_seconds = session_idle_seconds
        self._rotate = data.register_script(_ROTATE)

    def sign_access(self, sub: str, username: str, family: str, jti: str, issued: int) -> str:
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "client_id": "authscale",
            "username": username,
            "sid": family,
            "iat": issued,
            "exp": issued + self.access_seconds,
            "jti": jti,
        }
        return jwt.encode(
            claims,
            self.keyring.signing_key,
            algorithm="RS256",
            headers={"kid": self.keyring.signing_kid, "typ": "at+jwt"},
        )

    async def issue(self, user: User) -> TokenPair:
        """A new family: access token plus its first refresh token."""
        family = uuid.uuid4().hex
        refresh = secrets.token_urlsafe(32)
        record = json.dumps({"family": family, "sub": user.id, "username": user.username})
        jti, issued = uuid.uuid4().hex, int(time.time())
        pipe = self.data.pipeline(transaction=True)
        pipe.set(family_key(family), user.id, ex=self.refresh_seconds)
        pipe.set(refresh_key(refresh), record, ex=self.refresh_seconds)
        pipe.zadd(family_tokens_key(family), {jti: issued + self.access_seconds})
        pipe.expire(family_tokens_key(family), self.refresh_seconds)
        await timed(self.metrics, DATA_STORE, "issue_refresh", pipe.execute())
        access = self.sign_access(user.id, user.username, family, jti, issued)
        return TokenPair(access, refresh, self.access_seconds)

    async def rotate(self, refresh: str) -> TokenPair:
        if not refresh or len(refresh) > 256:
            raise _refused()
        successor = secrets.token_urlsafe(32)
        jti, issued = uuid.uuid4().hex, int(time.time())
        result = await timed(
            self.metrics,
            DATA_STORE,
            "rotate_refresh",
            self._rotate(
                keys=[refresh_key(refresh), refresh_key(successor)],
                args=[self.refresh_seconds, jti, issued + self.access_seconds],
            ),
        )
        if result[0] == -1:
            # A spent token came back: someone holds a copy. Its family is dead; so are the
            # access tokens issued in it.
            await self.revoke_family(result[1].decode())
        if result[0] != 1:
            raise _refused()
        family, sub, username = (part.decode() for part in result[1:4])
        access = self.sign_access(sub, username, family, jti, issued)
        return TokenPair(access, successor, self.access_seconds)

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
        pipe.zrangebyscore(family_tokens_key(family), time.time(), "+inf", withscores=True)
        pipe.delete(family_tokens_key(family))
        _, live, _ = await timed(self.metrics, DATA_STORE, "revoke_family", pipe.execute())
        await self.revoke_jtis({jti.decode(): float(exp) for jti, exp in live})

    async def revoke_access(self, principal: Principal) -> None:
        assert principal.jti is not None and principal.exp is not None
        await self.revoke_jtis({principal.jti: float(principal.exp)})

    async def revoke_jtis(self, jtis: dict[str, float]) -> None:
        """Record each jti durably until its exp, then tell every verifier at once.

        The data store's record (AOF, fsync always) is what verifiers reload after a reconnect,
        so it is written first: a revocation outlives a restart of the session store.
        """
        if not jtis:
            return
        durable = self.data.pipeline(transaction=True)
        durable.zadd(REVOKED_SET, jtis)
        durable.zremrangebyscore(REVOKED_SET, "-inf", time.time() - 60)
        await timed(self.metrics, DATA_STORE, "record_revocation", durable.execute())
        push = self.sessions.pipeline(transaction=False)
        for jti, exp in jtis.items():
            push.publish(REVOKED_CHANNEL, f"{jti} {exp}")
        await timed(self.metrics, SESSION_STORE, "revoke_jti", push.execute())

    async def create_session(self, user: User, previous_sid: str | None) -> tuple[str, str]:
        """A fresh session id (never the one the client holds) and its CSRF token."""
        sid = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        record = json.dumps(
            {"sub": user.id, "username": user.username, "csrf": csrf, "created_at": time.time()}
        )
        pipe = self.sessions.pipeline(transaction=True)
        if previous_sid:
            pipe.delete(session_key(previous_sid[:64]))
        pipe.set(session_key(sid), record, ex=self.session_idle_seconds)
        await timed(self.metrics, SESSION_STORE, "create_session", pipe.execute())
        return sid, csrf

    async def delete_session(self, sid: str) -> None:
        await timed(
            self.metrics, SESSION_STORE, "delete_session", self.sessions.delete(session_key(sid))
        )
