"""Accounts in the data store, argon2id hashing off the event loop, and failed-login limiting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import unicodedata
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis

from services.common.keyspace import login_failures_key, user_key, username_key
from services.common.observability import Metrics
from services.common.problems import ProblemError
from services.common.store import DATA_STORE, SESSION_STORE, SessionStore, timed
from services.common.verify import LoginRefused

T = TypeVar("T")
USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,64}")
PASSWORD_MIN, PASSWORD_MAX = 8, 256

# Index and record are written by one script so a crash never leaves one without the other.
_CREATE_USER = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    password_hash: str
    active: bool = True

    def public(self) -> dict[str, str]:
        return {"id": self.id, "username": self.username}


def validate_credentials(body: dict[str, object]) -> tuple[str, str]:
    """Shape check shared by sign-up and login: two strings, or 422."""
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ProblemError(422, "Body needs string fields 'username' and 'password'.")
    if has_control_characters(username) or has_control_characters(password):
        raise ProblemError(422, "'username' and 'password' must not contain control characters.")
    return username, password


def has_control_characters(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def validate_new_account(username: str, password: str) -> None:
    if not USERNAME_RE.fullmatch(username):
        raise ProblemError(422, "Username must be 3-64 characters of A-Z, a-z, 0-9, '_', '.', '-'.")
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise ProblemError(422, f"Password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters.")


# Reserve one failure before the password is checked, so parallel attempts cannot all pass the
# limit check first. KEYS[1]: the account's counter; ARGV: window seconds, max failures.
# Returns {count, seconds left in the window}; count > max means locked out.
_RESERVE_ATTEMPT = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1], 'NX')
if n > tonumber(ARGV[2]) then
  return {n, redis.call('TTL', KEYS[1])}
end
return {n, 0}
"""


class LoginsShed(ProblemError):
    """Password hashing is saturated: the login waited LOGIN_QUEUE_SECONDS and is refused."""

    def __init__(self) -> None:
        super().__init__(
            503, "Too many logins at once; try again shortly.", headers={"Retry-After": "1"}
        )


class Users:
    def __init__(
        self,
        data: Redis,
        sessions: SessionStore,
        metrics: Metrics,
        hasher: PasswordHasher,
        *,
        max_failures: int,
        window_seconds: int,
        queue_seconds: float = 1.0,
        hash_workers: int = 2,
    ) -> None:
        self.data = data
        self.sessions = sessions
        self.metrics = metrics
        self.hasher = hasher
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.queue_seconds = queue_seconds
        self._pool = ThreadPoolExecutor(max_workers=hash_workers, thread_name_prefix="argon2")
        # One slot per hashing thread: a hash waits here (bounded), not in the pool's queue,
        # so a flood is shed instead of delaying every login behind it.
        self._slots = asyncio.Semaphore(hash_workers)
        self._create = data.register_script(_CREATE_USER)
        self._reserve = sessions.register_script(_RESERVE_ATTEMPT)
        self._dummy_hash = ""

    async def start(self) -> None:
        # A real hash to verify against for unknown users, so their timing matches real ones.
        self._dummy_hash = await self._run(self.hasher.hash, uuid.uuid4().hex)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: str) -> T:
        """Run one argon2 call on the hashing threads, or shed it after LOGIN_QUEUE_SECONDS."""
        try:
            async with asyncio.timeout(self.queue_seconds):
                await self._slots.acquire()
        except TimeoutError:
            self.metrics.logins_shed.labels(self.metrics.service).inc()
            raise LoginsShed() from None
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, fn, *args)
        finally:
            self._slots.release()

    async def create(self, username: str, password: str) -> User:
        validate_new_account(username, password)
        password_hash = await self._run(self.hasher.hash, password)
        user = User(id=uuid.uuid4().hex, username=username, password_hash=password_hash)
        record = json.dumps(
            {
                "id": user.id,
                "username": username,
                "hash": password_hash,
                "active": True,
                "created_at": time.time(),
            }
        )
        created = await timed(
            self.metrics,
            DATA_STORE,
            "create_user",
            self._create(keys=[username_key(username), user_key(user.id)], args=[user.id, record]),
        )
        if not created:
            raise ProblemError(409, "That username is taken.")
        return user

    async def get(self, user_id: str) -> User | None:
        raw = await timed(self.metrics, DATA_STORE, "get_user", self.data.get(user_key(user_id)))
        if raw is None:
            return None
        data = json.loads(raw)
        return User(
            id=data["id"],
            username=data["username"],
            password_hash=data["hash"],
            active=bool(data.get("active", True)),
        )

    async def find(self, username: str) -> User | None:
        user_id = await timed(
            self.metrics, DATA_STORE, "get_username", self.data.get(username_key(username))
        )
        if user_id is None:
            return None
        return await self.get(user_id.decode() if isinstance(user_id, bytes) else user_id)

    async def login(self, username: str, password: str) -> User:
        """Check a password under the per-account failure limit; 401 and 429 reveal nothing.

        Each attempt reserves a failure before the hash is checked (atomically, in the session
        store) and settles it after: a success clears the count, anything that is not a
        verdict on the password (a shed login, a store error) gives the reservation back.
        """
        if len(username) > 64 or len(password) > PASSWORD_MAX:
            # Never a valid account; refuse before hashing an attacker-sized input.
            raise LoginRefused()
        failures_key = login_failures_key(username)
        count, retry_after = await timed(
            self.metrics,
            SESSION_STORE,
            "reserve_attempt",
            self._reserve(keys=[failures_key], args=[self.window_seconds, self.max_failures]),
        )
        if int(count) > self.max_failures:
            raise ProblemError(
                429,
                "Too many failed logins for this account; try again later.",
                headers={"Retry-After": str(max(int(retry_after), 1))},
            )
        try:
            user = await self.find(username) if USERNAME_RE.fullmatch(username) else None
            ok = await self._verify(user.password_hash if user else self._dummy_hash, password)
        except ProblemError:
            with contextlib.suppress(ProblemError):
                await timed(
                    self.metrics, SESSION_STORE, "release_attempt", self.sessions.decr(failures_key)
                )
            raise
        if user is None or not ok or not user.active:
            raise LoginRefused()  # the reserved failure stands
        await timed(
            self.metrics, SESSION_STORE, "reset_failures", self.sessions.delete(failures_key)
        )
        return user

    async def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return await self._run(self.hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
