"""The bench's Redis client (redis-py): INFO for the scrapes, PING and DEBUG SLEEP for experiments.

Every call opens its own short-lived connection, as a measuring probe should: no retries (a slow
or refused answer is the finding), and nothing sent on connect (RESP2, so no HELLO; no CLIENT
SETINFO), which INFO commandstats would otherwise count as store traffic in a measured window.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

import redis

from devstack.stores import redis_probe

# Our own probes, left out of the store's command counts.
PROBE_COMMANDS = frozenset({"cmdstat_info", "cmdstat_ping"})


def connect(port: int, timeout: float) -> redis.Redis:
    return redis_probe(port, timeout)


def info(port: int) -> dict[str, Any]:
    """`INFO all`, parsed by redis-py (a cmdstat_* value is a dict of its fields)."""
    with connect(port, 2.0) as client:
        return dict(client.info("all"))


def store_counters(port: int) -> tuple[float, float, float]:
    """Commands served, microseconds spent in them, CPU seconds (INFO commandstats, cpu)."""
    stats = info(port)
    calls = usec = 0.0
    for key, value in stats.items():
        if key.startswith("cmdstat_") and key not in PROBE_COMMANDS:
            calls += float(value["calls"])
            usec += float(value["usec"])
    cpu = float(stats.get("used_cpu_user", 0)) + float(stats.get("used_cpu_sys", 0))
    return calls, usec, cpu


def answers(port: int, timeout: float) -> bool:
    """Whether the store answers PING within `timeout`."""
    try:
        with connect(port, timeout) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def sleep(port: int, seconds: float) -> None:
    """Block the store's command loop for `seconds` (DEBUG SLEEP; needs enable-debug-command)."""
    with connect(port, seconds + 5) as client:
        client.execute_command("DEBUG", "SLEEP", seconds)


def median_rtt_ms(port: int, n: int = 200) -> float:
    """Median PING round trip over one connection (opened by a first, untimed PING)."""
    with connect(port, 5.0) as client:
        return median_ping_ms(client, n)


def median_ping_ms(client: redis.Redis, n: int) -> float:
    """Median PING round trip on this client's connection, after one untimed PING."""
    client.ping()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return round(samples[len(samples) // 2] * 1000, 3)


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
