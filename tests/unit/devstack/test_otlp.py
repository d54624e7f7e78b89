"""The harness's trace receiver (devstack/otlp.py): what an OTLP/HTTP exporter posts arrives,
gzip or not; a body that is not an export is a 400 and changes nothing."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import aiohttp
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from devstack.otlp import SERVER, Collector, collecting


@pytest.fixture
def collector() -> Iterator[Collector]:
    with collecting() as receiver:
        yield receiver


def export(service: str, *names: str) -> bytes:
    resource = Resource(
        attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]
    )
    spans = [
        Span(trace_id=bytes(15) + bytes([i + 1]), span_id=bytes([i + 1]) * 8, name=n, kind=SERVER)
        for i, n in enumerate(names)
    ]
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )
    return request.SerializeToString()


async def post(collector: Collector, body: bytes, **headers: str) -> int:
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as client,
        client.post(
            collector.endpoint + "/v1/traces",
            data=body,
            headers={"Content-Type": "application/x-protobuf", **headers},
        ) as response,
    ):
        return response.status


async def test_exports_arrive_with_their_service(collector: Collector) -> None:
    assert (
        await post(collector, export("authscale-gateway", "GET /orders", "authscale.verify")) == 200
    )
    zipped = gzip.compress(export("authscale-orders", "GET /orders"))
    assert await post(collector, zipped, **{"Content-Encoding": "gzip"}) == 200
    spans = collector.spans()
    assert [(r.service, r.span.name) for r in spans] == [
        ("authscale-gateway", "GET /orders"),
        ("authscale-gateway", "authscale.verify"),
        ("authscale-orders", "GET /orders"),
    ]
    assert [r.span.name for r in collector.trace(bytes(15) + b"\x02")] == ["authscale.verify"]
    collector.clear()
    assert collector.spans() == []


@pytest.mark.parametrize(
    "body, headers, status",
    [
        (b"\xff\x00 not protobuf", {}, 400),
        (b"not gzip at all", {"Content-Encoding": "gzip"}, 400),
        (gzip.compress(b"\x00" * (65 * 1024 * 1024)), {"Content-Encoding": "gzip"}, 413),  # bomb
    ],
    ids=["garbage", "bad-gzip", "gzip-bomb"],
)
async def test_a_body_that_is_not_an_export_is_refused(
    collector: Collector, body: bytes, headers: dict[str, str], status: int
) -> None:
    assert await post(collector, body, **headers) == status
    assert collector.spans() == []


def test_a_stopped_collector_frees_its_port() -> None:
    receiver = Collector().start()
    endpoint = receiver.endpoint
    receiver.stop()
    assert not receiver._thread.is_alive()
    import socket

    port = int(endpoint.rsplit(":", 1)[1])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # free again
