"""One `make bench` run from start to report: the micro-benchmark, the stack (with the relay
chain), each configuration's windows and experiments, results.json, the analysis, the report.
Everything it starts is stopped on the way out, whatever happens."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

from devstack.stack import Ports, Stack
from loadtests import microbench
from loadtests.load import Latency as LoadLatency
from loadtests.load import Workers, histogram, isolate
from loadtests.load.affinity import (
    Isolation,
    Spinner,
    available_cpus,
    kept_awake,
    pin,
    system_pids,
)
from loadtests.measure import capacity, gauge, long, model
from loadtests.measure.client import Gateway, header_bytes, request
from loadtests.measure.cpu import group_of
from loadtests.measure.meter import LISTED, NEW_ORDER, ORDERS, Meter, at_rest, chain_path
from loadtests.measure.netns import RemoteStore, remote_store
from loadtests.measure.outage import store_outage
from loadtests.measure.plan import (
    COMMON_RATE_SHARE,
    REPORTS,
    Config,
    Options,
    common_rate,
    configs,
)
from loadtests.measure.revocation import revocation_lags
from loadtests.measure.schema import (
    CONTROL,
    HOPS,
    SCHEMA_VERSION,
    Design,
    Latency,
    RequestType,
    Results,
    Revocation,
    Window,
    dump,
)
from loadtests.measure.servers import Servers, StoreAddress
from loadtests.modes import CACHE, MODES, Mode, revealed_settings, select, settings_groups

RELAYS = max(HOPS)
USER_PREFIX = "bench"
PROBE_USER = "bench-probe"
# The bench's own accounts hash with argon2id at a tenth of the OWASP cost (recorded in the
# results): the hash is what every design's login pays alike; what the login windows compare is
# signing a JWT against creating a session.
CHEAP_ARGON2 = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "2048"}
JWKS_COOLDOWN_S = 2.0


def check_rows(mode: Mode) -> tuple[str, ...]:
    """The micro-benchmark's rows for what a relay checks in `mode`, made at the chain's pace:
    the session (read from the store, or from the pushed cache), or a JWT (the hybrid's relays
    check its internal token; every request carries the same one, so a verified-token hit),
    and, for a JWT carried by a cookie, the Cookie field's read before it. The design's
    check_us is their sum."""
    if mode.credential.kind == "session" and not mode.exchanges:
        cached = mode.settings[CACHE] != "off"
        return (microbench.paced(microbench.SESSION_HIT if cached else microbench.SESSION_LOOKUP),)
    if mode.credential.kind == "jwt" and mode.credential.carrier == "cookie":
        return (microbench.paced(microbench.JWT_HIT), microbench.paced(microbench.COOKIE_READ))
    return (microbench.paced(microbench.JWT_HIT),)


CHECK_ROWS = {mode.name: check_rows(mode) for mode in MODES}  # read from the designs' table
PACKAGES = (
    "aiohttp",
    "redis",
    "hiredis",
    "PyJWT",
    "cryptography",
    "uvloop",
    "httptools",
    "hdrhistogram",
    "argon2-cffi",
    "prometheus-client",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _packages() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


class Bench:
    """The state of one run while it measures."""

    def __init__(
        self,
        options: Options,
        modes: list[Mode],
        workdir: Path,
        say: Callable[[str], None],
        stack: Stack,
        store: RemoteStore,
        windows: list[Window] | None = None,
    ) -> None:
        self.options = options
        self.modes = modes
        self.by_name = {m.name: m for m in modes}
        self.workdir = workdir
        self.say = say
        self.stack = stack
        self.store = store
        self.windows: list[Window] = [] if windows is None else windows
        self.pace = gauge.Pace(options.slow_pct)  # the machine's usual lap so far
        # Each design's capacity windows measured again (capacity.retried), by design.
        self.retries = {
            m.name: capacity.Retries(options.slow_retries, options.slow_budget) for m in modes
        }
        self.revocation: dict[str, Any] = {}
        self.outage: dict[str, Any] = {}
        self.notes: list[str] = []
        self.credential_bytes: dict[str, int] = {}
        self.knees: dict[str, list[float | None]] = {}
        self.common_rps = options.common_rps  # the rate of CPU per request (common_rate)
        self.bounds: dict[str, list[bool]] = {}  # per run: the load generator ended the search
        self.not_held: dict[str, list[float | None]] = {}  # per run: the lowest rate failed
        self.idle: list[dict[str, Any]] = []
        self.isolation: Isolation | None = None
        self.usernames = [f"{USER_PREFIX}-{i}" for i in range(options.users)]
        # Taken before this process pins itself beside the load generator.
        self.cpus = available_cpus()
        self.workers = Workers()
        self.awake = contextlib.ExitStack()  # the spinners that keep the system's CPUs awake
        self.spinners: tuple[Spinner, ...] | None = None

    # -- configurations ---------------------------------------------------------------------

    def settings_of(self, config: Config) -> dict[str, str]:
        mode = self.by_name[config.designs[0]]
        store = (
            self.store.url
            if config.distant
            else f"redis://127.0.0.1:{self.stack.ports.session_store}/0"
        )
        return {**mode.settings, "SESSION_STORE_URL": store}

    def servers(self, config: Config) -> Servers:
        services = {name: self.stack.url(name) for name in self.stack.service_names}
        session = (
            self.store.direct
            if config.distant
            else StoreAddress("127.0.0.1", self.stack.ports.session_store)
        )
        return Servers(
            services,
            {
                "session_store": session,
                "data_store": StoreAddress("127.0.0.1", self.stack.ports.data_store),
            },
        )

    def pin_system(self) -> Isolation:
        """Every process this run started on the system's CPUs, this one (it reads the
        counters and logs in) beside the load generator."""
        exclude = [*self.workers.pids, *(s.pid for s in self.spinners or ())]
        isolation = isolate(system_pids(exclude=exclude), generator_count=1, cpus=self.cpus)
        if isolation.isolated:
            pin([os.getpid()], isolation.generator_cpus)
            if self.options.keep_awake and self.spinners is None:
                self.spinners = self.awake.enter_context(kept_awake(isolation.system_cpus))
        self.isolation = isolation
        return isolation

    def service_pids(self) -> dict[str, list[int]]:
        """The services' processes by group (orders-1 and orders-2 are `orders`)."""
        pids: dict[str, list[int]] = {}
        for name in self.stack.service_names:
            process = self.stack.components[name].process
            if process is not None:
                pids.setdefault(group_of(name), []).append(process.pid)
        return pids

    def release(self) -> None:
        """Every CPU back to this process (the services it starts next inherit them)."""
        pin([os.getpid()], self.cpus)

    def guarded(self, what: str, call: Callable[[], None]) -> None:
        """An experiment beside the windows: its failure is noted, not fatal."""
        try:
            call()
        except Exception as error:
            note = f"{what} failed: {type(error).__name__}: {error}"
            self.notes.append(note[:400])
            self.say(note)

    def prepare(self, index: int, config: Config, isolation: Isolation) -> Meter:
        """A meter on the current stack (`self.stack`, started with `config`'s settings): its
        services' processes and their idle baseline, taken now."""
        servers = self.servers(config)
        pids = self.service_pids()
        idle, idle_services = at_rest(servers, pids, self.options.idle_s)
        self.idle.append(
            {
                "config": index,
                "designs": list(config.designs),
                "distant_store": config.distant,
                "cpu_ms_per_s": {
                    name: round(rate * 1e3, 3)
                    for name, rate in {**idle_services, **idle.rates}.items()
                },
            }
        )
        return Meter(
            self.stack.gateway_url,
            self.by_name,
            self.usernames,
            servers,
            pids,
            idle,
            idle_services,
            self.workers,
            isolation,
            start_index=index,
            spinners=self.spinners or (),
        )

    def placed(self, isolation: Isolation, what: str) -> None:
        self.say(
            f"{what}; load on CPU {list(isolation.generator_cpus)}, system on "
            f"{list(isolation.system_cpus)}"
            + ("" if isolation.isolated else " (shared: not isolated)")
        )

    def side_by_side(self, starts: Sequence[tuple[int, Config, Stack]]) -> None:
        """Every settings group's start of the services at once, all on the system's CPUs,
        and every design's capacity and CPU windows in turn across them.

        This machine's speed wanders by 5-15 % over tens of seconds. One design measured after
        another, start by start, gave each design its own stretch of it: a slow minute was one
        design's capacity, and two runs disagreed by as much. Taken in turn, every design's
        repeats sample the same stretches. A start whose windows are not running costs the
        others nothing but memory: its processes sleep."""
        isolation = self.pin_system()
        meters: dict[int, Meter] = {}
        for index, _config, stack in starts:
            self.stack = stack
            meters[index] = self.prepare(index, _config, isolation)
        for index, meter in meters.items():
            others = {i: m for i, m in meters.items() if i != index}
            meter.neighbours = {
                f"{i}:{group}": pids for i, m in others.items() for group, pids in m.pids.items()
            }
            meter.neighbours_idle = sum(sum(m.idle_services.values()) for m in others.values())
        where = {name: index for index, config, _stack in starts for name in config.designs}
        self.placed(
            isolation,
            "side by side: "
            + "; ".join(f"{', '.join(config.designs)}" for _i, config, _s in starts),
        )
        o = self.options
        for name, index in where.items():
            # Not a figure: the services' pools and caches grow here.
            self.pace.saw(
                meters[index].window("warmup", name, ORDERS, o.warmup_rps, o.warmup_s, o.settle_s)
            )
        for _index, config, stack in starts:
            running(stack, [self.by_name[n] for n in config.designs])
        self.capacities(meters, where)
        self.cpu(meters, where)
        self.requests(meters, where)
        for index, config, stack in starts:
            self.stack = stack
            # A store the previous start's outage restarted inherited this process's CPU.
            self.pin_system()
            meter = meters[index]
            self.chain(meter, config)
            group = [self.by_name[n] for n in config.designs]
            for mode in group:
                self.guarded(f"revocation of {mode.name}", lambda m=mode: self.revoke(m))  # type: ignore[misc]
            if self.options.outage:
                self.guarded("store outage", lambda g=group: self.store_outage(g))  # type: ignore[misc]

    def configuration(self, index: int, config: Config) -> None:
        """One start of the services on its own: the session store at a distance."""
        o = self.options
        isolation = self.pin_system()
        meter = self.prepare(index, config, isolation)
        where = "distant store" if config.distant else "local store"
        self.placed(isolation, f"configuration {index + 1}: {', '.join(config.designs)} ({where})")
        for name in config.designs:
            self.pace.saw(
                meter.window("warmup", name, ORDERS, o.warmup_rps, o.warmup_s, o.settle_s)
            )
        self.distance(meter, config)

    # -- the windows ------------------------------------------------------------------------

    def record(self, window: Window) -> Window:
        """Keep a window (its `config`, the start of the services it measured, is its
        meter's), with whether the machine ran slow while it was measured (unless its taker
        judged that already: capacity.retried)."""
        if "machine_slow" not in window and (slow := self.pace.slow(window)) is not None:
            window = {**window, "machine_slow": slow}
        self.pace.saw(window)
        self.windows.append(window)
        return window

    def fixed(self, take: Callable[[], Window], **extra: Any) -> Window:
        """A window at a fixed rate (CPU, write, login, chain, distance), recorded with `extra`.
        One the load generator limited (a stall on its CPU: one send 10 ms late is enough in a
        window of 40 requests) is kept, `replaced`, and measured once more: its figures are the
        generator's, and a --quick run has no other window for its point (CI's smoke test lost
        the session chain's k = 1 so)."""
        window: Window = {**take(), **extra}  # type: ignore[typeddict-item]
        if window["generator_limited"]:
            self.record({**window, "replaced": True})
            window = {**take(), **extra}  # type: ignore[typeddict-item]
        return self.record(window)

    def capacities(self, meters: dict[int, Meter], where: dict[str, int]) -> None:
        """Each design's knee, `repeats` times, the designs in turn (`where`: the start of the
        services each one's windows go to)."""
        o = self.options
        guess: dict[str, float] = {}
        names = tuple(where)
        for repeat in range(1, o.repeats + 1):
            order = names if repeat % 2 else tuple(reversed(names))
            for name in order:
                meter = meters[where[name]]

                def judge(
                    rate: float, name: str = name, repeat: int = repeat, meter: Meter = meter
                ) -> bool | None:
                    def measure() -> bool | None:
                        return capacity.retried(
                            lambda: meter.window(
                                "capacity", name, ORDERS, rate, o.window_s, o.settle_s, repeat
                            ),
                            lambda window: capacity.holds(window, o.slo_ms, o.shortfall),
                            self.pace.slow,
                            self.retries[name],
                            self.record,
                        )

                    return capacity.verdict(measure, o.confirm)

                first = name not in guess
                knee = capacity.search(
                    judge,
                    o.start_rps if first else guess[name],
                    o.factor if first else o.near,
                    o.refine_to,
                )
                if knee.held_rps is not None:
                    # The next run starts at the median knee so far: one run's luck (a knee
                    # found high or low) does not carry into the next.
                    so_far = [k for k in [*self.knees.get(name, []), knee.held_rps] if k]
                    guess[name] = float(round(statistics.median(so_far)))
                self.say(
                    f"capacity {name} run {repeat}: {knee.held_rps} req/s held, "
                    f"{knee.failed_rps} not ({knee.judged} rates)"
                    + (
                        ": the load generator's limit, not the system's"
                        if knee.generator_bound
                        else ""
                    )
                )
                self.knees.setdefault(name, []).append(knee.held_rps)
                self.bounds.setdefault(name, []).append(knee.generator_bound)
                self.not_held.setdefault(name, []).append(knee.failed_rps)

    def cpu(self, meters: dict[int, Meter], where: dict[str, int]) -> None:
        """CPU per request at the common rate, `cpu_repeats` times, the designs in turn: the
        option's rate, or lower where a design's slowest knee asks for it (common_rate)."""
        o = self.options
        names = tuple(where)
        knees = [k for n in names for k in self.knees.get(n, [])]
        self.common_rps = common_rate(o.common_rps, knees)
        if self.common_rps != o.common_rps:
            lowered = (
                f"CPU per request at {self.common_rps:g} req/s, not {o.common_rps:g}: "
                f"{COMMON_RATE_SHARE:.0%} of the lowest knee held, {min(k for k in knees if k):g}"
                " req/s, rounded down (plan.common_rate)"
            )
            self.notes.append(lowered)
            self.say(lowered)
        for repeat in range(1, o.cpu_repeats + 1):
            order = names if repeat % 2 else tuple(reversed(names))
            for name in order:
                window = self.fixed(
                    partial(
                        meters[where[name]].window,
                        "cpu",
                        name,
                        ORDERS,
                        self.common_rps,
                        o.cpu_window_s,
                        o.settle_s,
                        repeat,
                        histogram=True,
                    )
                )
                self.say(
                    f"cpu {name} run {repeat}: {window['cpu_us_per_request']:.0f} us/request at "
                    f"{self.common_rps:g} req/s, p50 {window['p50_ms']} ms"
                )

    def requests(self, meters: dict[int, Meter], where: dict[str, int]) -> None:
        """The write (POST /orders) and the login, request types of their own, `type_repeats`
        times, the designs in turn as the CPU windows take them; and what each design's
        credential weighs on every request (the median over the users, whose tokens differ in
        length)."""
        o = self.options
        method, path, body = NEW_ORDER
        names = tuple(where)
        for name in names:
            sizes = [header_bytes(headers) for headers in meters[where[name]].credentials(name)]
            self.credential_bytes[name] = statistics.median_low(sizes)  # a size someone sent
        for repeat in range(1, o.type_repeats + 1):
            order = names if repeat % 2 else tuple(reversed(names))
            for name in order:
                meter = meters[where[name]]
                post = self.fixed(
                    partial(
                        meter.window,
                        "post",
                        name,
                        path,
                        o.post_rps,
                        o.post_window_s,
                        o.low_settle_s,
                        repeat,
                        method,
                        body,
                        histogram=True,
                    )
                )
                # Each bench user logging in in turn, through the gateway.
                login = self.fixed(
                    partial(
                        meter.window,
                        "login",
                        name,
                        self.by_name[name].credential.login_path,
                        o.login_rps,
                        o.login_window_s,
                        o.low_settle_s,
                        repeat,
                        "POST",
                        histogram=True,
                        send=meter.logins(name),
                    )
                )
                self.say(
                    f"post {name} run {repeat}: {post['cpu_us_per_request']:.0f} us/request at "
                    f"{o.post_rps:g} req/s, p50 {post['p50_ms']} ms, {post['failures']} failed; "
                    f"login: {login['cpu_us_per_request']:.0f} us at {o.login_rps:g} req/s, "
                    f"p50 {login['p50_ms']} ms, {login['failures']} failed"
                )

    def chain(self, meter: Meter, config: Config) -> None:
        o = self.options
        names = ((CONTROL,) if config.control else ()) + config.designs
        for name in names:  # the relays' pools to one another grow here, not in a window
            self.pace.saw(
                meter.window(
                    "warmup", name, chain_path(name, max(HOPS)), o.chain_rps, o.warmup_s, o.settle_s
                )
            )
        for repeat in range(1, o.chain_repeats + 1):
            for hops in HOPS:
                order = names if (repeat + hops) % 2 else tuple(reversed(names))
                for name in order:
                    self.fixed(
                        partial(
                            meter.window,
                            "chain",
                            name,
                            chain_path(name, hops),
                            o.chain_rps,
                            o.chain_window_s,
                            o.low_settle_s,
                            repeat,
                        ),
                        hops=hops,
                    )
            self.say(f"chain run {repeat}: {', '.join(names)} at k = 1..{max(HOPS)}")

    def distance(self, meter: Meter, config: Config) -> None:
        o = self.options
        try:
            # The distances in turn, `distance_repeats` times over: one window at a distance
            # is 75 requests, and a second when this machine's CPU runs slow would be the
            # point (every process of such a window pays up to 1.5x).
            for repeat in range(1, o.distance_repeats + 1):
                for rtt in o.rtts_ms:
                    self.store.set_rtt(rtt)
                    measured = round(self.store.measured_rtt_ms(), 3)
                    for name in config.designs:
                        self.fixed(
                            partial(
                                meter.window,
                                "distance",
                                name,
                                ORDERS,
                                o.distance_rps,
                                o.distance_window_s,
                                o.low_settle_s,
                                repeat,
                            ),
                            added_rtt_ms=rtt,
                            measured_rtt_ms=measured,
                        )
                    self.say(
                        f"distance {rtt:g} ms run {repeat} (measured RTT {measured} ms): "
                        f"{', '.join(config.designs)}"
                    )
        finally:
            self.store.set_rtt(0.0)

    def revoke(self, mode: Mode) -> None:
        inside = {
            name: self.stack.url(name)
            for name in self.stack.service_names
            if not name.startswith("relay")
        }
        self.revocation[mode.name] = revocation_lags(
            self.stack.gateway_url,
            inside,
            mode,
            PROBE_USER,
            self.options.revocation_samples,
            self.options.revocation_limit_s,
        )

    def store_outage(self, group: list[Mode]) -> None:
        outage = store_outage(self.stack, Gateway(self.stack.gateway_url), group, PROBE_USER)
        for mode in group:
            self.outage[mode.name] = {
                "stalled": outage["stalled"].get(mode.name),
                "down": outage["down"].get(mode.name),
            }

    # -- results ----------------------------------------------------------------------------

    def design(self, mode: Mode, check_us: float | None) -> Design:
        name = mode.name
        mine = [w for w in self.windows if w["design"] == name]
        cpu = model.usable(mine, "cpu")
        knees = [k for k in self.knees.get(name, []) if k is not None]
        # Beside each run's knee, whether the load generator ended its search and the rate
        # above it that did not hold: for the runs that found a knee, as `runs` is.
        found = [knee is not None for knee in self.knees.get(name, [])]
        bounds = [b for b, ok in zip(self.bounds.get(name, []), found, strict=True) if ok]
        not_held = [f for f, ok in zip(self.not_held.get(name, []), found, strict=True) if ok]
        o = self.options
        marginal = [
            [w["served_rps"], w["cpu_ms_per_s"]]
            for w in [*cpu, *model.usable(mine, "capacity")]
            if w["phase"] == "cpu" or w.get("held")
        ]
        by_process: dict[str, float] = {}
        for process in sorted({p for w in cpu for p in w["cpu_by_process"]}):
            by_process[process] = round(
                statistics.median(w["cpu_by_process"].get(process, 0.0) for w in cpu), 1
            )
        lag = self.revocation.get(name)
        design: Design = {
            "kind": mode.credential.kind,
            "carrier": mode.credential.carrier,
            "settings": dict(mode.settings),
            "capacity_rps": (
                {
                    "median": 0.0,
                    "ci95": [],
                    "runs": knees,
                    "generator_bound": bounds,
                    "not_held": not_held,
                }
                if knees
                else None
            ),
            "cpu_us_per_request": (
                {
                    "median": 0.0,
                    "ci95": [],
                    "runs": [w["cpu_us_per_request"] for w in cpu],
                    "offered_rps": self.common_rps,
                }
                if cpu
                else None
            ),
            "latency_ms": merged_latency(cpu, self.common_rps),
            "hops": self.hop_points(name),
            "auth_cpu_us_per_hop": None,
            "store_ops_per_request": _median([w["store_ops_per_request"] for w in cpu]) or 0.0,
            "revocation_lag_ms": revocation_figure(lag),
            "model_error_pct": {"cpu": 0.0, "p50": 0.0},
            "cpu_by_process_us": by_process,
            "marginal": {
                "slope_us": 0.0,
                "ci95": [],
                "intercept_ms_per_s": 0.0,
                "points": marginal,
            },
            "distance": self.distance_points(name),
            "post": self.type_figure("post", name, o.post_rps),
            "login": self.type_figure("login", name, o.login_rps),
            "credential_bytes": self.credential_bytes.get(name),
            "check_us": check_us,
        }
        if lag is not None and (lag["until_exp"] or lag["hops"]):  # some logout was measured
            design["revoked_until_exp"] = bool(lag["until_exp"])
        if name in self.outage:
            design["outage"] = self.outage[name]
        return design

    def hop_points(self, name: str) -> dict[str, Any]:
        points: dict[str, Any] = {}
        for hops in HOPS:
            chain = [w for w in model.usable(self.windows, "chain", name) if w.get("hops") == hops]
            if not chain:
                continue
            points[str(hops)] = {
                "cpu_us_per_request": _median([w["cpu_us_per_request"] for w in chain]),
                "p50_ms": _median([w["p50_ms"] for w in chain]),
                "p99_ms": _median([w["p99_ms"] for w in chain]),
                "store_ops_per_request": _median([w["store_ops_per_request"] for w in chain]),
                "offered_rps": self.options.chain_rps,
            }
        return points

    def type_figure(self, phase: str, name: str, offered_rps: float) -> RequestType | None:
        """A request type of its own (`phase`'s windows of design `name`, taken at
        `offered_rps`): CPU per request of each repeat, latency of every request of them
        together, failures; None where none was taken."""
        found = model.usable(self.windows, phase, name)
        if not found:
            return None
        latency = merged_latency(found, offered_rps)
        by_process: dict[str, float] = {}
        for process in sorted({p for w in found for p in w["cpu_by_process"]}):
            by_process[process] = round(
                statistics.median(w["cpu_by_process"].get(process, 0.0) for w in found), 1
            )
        return {
            # The runs; their median and interval are the analysis's (as every repeated
            # figure's: loadtests/measure/analysis.py).
            "cpu_us_per_request": {
                "median": 0.0,
                "ci95": [],
                "runs": [w["cpu_us_per_request"] for w in found],
                "offered_rps": offered_rps,
            },
            "p50_ms": latency["p50"] if latency else _median([w["p50_ms"] for w in found]),
            "p99_ms": latency["p99"] if latency else _median([w["p99_ms"] for w in found]),
            "failures": sum(w["failures"] for w in found),
            "cpu_by_process": by_process,
            "offered_rps": offered_rps,
        }

    def distance_points(self, name: str) -> list[dict[str, float]]:
        """One point per distance: the median of its windows (the repeats)."""
        by_rtt: dict[float, list[Window]] = {}
        for w in model.usable(self.windows, "distance", name):
            by_rtt.setdefault(float(w.get("added_rtt_ms", 0.0)), []).append(w)

        def median(windows: list[Window], key: str) -> float:
            values = (cast(float | None, w.get(key)) or 0.0 for w in windows)
            return round(statistics.median(values), 3)

        return [
            {
                "added_rtt_ms": rtt,
                "measured_rtt_ms": median(windows, "measured_rtt_ms"),
                "p50_ms": median(windows, "p50_ms"),
                "p99_ms": median(windows, "p99_ms"),
                "cpu_us_per_request": median(windows, "cpu_us_per_request"),
                "store_ops_per_request": median(windows, "store_ops_per_request"),
                "windows": len(windows),
            }
            for rtt, windows in sorted(by_rtt.items())
        ]


