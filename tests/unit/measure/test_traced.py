"""Per-hop attribution from spans (loadtests/measure/traced.py), on spans built by hand: which
server span each verification and store call belongs to, by store, inside the window."""

from __future__ import annotations

import itertools

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from devstack.otlp import CLIENT, SERVER, Received
from loadtests.measure.traced import attribute
from services.common.tracing import VERIFY_SPAN

SESSION_PORT, DATA_PORT = 6379, 6380
STORES = {SESSION_PORT: "session_store", DATA_PORT: "data_store"}
_ids = itertools.count(1)


def span(
    service: str,
    trace: int,
    name: str,
    kind: Span.SpanKind.ValueType,
    parent: Received | None,
    start_us: float,
    micros: float,
    **attributes: str | int,
) -> Received:
    proto = Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=next(_ids).to_bytes(8, "big"),
        parent_span_id=parent.span.span_id if parent else b"",
        name=name,
        kind=kind,
        start_time_unix_nano=int(start_us * 1000),
        end_time_unix_nano=int((start_us + micros) * 1000),
    )
    for key, value in attributes.items():
        any_value = (
            AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
        )
        proto.attributes.append(KeyValue(key=key, value=any_value))
    return Received(f"authscale-{service}", proto)


def redis(port_key: str, port: int) -> dict[str, str | int]:
    """redis-py's client span attributes (older semantic conventions or newer)."""
    return {"db.system": "redis", port_key: port}


def request(trace: int, start_us: float, session: bool) -> list[Received]:
    """gateway (verify [+ session GET]) -> orders (verify [+ session GET], then a data store
    write outside the verification)."""
    out = []
    gateway = span("gateway", trace, "GET /orders", SERVER, None, start_us, 900)
    check = span(
        "gateway", trace, VERIFY_SPAN, Span.SpanKind.SPAN_KIND_INTERNAL, gateway, start_us, 300
    )
    out += [gateway, check]
    if session:
        out.append(
            span(
                "gateway",
                trace,
                "GET",
                CLIENT,
                check,
                start_us,
                200,
                **redis("net.peer.port", SESSION_PORT),
            )
        )
    call = span("gateway", trace, "GET", CLIENT, gateway, start_us + 300, 500)
    orders = span("orders", trace, "GET /orders", SERVER, call, start_us + 310, 450)
    o_check = span(
        "orders", trace, VERIFY_SPAN, Span.SpanKind.SPAN_KIND_INTERNAL, orders, start_us + 310, 100
    )
    out += [call, orders, o_check]
    if session:
        out.append(
            span(
                "orders",
                trace,
                "GET",
                CLIENT,
                o_check,
                start_us + 310,
                80,
                **redis("server.port", SESSION_PORT),
            )
        )
    out.append(
        span(
            "orders",
            trace,
            "EVALSHA",
            CLIENT,
            orders,
            start_us + 420,
            250,
            **redis("net.peer.port", DATA_PORT),
        )
    )
    return out


def test_each_hop_gets_its_own_verification_and_store_time() -> None:
    spans = [s for t in range(1, 5) for s in request(t, t * 10_000, session=True)]
    hops = attribute(spans, STORES, {"gateway": 310.0, "orders": 120.0})
    assert set(hops) == {"gateway", "orders"}
    gateway, orders = hops["gateway"], hops["orders"]
    assert gateway["requests"] == orders["requests"] == 4
    assert gateway["verify_p50_us"] == 300 and orders["verify_p50_us"] == 100
    # The gateway's client call to orders is not a store call; orders' data store write, made
    # outside its verification, is still its store time.
    assert gateway["store_calls_per_request"] == {"session_store": 1.0}
    assert gateway["store_p50_us"] == {"session_store": 200}
    assert orders["store_calls_per_request"] == {"data_store": 1.0, "session_store": 1.0}
    assert orders["store_p50_us"] == {"data_store": 250, "session_store": 80}
    assert gateway["metrics_check_mean_us"] == 310.0 and orders["metrics_check_mean_us"] == 120.0


def test_only_requests_inside_the_window_count() -> None:
    early = request(1, 1_000, session=False)
    inside = [s for t in (2, 3) for s in request(t, t * 1_000_000, session=False)]
    hops = attribute([*early, *inside], STORES, {}, window=(1.5, 4.0))
    assert hops["gateway"]["requests"] == 2
    assert hops["gateway"]["store_calls_per_request"] == {}
    assert hops["gateway"]["metrics_check_mean_us"] is None
    assert attribute([*early, *inside], STORES, {})["gateway"]["requests"] == 3


def test_a_hop_that_verified_nothing_is_left_out() -> None:
    spans = request(9, 0, session=False)
    spans = [
        s for s in spans if not (s.service == "authscale-orders" and s.span.name == VERIFY_SPAN)
    ]
    assert set(attribute(spans, STORES, {})) == {"gateway"}
