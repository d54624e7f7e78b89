"""Per-hop attribution from traces: where each hop's time goes inside one request.

`--long` restarts the services with tracing on, exporting to the harness's receiver
(devstack/otlp.py), runs one open-model window per design (loadtests/measure/long.py), then
reads the spans here: for every request a hop verified (a server span with an `authscale.verify`
span under it), how long the verification took and how long the hop spent in store calls
(redis-py's client spans, by store), set beside what the same hop's /metrics said over the same
window. Tracing has a cost of its own, so these windows are kept apart from the measured ones.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from devstack.otlp import CLIENT, SERVER, Collector, Received
from loadtests.measure.schema import HopTrace
from services.common.tracing import SERVICE_PREFIX, VERIFY_SPAN

EXPORT_DELAY_MS = 200  # OTEL_BSP_SCHEDULE_DELAY: spans reach the receiver within this


def hop_of(service: str) -> str:
    """`authscale-orders` -> `orders` (every replica of a service is one hop)."""
    return service.removeprefix(SERVICE_PREFIX)


def _port(span: Received) -> int | None:
    for key in ("server.port", "net.peer.port"):
        value = span.attribute(key)
        if value:
            return int(value)
    return None


@dataclass
class _Request:
    """What one server span of one hop contained."""

    verify_us: float = 0.0
    verifications: int = 0
    store_us: dict[str, float] = field(default_factory=dict)
    store_calls: dict[str, int] = field(default_factory=dict)


def _requests(
    spans: Sequence[Received], stores: Mapping[int, str], window: Sequence[float]
) -> dict[str, list[_Request]]:
    """Each hop's server spans that started inside `window` (Unix seconds; empty: all), with
    their verifications and store calls added up."""
    low, high = (window[0] * 1e9, window[1] * 1e9) if window else (0.0, float("inf"))
    by_id = {(r.span.trace_id, r.span.span_id): r for r in spans}
    requests: dict[tuple[bytes, bytes], _Request] = {}
    hop: dict[tuple[bytes, bytes], str] = {}
    for received in spans:
        if received.span.kind == SERVER and low <= received.span.start_time_unix_nano <= high:
            key = (received.span.trace_id, received.span.span_id)
            requests[key] = _Request()
            hop[key] = hop_of(received.service)

    def server_of(received: Received) -> tuple[bytes, bytes] | None:
        """The nearest server span above this one, in the same service."""
        current: Received | None = received
        for _ in range(32):  # a request's spans nest a few levels deep
            if current is None:
                return None
            key = (current.span.trace_id, current.span.parent_span_id)
            parent = by_id.get(key)
            if parent is not None and parent.span.kind == SERVER:
                return key if parent.service == received.service else None
            current = parent
        return None

    for received in spans:
        if received.span.name == VERIFY_SPAN:
            owner = server_of(received)
            if owner in requests:
                requests[owner].verify_us += received.micros
                requests[owner].verifications += 1
        elif received.span.kind == CLIENT and received.attribute("db.system") == "redis":
            owner = server_of(received)
            if owner in requests:
                store = stores.get(_port(received) or 0, "other store")
                request = requests[owner]
                request.store_us[store] = request.store_us.get(store, 0.0) + received.micros
                request.store_calls[store] = request.store_calls.get(store, 0) + 1
    out: dict[str, list[_Request]] = defaultdict(list)
    for key, request in requests.items():
        out[hop[key]].append(request)
    return out


def attribute(
    spans: Sequence[Received],
    stores: Mapping[int, str],
    metrics_check_us: Mapping[str, float],
    window: Sequence[float] = (),
) -> dict[str, HopTrace]:
    """Per hop, over the requests it verified inside the measurement window: verification and
    store time, from the spans (the window is the one the /metrics figures cover)."""
    hops: dict[str, HopTrace] = {}
    for name, requests in sorted(_requests(spans, stores, window).items()):
        verified = [r for r in requests if r.verifications]
        if not verified:
            continue
        names = sorted({s for r in verified for s in r.store_calls})
        verify = [r.verify_us for r in verified]
        hops[name] = {
            "requests": len(verified),
            "verify_p50_us": round(statistics.median(verify), 1),
            "verify_mean_us": round(statistics.fmean(verify) / _per(verified), 1),
            "store_p50_us": {
                s: round(statistics.median(r.store_us.get(s, 0.0) for r in verified), 1)
                for s in names
            },
            "store_calls_per_request": {
                s: round(sum(r.store_calls.get(s, 0) for r in verified) / len(verified), 2)
                for s in names
            },
            "metrics_check_mean_us": metrics_check_us.get(name),
        }
    return hops


def _per(verified: Sequence[_Request]) -> float:
    """Verifications per verified request (a mean per verification, like /metrics')."""
    return sum(r.verifications for r in verified) / len(verified)


def settled(collector: Collector, timeout: float = 10.0) -> list[Received]:
    """Every span exported so far: until the count stops growing for a few export periods."""
    deadline = time.monotonic() + timeout
    seen = -1
    spans = collector.spans()
    while len(spans) != seen and time.monotonic() < deadline:
        seen = len(spans)
        time.sleep(3 * EXPORT_DELAY_MS / 1000)  # a poll interval: several export periods
        spans = collector.spans()
    return spans
