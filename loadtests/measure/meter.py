"""One measured window: open-model load of one design on one route at one rate, from the load
generator on its own CPU, and what every process and store of the system paid for it.

The load (loadtests/load) sends each request at its scheduled time whether or not earlier ones
were answered, counts latency from that time, and counts what arrived inside the measured part.
The services' CPU is read from the kernel (schedstat) and the stores' from INFO cpu and
commandstats at the start and the end of the measured part; nothing asks the services anything
during it. The idle baseline of the same start of the services is taken out.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from loadtests.load import Isolation, Plan, Schedule, Target, Workers
from loadtests.load.affinity import Spinner
from loadtests.load.generator import STARTUP_TIMEOUT
from loadtests.measure import cpu
from loadtests.measure.client import PASSWORD, Gateway
from loadtests.measure.schema import CONTROL, Window
from loadtests.measure.servers import Idle, Servers
from loadtests.modes import Mode

LISTED = 10  # orders in every answer of ORDERS: each user has at least this many from the start
ORDERS = f"/orders?limit={LISTED}"  # the request of capacity, CPU per request, latency, distance
# The write, measured as its own request type: an order stored with fsync (AOF always), the
# caller's credential checked at the gateway, orders and auth.
NEW_ORDER = ("POST", "/orders", '{"item": "bench", "quantity": 1}')
CREDENTIALS = 8  # users whose credentials the requests take in turn
CREDENTIAL_AGE_S = 30.0  # log in again after this: well inside every access token's life
CONNECTIONS = 64  # the load process's pool; a request waiting for one still counts
TIMEOUT_S = 5.0
SESSION_STORE = "session_store"
STORES = ("session_store", "data_store")
QUIET_CPU = 0.05  # CPUs' worth the services may use above idle and count as at rest
QUIET_LIMIT_S = 5.0
QUIET_SAMPLE_S = 0.05  # schedstat counts nanoseconds: 50 ms of CPU time is plenty to judge


def chain_path(design: str, hops: int) -> str:
    """The chain's route: the control takes the public one (no check anywhere)."""
    route = "public" if design == CONTROL else "private"
    return f"/relay/{route}?hops={hops}"