def merged_latency(windows: Sequence[Window], offered_rps: float) -> Latency | None:
    """p50 and p99 of every request of `windows` together: their histograms merged (not a
    median of per-window percentiles, which is no percentile of anything)."""
    kept = [w["histogram"] for w in windows if "histogram" in w]
    if not kept:
        return None
    merged = LoadLatency.of(histogram.merge(kept))
    return {
        "p50": merged.p50_ms or 0.0,
        "p99": merged.p99_ms or 0.0,
        "offered_rps": offered_rps,
    }


def running(stack: Stack, group: Sequence[Mode]) -> None:
    """Fail unless `stack`'s gateway shows the settings of `group` (what its /metrics can show
    once the group's requests have passed it): a start with other settings would measure
    another design under this one's name."""
    reply = request("GET", stack.gateway_url + "/metrics")
    revealed = revealed_settings(reply.body.decode(errors="replace"))
    for mode in group:
        wrong = mode.mismatches(revealed)
        if reply.status != 200 or wrong:
            raise RuntimeError(
                f"the services for {mode.name} run other settings: /metrics {reply.status}, "
                + ", ".join(f"{k}={v[0]} (wanted {v[1]})" for k, v in wrong.items())
            )


def seed_orders(gateway: Gateway, mode: Mode, usernames: Sequence[str]) -> None:
    """Give every user LISTED orders before anything is measured, so that GET ORDERS answers
    the same LISTED orders in every window of every design. Without them the first start's
    designs listed none and later ones (after the POST windows) ten: a longer answer and more
    work in orders and the data store, which read as a cost of the later designs."""
    method, path, body = NEW_ORDER
    for user in usernames:
        headers = gateway.login(mode.credential, user)
        for _ in range(LISTED):
            reply = request(method, gateway.url + path, json.loads(body), headers)
            if reply.status != 201:
                raise RuntimeError(f"could not seed an order for {user}: {reply.status}")


