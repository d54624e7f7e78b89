"""Server-side counters: every service's /metrics and every store's INFO, read at one moment.

Two snapshots around a window give what the servers paid for the traffic in it, per request the
gateway answered, with the idle baseline (timers, health checks) taken out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import Ports, Stack
from loadtests.bench import stores
from loadtests.bench.client import Gateway, get_text
from loadtests.bench.results import PerName, ServerCosts
from loadtests.modes import SESSION_COOKIE, revealed_settings

SERVICE_ROUTES_SKIPPED = {"/metrics", "/healthz", "/readyz"}


@dataclass
class Snapshot:
    """Counters read from every service and store at one moment."""

    at: float
    epoch: float = field(default_factory=time.time)  # wall clock, to match spans' timestamps
    cpu: dict[str, float] = field(default_factory=dict)  # service -> process CPU seconds
    requests: dict[str, float] = field(default_factory=dict)  # service -> answered requests
    auth_checks: dict[str, float] = field(default_factory=dict)  # service -> ok verifications
    auth_seconds: dict[str, tuple[float, float]] = field(
        default_factory=dict
    )  # service -> (sum, count)
    session_cache: dict[str, float] = field(default_factory=dict)  # hit/miss, every service
    exchanges: dict[str, float] = field(default_factory=dict)  # hit/miss, every service
    store_calls: dict[str, float] = field(default_factory=dict)  # store -> commands
    store_usec: dict[str, float] = field(default_factory=dict)  # store -> usec inside Redis
    store_cpu: dict[str, float] = field(default_factory=dict)  # store -> Redis CPU seconds


@dataclass
class ServiceCounters:
    """What one service's /metrics says at one moment."""

    cpu: float = 0.0  # process CPU seconds
    requests: float = 0.0  # answered requests, probes left out
    checks: float = 0.0  # ok verifications
    auth_sum: float = 0.0  # seconds spent verifying
    auth_count: float = 0.0
    session_cache: dict[str, float] = field(default_factory=dict)  # by result: hit, miss
    exchanges: dict[str, float] = field(default_factory=dict)  # by result: hit, miss


def _add(into: dict[str, float], key: str, value: float) -> None:
    into[key] = into.get(key, 0.0) + value


def scrape_service(text: str) -> ServiceCounters:
    out = ServiceCounters()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "process_cpu_seconds_total":
                out.cpu += sample.value
            elif sample.name == "http_requests_total":
                if sample.labels.get("route") not in SERVICE_ROUTES_SKIPPED:
                    out.requests += sample.value
            elif sample.name == "auth_checks_total" and sample.labels.get("result") == "ok":
                out.checks += sample.value
            elif sample.name == "auth_check_duration_seconds_sum":
                out.auth_sum += sample.value
            elif sample.name == "auth_check_duration_seconds_count":
                out.auth_count += sample.value
            elif sample.name == "session_cache_total":
                _add(out.session_cache, sample.labels.get("result", "?"), sample.value)
            elif sample.name == "token_exchanges_total":
                _add(out.exchanges, sample.labels.get("result", "?"), sample.value)
    return out


def target_settings(gateway: Gateway, username: str) -> dict[str, str]:
    """The design settings a running gateway shows (loadtests.modes.revealed_settings), after one
    session request of its own so that the session cache and the exchange can show."""
    headers = gateway.login(SESSION_COOKIE, username)
    gateway.status(headers)
    return revealed_settings(get_text(gateway.url + "/metrics"))


@dataclass
class Target:
    """Where the services and stores answer; a Stack, or a --host with optional URLs."""

    gateway: str
    services: dict[str, str]  # name -> base URL for /metrics
    stores: dict[str, int]  # name -> local Redis port (only when we can reach it)

    @classmethod
    def of(cls, stack: Stack, stores: dict[str, int]) -> Target:
        """A local stack's gateway, every service's address, and the given stores."""
        return cls(stack.gateway_url, {n: stack.url(n) for n in stack.service_names}, stores)

    def snapshot(self) -> Snapshot:
        snap = Snapshot(at=time.monotonic())
        for name, url in self.services.items():
            service = name.split("-")[0]  # orders-1, orders-2 -> orders
            counters = scrape_service(get_text(url + "/metrics"))
            _add(snap.cpu, service, counters.cpu)
            _add(snap.requests, service, counters.requests)
            _add(snap.auth_checks, service, counters.checks)
            s, c = snap.auth_seconds.get(service, (0.0, 0.0))
            snap.auth_seconds[service] = (s + counters.auth_sum, c + counters.auth_count)
            for result, value in counters.session_cache.items():
                _add(snap.session_cache, result, value)
            for result, value in counters.exchanges.items():
                _add(snap.exchanges, result, value)
        for name, port in self.stores.items():
            snap.store_calls[name], snap.store_usec[name], snap.store_cpu[name] = (
                stores.store_counters(port)
            )
        return snap


