"""One bench run from start to report: the target, the phases, the experiments, the files."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devstack.stack import Stack
from loadtests import microbench, report
from loadtests.bench import log
from loadtests.bench.client import PROBE_USER, USER_PREFIX, Gateway
from loadtests.bench.cluster import cluster_phase
from loadtests.bench.experiments import (
    DISTANCE_MODES,
    HopLag,
    credential_size,
    login_cost,
    revocation_record,
    revocation_sample,
    store_distance,
    store_outage,
)
from loadtests.bench.phases import Load, phase_plan, run_phase
from loadtests.bench.results import (
    BenchResults,
    ClusterResults,
    DistancePhase,
    MicrobenchRow,
    Outage,
    Phase,
    Revocation,
    TracedPhase,
)
from loadtests.bench.scrape import Idle, Target, local_stack, target_settings
from loadtests.bench.spans import traced_phases
from loadtests.modes import SESSION, SETTING_NAMES, Mode

REVOCATION_LIMIT_S = 3.0  # how long an old credential is polled after logout


@dataclass(frozen=True)
class Options:
    host: str | None
    users: int
    user_rps: float
    duration: float
    warmup: float
    rounds: int
    distances: list[float]
    distance_duration: float
    out: Path
    microbench_n: int
    instruction_calls: int = 100  # the session check vs GET in instructions (0: not counted)
    revocation_samples: int = 5
    trace_seconds: float = 2.0  # each design's traced phase (0: none)
    trace_designs: tuple[str, ...] = ()  # the designs traced (empty: every design)
    distance_designs: tuple[str, ...] = ()  # the distance phases' designs (empty: all of them)
    cluster: bool = True  # the cluster phase (own stack only)
    store_bench_requests: int = 40_000  # redis-benchmark requests, one primary vs the cluster

    @property
    def load(self) -> Load:
        return Load(self.users, self.user_rps, self.duration, self.warmup)

    @property
    def distance_load(self) -> Load:
        return Load(self.users, self.user_rps, self.distance_duration, self.warmup)

    @property
    def traced_load(self) -> Load:
        return Load(self.users, self.user_rps, self.trace_seconds, min(self.warmup, 1.0))

    @property
    def cluster_load(self) -> Load:
        """The cluster phase's two windows (one Redis, the cluster): as long as a distance
        phase's (--distance-duration)."""
        return Load(self.users, self.user_rps, self.distance_duration, self.warmup)


@dataclass
class Services:
    """The settings the services run with; only the bench's own stack restarts with others."""

    stack: Stack | None
    settings: dict[str, str]

    def differ(self, settings: Mapping[str, str]) -> dict[str, str]:
        """What a restart would change to run with `settings` (nothing on a --host target)."""
        if self.stack is None:
            return {}
        return {k: v for k, v in settings.items() if self.settings.get(k) != v}

    def switch(self, settings: Mapping[str, str]) -> None:
        """Restart the services if, and only if, `settings` differ from what they run."""
        changed = self.differ(settings)
        if changed:
            assert self.stack is not None
            log(f"restarting the services with {' '.join(f'{k}={v}' for k, v in changed.items())}")
            # The default timeout, given by position so that **changed cannot be taken for it.
            self.stack.reconfigure(60.0, **changed)
            self.settings.update(changed)


@contextmanager
def open_target(
    host: str | None, workdir: Path, settings: Mapping[str, str]
) -> Iterator[tuple[Target, Stack | None]]:
    """The --host target as it is, or the local stack on free ports started with `settings`,
    stopped on the way out."""
    if host:
        gateway = host.rstrip("/")
        log(f"targeting {gateway}: server-side figures come from the gateway only")
        yield Target(gateway, {"gateway": gateway}, {}), None
        return
    log("starting the local stack on free ports")
    stack = local_stack(workdir, "stack", settings)
    stores = {"session_store": stack.ports.session_store, "data_store": stack.ports.data_store}
    try:
        stack.start()
        yield Target.of(stack, stores), stack
    finally:
        stack.stop()
        stack.log.close()