def revocation_figure(lag: Any) -> Revocation | None:
    """The lag until every hop refused a logged-out credential: the slowest hop's figures
    (None where some hop kept accepting it: it works until it expires)."""
    if lag is None or lag["until_exp"] or not lag["hops"]:
        return None
    hops = {
        hop: {"p50": h["p50_ms"], "p99": h["p99_ms"], "max": h["max_ms"]}
        for hop, h in lag["hops"].items()
        if h["p99_ms"] is not None
    }
    if not hops:
        return None
    worst = max(hops.values(), key=lambda h: h["p99"])
    return {
        "p50": worst["p50"],
        "p99": worst["p99"],
        "max": worst["max"],
        "samples": lag["samples"],
        "by_hop": hops,
    }


@dataclass(frozen=True, slots=True)
class CheckCosts:
    """The per-check micro-benchmark: each design's check (CPU us per call) and every row."""

    by_design: dict[str, float | None]
    rows: list[dict[str, Any]]
    placement: microbench.MicrobenchPlacement  # method.microbench_placement


def check_costs(n: int, gap_s: float, keep_awake: bool) -> CheckCosts:
    """The per-check micro-benchmark, in-process CPU us per call, run as the checks run in the
    windows: this process and the benchmark's redis-server on the system's CPUs (kept awake
    where the windows' are), and each design's check made `gap_s` apart, the rate one relay
    of the chain checks at, each timed on its own (microbench._measure_paced).

    Made back to back, a session check costs a fraction of what it costs at the chain's pace
    (both rows are in method.microbench; 105 against 413 us on 2026-12-07, two thirds to five
    sixths in earlier runs): the tight loop under-priced every session hop of the chain, and the
    model's session chains with it."""
    with microbench.placed_as_the_system(keep_awake) as placement:
        rows = asyncio.run(microbench.run(n=n, rounds=5, instruction_calls=0, gap_s=gap_s))
    by_row = {r.name: r.cpu_us for r in rows}

    def summed(names: tuple[str, ...]) -> float | None:
        # Each row priced as the model prices a check (model.check_cost), then summed: a cached
        # check read below zero must not take the read's price down with it.
        parts = [by_row.get(name) for name in names]
        if None in parts:
            return None
        return round(sum(model.check_cost(part) for part in cast(list[float], parts)), 2)

    return CheckCosts(
        {design: summed(names) for design, names in CHECK_ROWS.items()},
        [dict(r.as_dict()) for r in rows],
        {**placement, "gap_ms": round(gap_s * 1e3, 3), "timing": microbench.PACED_TIMING},
    )