@dataclass
class Meter:
    """Windows against one running stack; `isolation` says where load and system run."""

    gateway_url: str
    modes: Mapping[str, Mode]
    usernames: Sequence[str]
    servers: Servers  # every service and store: read at rest, never during a window
    pids: Mapping[str, Sequence[int]]  # the services' processes by group: their CPU
    idle: Idle  # the stores' CPU per second at rest
    idle_services: Mapping[str, float]  # the services' CPU per second at rest
    workers: Workers  # the load processes, kept between windows
    isolation: Isolation | None = None
    # The other starts of the services running beside this one on the same CPUs (the designs'
    # windows take turns across them): their processes by group, and what they burn at rest.
    # A window waits for them to be at rest too, or their backlog would be this window's load.
    neighbours: Mapping[str, Sequence[int]] = field(default_factory=dict)
    neighbours_idle: float = 0.0
    start_index: int | None = None  # the start of the services measured (windows' `config`)
    # The spinners keeping the system's CPUs awake: their CPU time over their laps during the
    # window is how fast each CPU ran the same work then (the window's `spin_us_per_lap`).
    spinners: Sequence[Spinner] = ()
    _credentials: dict[str, tuple[float, tuple[dict[str, str], ...]]] = field(default_factory=dict)

    def credentials(self, design: str) -> tuple[dict[str, str], ...]:
        """The headers of a few logged-in users of `design` (none for the control), logged in
        anew when older than CREDENTIAL_AGE_S."""
        if design == CONTROL:
            return ({},)
        kept = self._credentials.get(design)
        if kept is not None and time.monotonic() - kept[0] < CREDENTIAL_AGE_S:
            return kept[1]
        gateway = Gateway(self.gateway_url)
        credential = self.modes[design].credential
        headers = tuple(gateway.login(credential, u) for u in self.usernames[:CREDENTIALS])
        self._credentials[design] = (time.monotonic(), headers)
        return headers

    def logins(self, design: str) -> tuple[Target, ...]:
        """`design`'s login request for each user whose credentials the windows take, with no
        credential sent. Presenting a session ends it (fixation): that is more work than a
        login, and would end the sessions the other windows send. One account per target:
        each login holds a failure reservation until it succeeds, and LOGIN_MAX_FAILURES of
        one account in flight at once would be refused with 429."""
        credential = self.modes[design].credential
        return tuple(
            Target(
                url=self.gateway_url + credential.login_path,
                method="POST",
                headers={"Content-Type": "application/json"},
                body=json.dumps(credential.login_body(user, PASSWORD)),
            )
            for user in self.usernames[:CREDENTIALS]
        )

    def forget(self) -> None:
        """Drop the kept credentials (the services restarted: sessions may be gone)."""
        self._credentials.clear()

    def quiesce(self, limit_s: float = QUIET_LIMIT_S) -> float:
        """Wait until the services and their neighbours are at rest (together under QUIET_CPU
        of a CPU over QUIET_SAMPLE_S): after an overloaded window they may still be working
        through requests their clients gave up on, and that work must not land in the next
        window.
        Returns the seconds waited."""
        began = time.monotonic()
        watched = {**self.pids, **self.neighbours}
        at_rest = sum(self.idle_services.values()) + self.neighbours_idle
        before = cpu.read(watched)
        while time.monotonic() - began < limit_s:
            time.sleep(QUIET_SAMPLE_S)  # the sampling period of the CPU reading
            after = cpu.read(watched)
            busy = sum(cpu.rates(before, after).values()) - at_rest
            if busy < QUIET_CPU:
                break
            before = after
        return time.monotonic() - began

    def window(
        self,
        phase: str,
        design: str,
        path: str,
        rate: float,
        seconds: float,
        settle: float,
        repeat: int = 1,
        method: str = "GET",
        body: str | None = None,
        histogram: bool = False,
        send: Sequence[Target] = (),
    ) -> Window:
        """`settle` + `seconds` of load at `rate`; the servers are read over the last
        `seconds`, the part whose requests the window counts. `histogram`: keep the window's
        latency histogram (encoded), for figures merged over windows. `send`: the requests to
        send in turn instead of `method path body` with each user's credential."""
        extra = {"Content-Type": "application/json"} if body is not None else {}
        targets = tuple(send) or tuple(
            Target(url=self.gateway_url + path, method=method, headers={**h, **extra}, body=body)
            for h in self.credentials(design)
        )
        rested = self.quiesce()
        plan = Plan(
            targets=targets,
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
            running = pool.submit(self.workers.run, plan, on_start)
            deadline = time.monotonic() + STARTUP_TIMEOUT + 5
            while not started.wait(0.05):
                if running.done() or time.monotonic() > deadline:
                    running.result(timeout=1)  # its error, if it failed to start
                    raise RuntimeError("the load generator did not start")
            # The measured part of the window: these sleeps are its length, not a wait.
            time.sleep(max(0.0, start[0] + settle - time.time()))
            system_cpus = self.isolation.system_cpus if self.isolation else ()
            # Nothing is asked of the services during the window: a scrape of their /metrics
            # costs each one milliseconds of CPU on the system's core, which stalled every
            # request behind it (p99 10-30 ms at a third of capacity, against 3-4 ms without).
            # Their CPU comes from the kernel, what they served from the load's own count;
            # only the stores are asked (INFO, microseconds inside redis).
            stores = Servers({}, dict(self.servers.stores))  # what a window reads
            # The spinners are read outside the stores' and the services' readings, which
            # bracket the measured part as closely as they can: a read between them would
            # stretch the stores' wall time past the load (short windows under-count the
            # store's operations per request by what it adds).
            spun_before = spun(self.spinners)
            before = stores.snapshot()
            cpu_before = cpu.read(self.pids)
            steal_before = cpu.steal_seconds(system_cpus)
            left = max(0.0, start[0] + settle + seconds - time.time())
            ended = time.monotonic() + left  # the end of the measured part: the load stops
            time.sleep(left)
            steal = cpu.steal_seconds(system_cpus) - steal_before
            cpu_after = cpu.read(self.pids)
            after = stores.snapshot()
            spun_after = spun(self.spinners)
            measured = running.result()
        wall = cpu_after.at - cpu_before.at
        # What the system served inside the measured part (answers that arrived in it), over
        # the time between the two CPU readings around it (served_in: their edges).
        latency_s = (measured.latency.p50_ms or 0.0) / 1e3
        rps = measured.served_inside_rps
        requests = served_in(cpu_before.at, cpu_after.at, ended, rps, latency_s)
        by_process = {
            name: round(
                max(rate - self.idle_services.get(name, 0.0), 0.0) * wall / requests * 1e6, 1
            )
            for name, rate in cpu.rates(cpu_before, cpu_after).items()
        }
        store_wall = max(after.at - before.at, 1e-9)
        store_requests = served_in(before.at, after.at, ended, rps, latency_s)
        for store in STORES:
            spent = after.cpu.get(store, 0.0) - before.cpu.get(store, 0.0)
            spent -= self.idle.rates.get(store, 0.0) * store_wall
            by_process[store] = round(max(spent, 0.0) / store_requests * 1e6, 1)
        ops = after.store_calls.get(SESSION_STORE, 0.0) - before.store_calls.get(SESSION_STORE, 0.0)
        cpu_total = sum(by_process.values())
        answered = sum(measured.answered.values())
        failures = answered - measured.answered.get("2xx", 0)
        failures += sum(measured.errors.values()) + measured.unsent
        window: Window = {
            "phase": phase,
            "design": design,
            "repeat": repeat,
            "offered_rps": rate,
            "served_rps": measured.served_rps,
            "achieved_rps": measured.served_inside_rps,
            "p50_ms": measured.latency.p50_ms,
            "p99_ms": measured.latency.p99_ms,
            "failures": failures,
            "cpu_us_per_request": round(cpu_total, 1),
            "cpu_ms_per_s": round(cpu_total * requests / max(wall, 1e-9) / 1e3, 2),
            "cpu_by_process": by_process,
            "store_ops_per_request": round(max(ops, 0.0) / store_requests, 3),
            "generator_limited": measured.generator_limited,
            # The load generator's own CPU per request it was to send (settle included: its
            # CPU is read over the whole schedule), on its own CPUs.
            "load_cpu_us_per_request": round(
                measured.generator_cpu_seconds / max(rate * (settle + seconds), 1.0) * 1e6, 1
            ),
            "rest_s": round(rested, 2),
            "steal_pct": round(steal / max(wall, 1e-9) / max(len(system_cpus), 1) * 100, 1),
        }
        if self.start_index is not None:
            window["config"] = self.start_index
        lap = us_per_lap(spun_before, spun_after)
        if lap is not None:
            window["spin_us_per_lap"] = lap
        if histogram:
            window["histogram"] = measured.histogram
        return window


def served_in(start: float, end: float, ended: float, rps: float, latency_s: float) -> float:
    """The requests whose work a reading from `start` to `end` (monotonic seconds) holds, the
    load sending `rps` until `ended`, each request's work spread over its `latency_s`.

    A reading that starts under load holds what is left of the requests in flight then, and
    one that ends when the load does lacks what is left of those in flight at its end: the two
    cancel, and it holds rps x (end - start) requests. One that ends `d` after the load (the
    stores are read after the services' CPU: 16 ms on a slow host) holds the in-flight
    requests' work of those d seconds too, on average d - d^2 / 2L of a request per request
    sent per second for d under the latency L, L / 2 past it; not a full rps x d: counting the
    tail as load read a --quick session chain 4 % short of its k + 1 store operations per
    request (5.77 at k = 5), and counting none of it 3 % over (6.19)."""
    tail = max(end - ended, 0.0)
    if latency_s <= 0:
        tail = 0.0
    elif tail < latency_s:
        tail -= tail * tail / (2 * latency_s)
    else:
        tail = latency_s / 2
    return max(rps * (min(end, ended) - start + tail), 1.0)


def spun(spinners: Sequence[Spinner]) -> list[tuple[float, int]]:
    """Each spinner's CPU seconds and laps, now."""
    return [(cpu.process_cpu_seconds(s.pid), s.laps()) for s in spinners]


MIN_LAPS = 10  # fewer laps between two readings say little of a lap's cost


def us_per_lap(
    before: Sequence[tuple[float, int]], after: Sequence[tuple[float, int]]
) -> float | None:
    """The spinners' CPU time per lap between two readings, us: their CPU over their laps,
    summed over the spinners whose laps and CPU both grew (one gone mid-window counts for
    nothing); None below MIN_LAPS in all."""
    spent, laps = 0.0, 0
    for (b_cpu, b_laps), (a_cpu, a_laps) in zip(before, after, strict=True):
        if a_laps > b_laps and a_cpu > b_cpu:
            spent += a_cpu - b_cpu
            laps += a_laps - b_laps
    return round(spent / laps * 1e6, 2) if laps >= MIN_LAPS else None


def at_rest(
    servers: Servers, pids: Mapping[str, Sequence[int]], seconds: float
) -> tuple[Idle, dict[str, float]]:
    """What the stores and the services burn per second with no traffic (once what a start
    of the services leaves to do is done)."""
    began = time.monotonic()
    before_rest = cpu.read(pids)
    while time.monotonic() - began < QUIET_LIMIT_S:
        time.sleep(0.1)  # the sampling period of the CPU reading
        now = cpu.read(pids)
        if sum(cpu.rates(before_rest, now).values()) < QUIET_CPU:
            break
        before_rest = now
    before, cpu_before = servers.snapshot(), cpu.read(pids)
    time.sleep(seconds)  # the length of the measurement, not a wait for something
    cpu_after, after = cpu.read(pids), servers.snapshot()
    wall = max(after.at - before.at, 1e-9)
    store_rates = {
        name: max(after.cpu.get(name, 0.0) - before.cpu.get(name, 0.0), 0.0) / wall
        for name in STORES
    }
    return Idle(store_rates), cpu.rates(cpu_before, cpu_after)