def growth_per_second(
    before: Mapping[str, float], after: Mapping[str, float], wall: float
) -> dict[str, float]:
    """How fast each counter grew over `wall` seconds (never below zero)."""
    return {k: max(v - before.get(k, 0.0), 0.0) / wall for k, v in after.items()}


def local_stack(
    workdir: Path, name: str, settings: Mapping[str, str], *, session_cluster: bool = False
) -> Stack:
    """A stack of the bench's own on free ports (not started): quiet services, its files and
    log (`<name>.log`, copied into the report when it is the main stack) under `workdir`."""
    return Stack(
        ports=Ports.free(),
        workdir=workdir / name,
        keys_dir=workdir / "keys",
        log=(workdir / f"{name}.log").open("w"),
        env={"LOG_LEVEL": "WARNING", **settings},
        session_cluster=session_cluster,
    )


@dataclass(frozen=True)
class Idle:
    """CPU seconds per second each process burns with no traffic (timers, health checks)."""

    cpu: dict[str, float]
    store_cpu: dict[str, float]

    @classmethod
    def measure(cls, target: Target, seconds: float) -> Idle:
        before = target.snapshot()
        time.sleep(seconds)
        after = target.snapshot()
        wall = after.at - before.at
        return cls(
            growth_per_second(before.cpu, after.cpu, wall),
            growth_per_second(before.store_cpu, after.store_cpu, wall),
        )

    def ms_per_s(self) -> PerName:
        return {k: round(v * 1000, 2) for k, v in {**self.cpu, **self.store_cpu}.items()}


NO_IDLE = Idle({}, {})


def delta(
    before: Snapshot, after: Snapshot, locust_cpu: float, idle: Idle = NO_IDLE
) -> ServerCosts:
    """Per-request costs over a window, normalised by the requests the gateway answered.

    CPU figures have the idle baseline (measured in the same run) taken out, so they are the
    cost of the traffic, not of the timers that run anyway.
    """
    requests = after.requests.get("gateway", 0.0) - before.requests.get("gateway", 0.0)
    wall = after.at - before.at
    per = max(requests, 1.0)

    def cpu_us(spent: float, idle_rate: float) -> float:
        return round(max(spent - idle_rate * wall, 0.0) / per * 1e6, 1)

    def per_request(now: dict[str, float], then: dict[str, float]) -> PerName:
        return {s: round((now[s] - then.get(s, 0.0)) / per, 3) for s in now}

    auth_check_us: PerName = {}
    for s, (total, count) in after.auth_seconds.items():
        b_total, b_count = before.auth_seconds.get(s, (0.0, 0.0))
        if count - b_count > 0:
            auth_check_us[s] = round((total - b_total) / (count - b_count) * 1e6, 1)
    store_usec_per_call: PerName = {}
    for s in after.store_calls:
        calls = after.store_calls[s] - before.store_calls.get(s, 0.0)
        if calls > 0:
            store_usec_per_call[s] = round(
                (after.store_usec[s] - before.store_usec.get(s, 0.0)) / calls, 2
            )
    return {
        "window_s": round(wall, 3),
        "window_epoch": [round(before.epoch, 3), round(after.epoch, 3)],
        "gateway_requests": requests,
        "gateway_rps": round(requests / wall, 1) if wall else 0.0,
        "cpu_us_per_request": {
            s: cpu_us(after.cpu[s] - before.cpu.get(s, 0.0), idle.cpu.get(s, 0.0))
            for s in after.cpu
        },
        "auth_checks_per_request": per_request(after.auth_checks, before.auth_checks),
        "auth_check_us": auth_check_us,
        "store_ops_per_request": per_request(after.store_calls, before.store_calls),
        "store_usec_per_call": store_usec_per_call,
        "store_cpu_us_per_request": {
            s: cpu_us(after.store_cpu[s] - before.store_cpu.get(s, 0.0), idle.store_cpu.get(s, 0.0))
            for s in after.store_cpu
        },
        "locust_cpu_fraction": round(locust_cpu / wall, 3) if wall else 0.0,
        "session_cache_per_request": per_request(after.session_cache, before.session_cache),
        "token_exchanges_per_request": per_request(after.exchanges, before.exchanges),
    }
