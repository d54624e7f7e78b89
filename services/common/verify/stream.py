"""The session store's push channels, followed by one subscription per verifier.

What a verifier keeps in memory from a channel (revoked jtis, cached sessions) is only as good
as its subscription: messages published while it is down are lost. So each follower says what
to do once subscribed (reload, start caching) and what to do when the subscription is lost
(stop trusting what it holds). redis-py would resubscribe silently; this client has no retries,
so every reconnect is seen and the hooks run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common.store import cluster_nodes, make_redis

log = logging.getLogger("authscale.verify")

READ_SECONDS = 1.0  # one wait for a message; the loop looks at `_closing` between two


@dataclass(frozen=True, slots=True)
class Follower:
    channel: str
    on_message: Callable[[bytes], None]
    on_connect: Callable[[], Awaitable[None]] | None = None
    on_lost: Callable[[], None] | None = None


class PushStream:
    """Subscribes to every followed channel; reconnects with backoff, running the hooks."""

    def __init__(self, url: str, timeout: float) -> None:
        # On a Redis Cluster a PUBLISH reaches subscribers on every node, so one subscription
        # to any node will do; after losing it, the next node is tried.
        self.urls = cluster_nodes(url) or [url]
        self.timeout = timeout
        self.followers: list[Follower] = []
        self.connected = asyncio.Event()
        self.redis: Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def follow(self, follower: Follower) -> None:
        self.followers.append(follower)

    async def start(self) -> None:
        if not self.followers:
            return
        self._closing = False
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop following, within a few seconds whatever the stream is doing.

        A cancellation can be lost under the loop (seen here under CPU load: a stream's task
        went on reading after cancel(), and close() waited for it forever), so the loop also
        stops on `_closing` at its next turn (every wait in it is bounded: a read by
        READ_SECONDS, a store call by the timeout, a backoff by 2 s), and the task is
        cancelled again while it runs."""
        self._closing = True
        task = self._task
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=READ_SECONDS)
        if not task.cancelled() and task.exception() is not None:
            log.warning("push stream ended with %s", type(task.exception()).__name__)
        if self.redis is not None:
            await self.redis.aclose()

    async def _run(self) -> None:
        handlers = {f.channel.encode(): f.on_message for f in self.followers}
        backoff = 0.1
        for attempt in itertools.count():
            if self._closing:
                return
            if self.redis is not None:
                await self.redis.aclose()
            self.redis = make_redis(self.urls[attempt % len(self.urls)], self.timeout, retries=0)
            pubsub = self.redis.pubsub()
            try:
                # Subscribe first, then reload: a message published in between is not lost.
                await pubsub.subscribe(*(f.channel for f in self.followers))
                for follower in self.followers:
                    if follower.on_connect is not None:
                        await follower.on_connect()
                self.connected.set()
                backoff = 0.1
                while not self._closing:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=READ_SECONDS
                    )
                    if message is not None and message.get("type") == "message":
                        handler = handlers.get(message["channel"])
                        if handler is not None:
                            handler(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                if self.connected.is_set():
                    log.warning("push stream lost, reconnecting: %s", type(exc).__name__)
                self.connected.clear()
                for follower in self.followers:
                    if follower.on_lost is not None:
                        follower.on_lost()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
