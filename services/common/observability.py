"""JSON logs with the request id, Prometheus metrics, and the /healthz, /readyz, /metrics routes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TextIO, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from services.common.problems import Handler, problem_response

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Latency buckets from 100 us to 5 s: auth checks live at the bottom, timeouts at the top.
_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
)


_JSON = json.JSONEncoder(
    default=str
)  # one for every line: json.dumps(default=) builds one per call


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the current request id."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "request_id": request_id_var.get(),
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _JSON.encode(entry)


class LineHandler(logging.StreamHandler[TextIO]):
    """Log lines to a stream, written in batches on an event loop.

    A line logged on a running loop below WARNING (an access line) is held until the loop has
    run the callbacks it has ready, then written with the others held with it: one write for
    every request a loop iteration finished, not one per line. A line at WARNING or above, or
    logged off the loop (a worker thread, start-up), is written at once after those held, so
    lines keep their order and nothing important waits. At exit `logging.shutdown()` flushes.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._held: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            if record.levelno < logging.WARNING:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    pass
                else:
                    if not self._held:
                        loop.call_soon(self.flush)
                    self._held.append(line)
                    return
            self._held.append(line)
            self.flush()
        except RecursionError:  # as logging.StreamHandler does
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._held:
                held, self._held = self._held, []
                self.stream.write("".join(held))
            super().flush()


def configure_logging(service: str, level: str = "INFO") -> None:
    # Every request writes an access line: skip what the JSON lines never show (the logging
    # HOWTO's "Optimization": no caller lookup, no thread, process or task names per record).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LineHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log would duplicate ours without the request id.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


_Labelled = TypeVar("_Labelled", Counter, Histogram)


