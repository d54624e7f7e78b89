"""A trace receiver for the harness: OTLP/HTTP `POST /v1/traces` (protobuf), kept in memory.

The services export their spans with OpenTelemetry's OTLP/HTTP exporter when
OTEL_EXPORTER_OTLP_ENDPOINT is set (services/common/tracing.py); the tracing test and the bench's
traced phase point it here and read what arrived. It runs an aiohttp server on its own event
loop in a background thread, so blocking and async callers alike can use it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiohttp import web
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

SERVER, CLIENT = Span.SpanKind.SPAN_KIND_SERVER, Span.SpanKind.SPAN_KIND_CLIENT
MAX_BODY = 64 * 1024 * 1024  # one export batch; the SDK sends at most 512 spans at a time


@dataclass(frozen=True)
class Received:
    """One span as it arrived, with the service that exported it (its `service.name`)."""

    service: str
    span: Span

    def attribute(self, key: str) -> str | None:
        for kv in self.span.attributes:
            if kv.key == key:
                value = kv.value
                if value.HasField("int_value"):
                    return str(value.int_value)
                return str(value.string_value)
        return None

    @property
    def micros(self) -> float:
        return (self.span.end_time_unix_nano - self.span.start_time_unix_nano) / 1000


def parse(body: bytes) -> list[Received]:
    """The spans of one export request."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    found: list[Received] = []
    for resource_spans in request.resource_spans:
        service = next(
            (
                kv.value.string_value
                for kv in resource_spans.resource.attributes
                if kv.key == "service.name"
            ),
            "?",
        )
        for scope in resource_spans.scope_spans:
            found.extend(Received(service, s) for s in scope.spans)
    return found


class Collector:
    """Receives spans until stopped; `spans()` is a copy of everything received so far."""

    def __init__(self) -> None:
        self._spans: list[Received] = []
        self._lock = threading.Lock()
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The value for OTEL_EXPORTER_OTLP_ENDPOINT."""
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    async def _receive(self, request: web.Request) -> web.Response:
        # aiohttp inflates a gzip body itself (a bomb past client_max_size is its 413).
        try:
            received = parse(await request.read())
        except (DecodeError, web.RequestPayloadError):  # not protobuf, or not gzip after all
            return web.Response(status=400, text="not an OTLP trace export")
        with self._lock:
            self._spans.extend(received)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    async def _serve(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/v1/traces", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()

    def start(self) -> Collector:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            if self._runner is not None:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self._loop.close()
            self._socket.close()

    def spans(self) -> list[Received]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def trace(self, trace_id: bytes) -> list[Received]:
        with self._lock:
            return [r for r in self._spans if r.span.trace_id == trace_id]


@contextmanager
def collecting() -> Iterator[Collector]:
    """A running collector, stopped on the way out."""
    collector = Collector().start()
    try:
        yield collector
    finally:
        collector.stop()
