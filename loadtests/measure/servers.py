"""What the servers paid over a window: every service's /metrics and every store's INFO, read
with redis-py on any address (the session store may be in a network namespace): `INFO
commandstats` for the commands served, `INFO cpu` for the store's own CPU. Beside them the store
probes the experiments use (PING round trips, DEBUG SLEEP, redis-benchmark).

Every store call opens its own short-lived connection, as a measuring probe should: no retries
(a slow or refused answer is the finding), and nothing sent on connect (RESP2, so no HELLO; no
CLIENT SETINFO), which INFO commandstats would otherwise count as store traffic in a window.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis
from prometheus_client.parser import text_string_to_metric_families

from devstack.stores import redis_probe
from loadtests.measure.client import get_text

# Our own probes, left out of the store's command counts.
PROBE_COMMANDS = frozenset({"cmdstat_info", "cmdstat_ping"})
SERVICE_ROUTES_SKIPPED = {"/metrics", "/healthz", "/readyz"}


@dataclass
class ServiceCounters:
    """What one service's /metrics says at one moment."""

    cpu: float = 0.0  # process CPU seconds
    requests: float = 0.0  # answered requests, probes left out
    checks: float = 0.0  # ok verifications
    auth_sum: float = 0.0  # seconds spent verifying
    auth_count: float = 0.0


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
    return out


def answered(service_url: str) -> float:
    """Requests a service has answered so far (its probes left out)."""
    return scrape_service(get_text(service_url + "/metrics")).requests


def requests_on_route(metrics_text: str, route: str) -> int:
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "http_requests_total" and sample.labels.get("route") == route:
                total += sample.value
    return int(total)


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
        client.ping()  # opens the connection: not a round trip to count
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            client.ping()
            samples.append(time.perf_counter() - started)
    samples.sort()
    return round(samples[len(samples) // 2] * 1000, 3)


def answers(address: StoreAddress, timeout: float) -> bool:
    """Whether the store answers PING within `timeout`."""
    try:
        with connect(address, timeout) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def sleep(address: StoreAddress, seconds: float) -> None:
    """Block the store's command loop for `seconds` (DEBUG SLEEP; needs enable-debug-command)."""
    with connect(address, seconds + 5) as client:
        client.execute_command("DEBUG", "SLEEP", seconds)


def redis_benchmark(
    port: int, requests: int, clients: int = 50, *, cluster: bool = False
) -> dict[str, float] | None:
    """redis-benchmark GET and SET (ops/s by command) on the server at `port` (with `cluster`,
    the cluster that node belongs to); None where redis-benchmark is missing, fails or takes
    longer than two minutes."""
    if shutil.which("redis-benchmark") is None:
        return None
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "get,set"]
    argv += ["-n", str(requests), "-c", str(clients), "--csv", "-q"]
    if cluster:
        argv.append("--cluster")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return None
    rps: dict[str, float] = {}
    for line in done.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) > 1 and cells[0] in ("GET", "SET"):
            rps[cells[0]] = float(cells[1])
    return rps if set(rps) == {"GET", "SET"} else None


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
