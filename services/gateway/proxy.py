"""Reverse proxying: path policing, header hygiene, replica pools with health checks, failover."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import socket
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from yarl import URL

from services.common import tracing
from services.common.observability import REQUEST_ID_HEADER, Metrics, request_id_key
from services.common.problems import ProblemError, read_body
from services.common.requests import valid_host
from services.gateway.upstream import (
    HOP_BY_HOP,
    Address,
    AnswerFailed,
    ConnectFailed,
    NotSent,
    Unsendable,
    UpstreamClient,
    UpstreamError,
)

log = logging.getLogger("authscale.gateway")

# Headers a client could use to claim an identity the services might trust: never forwarded.
IDENTITY_PREFIXES = (
    "x-user",
    "x-auth",
    "x-remote-user",
    "x-forwarded-user",
    "x-principal",
    "x-sub",
)
# The gateway has read the whole body before it forwards, so Expect (100-continue) is answered.
# The X-Forwarded fields are the gateway's own (set below, whatever the client sent), and the
# method and URL overrides some frameworks honour would let a client re-route a request past
# the gateway's decisions.
NOT_FORWARDED = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-server",
        "forwarded",
        "x-real-ip",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
    }
)
# Fields the gateway reads to decide (route, credential, CSRF, retry, framing, tracing): a
# request whose Connection names one is refused, so the gateway never decides on a field it
# would then strip as hop-by-hop (RFC 9110 7.6.1) and the upstream would never see.
DECIDING = frozenset(
    {
        "authorization",
        "cookie",
        "x-csrf-token",
        "idempotency-key",
        "host",
        "content-length",
        "transfer-encoding",
        REQUEST_ID_HEADER.lower(),
        "traceparent",
        "tracestate",
    }
)
# Safe to send to another replica after a failed attempt that may have been processed.
RESENDABLE = frozenset({"GET", "HEAD"})
# Plain segments only: no percent-encoding, no backslash, no empty, "." or ".." segment.
_PATH = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)+")


_ABSOLUTE = re.compile(r"[Hh][Tt][Tt][Pp][Ss]?://[^/?#]*")


def origin_form(raw_target: str) -> str:
    """The origin-form of a request target: an absolute-form one (`http://host/orders?x`, which
    a server must accept, RFC 9112 3.2.2) without its scheme and authority."""
    if raw_target[:1] == "/":
        return raw_target
    absolute = _ABSOLUTE.match(raw_target)
    if absolute is None:
        raise ProblemError(400, "Malformed request target.")
    return raw_target[absolute.end() :] or "/"


def check_path(raw_path: str) -> str:
    """The raw request path, if every segment is plain; otherwise a 400 problem."""
    path = raw_path.partition("?")[0]
    if _PATH.fullmatch(path) is None:
        raise ProblemError(400, "Malformed request path.")
    return path


# What the client would not send byte for byte: non-UTF-8 bytes (kept by the server as lone
# surrogates, silently dropped by the client) and control characters (the client refuses them).
_UNFORWARDABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")


def connection_tokens(value: str) -> set[str]:
    """The field names (lower case) one Connection field value lists."""
    return {token.strip().lower() for token in value.split(",")}


def check_connection(values: Iterable[str]) -> None:
    """A 400 problem if a Connection field names a field the gateway decides on (DECIDING)."""
    for value in values:
        named = connection_tokens(value) & DECIDING
        if named:
            raise ProblemError(
                400, f"Connection names {sorted(named)[0]}, which the gateway must forward."
            )


def check_forwardable(request: web.Request) -> None:
    """A 400 problem unless every header would reach the upstream exactly as it arrived and
    Connection names none of the fields the gateway decides on."""
    check_connection(request.headers.getall("Connection", ()))
    for name, value in request.headers.items():
        # isprintable() is a fast C scan that is False for every character the pattern names
        # (and for a few harmless ones, which the pattern then clears).
        if not value.isprintable() and _UNFORWARDABLE.search(value):
            # The name is a parsed token (no echo risk), shortened so the answer stays small.
            raise ProblemError(400, f"Header {name[:64]} holds bytes that cannot be forwarded.")


_DROPPED = HOP_BY_HOP | NOT_FORWARDED
_DROPPED_WITH_ID = _DROPPED | {REQUEST_ID_HEADER.lower()}


Headers = list[tuple[str, str]]  # name, value pairs in order, as they go on the wire


def forward_headers(request: web.Request) -> Headers:
    host = None
    if request.raw_path[:1] != "/":  # absolute-form: its authority is the Host (RFC 9112 3.2.2)
        authority = URL(request.raw_path).raw_authority
        if not valid_host(authority):  # userinfo ("user@host") or worse
            raise ProblemError(400, "The request target's authority is not a host and port.")
        host = authority
    return forward_fields(request.headers.items(), request.remote, request[request_id_key], host)


def forward_fields(
    fields: Iterable[tuple[str, str]],
    remote: str | None,
    request_id: str,
    host: str | None = None,
) -> Headers:
    """What goes upstream of a client's header fields: no hop-by-hop field (nor one Connection
    names), no identity claim, no forwarding field of the client's; then the gateway's own
    X-Forwarded-For (the peer), X-Forwarded-Host (`host`, else the client's Host) and
    X-Forwarded-Proto, and the request id."""
    headers = []
    named: set[str] = set()  # what Connection names (hop-by-hop too, RFC 9110 7.6.1)
    for name, value in fields:
        lower = name.lower()
        if lower == "connection":
            named |= connection_tokens(value)
        elif lower == "host":
            host = host or value
        elif (
            lower not in _DROPPED_WITH_ID
            and not lower.startswith(IDENTITY_PREFIXES)
            # A CGI-style upstream reads X_Forwarded_For as X-Forwarded-For: names with an
            # underscore are dropped, as nginx does by default (underscores_in_headers off).
            and "_" not in lower
        ):
            headers.append((name, value))
    if named:
        headers = [(n, v) for n, v in headers if n.lower() not in named]
    if remote:
        headers.append(("X-Forwarded-For", remote))
    if host:  # checked by the input rules (valid_host) before any handler runs
        headers.append(("X-Forwarded-Host", host))
    headers.append(("X-Forwarded-Proto", "http"))  # the gateway listens for plain HTTP only
    headers.append((REQUEST_ID_HEADER, request_id))
    return headers


def replace_header(headers: Headers, name: str, value: str | None) -> Headers:
    """`headers` without any `name` field, and with `name: value` at the end unless None."""
    lower = name.lower()
    kept = [(n, v) for n, v in headers if n.lower() != lower]
    return kept if value is None else [*kept, (name, value)]


# Set by the gateway's own server for its answer, not copied from the upstream's.
# (The client's answers hold end-to-end fields only: it drops the hop-by-hop ones itself.)
_OWN_RESPONSE_HEADERS = frozenset({"content-length", "server", "date", REQUEST_ID_HEADER.lower()})


# With SERVER_TIMING off at the gateway, no upstream's Server-Timing reaches a client either.
_OWN_WITHOUT_TIMINGS = _OWN_RESPONSE_HEADERS | {"server-timing"}


def response_headers(
    upstream: Iterable[tuple[str, str]], own: frozenset[str] = _OWN_RESPONSE_HEADERS
) -> Headers:
    return [(name, value) for name, value in upstream if name.lower() not in own]


@dataclass
class Replica:
    url: URL
    healthy: bool = True
    address: Address = field(init=False)
    base: str = field(init=False)  # the URL as text without a trailing "/", to append a target to

    def __post_init__(self) -> None:
        self.address = upstream_address(str(self.url))
        self.base = str(self.url).rstrip("/")


def upstream_address(url: str) -> Address:
    """Where an upstream URL points: http://host[:port] and nothing more, or ValueError (the
    gateway speaks plain HTTP to its upstreams and forwards the client's path as it came)."""
    parsed = URL(url)
    if parsed.scheme != "http" or not parsed.host:
        raise ValueError(f"an upstream is http://host[:port], not {url!r}")
    if parsed.user is not None or parsed.password is not None:
        raise ValueError("an upstream URL has no user or password (not shown here)")
    if parsed.path not in ("", "/"):
        raise ValueError(f"an upstream has no path: {url!r}")
    if parsed.query_string or parsed.fragment:
        raise ValueError(f"an upstream has no query or fragment: {url!r}")
    return Address(parsed.host, parsed.port or 80)


@dataclass
class UpstreamPool:
    """Replicas of one service, balanced round-robin over the healthy ones."""

    name: str
    configured: tuple[str, ...]
    # Paths whose POST may be sent again to another replica when the request carries an
    # Idempotency-Key (the upstream answers a replay with the first answer).
    keyed_posts: frozenset[str] = frozenset()
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


class ReplicaHealth(Collector):
    """gateway_upstream_replicas: each pool's replicas by state (healthy, down), read when
    /metrics is scraped. A pool with none healthy shows here and in the log, not in /readyz."""

    def __init__(self, pools: list[UpstreamPool], service: str) -> None:
        self.pools = pools
        self.service = service

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "gateway_upstream_replicas",
            "Replicas of each upstream the gateway knows, by state",
            labels=["service", "upstream", "state"],
        )
        for pool in self.pools:
            healthy = sum(r.healthy for r in pool.replicas)
            family.add_metric([self.service, pool.name, "healthy"], healthy)
            family.add_metric([self.service, pool.name, "down"], len(pool.replicas) - healthy)
        yield family