def measure(
    options: Options,
    workdir: Path,
    say: Callable[[str], None],
    cleanup: contextlib.ExitStack,
    windows: list[Window] | None = None,
) -> Results:
    """The whole measurement; every window lands in `windows` as it is taken (so a failed run
    keeps what it measured)."""
    started = dt.datetime.now(dt.UTC)
    began = time.monotonic()
    load_average = [round(v, 2) for v in os.getloadavg()]
    modes = select(options.designs)
    by_name = {m.name: m for m in modes}
    plan = configs(settings_groups(modes), options.rtts_ms, options.distance_groups)
    say(
        f"{len(modes)} designs and the control in {len(plan)} configurations of the services"
        + (" (--quick)" if options.quick else "")
    )
    costs = check_costs(options.microbench_n, 1 / options.chain_rps, options.keep_awake)
    check_us = costs.by_design
    say(
        f"per-check CPU in-process, one every {costs.placement['gap_ms']:g} ms: "
        + ", ".join(f"{d} {v:.1f} us" for d, v in check_us.items() if v is not None)
    )
    store = cleanup.enter_context(remote_store(workdir / "remote"))
    say(f"the distant session store: {store.method}: {store.note}")
    stack_log = (workdir / "stack.log").open("w")
    cleanup.callback(stack_log.close)
    local = [(index, config) for index, config in enumerate(plan) if not config.distant]
    distant = [(index, config) for index, config in enumerate(plan) if config.distant]
    stacks: dict[int, Stack] = {}
    for n, (index, config) in enumerate(local):
        # Distinct ports for every stack, none an outgoing connection could take before its
        # server binds it (free_port), so the stacks can start at once.
        ports = Ports.free(relays=RELAYS)
        stack = Stack(
            ports=ports,
            workdir=workdir / ("stack" if n == 0 else f"stack-{n}"),
            keys_dir=workdir / ("keys" if n == 0 else f"keys-{n}"),
            log=stack_log,
            env={
                "LOG_LEVEL": "WARNING",
                **CHEAP_ARGON2,
                "JWT_JWKS_URL": f"http://127.0.0.1:{ports.auth}/.well-known/jwks.json",
                "JWKS_COOLDOWN_SECONDS": f"{JWKS_COOLDOWN_S:g}",
                # The group's settings: a stack's services take its env as it is built.
                **by_name[config.designs[0]].settings,
            },
            relays=RELAYS,
        )
        cleanup.callback(stack.stop)
        stacks[index] = stack
    first = stacks[local[0][0]]
    bench = Bench(options, modes, workdir, say, first, store, windows)
    cleanup.callback(bench.workers.close)
    cleanup.callback(bench.awake.close)
    cleanup.callback(bench.release)

    def start(stack: Stack, mode: Mode, usernames: Sequence[str]) -> None:
        stack.start()
        gateway = Gateway(stack.gateway_url)
        for user in [*usernames, PROBE_USER]:
            gateway.ensure_user(user)
        seed_orders(gateway, mode, usernames)

    # All at once: a start is mostly its processes importing Python, and they use every CPU
    # (nothing is pinned yet) while one start alone waits on the slowest of its own.
    with ThreadPoolExecutor(len(local)) as pool:
        starting = [
            pool.submit(start, stacks[index], bench.by_name[config.designs[0]], bench.usernames)
            for index, config in local
        ]
        for future in starting:
            future.result()
    say(f"{len(local)} starts of the services side by side")
    bench.side_by_side([(index, config, stacks[index]) for index, config in local])
    for stack in stacks.values():
        if stack is not first:
            stack.stop()
    bench.stack = first
    for index, config in distant:
        bench.release()
        first.reconfigure(60.0, **bench.settings_of(config))
        bench.configuration(index, config)
    extra = long.experiments(bench, PROBE_USER) if options.long else None
    isolation = bench.isolation
    finished = dt.datetime.now(dt.UTC)
    designs: dict[str, Design] = {m.name: bench.design(m, check_us.get(m.name)) for m in modes}
    designs[CONTROL] = {
        "kind": "none",
        "capacity_rps": None,
        "cpu_us_per_request": None,
        "latency_ms": None,
        "hops": bench.hop_points(CONTROL),
        "auth_cpu_us_per_hop": None,
        "store_ops_per_request": 0.0,
        "revocation_lag_ms": None,
        "model_error_pct": {"cpu": 0.0, "p50": 0.0},
    }
    method = {
        k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
        for k, v in asdict(options).items()
    }
    logins = sorted({m.credential.login_path for m in modes})
    method.update(
        {
            "request": f"GET {ORDERS} through the gateway (capacity, CPU, latency, distance)",
            "write": f"{NEW_ORDER[0]} {NEW_ORDER[1]} through the gateway, its own request type",
            "chain": f"GET /relay/private?hops=k through the gateway to k relays; the control "
            f"GET /relay/public?hops=k (no check anywhere); k = 1..{RELAYS}",
            "argon2": CHEAP_ARGON2,
            "login": f"each design's login (POST {' or '.join(logins)}) through the gateway, "
            "the bench's users in turn, no credential sent; their passwords hashed with the "
            "argon2 settings above (a real login's CPU is mostly its password hash)",
            "credential_bytes": "the headers that carry the credential on each GET /orders "
            "(Authorization, or Cookie and X-CSRF-Token), `name: value` and CRLF each; the "
            "median over the bench's users",
            "keys": f"verifiers take keys from auth's JWKS, refetch cooldown {JWKS_COOLDOWN_S:g} s",
            # The rate the CPU-per-request windows ran at: common_rps, or lower (common_rate).
            "common_rps_used": bench.common_rps,
            # The distance request (GET /orders) passes one verifying service behind the
            # gateway, as the chain at k = 1 does.
            "distance_hops": 1,
            "distance_method": store.method,
            "distance_note": store.note,
            "microbench": costs.rows,
            "microbench_placement": costs.placement,
            "idle": bench.idle,
        }
    )
    results: Results = {
        "schema_version": SCHEMA_VERSION,
        "environment": {
            "cpus": os.cpu_count() or 1,
            "load_cpus": list(isolation.generator_cpus) if isolation else [],
            "system_cpus": list(isolation.system_cpus) if isolation else [],
            "isolated": bool(isolation and isolation.isolated),
            # The system's CPUs never halted: a spinner at idle priority on each.
            "kept_awake": bool(bench.spinners),
            "python": sys.version.split()[0],
            "packages": _packages(),
            "load_average": load_average,
            "started": started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "cpu_model": _cpu_model(),
            "kernel": platform.release(),
            "quick": options.quick,
            "wall_s": round(time.monotonic() - began, 1),
        },
        "designs": designs,
        "method": method,
        "windows": bench.windows,
        "notes": bench.notes,
    }
    if extra is not None:
        results["long"] = extra
    return results


