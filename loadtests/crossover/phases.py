"""One run's measuring: per configuration of the services, the load windows (the knee's ladder
as open-model load, hops and distance with Locust) and the experiments beside them (key
rotation, revocation, the nginx reference), each result kept on the Run as it comes; run.py
turns them into results.json."""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devstack.stack import Stack
from loadtests.bench.client import PASSWORD, Gateway
from loadtests.crossover import lines
from loadtests.crossover.driver import LocustDriver
from loadtests.crossover.experiments import key_rotation, revocation_lags
from loadtests.crossover.netns import RemoteStore
from loadtests.crossover.openload import Measures, OpenDriver, system_pids
from loadtests.crossover.plan import Config, Options, Progress
from loadtests.crossover.processes import SideGateway
from loadtests.crossover.references import nginx_reference
from loadtests.crossover.results import (
    DistancePoint,
    HopPoint,
    KneeStep,
    NginxReference,
    RevocationLag,
    Rotation,
)
from loadtests.crossover.servers import Idle, Servers, StoreAddress
from loadtests.modes import Mode

USER_PREFIX = "crossover"
PROBE_USER = "crossover-probe"


@dataclass
class Run:
    """The state of one run while it measures."""

    options: Options
    modes: list[Mode]
    workdir: Path
    say: Callable[[str], None]
    store: RemoteStore
    stack: Stack
    side: SideGateway
    progress: Progress
    idle: Idle = field(default_factory=lambda: Idle({}))
    steps: dict[str, list[KneeStep]] = field(default_factory=dict)
    hops: dict[str, list[HopPoint]] = field(default_factory=dict)
    distance: dict[str, list[DistancePoint]] = field(default_factory=dict)
    revocation: dict[str, RevocationLag] = field(default_factory=dict)
    rotation: list[Rotation] = field(default_factory=list)
    nginx: NginxReference | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def by_name(self) -> dict[str, Mode]:
        return {m.name: m for m in self.modes}

    def settings_of(self, config: Config) -> dict[str, str]:
        mode = self.by_name[config.designs[0]]
        store = (
            self.store.url
            if config.remote_store
            else f"redis://127.0.0.1:{self.stack.ports.session_store}/0"
        )
        return {**mode.settings, "SESSION_STORE_URL": store}

    def servers(self, config: Config) -> Servers:
        services = {name: self.stack.url(name) for name in self.stack.service_names}
        services["gateway-edgeoff"] = self.side.url
        session = (
            self.store.direct
            if config.remote_store
            else StoreAddress("127.0.0.1", self.stack.ports.session_store)
        )
        return Servers(
            services,
            {
                "session_store": session,
                "data_store": StoreAddress("127.0.0.1", self.stack.ports.data_store),
            },
        )

    def inside(self) -> dict[str, str]:
        """The services as revocation polls them: the stack's, each on its own address."""
        return {name: self.stack.url(name) for name in self.stack.service_names}

    def guarded(self, what: str, call: Callable[[], None]) -> None:
        """Run an experiment beside the windows; its failure is noted, not fatal."""
        try:
            call()
        except Exception as error:
            note = f"{what} failed: {type(error).__name__}: {error}"
            self.notes.append(note[:400])
            self.say(note)

    # -- one configuration --------------------------------------------------------------------

    def configuration(self, index: int, config: Config, servers: Servers) -> None:
        group = [self.by_name[n] for n in config.designs]
        tag = str(index)
        o = self.options
        driver = LocustDriver(
            self.stack.gateway_url,
            group,
            o.users,
            o.processes,
            self.workdir / f"locust-{index}",
            {
                "AUTHSCALE_USER_PREFIX": USER_PREFIX,
                "AUTHSCALE_USER_COUNT": str(o.users),
                "AUTHSCALE_PASSWORD": PASSWORD,
            },
            self.say,
        )
        names = ", ".join(config.designs)
        try:
            driver.start()
            self.progress.finish(f"{tag}:locust", f"Locust up: {driver.ready} users ({names})")
            if driver.ready < driver.total_users:
                self.notes.append(
                    f"configuration {index + 1} ({names}): {driver.ready} of "
                    f"{driver.total_users} Locust users logged in ({driver.stopped_users} gave up)"
                )
            self.store.set_rtt(0.0)
            if config.hops:
                self.measure_hops(tag, config, driver, servers)
            if config.knee:
                self.open_knee(tag, config, driver, servers)
            if config.distance:
                self.measure_distance(tag, config, driver, servers)
            if config.rotation:
                self.guarded("key rotation", lambda: self.rotate(tag, group, driver, servers))
        finally:
            driver.stop()
            self.store.set_rtt(0.0)
            with contextlib.suppress(OSError):
                shutil.copyfile(
                    driver.directory / "locust.log", self.workdir / f"locust-{index}.log"
                )
        if config.revocation:
            for mode in group:
                self.guarded(f"revocation of {mode.name}", lambda m=mode: self.revoke(m))  # type: ignore[misc]
                line = lines.revocation_line(mode.name, self.revocation.get(mode.name))
                self.progress.finish(f"{tag}:revocation:{mode.name}", line)
        if config.nginx:
            self.guarded("nginx reference", lambda: self.reference(group))
            self.progress.finish(f"{tag}:nginx", lines.nginx_line(self.nginx))

    def measure_hops(
        self, tag: str, config: Config, driver: LocustDriver, servers: Servers
    ) -> None:
        o = self.options
        for hops in (1, 2, 3):
            for name in config.designs:
                window = driver.measure(
                    servers,
                    self.idle,
                    [name],
                    "post" if hops == 3 else "get",
                    o.hop_rps,
                    o.hop_s,
                    o.settle_s,
                    url=self.side.url if hops == 1 else "",
                )
                point: HopPoint = {
                    **window.segment,
                    "hops": hops,
                    "gateway": "edge-off" if hops == 1 else "edge",
                }
                self.hops.setdefault(name, []).append(point)
                self.progress.finish(f"{tag}:hop:{hops}:{name}", lines.hop_line(name, hops, point))

    def open_knee(self, tag: str, config: Config, locust: LocustDriver, servers: Servers) -> None:
        """The knee's ladder with the open-model generator on one CPU and every process this
        run started (Locust aside: it idles meanwhile) pinned to the others; the stack gets
        every CPU back afterwards."""
        o = self.options
        opened = OpenDriver(
            self.stack.gateway_url,
            self.by_name,
            [f"{USER_PREFIX}-{i}" for i in range(o.users)],
        )
        exclude = [locust.process.pid] if locust.process is not None else []
        isolation = opened.isolate(system_pids(exclude))
        self.say(
            f"knee: load on CPU {list(isolation.generator_cpus)}, the stack on "
            f"{list(isolation.system_cpus)}"
            + ("" if isolation.isolated else " (shared: not isolated)")
        )
        try:
            self.measure_knee(tag, config, opened, servers)
        finally:
            opened.release()

    def measure_knee(self, tag: str, config: Config, driver: Measures, servers: Servers) -> None:
        """Capacity per design: offered load raised step by step (the designs interleaved, the
        order reversed every other step) until a step does not hold, past the planned ladder
        if a design still holds at its end; then, interleaved again, bisected between the last
        rate held and the first that was not until they are within refine_to of each other.

        A window past the SLO, or one the load generator limited (its figures are the
        generator's, not the system's: discarded), is measured once more before it counts as
        not held (twice more at the ladder's first step, where a design ending would leave it
        with no knee at all): a short window's p99 is its few slowest requests, which a
        neighbour's burst on a shared machine can spoil alone."""
        o = self.options
        active = list(config.designs)
        held: dict[str, float] = {}  # the highest rate each design held
        failed: dict[str, float] = {}  # the lowest rate it did not

        def judge(key: str, name: str, rate: float, windows: int) -> bool:
            knee_step = self.decided_window(config, driver, servers, name, rate, windows)
            self.progress.finish(key, lines.knee_line(config.round, knee_step))
            (held if knee_step["held"] else failed)[name] = rate
            return knee_step["held"]

        step = 0
        while active and step < o.search_steps:
            rate = o.ladder_rate(step)
            order = active if step % 2 == 0 else list(reversed(active))
            for name in list(order):
                if not judge(f"{tag}:knee:{name}:{step}", name, rate, 3 if step == 0 else 2):
                    active.remove(name)
                    self.progress.skip_prefix(f"{tag}:knee:{name}:")
            step += 1
        for refinement in range(o.refine_steps()):
            names = [
                n
                for n in config.designs
                if n in held and n in failed and failed[n] > held[n] * (1 + o.refine_to)
            ]
            for name in names if refinement % 2 == 0 else list(reversed(names)):
                rate = float(round(math.sqrt(held[name] * failed[name])))
                if held[name] < rate < failed[name]:
                    judge(f"{tag}:refine:{name}:{refinement}", name, rate, 2)
        for name in config.designs:
            self.progress.skip_prefix(f"{tag}:refine:{name}:")

    def decided_window(
        self,
        config: Config,
        driver: Measures,
        servers: Servers,
        name: str,
        rate: float,
        windows: int,
    ) -> KneeStep:
        """Up to `windows` windows at `rate`, until one holds; the last one measured."""
        for attempt in range(1, windows + 1):
            knee_step = self.knee_window(config, driver, servers, name, rate, attempt)
            if knee_step["held"]:
                break
        return knee_step

    def knee_window(
        self,
        config: Config,
        driver: Measures,
        servers: Servers,
        name: str,
        rate: float,
        attempt: int,
    ) -> KneeStep:
        o = self.options
        segment = driver.measure(
            servers, self.idle, [name], "get", rate, o.step_s, o.settle_s
        ).segment
        p99 = segment["p99_ms"]
        held = (
            segment["failures"] == 0
            and p99 is not None
            and p99 <= o.slo_ms
            and not segment["generator_limited"]
        )
        knee_step: KneeStep = {**segment, "round": config.round, "attempt": attempt, "held": held}
        self.steps.setdefault(name, []).append(knee_step)
        return knee_step

    def measure_distance(
        self, tag: str, config: Config, driver: LocustDriver, servers: Servers
    ) -> None:
        o = self.options
        for rtt in o.rtts_ms:
            self.store.set_rtt(rtt)
            measured = self.store.measured_rtt_ms()
            for name in config.distance:
                window = driver.measure(
                    servers, self.idle, [name], "get", o.distance_rps, o.distance_s, o.settle_s
                )
                point: DistancePoint = {
                    **window.segment,
                    "added_rtt_ms": rtt,
                    "measured_rtt_ms": measured,
                }
                self.distance.setdefault(name, []).append(point)
                line = lines.distance_line(self.store.method, name, point)
                self.progress.finish(f"{tag}:distance:{rtt}:{name}", line)
        self.store.set_rtt(0.0)

    def rotate(self, tag: str, group: list[Mode], driver: LocustDriver, servers: Servers) -> None:
        o = self.options
        rotation = key_rotation(
            driver,
            self.stack,
            servers,
            self.idle,
            group,
            PROBE_USER,
            self.stack.keys_dir,
            o.rotation_rps,
            o.rotation_s,
            o.settle_s,
            o.jwks_cooldown_s,
        )
        self.rotation.append(rotation)
        self.progress.finish(f"{tag}:rotation", lines.rotation_line(rotation))

    def revoke(self, mode: Mode) -> None:
        self.revocation[mode.name] = revocation_lags(
            self.stack.gateway_url,
            self.inside(),
            mode,
            PROBE_USER,
            self.options.revocation_samples,
            self.options.revocation_limit_s,
        )

    def reference(self, group: list[Mode]) -> None:
        gateway = Gateway(self.stack.gateway_url)
        bearer = [m for m in group if m.credential.carrier == "header"]
        mode = (bearer or group)[0]
        headers = gateway.login(mode.credential, PROBE_USER)
        main = self.stack.components["gateway"].process
        assert main is not None and self.side.process is not None
        self.nginx = nginx_reference(
            self.stack.ports.orders[0],
            {
                "gateway": (self.stack.gateway_url, main.pid),
                "gateway-edgeoff": (self.side.url, self.side.process.pid),
            },
            headers,
            self.options.nginx_s,
            self.options.nginx_connections,
            self.say,
            self.options.nginx_rounds,
        )
