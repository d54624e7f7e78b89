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
from services.common.store import REVOKED_CHANNEL, REVOKED_SET, session_key, timed
from services.common.verify import Principal

DATA_STORE = "data_store"
SESSION_STORE = "session_store"

# Spend one refresh token and mint its successor atomically: of two parallel uses exactly one
# wins, and presenting a spent token deletes the family so every token in it stops working.
_ROTATE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return {0} end
local rec = cjson.decode(raw)
local family = 'rfamily:' .. rec.family
if redis.call('EXISTS', family) == 0 then return {0} end
if rec.used then
  redis.call('DEL', family)
  return {-1}
end
rec.used = true
redis.call('SET', KEYS[1], cjson.encode(rec), 'KEEPTTL')
local successor = {family = rec.family, sub = rec.sub, username = rec.username}
redis.call('SET', KEYS[2], cjson.encode(successor), 'EX', ARGV[1])
redis.call('EXPIRE', family, ARGV[1])
return {1, rec.family, rec.sub, rec.username}
"""


def refresh_key(token: str) -> str:
    # Only a hash is stored: a copy of the data store does not yield usable refresh tokens.
    return "refresh:" + hashlib.sha256(token.encode()).hexdigest()


def family_key(family: str) -> str:
    return "rfamily:" + family


def _refused() -> ProblemError:
    return ProblemError(401, "Invalid refresh token.", headers={"WWW-Authenticate": "Bearer"})


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

    def sign_access(self, sub: str, username: str, family: str, now: int | None = None) -> str:
        issued = int(time.time()) if now is None else now
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "client_id": "authscale",
            "username": username,
            "sid": family,
            "iat": issued,
            "exp": issued + self.access_seconds,
            "jti": uuid.uuid4().hex,
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
        pipe = self.data.pipeline(transaction=True)
        pipe.set(family_key(family), user.id, ex=self.refresh_seconds)
        pipe.set(refresh_key(refresh), record, ex=self.refresh_seconds)
        await timed(self.metrics, DATA_STORE, "issue_refresh", pipe.execute())
        return TokenPair(
            self.sign_access(user.id, user.username, family), refresh, self.access_seconds
        )

    async def rotate(self, refresh: str) -> TokenPair:
        if not refresh or len(refresh) > 256:
            raise _refused()
        successor = secrets.token_urlsafe(32)
        result = await timed(
            self.metrics,
            DATA_STORE,
            "rotate_refresh",
            self._rotate(
                keys=[refresh_key(refresh), refresh_key(successor)], args=[self.refresh_seconds]
            ),
        )
        if result[0] != 1:
            raise _refused()
        family, sub, username = (part.decode() for part in result[1:4])
        return TokenPair(self.sign_access(sub, username, family), successor, self.access_seconds)

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
        await timed(self.metrics, DATA_STORE, "revoke_family", self.data.delete(family_key(family)))

    async def revoke_access(self, principal: Principal) -> None:
        """Record the jti until its exp and tell every verifier at once."""
        assert principal.jti is not None and principal.exp is not None
        pipe = self.sessions.pipeline(transaction=True)
        pipe.zadd(REVOKED_SET, {principal.jti: principal.exp})
        pipe.zremrangebyscore(REVOKED_SET, "-inf", time.time() - 60)
        pipe.publish(REVOKED_CHANNEL, f"{principal.jti} {principal.exp}")
        await timed(self.metrics, SESSION_STORE, "revoke_jti", pipe.execute())

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
