"""One crossover run from start to report: the stack, the configurations, the windows, the
experiments, the files. Everything it starts is stopped on the way out, whatever happens."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from devstack.stack import Ports, Stack, free_port, spawn
from loadtests.bench.client import PASSWORD, Gateway
from loadtests.crossover import log
from loadtests.crossover.driver import LocustDriver
from loadtests.crossover.experiments import (
    key_rotation,
    nginx_reference,
    revocation_lags,
    shard_capacity,
)
from loadtests.crossover.netns import RemoteStore, remote_store
from loadtests.crossover.plan import Config, Options, Progress, configs, tasks
from loadtests.crossover.results import (
    CrossoverResults,
    DesignInfo,
    DistancePoint,
    HopPoint,
    Knee,
    KneeDesign,
    KneeStep,
    NginxReference,
    RevocationLag,
    Rotation,
    Shards,
    dump,
)
from loadtests.crossover.servers import Idle, Servers, StoreAddress
from loadtests.model import distance_fit, hop_fits
from loadtests.modes import MODES, Mode, settings_groups
from services.common.settings import REPO_ROOT

USER_PREFIX = "crossover"
PROBE_USER = "crossover-probe"
# Logins are not what the crossover measures, and every Locust user logs in once per run:
# the bench's own accounts hash with argon2id at a tenth of the OWASP cost (recorded).
CHEAP_ARGON2 = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "2048"}


def select_modes(names: Sequence[str]) -> list[Mode]:
    """The designs of loadtests/modes.py, as it is now; `names` picks some (in table order)."""
    if not names:
        return list(MODES)
    unknown = sorted(set(names) - {m.name for m in MODES})
    if unknown:
        known = ", ".join(m.name for m in MODES)
        raise SystemExit(f"unknown design(s) {', '.join(unknown)}; the table has {known}")
    return [m for m in MODES if m.name in names]


@dataclass
class SideGateway:
    """A second gateway process with GATEWAY_EDGE_AUTH=0 beside the stack's, same settings
    otherwise: the one-hop windows go through it without restarting the services."""

    log: IO[str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, stack: Stack, timeout: float = 60.0) -> None:
        self.stop()
        gateway = stack.components["gateway"]
        env = {**gateway.env, "PORT": str(self.port), "GATEWAY_EDGE_AUTH": "0"}
        self.process = spawn(
            gateway.argv,
            env=env,
            cwd=str(REPO_ROOT),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the edge-off gateway exited with {self.process.returncode}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as answer,  # noqa: S310
            ):
                if answer.status == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError("the edge-off gateway was not ready in time")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


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
                self.measure_knee(tag, config, driver, servers)
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
                self.progress.finish(f"{tag}:revocation:{mode.name}", self.revocation_line(mode))
        if config.nginx:
            self.guarded("nginx reference", lambda: self.reference(group))
            self.progress.finish(f"{tag}:nginx", self.nginx_line())

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
                self.progress.finish(
                    f"{tag}:hop:{hops}:{name}",
                    f"hops: {name} at {hops} hop(s): {point['checks_per_request']:.2f} checks/req, "
                    f"{point['cpu_us_total']:,.0f} us CPU/req, p50 {point['p50_ms']} ms, "
                    f"{point['failures']} failures",
                )

    def measure_knee(
        self, tag: str, config: Config, driver: LocustDriver, servers: Servers
    ) -> None:
        """The ladder, designs interleaved step by step (the order reversed every other step).
        A window past the SLO is measured once more before the design's ladder ends: a short
        window's p99 is its few slowest requests, which a neighbour's burst on a shared machine
        can spoil alone."""
        o = self.options
        active = list(config.designs)
        for step, rate in enumerate(o.ladder()):
            order = active if step % 2 == 0 else list(reversed(active))
            for name in list(order):
                for attempt in (1, 2):
                    knee_step = self.knee_window(config, driver, servers, name, rate, attempt)
                    if knee_step["held"]:
                        break
                self.progress.finish(f"{tag}:knee:{name}:{step}", self.knee_line(config, knee_step))
                if not knee_step["held"] or knee_step["generator_limited"]:
                    active.remove(name)
                    self.progress.skip_prefix(f"{tag}:knee:{name}:")
            if not active:
                break

    def knee_window(
        self,
        config: Config,
        driver: LocustDriver,
        servers: Servers,
        name: str,
        rate: float,
        attempt: int,
    ) -> KneeStep:
        o = self.options
        segment = driver.measure(
            servers, self.idle, [name], "mix", rate, o.step_s, o.settle_s
        ).segment
        p99 = segment["p99_ms"]
        held = segment["failures"] == 0 and p99 is not None and p99 <= o.slo_ms
        knee_step: KneeStep = {**segment, "round": config.round, "attempt": attempt, "held": held}
        self.steps.setdefault(name, []).append(knee_step)
        return knee_step

    @staticmethod
    def knee_line(config: Config, step: KneeStep) -> str:
        flag = "  ** Locust was the limit **" if step["generator_limited"] else ""
        again = " (measured twice)" if step["attempt"] > 1 else ""
        return (
            f"knee (round {config.round}): {step['design']} at {step['offered_rps']:g} req/s "
            f"offered: {step['achieved_rps']:g} served, p99 {step['p99_ms']} ms, "
            f"{step['failures']} failures, Locust CPU max {max(step['locust_cpu'], default=0):.0%}"
            f": {'held' if step['held'] else 'past the knee'}{again}{flag}"
        )

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
                self.progress.finish(
                    f"{tag}:distance:{rtt}:{name}",
                    f"distance ({self.store.method}): {name} with the store {measured} ms away: "
                    f"p50 {point['p50_ms']} ms, p99 {point['p99_ms']} ms",
                )
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
        old_ok = all(v == 200 for v in rotation["old_token"].values())
        self.progress.finish(
            f"{tag}:rotation",
            f"key rotation ({', '.join(rotation['designs'])}): {rotation['requests']} requests, "
            f"{rotation['failures']} failed, {rotation['jwks_fetches']} JWKS refetches, "
            f"old tokens {'accepted' if old_ok else 'REFUSED'}: "
            f"{'ok' if rotation['ok'] else 'NOT ok'}",
        )

    def revoke(self, mode: Mode) -> None:
        self.revocation[mode.name] = revocation_lags(
            self.stack.gateway_url,
            self.inside(),
            mode,
            PROBE_USER,
            self.options.revocation_samples,
            self.options.revocation_limit_s,
        )

    def revocation_line(self, mode: Mode) -> str:
        lag = self.revocation.get(mode.name)
        if lag is None:
            return f"revocation: {mode.name} not measured"
        if lag["until_exp"]:
            return f"revocation: {mode.name} still accepted after {lag['limit_s']:g} s: until exp"
        worst = max((h["p99_ms"] or 0.0 for h in lag["hops"].values()), default=0.0)
        return f"revocation: {mode.name} over {lag['samples']} logouts, worst hop p99 {worst} ms"

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
        )

    def nginx_line(self) -> str:
        if self.nginx is None or not self.nginx["available"]:
            return f"nginx reference: {self.nginx['note'] if self.nginx else 'failed'}"
        cpu = self.nginx["cpu_us_per_request"]
        return (
            f"nginx reference: nginx {cpu.get('nginx')} us/request, gateway {cpu.get('gateway')} "
            f"(x{self.nginx['ratio']}), edge auth off {cpu.get('gateway-edgeoff')} "
            f"(x{self.nginx['ratio_edge_off']})"
        )

    # -- summaries ------------------------------------------------------------------------------

    def knee(self) -> Knee:
        o = self.options
        designs: dict[str, KneeDesign] = {}
        for mode in self.modes:
            steps = self.steps.get(mode.name, [])
            if not steps:
                continue
            rounds = sorted({s["round"] for s in steps})
            by_round: list[float | None] = []
            limit = "ladder end"
            best: KneeStep | None = None
            for round_ in rounds:
                held = None
                for rate in o.ladder():
                    windows = [
                        s for s in steps if s["round"] == round_ and s["offered_rps"] == rate
                    ]
                    if not windows:
                        break
                    passed = [s for s in windows if s["held"]]
                    if not passed:
                        if round_ == rounds[0]:
                            limit = "errors" if all(s["failures"] for s in windows) else "slo"
                        break
                    held = passed[0]
                    if held["generator_limited"]:
                        if round_ == rounds[0]:
                            limit = "load generator"
                        break
                by_round.append(held["offered_rps"] if held else None)
                if held is not None and (best is None or held["offered_rps"] > best["offered_rps"]):
                    best = held
            known = [k for k in by_round if k is not None]
            knee_rps = statistics.median_low(known) if known else None  # a step run
            at = best
            if knee_rps is not None:
                at = min(
                    (s for s in steps if s["held"] and s["offered_rps"] == knee_rps),
                    key=lambda s: s["round"],
                    default=best,
                )
            designs[mode.name] = {
                "steps": steps,
                "knee_rps": knee_rps,
                "knee_achieved_rps": at["achieved_rps"] if at else None,
                "knee_p99_ms": at["p99_ms"] if at else None,
                "cpu_us_per_request": at["cpu_us_total"] if at else None,
                "cpu_us_services": at["cpu_us_services"] if at else None,
                "limit": limit,
                "by_round": by_round,
            }
        ratios = {
            a: {
                b: round(float(da["knee_rps"]) / float(db["knee_rps"]), 2)
                for b, db in designs.items()
                if da["knee_rps"] and db["knee_rps"]
            }
            for a, da in designs.items()
        }
        return {
            "slo_ms": o.slo_ms,
            "ladder": o.ladder(),
            "rounds": o.rounds,
            "designs": designs,
            "ratios": ratios,
        }


def _design_info(mode: Mode) -> DesignInfo:
    return {
        "name": mode.name,
        "user_class": mode.user_class,
        "credential": mode.credential.name,
        "kind": mode.credential.kind,
        "carrier": mode.credential.carrier,
        "settings": dict(mode.settings),
    }


def measure(
    options: Options, workdir: Path, say: Callable[[str], None], cleanup: contextlib.ExitStack
) -> CrossoverResults:
    started = dt.datetime.now(dt.UTC)
    began = time.monotonic()
    modes = select_modes(options.designs)
    groups = settings_groups(modes)
    say(
        f"{len(modes)} designs ({', '.join(m.name for m in modes)}) in {len(groups)} "
        f"settings group(s); {'--long' if options.long else 'default'} run"
    )
    shards: Shards | None = shard_capacity(workdir, options.shard_requests)
    store = cleanup.enter_context(remote_store(workdir / "remote"))
    say(f"session store at a distance: {store.method}: {store.note}")
    plan = configs(groups, options, store.method == "netem")
    progress = Progress(tasks(plan, options), say)
    say(
        f"plan: {len(plan)} configurations of the services, {len(progress.planned)} tasks, "
        f"estimated {progress.estimated_s / 60:.1f} min"
    )
    progress.finish(
        "shards",
        "per-shard capacity: "
        + (
            f"{shards['per_shard_ops']:,.0f} ops/s (redis-benchmark)"
            if shards
            else "no redis-benchmark"
        ),
    )
    ports = Ports.free()
    jwks = f"http://127.0.0.1:{ports.auth}/.well-known/jwks.json"
    base_env = {
        "LOG_LEVEL": "WARNING",
        **CHEAP_ARGON2,
        "JWT_JWKS_URL": jwks,
        "JWKS_COOLDOWN_SECONDS": f"{options.jwks_cooldown_s:g}",
    }
    stack_log = (workdir / "stack.log").open("w")
    cleanup.callback(stack_log.close)
    stack = Stack(
        ports=ports,
        workdir=workdir / "stack",
        keys_dir=workdir / "keys",
        log=stack_log,
        env=dict(base_env),
    )
    cleanup.callback(stack.stop)
    side = SideGateway((workdir / "gateway-edgeoff.log").open("w"))
    cleanup.callback(side.log.close)
    cleanup.callback(side.stop)
    run = Run(options, modes, workdir, say, store, stack, side, progress)
    stack.env.update(run.settings_of(plan[0]))
    stack.start()
    side.start(stack)
    gateway = Gateway(stack.gateway_url)
    for index in range(options.users):
        gateway.ensure_user(f"{USER_PREFIX}-{index}")
    gateway.ensure_user(PROBE_USER)
    run.idle = Idle.measure(run.servers(plan[0]), 2.0)
    progress.finish("start", f"stack up on free ports, {options.users} accounts, idle CPU measured")
    for index, config in enumerate(plan):
        if index:
            wanted = run.settings_of(config)
            changed = {k: v for k, v in wanted.items() if stack.env.get(k) != v}
            say(
                f"configuration {index + 1}/{len(plan)} ({config.purpose}: "
                f"{', '.join(config.designs)}): restarting the services"
                + (f" with {' '.join(f'{k}={v}' for k, v in changed.items())}" if changed else "")
            )
            stack.reconfigure(60.0, **wanted)
            side.start(stack)
            progress.finish(f"{index}:restart", "services restarted")
        run.configuration(index, config, run.servers(config))
    hop_fit = {name: hop_fits(points) for name, points in run.hops.items()}
    distance = {name: distance_fit(points) for name, points in run.distance.items()}
    finished = dt.datetime.now(dt.UTC)
    return {
        "version": 1,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "load_average": [round(v, 2) for v in os.getloadavg()],
        },
        "options": {
            k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
            for k, v in asdict(options).items()
        },
        "designs": [_design_info(m) for m in modes],
        "setup": {
            "configurations": [
                {"designs": list(c.designs), "purpose": c.purpose, "remote_store": c.remote_store}
                for c in plan
            ],
            "argon2": CHEAP_ARGON2,
            "keys": f"verifiers take keys from auth's JWKS (JWT_JWKS_URL), refetch cooldown "
            f"{options.jwks_cooldown_s:g} s",
            "locust": f"{options.users} users per design, {options.processes} worker process(es)",
            "one_hop": "a second gateway with GATEWAY_EDGE_AUTH=0 beside the stack's",
        },
        "idle_cpu_ms_per_s": {k: round(v * 1000, 2) for k, v in run.idle.rates.items()},
        "knee": run.knee(),
        "hops": {"rate_rps": options.hop_rps, "designs": run.hops, "fits": hop_fit},
        "distance": {
            "method": "netem" if store.method == "netem" else "proxy",
            "method_note": store.note,
            "namespace": store.namespace,
            "rate_rps": options.distance_rps,
            "rtts_ms": list(options.rtts_ms),
            "designs": run.distance,
            "fits": distance,
        },
        "revocation": run.revocation,
        "rotation": run.rotation,
        "shards": shards,
        "nginx": run.nginx,
        "progress": {
            "estimated_s": round(progress.estimated_s, 1),
            "wall_s": round(time.monotonic() - began, 1),
        },
        "notes": run.notes,
    }


def run(options: Options, say: Callable[[str], None] = log) -> Path:
    """Measure, then write results.json and the report into options.out; returns it."""
    from loadtests.crossover import report  # matplotlib only once there is something to draw

    workdir = Path(tempfile.mkdtemp(prefix="authscale-crossover-"))
    out = options.out
    began = time.monotonic()
    logs = out / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    try:
        with contextlib.ExitStack() as cleanup:
            results = measure(options, workdir, say, cleanup)
    except BaseException:
        say(f"the run failed; its logs are in {logs}")
        raise
    finally:
        logs.mkdir(parents=True, exist_ok=True)
        for path in workdir.glob("*.log"):
            shutil.copyfile(path, logs / path.name)
        shutil.rmtree(workdir, ignore_errors=True)
    dump(results, out / "results.json")
    report.write(results, out)
    results["progress"]["wall_s"] = round(time.monotonic() - began, 1)
    dump(results, out / "results.json")
    progress = results["progress"]
    say(f"done in {progress['wall_s']:.0f} s (estimated {progress['estimated_s']:.0f} s)")
    return out
