"""The session record and its whole life: created and deleted by auth, read and slid by verifiers.

One owner of the record's format (JSON in the session store under keyspace.session_key), of its
timeouts (idle: the key's TTL, slid at most once per SESSION_TOUCH_SECONDS per process; absolute:
created_at + SESSION_ABSOLUTE_SECONDS, checked on every read) and of the message that announces
a session's end on keyspace.SESSIONS_CHANNEL, which verifiers with SESSION_CACHE=push follow.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from redis.exceptions import RedisError

from services.common import tracing
from services.common.keyspace import SESSIONS_CHANNEL, session_key
from services.common.observability import Metrics
from services.common.settings import VerifierSettings
from services.common.store import SESSION_STORE, SessionStore, timed
from services.common.verify.errors import InvalidSession
from services.common.verify.principal import Principal
from services.common.verify.stream import Follower

# Session ids are 32 random bytes, base64url: anything else is refused without a store call.
SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]{43}")


def fingerprint(session_id: str) -> str:
    """What the channel carries for an ended session: never the id itself, which is a secret."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:32]


# KEYS: the session. ARGV: the channel, the session's fingerprint.
_END_SESSION = """
redis.call('DEL', KEYS[1])
return redis.call('PUBLISH', ARGV[1], ARGV[2])
"""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    sub: str
    username: str
    csrf: str
    created_at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> SessionRecord:
        try:
            # The decoder straight on the text: json.loads() on bytes first guesses their
            # encoding in Python, a third of this function's cost on every session check.
            data = _DECODE(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
            sub, username, csrf = str(data["sub"]), str(data["username"]), str(data["csrf"])
            return cls(sub, username, csrf, float(data["created_at"]))
        except (ValueError, KeyError, TypeError):
            raise InvalidSession("corrupt session record") from None


@dataclass(frozen=True, slots=True)
class SessionView:
    """What the owner of a session may see of it: the record without its CSRF token, and when
    it ends (idle: the store's TTL, slid by use; absolute: created_at plus the limit)."""

    sub: str
    username: str
    created_at: float
    idle_expires_at: float
    absolute_expires_at: float


_DECODE = json.JSONDecoder().decode
# Decoded records kept per process (a few hundred bytes each): the sessions checked lately.
DECODED_SIZE = 10_000


@dataclass(slots=True)
class _Entry:
    principal: Principal
    absolute_end: float
    expires_at: float  # when the store's key would expire if nobody used the session


class SessionCache:
    """Recently read sessions (SESSION_CACHE=push), trusted only while the stream is followed.

    An entry goes when its session ends anywhere (the channel's message), when its idle timeout
    or absolute timeout passes, or when the cache is full (oldest first). Losing the
    subscription empties the cache and turns it off until the stream is back.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.enabled = False
        self._entries: dict[str, _Entry] = {}
        self._by_fingerprint: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session_id: str, now: float) -> _Entry | None:
        entry = self._entries.get(session_id)
        if entry is not None and now >= entry.expires_at:
            self.drop(session_id)
            return None
        return entry

    def put(self, session_id: str, entry: _Entry) -> None:
        if not self.enabled:
            return
        if len(self._entries) >= self.size:
            self.drop(next(iter(self._entries)))  # dicts keep insertion order
        self._entries[session_id] = entry
        self._by_fingerprint[fingerprint(session_id)] = session_id

    def drop(self, session_id: str) -> None:
        if self._entries.pop(session_id, None) is not None:
            self._by_fingerprint.pop(fingerprint(session_id), None)

    def follower(self) -> Follower:
        return Follower(SESSIONS_CHANNEL, self.apply, on_connect=self.connected, on_lost=self.lost)

    def apply(self, data: bytes) -> None:
        session_id = self._by_fingerprint.get(data.decode(errors="replace"))
        if session_id is not None:
            self.drop(session_id)

    async def connected(self) -> None:
        self.enabled = True

    def lost(self) -> None:
        self.enabled = False
        self._entries.clear()
        self._by_fingerprint.clear()


class Sessions:
    """Sessions in the session store; every call is bounded and a store failure is a 503."""

    def __init__(
        self,
        redis: SessionStore,
        metrics: Metrics,
        settings: VerifierSettings,
        clock: Callable[[], float],
    ) -> None:
        self.redis = redis
        self.metrics = metrics
        self.settings = settings
        self.clock = clock
        self.cache = (
            SessionCache(settings.session_cache_size) if settings.session_cache == "push" else None
        )
        self._touched: dict[str, float] = {}
        # What a record's exact bytes decode to, per session: the store is still read on every
        # check (a logout is seen at once), only the same bytes are not decoded again.
        self._decoded: dict[tuple[str, bytes | str], tuple[Principal, float]] = {}
        self._background: set[asyncio.Task[object]] = set()
        self._end_script = redis.register_script(_END_SESSION)

    async def create(self, sub: str, username: str, previous: str | None) -> tuple[str, str]:
        """A fresh session id (never the one the client holds) and its CSRF token."""
        sid = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        record = SessionRecord(sub=sub, username=username, csrf=csrf, created_at=self.clock())
        if previous:
            # A planted or old id ends here, in every verifier's cache too. (Its own call: on a
            # cluster the two keys live on different shards.)
            await timed(self.metrics, SESSION_STORE, "end_session", self._end(previous[:64]))
        creation = self.redis.set(
            session_key(sid), record.to_json(), ex=self.settings.session_idle_seconds
        )
        await timed(self.metrics, SESSION_STORE, "create_session", creation)
        return sid, csrf

    async def read(self, session_id: str) -> Principal:
        """The live session's principal, its idle timeout slid; InvalidSession otherwise."""
        if not SESSION_ID_RE.fullmatch(session_id):
            raise InvalidSession("malformed session id")
        now = self.clock()
        cache = self.cache
        if cache is not None and cache.enabled:
            entry = cache.get(session_id, now)
            if entry is not None:
                self.metrics.observe_session_cache("hit")
                tracing.annotate("cache", "hit")
                if now >= entry.absolute_end:
                    await self._end(session_id)
                    raise InvalidSession("session passed its absolute timeout")
                self._touch(session_id, now, entry)
                return entry.principal
            self.metrics.observe_session_cache("miss")
            tracing.annotate("cache", "miss")
        raw = await timed(
            self.metrics, SESSION_STORE, "get", self.redis.get(session_key(session_id))
        )
        if raw is None:
            raise InvalidSession("unknown or expired session")
        decoded = self._decoded.get((session_id, raw))
        if decoded is None:
            decoded = self._decode(session_id, raw)
        principal, absolute_end = decoded
        if now >= absolute_end:
            self._spawn(self._end(session_id))
            raise InvalidSession("session passed its absolute timeout")
        # The key's TTL is not read (a second round trip): the entry trusts the idle timeout
        # from now, which the touch below makes true in the store too.
        entry = _Entry(principal, absolute_end, self._idle_end(now, absolute_end))
        self._touch(session_id, now, entry)
        if cache is not None:
            cache.put(session_id, entry)
        return principal

    def cost(self, session_id: str) -> tuple[str, int]:
        """What read() of this session is about to cost: the cache's answer (hit, miss or off)
        and the store round trips; exact when called just before it (no await between)."""
        if not SESSION_ID_RE.fullmatch(session_id):
            return "off" if self.cache is None else "miss", 0
        cache = self.cache
        if cache is None or not cache.enabled:
            return "off", 1
        if cache.get(session_id, self.clock()) is not None:
            return "hit", 0
        return "miss", 1

    async def describe(self, session_id: str) -> SessionView | None:
        """The record as stored, for its owner (GET /auth/session): never its CSRF token; None
        if the session is gone. The idle end is the key's own TTL, read with the record."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(session_key(session_id))
        pipe.pttl(session_key(session_id))
        raw, pttl = await timed(self.metrics, SESSION_STORE, "describe_session", pipe.execute())
        if raw is None or pttl is None or pttl < 0:
            return None
        record = SessionRecord.from_json(raw)
        now = self.clock()
        absolute_end = record.created_at + self.settings.session_absolute_seconds
        return SessionView(
            sub=record.sub,
            username=record.username,
            created_at=record.created_at,
            idle_expires_at=min(now + pttl / 1000, absolute_end),
            absolute_expires_at=absolute_end,
        )

    def _decode(self, session_id: str, raw: bytes | str) -> tuple[Principal, float]:
        """The principal a record holds and its absolute end, kept for the same bytes."""
        record = SessionRecord.from_json(raw)
        principal = Principal(
            sub=record.sub,
            username=record.username,
            mode="session",
            session_id=session_id,
            csrf=record.csrf,
        )
        decoded = (principal, record.created_at + self.settings.session_absolute_seconds)
        if len(self._decoded) >= DECODED_SIZE:
            del self._decoded[next(iter(self._decoded))]  # the oldest
        self._decoded[(session_id, raw)] = decoded
        return decoded

    async def delete(self, session_id: str) -> None:
        """Logout: the session ends in the store and in every verifier's cache."""
        self._touched.pop(session_id, None)
        await timed(self.metrics, SESSION_STORE, "delete_session", self._end(session_id))

    def _end(self, session_id: str) -> Awaitable[object]:
        """Delete the session and announce it, in one script (one slot, one round trip)."""
        if self.cache is not None:
            self.cache.drop(session_id)
        return self._end_script(
            keys=[session_key(session_id)], args=[SESSIONS_CHANNEL, fingerprint(session_id)]
        )

    def _idle_end(self, now: float, absolute_end: float) -> float:
        return min(now + self.settings.session_idle_seconds, absolute_end)

    def _touch(self, session_id: str, now: float, entry: _Entry) -> None:
        """Slide the idle timeout, at most once per SESSION_TOUCH_SECONDS per process."""
        last = self._touched.get(session_id)
        # Never wait longer than a quarter of the idle timeout, or an active session could lapse.
        interval = min(self.settings.session_touch_seconds, self.settings.session_idle_seconds / 4)
        if last is not None and now - last < interval:
            return
        if len(self._touched) > 100_000:
            self._touched.clear()
        self._touched[session_id] = now
        entry.expires_at = self._idle_end(now, entry.absolute_end)
        ttl = max(math.ceil(entry.expires_at - now), 1)
        self._spawn(self._slide(session_id, ttl))

    async def _slide(self, session_id: str, ttl: int) -> None:
        # EXPIRE on a deleted key does nothing, so a logout is never undone; and a key found
        # gone means this process missed its end: forget the cached copy.
        if not await self.redis.expire(session_key(session_id), ttl) and self.cache is not None:
            self.cache.drop(session_id)

    def _spawn(self, call: Awaitable[object]) -> None:
        """Fire and forget one bounded store call; its failure is not the request's."""

        async def run() -> object:
            try:
                async with asyncio.timeout(self.settings.store_timeout_seconds):
                    return await call
            except (RedisError, OSError, TimeoutError):
                return None

        task: asyncio.Task[object] = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def close(self) -> None:
        for task in list(self._background):
            task.cancel()
