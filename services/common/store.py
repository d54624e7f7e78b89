"""Redis clients with bounded timeouts, and timed store calls whose failures become 503s."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import TypeVar
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from services.common.observability import Metrics
from services.common.problems import ProblemError

T = TypeVar("T")
log = logging.getLogger("authscale.store")

# Store names, as metric labels and in error messages.
SESSION_STORE = "session_store"
DATA_STORE = "data_store"


class StoreUnavailable(ProblemError):
    """A Redis store did not answer in time; the client gets 503, never 401."""

    def __init__(self, store: str) -> None:
        super().__init__(
            503,
            f"The {store} is unavailable; try again shortly.",
            headers={"Retry-After": "1"},
        )
        self.store = store


# The session store is one Redis, or a Redis Cluster named by several comma-separated URLs.
SessionStore = Redis | RedisCluster


def cluster_nodes(url: str) -> list[str]:
    """The node URLs of a cluster URL (`redis://a:7000,redis://b:7001,...`), else []."""
    nodes = [part.strip() for part in url.split(",") if part.strip()]
    return nodes if len(nodes) > 1 else []


def make_session_store(url: str, timeout: float) -> SessionStore:
    """A client for the session store: plain, or cluster-aware when the URL lists several nodes.

    Cluster errors (a moved slot, a primary failing over) are retried once and then surface as
    503s like any store failure; slots on healthy primaries keep working meanwhile.
    """
    nodes = cluster_nodes(url)
    if not nodes:
        return make_redis(url, timeout)
    startup = []
    for node in nodes:
        parsed = urlsplit(node)
        startup.append(ClusterNode(parsed.hostname or "127.0.0.1", parsed.port or 6379))
    return RedisCluster(
        startup_nodes=startup,
        require_full_coverage=False,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        max_connections=256,
    )


def make_redis(url: str, timeout: float, *, retries: int = 1) -> Redis:
    """A pooled client whose every call is bounded: connect and read time out, one quick retry.

    retries=0 makes a dropped connection an error the caller sees (a subscriber that must know
    when it reconnected, because messages sent in between are lost).
    """
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One immediate retry on a dropped connection (a pooled socket after a store restart).
        # Timeouts are not retried, so socket_timeout bounds every call: no extra deadline needed
        # on the hot path.
        retry=Retry(NoBackoff(), retries, supported_errors=(RedisConnectionError,)),
        retry_on_error=[RedisConnectionError],
        health_check_interval=0,
        max_connections=256,
    )


async def timed(metrics: Metrics, store: str, op: str, call: Awaitable[T]) -> T:
    """Await one store call (bounded by the client's socket timeouts); failures become 503."""
    start = time.perf_counter()
    try:
        result = await call
    except (RedisError, OSError, TimeoutError) as exc:
        metrics.observe_store(store, op, "error", time.perf_counter() - start)
        log.warning("%s %s failed: %s", store, op, type(exc).__name__)
        raise StoreUnavailable(store.replace("_", " ")) from None
    metrics.observe_store(store, op, "ok", time.perf_counter() - start)
    return result
