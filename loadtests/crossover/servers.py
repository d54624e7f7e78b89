"""What the servers paid over a window: every service's /metrics and every store's INFO.

Like loadtests/bench/scrape.py (whose /metrics parser this uses), but a store may be on any
address (the session store in a network namespace), read with redis-py: `INFO commandstats`
for the commands served, `INFO cpu` for the store's own CPU.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis

from devstack.stores import redis_probe
from loadtests.bench.client import get_text
from loadtests.bench.scrape import growth_per_second, scrape_service
from loadtests.bench.stores import PROBE_COMMANDS, median_ping_ms
from loadtests.crossover.results import Costs


@dataclass(frozen=True, slots=True)
class StoreAddress:
    host: str
    port: int


def connect(address: StoreAddress, timeout: float = 2.0) -> redis.Redis:
    """A probe connection: no retries, nothing sent on connect (RESP2, no CLIENT SETINFO)."""
    return redis_probe(address.port, timeout, address.host)


def store_counters(address: StoreAddress) -> tuple[float, float, float]:
    """Commands served, microseconds spent in them, CPU seconds."""
    with connect(address) as client:
        stats = dict(client.info("commandstats"))
        cpu = dict(client.info("cpu"))
    calls = usec = 0.0
    for key, value in stats.items():
        if key.startswith("cmdstat_") and key not in PROBE_COMMANDS:
            calls += float(value["calls"])
            usec += float(value["usec"])
    return calls, usec, float(cpu.get("used_cpu_user", 0)) + float(cpu.get("used_cpu_sys", 0))


def median_rtt_ms(address: StoreAddress, n: int = 50) -> float:
    """Median PING round trip over one connection, as a service on this host sees the store."""
    with connect(address, 5.0) as client:
        return median_ping_ms(client, n)


@dataclass
class Snapshot:
    at: float
    cpu: dict[str, float] = field(default_factory=dict)  # service or store -> CPU seconds
    requests: dict[str, float] = field(default_factory=dict)  # service -> answered requests
    checks: dict[str, float] = field(default_factory=dict)  # service -> ok verifications
    store_calls: dict[str, float] = field(default_factory=dict)


def _add(into: dict[str, float], key: str, value: float) -> None:
    into[key] = into.get(key, 0.0) + value


@dataclass
class Servers:
    """Where to read the counters: services by process name (orders-1, gateway-edgeoff: summed
    by the part before the dash), stores by name (session_store, data_store)."""

    services: dict[str, str]
    stores: dict[str, StoreAddress]

    def snapshot(self) -> Snapshot:
        with ThreadPoolExecutor(max_workers=len(self.services) + len(self.stores)) as pool:
            texts = {n: pool.submit(get_text, url + "/metrics") for n, url in self.services.items()}
            counters = {n: pool.submit(store_counters, a) for n, a in self.stores.items()}
            snap = Snapshot(at=time.monotonic())
            for name, text in texts.items():
                service = name.split("-")[0]
                scraped = scrape_service(text.result())
                _add(snap.cpu, service, scraped.cpu)
                _add(snap.requests, service, scraped.requests)
                _add(snap.checks, service, scraped.checks)
            for name, future in counters.items():
                calls, _, cpu = future.result()
                snap.store_calls[name] = calls
                snap.cpu[name] = cpu
        return snap


@dataclass(frozen=True)
class Idle:
    """CPU seconds per second each service and store burns with no traffic."""

    rates: dict[str, float]

    @classmethod
    def measure(cls, servers: Servers, seconds: float) -> Idle:
        before = servers.snapshot()
        time.sleep(seconds)
        after = servers.snapshot()
        return cls(growth_per_second(before.cpu, after.cpu, after.at - before.at))


def _since(after: Mapping[str, float], before: Mapping[str, float], name: str) -> float:
    """How much a counter grew; a counter that went down was restarted with its process (auth
    during a key rotation): it grew by all it has."""
    now, then = after.get(name, 0.0), before.get(name, 0.0)
    return now - then if now >= then else now


def costs(before: Snapshot, after: Snapshot, idle: Idle | None = None) -> Costs:
    """Per request the gateway answered over the window, the idle baseline taken out."""
    wall = max(after.at - before.at, 1e-9)
    requests = _since(after.requests, before.requests, "gateway")
    per = max(requests, 1.0)
    rates: Mapping[str, float] = idle.rates if idle is not None else {}
    cpu = {
        name: round(
            max(_since(after.cpu, before.cpu, name) - rates.get(name, 0.0) * wall, 0.0) / per * 1e6,
            1,
        )
        for name in after.cpu
    }
    stores = set(after.store_calls)
    checks = sum(_since(after.checks, before.checks, name) for name in after.checks)
    return {
        "window_s": round(wall, 3),
        "gateway_requests": requests,
        "achieved_rps": round(requests / wall, 1),
        "cpu_us_per_request": cpu,
        "cpu_us_services": round(sum(v for k, v in cpu.items() if k not in stores), 1),
        "cpu_us_total": round(sum(cpu.values()), 1),
        "checks_per_request": round(checks / per, 3),
        "store_ops_per_request": {
            name: round(_since(after.store_calls, before.store_calls, name) / per, 3)
            for name in after.store_calls
        },
    }
