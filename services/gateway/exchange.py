"""The hybrid design at the edge: a session-cookie request goes downstream with an internal JWT.

The gateway authenticates the session (through the verifier, with its session cache when
SESSION_CACHE=push) and checks CSRF itself; then it sends `Authorization: Bearer <internal>`
instead of the cookie. Internal tokens come from auth's exchange endpoint and are cached per
session until shortly before they expire, so in steady state a request costs no exchange.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from prometheus_client import Counter

from services.common import exchange
from services.common.observability import Metrics
from services.common.problems import ProblemError
from services.common.verify import InvalidSession
from services.gateway.proxy import Proxy, UpstreamPool

log = logging.getLogger("authscale.gateway")

# Refetch this long before exp, so a token never expires on its way through the hops.
REFRESH_MARGIN_SECONDS = 10.0
CACHE_SIZE = 10_000


class TokenExchange:
    """Internal tokens by session id: cached, fetched once per session however many wait."""

    def __init__(
        self,
        proxy: Proxy,
        auth: UpstreamPool,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self.proxy = proxy
        self.auth = auth
        self.clock = clock
        self._cache: dict[str, tuple[str, float]] = {}  # session id -> (token, refetch at)
        self._pending: dict[str, asyncio.Future[str]] = {}
        self._counter = Counter(
            "token_exchanges_total",
            "Internal tokens fetched from auth (miss) or served from the gateway's cache (hit)",
            ["service", "result"],
            registry=metrics.registry,
        )
        self._hits = self._counter.labels(metrics.service, "hit")
        self._misses = self._counter.labels(metrics.service, "miss")

    async def token_for(self, session_id: str, deadline: float | None = None) -> str:
        """The session's internal token, from the cache or fetched from auth within `deadline`
        (loop time; the client request's, so the exchange and the forward share one)."""
        cached = self._cache.get(session_id)
        if cached is not None and self.clock() < cached[1]:
            self._hits.inc()
            return cached[0]
        pending = self._pending.get(session_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[session_id] = future
        try:
            token = await self._fetch(session_id, deadline)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        else:
            future.set_result(token)
            return token
        finally:
            del self._pending[session_id]

    async def _fetch(self, session_id: str, deadline: float | None) -> str:
        self._misses.inc()
        headers = [("Content-Type", "application/json")]
        body = json.dumps(exchange.request_body(session_id)).encode()
        status, payload, _ = await self.proxy.send(
            "POST",
            self.auth,
            exchange.TOKEN_EXCHANGE_PATH,
            headers,
            body,
            resend=True,
            deadline=deadline,
        )
        if status == 400:
            # The session ended between the gateway's check and the exchange.
            raise InvalidSession("session ended before its token exchange")
        if status != 200:
            log.warning("token exchange answered %d", status)
            raise ProblemError(503, "Cannot reach the auth service.", headers={"Retry-After": "1"})
        answer = json.loads(payload)
        token, lifetime = str(answer["access_token"]), float(answer["expires_in"])
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))
        refetch_at = self.clock() + max(lifetime - REFRESH_MARGIN_SECONDS, lifetime / 2)
        self._cache[session_id] = (token, refetch_at)
        return token
