"""The runner's side of Locust: start it with every design of one settings group, pace it
through control files, read back what each window saw, stop it.

One Locust run serves every design that shares the services' settings (loadtests.modes
.settings_groups), so designs are measured interleaved, window by window, without a restart
and with every user logged in once. With `processes` > 1 Locust runs a master and that many
worker processes (`--processes`), on a master port of its own.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from devstack.processes import free_port, stop_process
from loadtests.bench.phases import locust_argv
from loadtests.crossover import hist, protocol
from loadtests.crossover.processes import start_child, wait_until
from loadtests.crossover.results import Segment
from loadtests.crossover.servers import Idle, Servers, costs
from loadtests.modes import Mode
from services.common.settings import REPO_ROOT

LOCUSTFILE = REPO_ROOT / "loadtests" / "crossover" / "locustfile.py"
GENERATOR_LIMIT = 0.9  # a Locust process busier than this fraction of a core is the limit


@dataclass(frozen=True)
class Window:
    """One measured window: what the active users saw, and what the servers paid."""

    counts: protocol.Counts
    segment: Segment


def merge_counts(reports: Sequence[protocol.WorkerReport], seq: int) -> protocol.Counts:
    """The counts every Locust process made for control `seq`, added up."""
    key = str(seq)
    parts = [r["segments"][key] for r in reports if key in r["segments"]]
    errors: dict[str, int] = {}
    for part in parts:
        for message, n in part["errors"].items():
            errors[message] = errors.get(message, 0) + n
    return {
        "n": sum(p["n"] for p in parts),
        "fail": sum(p["fail"] for p in parts),
        "hist": hist.merge(p["hist"] for p in parts),
        "errors": errors,
    }


@dataclass
class LocustDriver:
    host: str  # the gateway Locust's users log in through
    modes: Sequence[Mode]
    users: int  # per design
    processes: int
    directory: Path
    env: Mapping[str, str]
    log: Callable[[str], None]
    process: subprocess.Popen[bytes] | None = None
    seq: int = 0
    ready: int = 0
    stopped_users: int = 0
    _workers: list[psutil.Process] = field(default_factory=list)

    @property
    def total_users(self) -> int:
        return self.users * len(self.modes)

    def start(self, timeout: float = 60.0) -> None:
        """Start Locust and wait until every user has logged in (or `timeout`)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f"{protocol.WORKER_PREFIX}*.json"):
            stale.unlink()
        protocol.write_json(self.directory / protocol.CONTROL, protocol.idle(0))
        argv = locust_argv(
            LOCUSTFILE, self.total_users, self.total_users, self.host, "WARNING", 7200, 1
        )
        if self.processes > 1:
            port = str(free_port())
            argv += ["--processes", str(self.processes), "--master-bind-port", port]
            argv += ["--master-port", port]
        argv += [f"Crossover{mode.user_class}" for mode in self.modes]
        env = {
            **os.environ,
            **self.env,
            "CROSSOVER_DIR": str(self.directory),
            "CROSSOVER_USERS": str(self.users),
        }
        with (self.directory / "locust.log").open("ab") as output:
            self.process = start_child(argv, env, output)
        exited = "Locust exited with {}; see locust.log"
        if not wait_until(self.process, self._logged_in, timeout, 0.1, exited):
            self.log(f"only {self.ready}/{self.total_users} Locust users logged in; going on")
        if self.stopped_users:
            self.log(f"{self.stopped_users} Locust users gave up at start; see locust.log")
        self._workers = self._user_processes()

    def _logged_in(self) -> bool:
        """Whether every user has logged in or given up, as the workers last reported."""
        reports = protocol.read_workers(self.directory)
        self.ready = sum(r["ready"] for r in reports)
        self.stopped_users = sum(r["stopped"] for r in reports)
        return self.ready + self.stopped_users >= self.total_users

    def _user_processes(self) -> list[psutil.Process]:
        """The processes that run users: the workers, or Locust itself when it has none."""
        assert self.process is not None
        main = psutil.Process(self.process.pid)
        children = main.children(recursive=True)
        return children if self.processes > 1 and children else [main]

    def cpu(self) -> list[float]:
        out = []
        for worker in self._workers:
            try:
                times = worker.cpu_times()
                out.append(times.user + times.system)
            except psutil.Error:
                out.append(0.0)
        return out

    def begin(
        self,
        designs: Sequence[str],
        task: protocol.Task,
        rate: float,
        settle: float,
        url: str = "",
        relogin_at: float = 0.0,
    ) -> protocol.Control:
        self.seq += 1
        control: protocol.Control = {
            "seq": self.seq,
            "designs": list(designs),
            "task": task,
            "rate": rate,
            "url": url,
            "measure_from": time.time() + settle,
            "relogin_at": relogin_at,
        }
        protocol.write_json(self.directory / protocol.CONTROL, control)
        return control

    def update(self, control: protocol.Control) -> None:
        """Change the running control without starting a new window (same seq)."""
        protocol.write_json(self.directory / protocol.CONTROL, control)

    def end(self, seq: int, timeout: float = 3.0) -> protocol.Counts:
        """Idle every user and return the counts of control `seq` once every process has
        moved past it."""
        self.seq += 1
        protocol.write_json(self.directory / protocol.CONTROL, protocol.idle(self.seq))
        deadline = time.monotonic() + timeout
        expected = max(len(self._workers), 1)
        while True:
            reports = protocol.read_workers(self.directory)
            done = [r for r in reports if r["seen_seq"] > seq]
            if len(done) >= expected or time.monotonic() > deadline:
                return merge_counts(done or reports, seq)
            time.sleep(0.02)

    def measure(
        self,
        servers: Servers,
        idle: Idle,
        designs: Sequence[str],
        task: protocol.Task,
        rate: float,
        seconds: float,
        settle: float,
        url: str = "",
        during: Callable[[protocol.Control], None] | None = None,
    ) -> Window:
        """One window: the users of `designs` run `task` at `rate`; after `settle` s the
        servers and Locust's own CPU are read, then again `seconds` later (`during`, if given,
        runs inside the window, which lasts at least `seconds`)."""
        control = self.begin(designs, task, rate, settle, url)
        time.sleep(max(0.0, control["measure_from"] - time.time()))
        before = servers.snapshot()
        cpu_before, started = self.cpu(), time.monotonic()
        if during is not None:
            during(control)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        after = servers.snapshot()
        cpu_after, wall = self.cpu(), time.monotonic() - started
        counts = self.end(control["seq"])
        paid = costs(before, after, idle)
        locust_cpu = [round((a - b) / wall, 3) for a, b in zip(cpu_after, cpu_before, strict=False)]
        p99 = hist.percentile(counts["hist"], 0.99)
        # Fell short of the offered rate while answers came quickly: the users could have kept
        # their pace, so Locust could not (each user starts a task every `interval` s).
        interval = self.users * len(designs) / max(rate, 1e-9)
        p50 = hist.percentile(counts["hist"], 0.50)
        short = (
            paid["achieved_rps"] < 0.85 * rate
            and rate * seconds >= 100  # a few requests more or less are not a shortfall
            and p50 is not None
            and p50 / 1000 < interval / 2
            and counts["fail"] == 0
        )
        # mypy cannot tell that `paid` (Costs) holds none of Segment's optional open-model keys;
        # a Locust window has none of them.
        segment: Segment = {
            **paid,  # type: ignore[typeddict-item]
            "generator": "locust",
            "design": designs[0] if len(designs) == 1 else ",".join(designs),
            "task": task,
            "offered_rps": rate,
            "requests": counts["n"],
            "failures": counts["fail"],
            "errors": counts["errors"],
            "p50_ms": p50,
            "p90_ms": hist.percentile(counts["hist"], 0.90),
            "p99_ms": p99,
            "max_ms": hist.maximum(counts["hist"]),
            "locust_cpu": locust_cpu,
            "generator_limited": short or any(c > GENERATOR_LIMIT for c in locust_cpu),
        }
        return Window(counts, segment)

    def stop(self) -> None:
        """SIGTERM Locust (it stops its workers), then SIGKILL whatever of it is left."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            children = psutil.Process(process.pid).children(recursive=True)
        except psutil.Error:
            children = []
        stop_process(process, 10)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
                child.wait(5)
