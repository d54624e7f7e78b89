"""Reverse proxying: path policing, header hygiene, replica pools with health checks, failover."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import (
    ClientConnectorError,
    ClientError,
    ClientSession,
    ClientTimeout,
    ConnectionTimeoutError,
    web,
)
from multidict import CIMultiDict
from yarl import URL

from services.common.observability import REQUEST_ID_HEADER, Metrics, request_id_key
from services.common.problems import ProblemError, read_body

log = logging.getLogger("authscale.gateway")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Headers a client could use to claim an identity the services might trust: never forwarded.
IDENTITY_PREFIXES = (
    "x-user",
    "x-auth",
    "x-remote-user",
    "x-forwarded-user",
    "x-principal",
    "x-sub",
)
NOT_FORWARDED = frozenset({"host", "content-length", "x-forwarded-for", "forwarded", "x-real-ip"})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Plain segments only: no percent-encoding, no backslash, no empty, "." or ".." segment.
_PATH = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)+")


def check_path(raw_path: str) -> str:
    """The raw request path, if every segment is plain; otherwise a 400 problem."""
    path = raw_path.partition("?")[0]
    if _PATH.fullmatch(path) is None:
        raise ProblemError(400, "Malformed request path.")
    return path


# What the client would not send byte for byte: non-UTF-8 bytes (kept by the server as lone
# surrogates, silently dropped by the client) and control characters (the client refuses them).
_UNFORWARDABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")


def check_forwardable(request: web.Request) -> None:
    """A 400 problem unless every header would reach the upstream exactly as it arrived."""
    for name, value in request.headers.items():
        # isprintable() is a fast C scan that is False for every character the pattern names
        # (and for a few harmless ones, which the pattern then clears).
        if not value.isprintable() and _UNFORWARDABLE.search(value):
            # The name is a parsed token (no echo risk), shortened so the answer stays small.
            raise ProblemError(400, f"Header {name[:64]} holds bytes that cannot be forwarded.")


_DROPPED = HOP_BY_HOP | NOT_FORWARDED


def forward_headers(request: web.Request) -> CIMultiDict[str]:
    dropped = _DROPPED
    connection = request.headers.getall("Connection", ())
    if connection:
        # Headers the client named in Connection are hop-by-hop too (RFC 9110 7.6.1).
        dropped = dropped | {t.strip().lower() for v in connection for t in v.split(",")}
    headers: CIMultiDict[str] = CIMultiDict(
        (name, value)
        for name, value in request.headers.items()
        if (lower := name.lower()) not in dropped and not lower.startswith(IDENTITY_PREFIXES)
    )
    if request.remote:
        headers["X-Forwarded-For"] = request.remote
    headers[REQUEST_ID_HEADER] = request[request_id_key]
    return headers


# Set by the gateway's own server for its answer, not copied from the upstream's.
_OWN_RESPONSE_HEADERS = HOP_BY_HOP | {"content-length", "server", "date"}


def response_headers(upstream: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    return CIMultiDict(
        (name, value) for name, value in upstream if name.lower() not in _OWN_RESPONSE_HEADERS
    )


@dataclass
class Replica:
    url: URL
    healthy: bool = True
    base: str = field(init=False)  # the URL as text without a trailing "/", to append a target to

    def __post_init__(self) -> None:
        self.base = str(self.url).rstrip("/")


@dataclass
class UpstreamPool:
    """Replicas of one service, balanced round-robin over the healthy ones."""

    name: str
    configured: tuple[str, ...]
    replicas: list[Replica] = field(default_factory=list)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        if not self.replicas:
            self.replicas = [Replica(URL(u)) for u in self.configured]

    def order(self) -> list[Replica]:
        """Every replica once, healthy ones first, starting at the next round-robin position."""
        replicas = self.replicas
        if not replicas:
            return []
        start = next(self._counter) % len(replicas)
        rotated = replicas[start:] + replicas[:start]
        healthy = [r for r in rotated if r.healthy]
        if len(healthy) == len(rotated):
            return rotated
        return healthy + [r for r in rotated if not r.healthy]

    async def resolve(self) -> None:
        """Expand each configured host to all of its addresses (compose DNS lists every replica)."""
        loop = asyncio.get_running_loop()
        fresh: list[Replica] = []
        for configured in self.configured:
            url = URL(configured)
            assert url.host is not None
            try:
                infos = await loop.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM)
            except OSError as exc:
                log.warning("cannot resolve %s: %s", url.host, exc)
                continue
            for address in sorted({str(info[4][0]) for info in infos}):
                host = f"[{address}]" if ":" in address else address
                fresh.append(Replica(URL(f"{url.scheme}://{host}:{url.port}")))
        if fresh:
            known = {r.url: r.healthy for r in self.replicas}
            self.replicas = [Replica(r.url, known.get(r.url, True)) for r in fresh]


class Proxy:
    def __init__(
        self, client: ClientSession, metrics: Metrics, *, timeout: float, connect_timeout: float
    ) -> None:
        self.client = client
        self.metrics = metrics
        # connect= would also count the wait for a free pooled connection, so a burst of slow
        # answers would read as a dead replica; only the TCP connect itself is bounded tightly.
        self.timeout = ClientTimeout(total=timeout, sock_connect=connect_timeout)

    async def forward(
        self,
        request: web.Request,
        pool: UpstreamPool,
        path: str,
        *,
        credential: str | None = None,
    ) -> web.Response:
        """Send the request to a replica and answer with its response.

        credential: an Authorization value to send instead of the client's cookies (the hybrid
        forwards an internal token in place of the session cookie).
        """
        body = await read_body(request) if request.can_read_body else None
        headers = forward_headers(request)
        if credential is not None:
            headers.popall("Cookie", None)
            headers["Authorization"] = credential
        query = request.raw_path.partition("?")[2]
        target = path + ("?" + query if query else "")
        retry_any = request.method in IDEMPOTENT or "Idempotency-Key" in request.headers
        status, payload, upstream_headers = await self.send(
            request.method, pool, target, headers, body, retry_any=retry_any
        )
        return web.Response(status=status, body=payload, headers=upstream_headers)

    async def send(
        self,
        method: str,
        pool: UpstreamPool,
        target: str,
        headers: CIMultiDict[str],
        body: bytes | None,
        *,
        retry_any: bool,
    ) -> tuple[int, bytes, CIMultiDict[str]]:
        """One request to the pool: replicas in order, failing over while it is safe to.

        Answers the status, the whole body (read at once: the contract's bodies are small and
        bounded) and the response headers fit to forward.
        """
        last_error = "no replica configured"
        for replica in pool.order():
            url = URL(replica.base + target, encoded=True)
            try:
                async with self.client.request(
                    method,
                    url,
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    timeout=self.timeout,
                ) as upstream:
                    payload = await upstream.read()
                    self.metrics.observe_upstream(pool.name, "ok")
                    return upstream.status, payload, response_headers(upstream.headers.items())
            except (ClientConnectorError, ConnectionTimeoutError) as exc:
                # Never connected: safe to try another replica for any method.
                replica.healthy = False
                last_error = type(exc).__name__
            except (ClientError, TimeoutError) as exc:
                # A slow or broken answer is not a dead replica: the health probes decide that,
                # so a busy replica is not taken out of rotation by its own load.
                last_error = type(exc).__name__
                if not retry_any:
                    self.metrics.observe_upstream(pool.name, "error")
                    log.warning(
                        "upstream %s failed after sending a non-idempotent request: %s",
                        pool.name,
                        last_error,
                    )
                    raise ProblemError(502, f"The {pool.name} service failed to answer.") from None
            self.metrics.observe_upstream(pool.name, "retry")
            log.warning(
                "upstream %s replica %s failed (%s); trying the next",
                pool.name,
                replica.url,
                last_error,
            )
        self.metrics.observe_upstream(pool.name, "unavailable")
        raise ProblemError(502, f"No {pool.name} replica answered.", headers={"Retry-After": "1"})


async def health_loop(
    client: ClientSession, pools: list[UpstreamPool], interval: float, dns_every: float
) -> None:
    """Actively probe every replica's /healthz; resolve names again every dns_every seconds."""
    timeout = ClientTimeout(total=min(0.5, interval))
    loop = asyncio.get_running_loop()
    last_dns = float("-inf")

    async def probe(replica: Replica) -> None:
        try:
            async with client.get(
                replica.url.with_path("/healthz"), timeout=timeout, allow_redirects=False
            ) as r:
                healthy = r.status == 200
        except (ClientError, TimeoutError):
            healthy = False
        if healthy != replica.healthy:
            log.warning("replica %s is now %s", replica.url, "healthy" if healthy else "down")
        replica.healthy = healthy

    while True:
        if dns_every and loop.time() - last_dns >= dns_every:
            last_dns = loop.time()
            for pool in pools:
                await pool.resolve()
        with contextlib.suppress(Exception):
            await asyncio.gather(*(probe(r) for pool in pools for r in pool.replicas))
        await asyncio.sleep(interval)