@dataclass
class Comparison:
    """What the interleaved phases measured, and the experiments made between them."""

    phases: list[Phase]
    revocation: list[Revocation]
    outage: Outage | None


def compare_modes(
    options: Options, target: Target, services: Services, idle: Idle, workdir: Path
) -> Comparison:
    """The interleaved phases; after each, revocation samples under that mode's settings; and
    after the last phase of each group of settings (own stack only), the store outage for the
    modes of that group, so that no restart is spent on experiments."""
    gateway = Gateway(target.gateway)
    plan = phase_plan(options.rounds)
    if services.stack is None:
        # A running stack has one set of settings: measure the modes it serves as they are.
        plan = [m for m in plan if not m.mismatches(services.settings)]
        shown = " ".join(f"{k}={v}" for k, v in sorted(services.settings.items()))
        names = ", ".join(dict.fromkeys(m.name for m in plan))
        log(f"the target shows {shown}: phases {names}")
    modes = modes_of(plan)
    # The index of each group of settings' last phase.
    last_of_group = {tuple(sorted(m.settings.items())): index for index, m in enumerate(plan)}
    phases: list[Phase] = []
    samples: dict[str, list[dict[str, HopLag]]] = {}
    under: dict[str, dict[str, str]] = {}  # the settings each mode's samples were taken under
    outage: Outage | None = {"stalled": {}, "down": {}} if services.stack is not None else None
    for index, mode in enumerate(plan):
        services.switch(mode.settings)
        log(f"phase {index + 1}/{len(plan)}: {mode.name}")
        label = f"phase{index + 1}-{mode.name}"
        phases.append(run_phase(target, mode, options.load, workdir, label, idle))
        revocation_samples(options, target, mode, samples)
        under[mode.name] = dict(services.settings)
        last = last_of_group[tuple(sorted(mode.settings.items()))] == index
        if last and services.stack is not None and outage is not None:
            group = [m for m in modes if m.settings == mode.settings]
            log(f"store outage ({', '.join(m.name for m in group)}): stalling, then stopping it")
            found = store_outage(services.stack, gateway, group, PROBE_USER)
            outage["stalled"].update(found["stalled"])
            outage["down"].update(found["down"])
    revocation = [
        revocation_record(m, samples[m.name], REVOCATION_LIMIT_S, under[m.name]) for m in modes
    ]
    return Comparison(phases, revocation, outage)


@contextmanager
def guarded(what: str, notes: list[str]) -> Iterator[None]:
    """Run a late phase; if it fails, say so in the report and keep everything measured before
    it (these phases lean on the most outside tools: a cluster, redis-benchmark, tracing)."""
    try:
        yield
    except Exception as error:  # a failed phase must not cost the run its other figures
        notes.append(f"{what} failed: {type(error).__name__}: {error}")
        log(notes[-1])


def modes_of(plan: list[Mode]) -> list[Mode]:
    """Each mode of a plan once, in the order of first appearance."""
    return list({m.name: m for m in plan}.values())


def chosen(modes: Sequence[Mode], names: Sequence[str]) -> list[Mode]:
    """The modes named (in the modes' order), or all of them when no name is given."""
    return [m for m in modes if not names or m.name in names]


def revocation_samples(
    options: Options, target: Target, mode: Mode, samples: dict[str, list[dict[str, HopLag]]]
) -> None:
    """Add `options.revocation_samples` samples of `mode` (one, if it was never refused)."""
    taken = samples.setdefault(mode.name, [])
    for _ in range(options.revocation_samples):
        if any(h.refused_ms is None for s in taken for h in s.values()):
            return  # still accepted at the limit: another sample only says so again
        taken.append(
            revocation_sample(Gateway(target.gateway), target, mode, PROBE_USER, REVOCATION_LIMIT_S)
        )


def primitives(n: int, instruction_calls: int) -> list[MicrobenchRow]:
    if not n:
        return []
    log("micro-benchmark of the primitives")
    return [row.as_dict() for row in asyncio.run(microbench.run(n, 3, instruction_calls))]