class Proxy:
    def __init__(
        self,
        client: UpstreamClient,
        metrics: Metrics,
        *,
        timeout: float,
        slot_timeout: float,
        server_timing: bool = False,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.timeout = timeout  # the whole request, every attempt included
        # How long an attempt waits for a free connection to one replica before it tries the
        # next (nothing was sent: safe for any method).
        self.slot_timeout = slot_timeout
        self.own_headers = _OWN_RESPONSE_HEADERS if server_timing else _OWN_WITHOUT_TIMINGS

    async def forward(
        self,
        request: web.Request,
        pool: UpstreamPool,
        path: str,
        *,
        credential: str | None = None,
        deadline: float | None = None,
    ) -> web.Response:
        """Send the request to a replica and answer with its response.

        credential: an Authorization value to send instead of the client's cookies (the hybrid
        forwards an internal token in place of the session cookie); deadline: the request's
        (see send()).
        """
        body = await read_body(request) if request.can_read_body else None
        status, payload, upstream_headers = await self.relay(
            request.method,
            pool,
            path,
            origin_form(request.raw_path),
            forward_headers(request),
            body,
            credential=credential,
            deadline=deadline,
        )
        return web.Response(status=status, body=payload, headers=upstream_headers)

    def relay(
        self,
        method: str,
        pool: UpstreamPool,
        path: str,
        raw_path: str,
        headers: Headers,
        body: bytes | None,
        *,
        credential: str | None,
        deadline: float | None = None,
    ) -> Awaitable[tuple[int, bytes, Headers]]:
        """forward() on the parts of a request (the gateway's fast path calls it too): the
        path checked, the raw target as the client sent it, the headers fit to forward. Not a
        coroutine itself: it gives send()'s, one frame fewer on every proxied request."""
        if credential is not None:
            headers = replace_header(
                replace_header(headers, "Cookie", None), "Authorization", credential
            )
        query = raw_path.partition("?")[2].partition("#")[0]  # a fragment is the client's
        target = path + ("?" + query if query else "")
        resend = resendable(method, pool, path, headers)
        return self.send(method, pool, target, headers, body, resend=resend, deadline=deadline)

    async def send(
        self,
        method: str,
        pool: UpstreamPool,
        target: str,
        headers: Headers,
        body: bytes | None,
        *,
        resend: bool,
        deadline: float | None = None,
    ) -> tuple[int, bytes, Headers]:
        """One request to the pool within one deadline (`deadline`, loop time: the client
        request's, when it made other calls first, as the hybrid's token exchange; else the
        upstream timeout from now): replicas in order, the next one tried
        when nothing was sent to the last (no free connection in time, no connection) or, if
        `resend`, when its answer failed.

        Answers the status, the whole body (read at once: bounded by the client) and the
        response headers fit to forward. Refused with 503 and Retry-After when no replica
        could be sent the request, 504 when the deadline passed after it was sent, 502 when
        an answer was broken.
        """
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.timeout
        failure = "unavailable"  # what the last attempt came to: unavailable, error, timeout
        last_error = "no replica configured"
        for replica in pool.order():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                with tracing.outgoing(method, replica.base + target, headers) as record_status:
                    answer = await self.client.request(
                        method,
                        replica.address,
                        target,
                        headers,
                        body,
                        timeout=remaining,
                        slot_timeout=min(self.slot_timeout, remaining),
                        retry_sent=resend,
                    )
                    record_status(answer.status)
                self.metrics.observe_upstream(pool.name, "ok")
                kept = response_headers(answer.headers, self.own_headers)
                return answer.status, answer.body, kept
            except Unsendable as exc:
                # check_forwardable() lets no such header through; if one came, it is the client's.
                log.warning("refused to forward a request to %s: %s", pool.name, exc)
                raise ProblemError(400, "The request cannot be forwarded.") from None
            except NotSent as exc:
                # Safe to try another replica for any method. Only a refused connection takes
                # the replica out of rotation: a busy one (no free connection, a slow accept)
                # is left to the health probes, so its own load does not mark it down.
                if isinstance(exc, ConnectFailed) and exc.refused:
                    replica.healthy = False
                failure, last_error = "unavailable", f"{type(exc).__name__}: {exc}"
            except (AnswerFailed, TimeoutError) as exc:
                timed_out = isinstance(exc, TimeoutError)
                failure = "timeout" if timed_out else "error"
                last_error = f"{type(exc).__name__}: {str(exc) or 'no answer in time'}"
                if not resend:
                    log.warning(
                        "upstream %s failed after a request that must not be sent twice: %s",
                        pool.name,
                        last_error,
                    )
                    break
            self.metrics.observe_upstream(pool.name, "retry")
            log.warning(
                "upstream %s replica %s failed (%s)%s",
                pool.name,
                replica.url,
                last_error,
                "; trying the next" if loop.time() < deadline else "",
            )
        if failure == "unavailable":
            self.metrics.observe_upstream(pool.name, "unavailable")
            log.warning("no %s replica could take the request: %s", pool.name, last_error)
            raise ProblemError(
                503, f"No {pool.name} replica is available.", headers={"Retry-After": "1"}
            )
        self.metrics.observe_upstream(pool.name, "error")
        if failure == "timeout":
            raise ProblemError(504, f"The {pool.name} service did not answer in time.")
        raise ProblemError(502, f"The {pool.name} service failed to answer.")


def resendable(method: str, pool: UpstreamPool, path: str, headers: Headers) -> bool:
    """Whether a request that may have been processed can be sent to another replica: GET and
    HEAD; a POST to one of the pool's keyed paths when what is forwarded carries an
    Idempotency-Key; nothing else (never a POST to auth, whose refresh would spend a token)."""
    if method in RESENDABLE:
        return True
    return (
        method == "POST"
        and path in pool.keyed_posts
        and any(name.lower() == "idempotency-key" for name, _ in headers)
    )


async def health_loop(
    client: UpstreamClient,
    pools: list[UpstreamPool],
    interval: float,
    dns_every: float,
    *,
    probes: UpstreamClient | None = None,
) -> None:
    """Actively probe every replica's /healthz; resolve names again every dns_every seconds.

    probes: the client the probes go through (default `client`); the gateway gives them one of
    their own, so a probe never waits behind client requests for a connection."""
    probes = probes or client
    timeout = min(0.5, interval)
    loop = asyncio.get_running_loop()
    last_dns = float("-inf")

    async def probe(replica: Replica) -> None:
        try:
            answer = await probes.request(
                "GET", replica.address, "/healthz", (), None, timeout=timeout
            )
            healthy = answer.status == 200
        except (UpstreamError, TimeoutError):
            healthy = False
        if healthy != replica.healthy:
            log.warning("replica %s is now %s", replica.url, "healthy" if healthy else "down")
        replica.healthy = healthy

    while True:
        for pruned in {client, probes}:  # connections idle too long, addresses gone from DNS
            pruned.prune()
        if dns_every and loop.time() - last_dns >= dns_every:
            last_dns = loop.time()
            for pool in pools:
                await pool.resolve()
        with contextlib.suppress(Exception):
            await asyncio.gather(*(probe(r) for pool in pools for r in pool.replicas))
        await asyncio.sleep(interval)
