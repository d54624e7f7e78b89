"""One client request is one trace across every hop: gateway -> orders -> auth, with each
hop's verification and store calls as spans, exported over OTLP/HTTP to a receiver we run."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator

import pytest

from devstack.otlp import CLIENT, SERVER, Collector, Received, collecting
from devstack.stack import Stack
from tests.stackutil import Api, running


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with collecting() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, redis_available: None, collector: Collector
) -> Iterator[Stack]:
    yield from running(
        tmp_path_factory.mktemp("traced"),
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )


async def test_one_request_is_one_trace_across_every_hop(
    api: Api, stack: Stack, collector: Collector
) -> None:
    username, _ = await api.signup()
    headers = await api.jwt_login(username)
    trace_id, parent_id = secrets.token_bytes(16), secrets.token_bytes(8)
    traceparent = f"00-{trace_id.hex()}-{parent_id.hex()}-01"
    response, _ = await api.call(
        "POST",
        "/orders",
        headers={**headers, "traceparent": traceparent},
        json={"item": "traced", "quantity": 1},
    )
    assert response.status == 201
    services = {"authscale-gateway", "authscale-orders", "authscale-auth"}
    deadline = time.monotonic() + 15
    while True:
        spans = collector.trace(trace_id)
        servers = {r.service for r in spans if r.span.kind == SERVER}
        if servers >= services or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert servers >= services, f"server spans only from {servers}"
    by_id = {r.span.span_id: r for r in spans}

    def parent(received: Received) -> Received | None:
        return by_id.get(received.span.parent_span_id)

    def server_span(service: str) -> Received:
        found = [r for r in spans if r.service == service and r.span.kind == SERVER]
        assert len(found) == 1, (service, [r.span.name for r in found])
        return found[0]

    gateway, orders, auth = (server_span(f"authscale-{s}") for s in ("gateway", "orders", "auth"))
    # The client's traceparent is the gateway's parent; each downstream server span's parent is
    # the client span of the hop before it.
    assert gateway.span.parent_span_id == parent_id
    for callee, caller in ((orders, "authscale-gateway"), (auth, "authscale-orders")):
        link = parent(callee)
        assert link is not None and link.service == caller and link.span.kind == CLIENT
    # Every hop verified the credential in a span of its own, under its server span.
    for hop in (gateway, orders, auth):
        verifications = [
            r for r in spans if r.span.name == "authscale.verify" and r.service == hop.service
        ]
        assert len(verifications) == 1, hop.service
        check = verifications[0]
        assert parent(check) is hop
        assert check.attribute("credential") == "jwt"
        assert check.attribute("cache") in {"hit", "miss"}
    # Orders' store call (the data store script that creates the order) is a span of that trace.
    store = [r for r in spans if r.service == "authscale-orders" and r.span.kind == CLIENT]
    assert any("EVALSHA" in r.span.name or "EVAL" in r.span.name for r in store), [
        r.span.name for r in store
    ]
