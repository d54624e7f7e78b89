"""OpenTelemetry traces across every hop, on only when OTEL_EXPORTER_OTLP_ENDPOINT is set.

When on: the aiohttp server and client and redis-py are instrumented (so W3C `traceparent`
goes out with every call orders makes, and each store call is a span), the gateway's own
upstream client opens its CLIENT spans with `outgoing()`, spans are
batched to the OTLP/HTTP endpoint, and `span()` opens the project's own spans (a verification,
with its design and cache outcome). When off nothing is imported or patched, and `span()` is a
shared no-op context: a request costs what it cost before tracing existed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

log = logging.getLogger("authscale.tracing")

SERVICE_PREFIX = "authscale-"  # a service's default `service.name`: authscale-gateway, ...
VERIFY_SPAN = "authscale.verify"  # the span of one credential check, at every hop

_NOOP: AbstractContextManager[None] = contextlib.nullcontext()


def _ignore_status(status: int) -> None:
    return None


_NO_OUTGOING: AbstractContextManager[Callable[[int], None]] = contextlib.nullcontext(_ignore_status)
_shutdown: Callable[[], None] | None = None
_span_factory: Callable[..., AbstractContextManager[Any]] | None = None


def enabled() -> bool:
    return _span_factory is not None


def configure(service: str, env: Mapping[str, str]) -> bool:
    """Turn tracing on for this process if an OTLP endpoint is configured; before any app."""
    global _shutdown, _span_factory
    if not env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or _span_factory is not None:
        return _span_factory is not None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Health probes and scrapes every second would bury the requests worth tracing.
    os.environ.setdefault("OTEL_PYTHON_EXCLUDED_URLS", "/healthz,/readyz,/metrics")
    name = env.get("OTEL_SERVICE_NAME") or f"{SERVICE_PREFIX}{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(timeout=2)))
    trace.set_tracer_provider(provider)
    # The server instrumentor must run (not only its middleware factory): it sets the globals
    # the middleware reads. It wraps every web.Application built from here on.
    AioHttpServerInstrumentor().instrument(tracer_provider=provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    tracer = provider.get_tracer("authscale")
    _span_factory = tracer.start_as_current_span
    _shutdown = provider.shutdown
    log.info("tracing on: OTLP to %s as %s", env["OTEL_EXPORTER_OTLP_ENDPOINT"], name)
    return True


def span(name: str, **attributes: str) -> AbstractContextManager[Any]:
    """A span of our own under the current one, or the shared no-op when tracing is off."""
    if _span_factory is None:
        return _NOOP
    return _span_factory(name, attributes=attributes)


def outgoing(
    method: str, url: str, headers: list[tuple[str, str]]
) -> AbstractContextManager[Callable[[int], None]]:
    """A CLIENT span around one call out (HTTP semantic conventions), its context put into
    `headers` (W3C `traceparent`, replacing any the caller sent), giving a function that
    records the answer's status; the shared no-op when tracing is off."""
    if _span_factory is None:
        return _NO_OUTGOING
    return _outgoing(method, url, headers)


@contextlib.contextmanager
def _outgoing(
    method: str, url: str, headers: list[tuple[str, str]]
) -> Iterator[Callable[[int], None]]:
    from opentelemetry import propagate, trace
    from yarl import URL

    assert _span_factory is not None
    parsed = URL(url)
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "url.full": url,
        "server.address": parsed.host or "",
        "server.port": parsed.port or 80,
    }
    with _span_factory(method, kind=trace.SpanKind.CLIENT, attributes=attributes) as current:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        ours = {name.lower() for name in carrier}
        headers[:] = [(n, v) for n, v in headers if n.lower() not in ours]
        headers.extend(carrier.items())

        def record(status: int) -> None:
            current.set_attribute("http.response.status_code", status)
            if status >= 400:  # a client span's error: any 4xx or 5xx answer
                current.set_status(trace.StatusCode.ERROR)

        yield record


def annotate(key: str, value: str) -> None:
    """Set an attribute on the current span (when tracing is on)."""
    if _span_factory is not None:
        from opentelemetry import trace

        trace.get_current_span().set_attribute(key, value)


@contextlib.contextmanager
def flushed() -> Iterator[None]:
    """Run the body, then export what is still buffered (a stopping process loses no span)."""
    try:
        yield
    finally:
        if _shutdown is not None:
            _shutdown()
