"""The pushed denylist of revoked access tokens (JWT_REVOCATION=push): both sides, one format.

Publish side (auth): each revoked jti is recorded durably in the data store until its exp, then
announced on the session store's channel. Follow side (every verifier): an in-memory list fed by
the channel (verify.stream) and reloaded whole from the durable record at start and after every
reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common.keyspace import REVOKED_CHANNEL, REVOKED_SET
from services.common.observability import Metrics
from services.common.store import DATA_STORE, SESSION_STORE, SessionStore, make_redis, timed
from services.common.verify.stream import Follower

log = logging.getLogger("authscale.verify")


def message(jtis: dict[str, float]) -> str:
    """One message on the channel for a batch of revocations: a "<jti> <exp>" line each."""
    return "\n".join(f"{jti} {exp}" for jti, exp in jtis.items())


def parse_message(data: object) -> list[tuple[str, float]] | None:
    text = data.decode() if isinstance(data, bytes) else str(data)
    entries = []
    for line in text.splitlines():
        jti, _, exp = line.partition(" ")
        try:
            entries.append((jti, float(exp)))
        except ValueError:
            return None
    return entries or None


async def publish(
    data: Redis,
    sessions: SessionStore,
    metrics: Metrics,
    jtis: dict[str, float],
    *,
    now: float,
) -> None:
    """Record each jti durably until its exp, then tell every verifier at once.

    The data store's record (AOF, fsync always) is what verifiers reload after a reconnect, so
    it is written first: a revocation outlives a restart of the session store. The batch goes
    out as one message (one command; a cluster refuses PUBLISH inside a pipeline).
    """
    if not jtis:
        return
    durable = data.pipeline(transaction=True)
    durable.zadd(REVOKED_SET, jtis)
    durable.zremrangebyscore(REVOKED_SET, "-inf", now - 60)
    await timed(metrics, DATA_STORE, "record_revocation", durable.execute())
    await timed(
        metrics, SESSION_STORE, "revoke_jti", sessions.publish(REVOKED_CHANNEL, message(jtis))
    )


class RevocationList:
    """Revoked jtis held in memory (JWT_REVOCATION=push).

    Fed by the session store's channel (the fast path, see verify.stream) and loaded whole from
    the durable record in the data store at start and after every reconnect, so a session store
    that restarts empty never brings a revoked token back.
    """

    def __init__(self, durable_url: str, timeout: float, clock: Callable[[], float]) -> None:
        self.durable_url = durable_url
        self.timeout = timeout
        self.durable: Redis | None = None
        self.clock = clock
        self.revoked: dict[str, float] = {}
        self.connected = asyncio.Event()
        # Loaded from the durable record at least once: until then no token can be judged
        # against the list (a restarted verifier would accept every revoked token).
        self.loaded = False
        self._last_prune = clock()

    def __contains__(self, jti: str) -> bool:
        return jti in self.revoked

    def add(self, jti: str, exp: float) -> None:
        now = self.clock()
        if exp > now:
            self.revoked[jti] = exp
        if now - self._last_prune > 60:
            self.prune()

    def prune(self) -> None:
        now = self._last_prune = self.clock()
        self.revoked = {jti: exp for jti, exp in self.revoked.items() if exp > now}

    def follower(self) -> Follower:
        """How the push stream feeds this list."""
        return Follower(REVOKED_CHANNEL, self.apply, on_connect=self.reload, on_lost=self.lost)

    async def start(self) -> None:
        """Open the durable record and load it once now, so that a verifier starting while the
        session store (the stream that reloads it on connect) is down can still judge tokens."""
        self.durable = make_redis(self.durable_url, self.timeout)
        try:
            await self._load()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("revocation record not loaded at start: %s", type(exc).__name__)

    async def close(self) -> None:
        if self.durable is not None:
            await self.durable.aclose()

    async def reload(self) -> None:
        """Replace the list with the durable record; on failure the old list stays."""
        await self._load()
        self.connected.set()

    async def _load(self) -> None:
        assert self.durable is not None
        entries = await self.durable.zrangebyscore(
            REVOKED_SET, self.clock(), "+inf", withscores=True
        )
        revoked: dict[str, float] = {}
        for jti, score in cast(list[tuple[bytes, float]], entries):
            revoked[jti.decode()] = float(score)
        self.revoked = revoked
        self.loaded = True

    def lost(self) -> None:
        # Keep what we have (it is still true); reload() on reconnect adds what was missed.
        self.connected.clear()

    def apply(self, data: object) -> None:
        parsed = parse_message(data)
        if parsed is None:
            log.warning("ignoring malformed revocation message")
            return
        for jti, exp in parsed:
            self.add(jti, exp)
