"""JSON logs with the request id, Prometheus metrics, and the /healthz, /readyz, /metrics routes."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import logging
import os
import random
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import TextIO

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
        extra = getattr(record, "fields", None)
        fields = dict(extra) if isinstance(extra, dict) else {}
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return self.line(record.created, record.levelname, record.name, record.getMessage(), fields)

    def line(
        self, created: float, level: str, logger: str, msg: str, fields: Mapping[str, object]
    ) -> str:
        entry: dict[str, object] = {
            "ts": round(created, 6),
            "level": level,
            "service": self.service,
            "logger": logger,
            "request_id": request_id_var.get(),
            "msg": msg,
        }
        entry.update(fields)
        return _JSON.encode(entry)

    def access_line(
        self, created: float, method: str, path: str, status: int, mode: str, ms: float
    ) -> str:
        """line() of an access record, written out field by field: the same text, for the
        line every request writes (a unit test holds the two equal)."""
        quote = encode_basestring_ascii
        return (
            f'{{"ts": {round(created, 6)!r}, "level": "INFO", "service": {quote(self.service)}, '
            f'"logger": {quote(access_logger.name)}, "request_id": {quote(request_id_var.get())}, '
            f'"msg": "request", "method": {quote(method)}, "path": {quote(path)}, '
            f'"status": {int(status)!r}, "auth_mode": {quote(mode)}, "ms": {float(ms)!r}}}'
        )


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
            self.hold(self.format(record), urgent=record.levelno >= logging.WARNING)
        except RecursionError:  # as logging.StreamHandler does
            raise
        except Exception:
            self.handleError(record)

    def hold(self, line: str, *, urgent: bool = False) -> None:
        """Write `line`: with the loop's other lines of this iteration, or now if urgent or
        logged off the loop."""
        line += self.terminator
        if not urgent:
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


access_logger = logging.getLogger("authscale.access")


def log_access(method: str, path: str, status: int, mode: str, seconds: float) -> None:
    """The access line of one answered request (every service, and the gateway's fast path).

    Where configure_logging's line handler is the only way out for the access logger, the line
    goes to it directly, as the same JSON, without a LogRecord (half of the line's cost, on
    every request); otherwise (tests' capture handlers, other configurations) through logging.
    """
    if not access_logger.isEnabledFor(logging.INFO):
        return
    ms = round(seconds * 1000, 3)
    handler = _direct_handler()
    if handler is None:
        fields = {"method": method, "path": path, "status": status, "auth_mode": mode, "ms": ms}
        access_logger.info("request", extra={"fields": fields})
        return
    assert isinstance(handler.formatter, JsonFormatter)
    line = handler.formatter.access_line(time.time(), method, path, status, mode, ms)
    with handler.lock:  # type: ignore[union-attr]  # as Handler.handle() holds it for emit()
        handler.hold(line)


def _direct_handler() -> LineHandler | None:
    """The line handler a record of the access logger would reach, and nothing else would."""
    logger: logging.Logger | None = access_logger
    while logger is not None:
        if logger.filters or (logger.handlers and logger.parent is not None):
            return None
        if logger.parent is None or not logger.propagate:
            break
        logger = logger.parent
    if logger is None or len(logger.handlers) != 1:
        return None
    handler = logger.handlers[0]
    if (
        not isinstance(handler, LineHandler)
        or handler.filters
        or handler.level > logging.INFO
        or type(handler.formatter) is not JsonFormatter  # a subclass may format otherwise
    ):
        return None
    return handler


class LoopCounter(Collector):
    """A labelled counter counted with plain numbers: for the metrics every request touches,
    observed on the event loop only (no lock, no per-call checks; prometheus_client's Counter
    spent more on one request's observations than the proxying around them). /metrics shows
    it as it shows a Counter, without the `_created` series."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.values: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def inc(self, labels: tuple[str, ...]) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) + 1.0

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.values.items()):
            family.add_metric(labels, value)
        yield family


class LoopHistogram(Collector):
    """A labelled histogram kept like LoopCounter: bucket counts and a sum per label set."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.bounds = list(buckets)
        self.les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self.values: dict[tuple[str, ...], list[float]] = {}  # [sum, count per bucket...]
        registry.register(self)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        entry = self.values.get(labels)
        if entry is None:
            entry = self.values[labels] = [0.0] * (len(self.bounds) + 2)
        entry[0] += value
        entry[1 + bisect.bisect_left(self.bounds, value)] += 1  # le: value <= bound

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, entry in list(self.values.items()):
            cumulative = list(itertools.accumulate(entry[1:]))
            family.add_metric(labels, list(zip(self.les, cumulative, strict=True)), entry[0])
        yield family


@dataclass
class Metrics:
    """The metric families every service exports, in a registry of its own per app."""

    service: str
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry
        ProcessCollector(registry=r)
        self.requests = LoopCounter(
            "http_requests",
            "HTTP requests answered",
            ["service", "route", "method", "status", "auth_mode"],
            r,
        )
        self.latency = LoopHistogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["service", "route", "auth_mode"],
            _BUCKETS,
            r,
        )
        self.auth_checks = LoopCounter(
            "auth_checks",
            "Credential verifications performed",
            ["service", "mode", "result"],
            r,
        )
        self.auth_latency = LoopHistogram(
            "auth_check_duration_seconds",
            "Time spent verifying one credential",
            ["service", "mode"],
            _BUCKETS,
            r,
        )
        self.store_calls = LoopCounter(
            "store_calls",
            "Calls made to a Redis store",
            ["service", "store", "op", "result"],
            r,
        )
        self.store_latency = LoopHistogram(
            "store_call_duration_seconds",
            "Latency of calls to a Redis store",
            ["service", "store", "op"],
            _BUCKETS,
            r,
        )
        self.info = Gauge(
            "authscale_info",
            "Constant 1, labelled with how this service verifies credentials",
            ["service", "jwt_revocation"],
            registry=r,
        )
        self.session_cache = LoopCounter(
            "session_cache",
            "Session look-ups answered from the verifier's cache (hit) or the store (miss)",
            ["service", "result"],
            r,
        )
        self.logins_shed = Counter(
            "logins_shed_total",
            "Logins and sign-ups refused (503) because password hashing was saturated",
            ["service"],
            registry=r,
        )
        self.upstream_calls = LoopCounter(
            "upstream_calls",
            "Calls made to another authscale service",
            ["service", "upstream", "result"],
            r,
        )

    def observe_auth(self, mode: str, result: str, seconds: float) -> None:
        self.auth_checks.inc((self.service, mode, result))
        self.auth_latency.observe((self.service, mode), seconds)

    def observe_request(
        self, route: str, method: str, status: int, mode: str, seconds: float
    ) -> None:
        self.requests.inc((self.service, route, method, str(status), mode))
        self.latency.observe((self.service, route, mode), seconds)

    def observe_store(self, store: str, op: str, result: str, seconds: float) -> None:
        self.store_calls.inc((self.service, store, op, result))
        self.store_latency.observe((self.service, store, op), seconds)

    def observe_session_cache(self, result: str) -> None:
        self.session_cache.inc((self.service, result))

    def observe_upstream(self, upstream: str, result: str) -> None:
        self.upstream_calls.inc((self.service, upstream, result))


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
            if route not in {"/metrics", "/healthz", "/readyz"}:
                log_access(request.method, request.path, status, mode, elapsed)
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
