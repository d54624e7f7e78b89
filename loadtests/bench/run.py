"""One bench run from start to report: the target, the phases, the experiments, the files."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from loadtests import microbench, report
from loadtests.bench import log
from loadtests.bench.client import PROBE_USER, USER_PREFIX, Gateway
from loadtests.bench.experiments import (
    credential_size,
    login_cost,
    revocation_latency,
    store_distance,
    store_outage,
)
from loadtests.bench.phases import Load, phase_plan, run_phase
from loadtests.bench.results import (
    BenchResults,
    DistancePhase,
    MicrobenchRow,
    Outage,
    Phase,
    Revocation,
)
from loadtests.bench.scrape import Idle, Target, target_revocation
from loadtests.modes import JWT_PUSH
from services.stack import Ports, Stack


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

    @property
    def load(self) -> Load:
        return Load(self.users, self.user_rps, self.duration, self.warmup)

    @property
    def distance_load(self) -> Load:
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
        changed = self.differ(settings)
        if changed:
            assert self.stack is not None
            # The default timeout, given by position so that **changed cannot be taken for it.
            self.stack.reconfigure(60.0, **changed)
            self.settings.update(changed)


@contextmanager
def open_target(host: str | None, workdir: Path) -> Iterator[tuple[Target, Stack | None]]:
    """The --host target as it is, or the local stack on free ports, stopped on the way out."""
    if host:
        gateway = host.rstrip("/")
        log(f"targeting {gateway}: server-side figures come from the gateway only")
        yield Target(gateway, {"gateway": gateway}, {}), None
        return
    log("starting the local stack on free ports")
    stack = Stack(
        ports=Ports.free(),
        workdir=workdir / "stack",
        keys_dir=workdir / "keys",
        log=(workdir / "stack.log").open("w"),
        env={"LOG_LEVEL": "WARNING"},
    )
    try:
        stack.start()
        yield (
            Target(
                stack.gateway_url,
                {name: stack.url(name) for name in stack.service_names},
                {"session_store": stack.ports.session_store, "data_store": stack.ports.data_store},
            ),
            stack,
        )
    finally:
        stack.stop()
        stack.log.close()


def compare_modes(
    options: Options, target: Target, services: Services, idle: Idle, workdir: Path
) -> tuple[list[Phase], list[Revocation]]:
    """The interleaved phases, and each mode's revocation latency after its first phase."""
    gateway = Gateway(target.gateway)
    plan = phase_plan(options.rounds)
    if services.stack is None:
        # A running stack has one revocation mode; measure the JWT class that matches it.
        current = services.settings["JWT_REVOCATION"]
        plan = [m for m in plan if m.measurable_on(current)]
        names = ", ".join(dict.fromkeys(m.name for m in plan))
        log(f"the target runs JWT_REVOCATION={current}: phases {names}")
    phases: list[Phase] = []
    revocation: list[Revocation] = []
    for number, mode in enumerate(plan, start=1):
        changed = services.differ(mode.settings)
        if changed:
            log(f"restarting the services with {' '.join(f'{k}={v}' for k, v in changed.items())}")
            services.switch(changed)
        log(f"phase {number}/{len(plan)}: {mode.name}")
        label = f"phase{number}-{mode.name}"
        phases.append(run_phase(target, mode, options.load, workdir, label, idle))
        if all(r["mode"] != mode.name for r in revocation):
            current = services.settings["JWT_REVOCATION"]
            revocation.append(revocation_latency(gateway, mode, PROBE_USER, 3.0, current))
    return phases, revocation


def store_experiments(
    options: Options, stack: Stack, target: Target, services: Services, idle: Idle, workdir: Path
) -> tuple[Outage, list[DistancePhase]]:
    """The session store stalled, stopped, then moved away: needs the bench's own stack."""
    services.switch(JWT_PUSH.settings)
    log("store outage: stalling, then stopping the session store")
    outage = store_outage(stack, Gateway(target.gateway), PROBE_USER)
    distance: list[DistancePhase] = []
    if options.distances:
        distance = store_distance(
            stack, target, options.distance_load, options.distances, workdir, idle
        )
    return outage, distance


def primitives(n: int) -> list[MicrobenchRow]:
    if not n:
        return []
    log("micro-benchmark of the primitives")
    return [row.as_dict() for row in asyncio.run(microbench.run(n, 3))]


def measure(
    options: Options, target: Target, stack: Stack | None, workdir: Path, started: dt.datetime
) -> BenchResults:
    gateway = Gateway(target.gateway)
    log(f"creating {options.users} load-test users")
    for index in range(options.users):
        gateway.ensure_user(f"{USER_PREFIX}-{index}")
    gateway.ensure_user(PROBE_USER)
    log("measuring the idle CPU baseline")
    idle = Idle.measure(target, 3.0)
    # The bench's own stack starts with the services' default, JWT_REVOCATION=push.
    revocation = "push" if stack is not None else target_revocation(target.gateway)
    services = Services(stack, {"JWT_REVOCATION": revocation})
    phases, revocations = compare_modes(options, target, services, idle, workdir)
    outage: Outage | None = None
    distance: list[DistancePhase] = []
    if stack is not None:
        outage, distance = store_experiments(options, stack, target, services, idle, workdir)
    return {
        "started": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": sys.platform,
        },
        "load": {
            "users": options.users,
            "user_rps": options.user_rps,
            "duration_s": options.duration,
            "warmup_s": options.warmup,
            "rounds": options.rounds,
        },
        "target": options.host,
        "phases": phases,
        "distance": distance,
        "revocation": revocations,
        "outage": outage,
        "login": login_cost(target, gateway, PROBE_USER, 10),
        "credential_size": credential_size(gateway, PROBE_USER),
        "microbench": primitives(options.microbench_n),
        "idle_cpu_ms_per_s": idle.ms_per_s(),
    }


def run(options: Options) -> Path:
    """Measure, then write reports/<timestamp>/ and a copy as reports/latest/; returns the first."""
    started = dt.datetime.now(dt.UTC)
    workdir = Path(tempfile.mkdtemp(prefix="authscale-bench-"))
    with open_target(options.host, workdir) as (target, stack):
        results = measure(options, target, stack, workdir, started)
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out = options.out / started.strftime("%Y%m%dT%H%M%SZ")
    report.write(results, out)
    latest = options.out / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.exists():
        shutil.rmtree(latest)
    shutil.copytree(out, latest)
    shutil.rmtree(workdir, ignore_errors=True)
    return out
