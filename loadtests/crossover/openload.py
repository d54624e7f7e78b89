"""The knee's windows as open-model load (loadtests/load): GET /orders through the gateway at
scheduled times, from a load process pinned to its own CPU while the stack runs on the others.

Locust's users wait for each answer before the next request, so a slow moment hides the
requests it should have sent and the knee looks later than it is; here each request leaves on
schedule and its latency counts from then. The window is read like Locust's (the servers'
counters over the measured part, loadtests/crossover/servers.py) and recorded as the same
Segment, with the generator's own figures beside it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import psutil

from loadtests.bench.client import Gateway
from loadtests.crossover.results import Segment
from loadtests.crossover.servers import Idle, Servers, costs
from loadtests.load import Isolation, Plan, Schedule, Target, isolate, pin, run_window_sync
from loadtests.load.affinity import available_cpus
from loadtests.load.generator import STARTUP_TIMEOUT
from loadtests.modes import Mode

PATH = "/orders?limit=10"  # the request Locust's `get` task sends
CREDENTIALS = 8  # users whose credentials the requests take in turn
CREDENTIAL_AGE_S = 30.0  # log in again after this: well inside every access token's life
CONNECTIONS = 64  # the load process's pool; a request waiting for one still counts
TIMEOUT_S = 5.0


class Measured(Protocol):
    @property
    def segment(self) -> Segment: ...


class Measures(Protocol):
    """What the knee's ladder needs of a driver: one window of one design at one rate."""

    def measure(
        self,
        servers: Servers,
        idle: Idle,
        designs: Sequence[str],
        task: str,
        rate: float,
        seconds: float,
        settle: float,
    ) -> Measured: ...


@dataclass(frozen=True)
class OpenWindow:
    segment: Segment


def system_pids(exclude: Sequence[int] = ()) -> list[int]:
    """Every process this run started (the stack, its stores, the side gateway, a store proxy),
    less the trees of `exclude` (Locust: idle while the knee is measured)."""
    me = psutil.Process(os.getpid())
    skipped: set[int] = set()
    for pid in exclude:
        try:
            skipped |= {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
        except psutil.Error:
            skipped.add(pid)
    return [c.pid for c in me.children(recursive=True) if c.pid not in skipped]


@dataclass
class OpenDriver:
    """Knee windows from the open-model generator, the system pinned away from it."""

    gateway_url: str
    modes: Mapping[str, Mode]
    usernames: Sequence[str]
    isolation: Isolation | None = None
    _credentials: dict[str, tuple[float, tuple[Target, ...]]] = field(default_factory=dict)

    def isolate(self, pids: Sequence[int]) -> Isolation:
        """Pin `pids` to every CPU but the generator's (one CPU for the generator)."""
        self.isolation = isolate(pids, generator_count=1)
        return self.isolation

    def release(self) -> None:
        """Give the system back every CPU (the windows after the knee are Locust's)."""
        if self.isolation is not None and self.isolation.isolated:
            pin(self.isolation.system_pids, available_cpus())
        self.isolation = None

    def targets(self, name: str) -> tuple[Target, ...]:
        """GET /orders with the credentials of a few users of design `name`, logged in anew
        when the last ones are older than CREDENTIAL_AGE_S."""
        kept = self._credentials.get(name)
        if kept is not None and time.monotonic() - kept[0] < CREDENTIAL_AGE_S:
            return kept[1]
        gateway = Gateway(self.gateway_url)
        credential = self.modes[name].credential
        targets = tuple(
            Target(url=self.gateway_url + PATH, headers=gateway.login(credential, user))
            for user in self.usernames[:CREDENTIALS]
        )
        self._credentials[name] = (time.monotonic(), targets)
        return targets

    def measure(
        self,
        servers: Servers,
        idle: Idle,
        designs: Sequence[str],
        task: str,
        rate: float,
        seconds: float,
        settle: float,
    ) -> OpenWindow:
        """One design at `rate` for `settle` + `seconds`; the servers are read over the last
        `seconds` only, the part whose requests the window counts."""
        (name,) = designs
        plan = Plan(
            targets=self.targets(name),
            schedule=Schedule(rate=rate, seconds=settle + seconds),
            measure_from=settle,
            connections=CONNECTIONS,
            timeout=TIMEOUT_S,
            isolation=self.isolation,
        )
        started = threading.Event()
        start: list[float] = []

        def on_start(epoch: float) -> None:
            start.append(epoch)
            started.set()

        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(run_window_sync, plan, on_start)
            deadline = time.monotonic() + STARTUP_TIMEOUT + 5
            while not started.wait(0.05):
                if running.done() or time.monotonic() > deadline:
                    running.result(timeout=1)  # its error, if it failed to start
                    raise RuntimeError("the load generator did not start")
            # The measured part of the window: these sleeps are its length, not a wait.
            time.sleep(max(0.0, start[0] + settle - time.time()))
            before = servers.snapshot()
            time.sleep(max(0.0, start[0] + settle + seconds - time.time()))
            after = servers.snapshot()
            window = running.result()
        paid = costs(before, after, idle)
        failed = {f"HTTP {k}": n for k, n in window.answered.items() if k != "2xx"}
        errors = {**failed, **window.errors}
        if window.unsent:
            errors["not sent (generator behind)"] = window.unsent
        latency = window.latency
        segment: Segment = {
            **paid,
            "design": name,
            "task": "get",
            "offered_rps": rate,
            "requests": sum(window.answered.values()),
            "failures": sum(errors.values()),
            "errors": errors,
            "p50_ms": latency.p50_ms,
            "p90_ms": latency.p90_ms,
            "p99_ms": latency.p99_ms,
            "max_ms": latency.max_ms,
            "locust_cpu": list(window.process_cpu_shares),
            "generator_limited": window.generator_limited,
            "generator": "open",
            "p999_ms": latency.p999_ms,
            "served_rps": window.served_rps,
            "send_lag_p99_ms": window.send_lag_p99_ms,
            "limited_because": list(window.limited_because),
            "generator_cpus": list(window.generator_cpus),
            "system_cpus": list(window.system_cpus),
            "isolated": window.isolated,
        }
        return OpenWindow(segment)