def measure(
    options: Options, target: Target, stack: Stack | None, workdir: Path, started: dt.datetime
) -> BenchResults:
    gateway = Gateway(target.gateway)
    loadavg = round(os.getloadavg()[0], 2)
    log(f"creating {options.users} load-test users")
    for index in range(options.users):
        gateway.ensure_user(f"{USER_PREFIX}-{index}")
    gateway.ensure_user(PROBE_USER)
    log("measuring the idle CPU baseline")
    idle = Idle.measure(target, 3.0)
    # The bench's own stack runs the settings it was started with; a --host shows its own.
    running = (
        {name: stack.env[name] for name in SETTING_NAMES}
        if stack is not None
        else target_settings(gateway, PROBE_USER)
    )
    services = Services(stack, running)
    comparison = compare_modes(options, target, services, idle, workdir)
    log("login cost and credential size")
    login = login_cost(target, gateway, PROBE_USER, 10)
    size = credential_size(target, gateway, PROBE_USER)
    distance: list[DistancePhase] = []
    if stack is not None and options.distances:
        log("store distance: the session store behind a delaying proxy")
        distance = store_distance(
            stack,
            services.switch,
            target,
            options.distance_load,
            options.distances,
            workdir,
            idle,
            chosen(DISTANCE_MODES, options.distance_designs),
        )
    notes: list[str] = []
    traced: list[TracedPhase] = []
    if stack is not None and options.trace_seconds > 0:
        log("traced phases: where each hop's time goes, from the spans")
        traced_modes = chosen(modes_of(phase_plan(1)), options.trace_designs)
        with guarded("traced phases", notes):
            traced = traced_phases(
                traced_modes, services.switch, target, options.traced_load, workdir, idle
            )
    cluster: ClusterResults | None = None
    if stack is not None and options.cluster:
        if shutil.which("redis-cli") is None:
            notes.append("cluster phase skipped: redis-cli is not on PATH")
            log(notes[-1])
        else:
            with guarded("cluster phase", notes):
                services.switch(SESSION.settings)
                cluster = cluster_phase(
                    target,
                    options.cluster_load,
                    options.users,
                    workdir,
                    idle,
                    options.store_bench_requests,
                )
    return {
        "started": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "loadavg": [loadavg],
        },
        "load": {
            "users": options.users,
            "user_rps": options.user_rps,
            "duration_s": options.duration,
            "warmup_s": options.warmup,
            "rounds": options.rounds,
        },
        "target": options.host,
        "phases": comparison.phases,
        "distance": distance,
        "revocation": comparison.revocation,
        "outage": comparison.outage,
        "login": login,
        "credential_size": size,
        "microbench": primitives(options.microbench_n, options.instruction_calls),
        "idle_cpu_ms_per_s": idle.ms_per_s(),
        "traced": traced,
        "cluster": cluster,
        "notes": notes,
    }


def run(options: Options) -> Path:
    """Measure, then write reports/<timestamp>/ and point reports/latest at it; returns the first.

    latest is a relative symlink (a copy where the file system has none), so what is written
    under reports/latest/ next (the crossover `make bench` runs after this) stays with this run.
    """
    started = dt.datetime.now(dt.UTC)
    workdir = Path(tempfile.mkdtemp(prefix="authscale-bench-"))
    first = phase_plan(options.rounds)[0].settings
    with open_target(options.host, workdir, first) as (target, stack):
        results = measure(options, target, stack, workdir, started)
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["machine"].setdefault("loadavg", []).append(round(os.getloadavg()[0], 2))
    out = options.out / started.strftime("%Y%m%dT%H%M%SZ")
    report.write(results, out)
    for log_file in ("stack.log", "cluster-stack.log"):  # the services' warnings: any failure
        if (workdir / log_file).exists():
            shutil.copy(workdir / log_file, out / log_file)
    latest = options.out / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.exists():
        shutil.rmtree(latest)
    try:
        latest.symlink_to(out.name, target_is_directory=True)
    except OSError:
        shutil.copytree(out, latest)
    shutil.rmtree(workdir, ignore_errors=True)
    return out