def run(options: Options, say: Callable[[str], None] = log) -> Path:
    """Measure, analyse, then write results.json and the report; returns the directory."""
    from loadtests.measure import analysis, report

    out = options.out or REPORTS / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = Path(tempfile.mkdtemp(prefix="authscale-bench-"))
    logs = out / "logs"
    windows: list[Window] = []
    try:
        with contextlib.ExitStack() as cleanup:
            results = measure(options, workdir, say, cleanup, windows)
    except BaseException:
        out.mkdir(parents=True, exist_ok=True)
        (out / "windows-partial.json").write_text(json.dumps(windows, indent=1) + "\n")
        say(f"the run failed; its logs are in {logs}, its windows in windows-partial.json")
        raise
    finally:
        logs.mkdir(parents=True, exist_ok=True)
        for path in workdir.glob("*.log"):
            shutil.copyfile(path, logs / path.name)
        shutil.rmtree(workdir, ignore_errors=True)
    dump(results, out / "raw.json")
    results = analysis.analyse(results)
    dump(results, out / "results.json")
    report.write(results, out)
    latest = REPORTS / "last"
    if out.parent == REPORTS and (latest.is_symlink() or not latest.exists()):
        with contextlib.suppress(OSError):
            latest.unlink(missing_ok=True)
            latest.symlink_to(out.name)
    say(f"done in {results['environment'].get('wall_s', 0):.0f} s: {out}")
    return out