@dataclass
class Metrics:
    """The metric families every service exports, in a registry of its own per app."""

    service: str
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        self._labelled: dict[tuple[Counter | Histogram, tuple[str, ...]], Counter | Histogram] = {}
        r = self.registry
        ProcessCollector(registry=r)
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered",
            ["service", "route", "method", "status", "auth_mode"],
            registry=r,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["service", "route", "auth_mode"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.auth_checks = Counter(
            "auth_checks_total",
            "Credential verifications performed",
            ["service", "mode", "result"],
            registry=r,
        )
        self.auth_latency = Histogram(
            "auth_check_duration_seconds",
            "Time spent verifying one credential",
            ["service", "mode"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.store_calls = Counter(
            "store_calls_total",
            "Calls made to a Redis store",
            ["service", "store", "op", "result"],
            registry=r,
        )
        self.store_latency = Histogram(
            "store_call_duration_seconds",
            "Latency of calls to a Redis store",
            ["service", "store", "op"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.info = Gauge(
            "authscale_info",
            "Constant 1, labelled with how this service verifies credentials",
            ["service", "jwt_revocation"],
            registry=r,
        )
        self.session_cache = Counter(
            "session_cache_total",
            "Session look-ups answered from the verifier's cache (hit) or the store (miss)",
            ["service", "result"],
            registry=r,
        )
        self.logins_shed = Counter(
            "logins_shed_total",
            "Logins and sign-ups refused (503) because password hashing was saturated",
            ["service"],
            registry=r,
        )
        self.fast_path = Counter(
            "gateway_fast_path_total",
            "Requests the gateway's fast path answered (served) or handed to aiohttp's server "
            "with their connection (handed_off)",
            ["service", "result"],
            registry=r,
        )
        self.upstream_calls = Counter(
            "upstream_calls_total",
            "Calls made to another authscale service",
            ["service", "upstream", "result"],
            registry=r,
        )

    # labels() takes a lock and builds tuples on every call; on the per-request path the
    # labelled children are looked up once and kept.
    def _child(self, metric: _Labelled, *labels: str) -> _Labelled:
        key = (metric, labels)
        child = self._labelled.get(key)
        if child is None:
            child = self._labelled[key] = metric.labels(self.service, *labels)
        return child  # type: ignore[return-value]

    def observe_auth(self, mode: str, result: str, seconds: float) -> None:
        self._child(self.auth_checks, mode, result).inc()
        self._child(self.auth_latency, mode).observe(seconds)

    def observe_request(
        self, route: str, method: str, status: int, mode: str, seconds: float
    ) -> None:
        self._child(self.requests, route, method, str(status), mode).inc()
        self._child(self.latency, route, mode).observe(seconds)

    def observe_store(self, store: str, op: str, result: str, seconds: float) -> None:
        self._child(self.store_calls, store, op, result).inc()
        self._child(self.store_latency, store, op).observe(seconds)

    def observe_session_cache(self, result: str) -> None:
        self._child(self.session_cache, result).inc()

    def observe_fast_path(self, result: str) -> None:
        self._child(self.fast_path, result).inc()

    def observe_upstream(self, upstream: str, result: str) -> None:
        self._child(self.upstream_calls, upstream, result).inc()


metrics_key = web.AppKey("metrics", Metrics)
ReadyCheck = Callable[[], Awaitable[None]]
ready_checks_key = web.AppKey("ready_checks", list[ReadyCheck])

auth_mode_key = web.RequestKey("auth_mode", str)  # set by the verifier
request_id_key = web.RequestKey("request_id", str)


def _route_label(request: web.Request) -> str:
    info = request.match_info
    route = info.route if info is not None else None
    if route is None or route.resource is None:
        return "unmatched"
    return route.resource.canonical


# Request ids correlate log lines; they guard nothing, so they come from a generator seeded
# from the OS once per process rather than a getrandom() system call per request.
_ids = random.Random(os.urandom(32))


def new_request_id() -> str:
    """128 random bits as 32 hex digits, the shape of uuid4().hex."""
    return f"{_ids.getrandbits(128):032x}"


def valid_request_id(incoming: str) -> bool:
    """A client's X-Request-ID worth keeping (else the service makes one)."""
    return _REQUEST_ID_RE.match(incoming) is not None


def request_id_from(request: web.Request) -> str:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    return incoming if valid_request_id(incoming) else new_request_id()


def make_observability_middleware(metrics: Metrics) -> Middleware:
    access = logging.getLogger("authscale.access")

    @web.middleware
    async def observability_middleware(
        request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        rid = request_id_from(request)
        token = request_id_var.set(rid)
        request[request_id_key] = rid
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            response.headers[REQUEST_ID_HEADER] = rid
            return response
        except web.HTTPException as exc:
            status = exc.status
            exc.headers[REQUEST_ID_HEADER] = rid
            raise
        finally:
            elapsed = time.perf_counter() - start
            route = _route_label(request)
            mode = request.get(auth_mode_key, "none")
            metrics.observe_request(route, request.method, status, mode, elapsed)
            if route not in {"/metrics", "/healthz", "/readyz"} and access.isEnabledFor(
                logging.INFO
            ):
                access.info(
                    "request",
                    extra={
                        "fields": {
                            "method": request.method,
                            "path": request.path,
                            "status": status,
                            "auth_mode": mode,
                            "ms": round(elapsed * 1000, 3),
                        }
                    },
                )
            request_id_var.reset(token)

    return observability_middleware


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = request.app[ready_checks_key]
    try:
        async with asyncio.timeout(1.0):
            await asyncio.gather(*(check() for check in checks))
    except Exception as exc:  # any failing dependency means not ready
        logging.getLogger("authscale.ready").warning("not ready: %s", type(exc).__name__)
        return problem_response(503, "A dependency is not answering.")
    return web.json_response({"status": "ready"})


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(request.app[metrics_key].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def install_observability(
    app: web.Application, service: str, checks: Sequence[ReadyCheck] = ()
) -> Metrics:
    """Give an app its metrics, its health routes and the request-id middleware (outermost)."""
    metrics = Metrics(service)
    app[metrics_key] = metrics
    app[ready_checks_key] = list(checks)
    app.middlewares.insert(0, make_observability_middleware(metrics))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    return metrics
