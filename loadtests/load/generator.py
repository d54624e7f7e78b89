"""One measured window of open-model load: start the load processes, give them one start time,
merge what they saw.

Each process (`worker`) carries its share of the schedule from its own connection pool and is
pinned to the generator's CPUs; the window's latency figures come from the sum of their HDR
histograms. A window the generator itself limited (it fell behind its schedule, or a process
used about a whole core) is flagged `generator_limited`: its figures describe the generator, and
a capacity search must not use them.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from loadtests.load import histogram
from loadtests.load.affinity import Isolation
from loadtests.load.histogram import Latency
from loadtests.load.schedule import Schedule
from loadtests.load.worker import Result, Spec, Target, Trace

# A process whose send lag p99 passes this was not keeping its schedule.
LAG_LIMIT_MS = 10.0
# A process busier than this fraction of a core was the limit (or about to be).
CPU_LIMIT = 0.9
# Time the processes get to start (import aiohttp, open a pool) before the first send.
STARTUP_TIMEOUT = 30.0
# Between handing out the start time and the first send: every process must have read it. A
# ready process is blocked reading its stdin for it, and wakes within a millisecond; one that
# wakes later sends its first requests late, inside the window's unmeasured settle. Paid by
# every window (about 470 in a default run).
START_LEAD = 0.03


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What to send (targets in turn, on `schedule`), from how many processes, how."""

    targets: tuple[Target, ...]
    schedule: Schedule
    processes: int = 1
    connections: int = 100  # per process
    timeout: float = 5.0
    # Seconds at the schedule's start whose requests are sent but not counted (warm-up).
    measure_from: float = 0.0
    isolation: Isolation | None = None  # the generator's CPUs come from here
    trace: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """What one window offered and what came back, latency from each request's intended start.

    `served_rps` counts 2xx answers only. `histogram` is the merged latency histogram, encoded,
    so that windows can be merged again later.
    """

    offered_rps: float
    seconds: float
    scheduled: int
    sent: int
    unsent: int
    answered: dict[str, int]
    errors: dict[str, int]
    served_rps: float
    # 2xx answers per second that arrived inside the measured part, whenever they were sent:
    # what the system served in that time. `served_rps` counts the requests scheduled in it,
    # answered late or not, so it matches the offered rate even in overload.
    served_inside_rps: float
    latency: Latency
    send_lag_p99_ms: float | None
    generator_cpu_seconds: float
    generator_cpu_share: float  # the busiest process: CPU seconds over its wall seconds
    process_cpu_shares: tuple[float, ...]  # each process's
    generator_limited: bool
    limited_because: tuple[str, ...]
    processes: int
    generator_cpus: tuple[int, ...]  # as the processes found themselves pinned
    system_cpus: tuple[int, ...]
    system_pids: tuple[int, ...]
    isolated: bool
    histogram: str
    traces: tuple[Trace, ...] = field(default=(), repr=False)


def combine(plan: Plan, results: list[Result]) -> Window:
    """The window from every process's result: counts added, histograms merged."""
    answered: dict[str, int] = {}
    errors: dict[str, int] = {}
    for result in results:
        for key, n in result.answered.items():
            answered[key] = answered.get(key, 0) + n
        for key, n in result.errors.items():
            errors[key] = errors.get(key, 0) + n
    merged = histogram.merge(r.latency for r in results)
    lag = Latency.of(histogram.merge(r.send_lag for r in results))
    shares = tuple(round(r.cpu_seconds / max(r.wall_seconds, 1e-9), 3) for r in results)
    share = max(shares, default=0.0)
    unsent = sum(r.unsent for r in results)
    because: list[str] = []
    if lag.p99_ms is not None and lag.p99_ms > LAG_LIMIT_MS:
        because.append(f"send lag p99 {lag.p99_ms} ms > {LAG_LIMIT_MS} ms")
    if share > CPU_LIMIT:
        because.append(f"a load process used {share:.2f} of a core > {CPU_LIMIT}")
    if unsent:
        because.append(f"{unsent} requests not sent: more than the timeout behind schedule")
    isolation = plan.isolation
    seconds = plan.schedule.seconds - plan.measure_from
    return Window(
        offered_rps=plan.schedule.rate,
        seconds=seconds,
        scheduled=sum(r.scheduled for r in results),
        sent=sum(r.sent for r in results),
        unsent=unsent,
        answered=answered,
        errors=errors,
        served_rps=round(answered.get("2xx", 0) / seconds, 3),
        served_inside_rps=round(sum(r.answered_inside for r in results) / seconds, 3),
        latency=Latency.of(merged),
        send_lag_p99_ms=lag.p99_ms,
        generator_cpu_seconds=round(sum(r.cpu_seconds for r in results), 4),
        generator_cpu_share=share,
        process_cpu_shares=shares,
        generator_limited=bool(because),
        limited_because=tuple(because),
        processes=len(results),
        generator_cpus=tuple(sorted({c for r in results for c in r.cpus})),
        system_cpus=isolation.system_cpus if isolation else (),
        system_pids=isolation.system_pids if isolation else (),
        isolated=isolation.isolated if isolation else False,
        histogram=histogram.encode(merged),
        traces=tuple(sorted((t for r in results for t in r.traces), key=lambda t: t.intended)),
    )


async def _line(process: asyncio.subprocess.Process, within: float) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), within)
    if not line:
        raise RuntimeError(f"load process {process.pid} exited ({await process.wait()})")
    return line.decode()


def _specs(plan: Plan) -> list[Spec]:
    """Each load process's share of the window, the plan checked first."""
    if plan.processes < 1 or not plan.targets:
        raise ValueError("a window needs at least one process and one target")
    if not 0 <= plan.measure_from < plan.schedule.seconds:
        raise ValueError("the warm-up must end inside the schedule")
    cpus = plan.isolation.generator_cpus if plan.isolation else ()
    return [
        Spec(
            targets=plan.targets,
            schedule=plan.schedule,
            index=index,
            count=plan.processes,
            connections=plan.connections,
            timeout=plan.timeout,
            measure_from=plan.measure_from,
            cpus=cpus,
            trace=plan.trace,
        )
        for index in range(plan.processes)
    ]


async def run_window(plan: Plan, on_start: Callable[[float], None] | None = None) -> Window:
    """Run one window: start the processes, wait until each is ready, start them together,
    collect and merge. `on_start` hears the start (epoch seconds) before the first send, so a
    caller can read the servers' counters over the same time. The load processes are always
    gone when this returns."""
    specs = _specs(plan)
    processes: list[asyncio.subprocess.Process] = []
    try:
        for spec in specs:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                # Not `-m loadtests.load.worker`: the package imports that module first, and
                # runpy would run a second copy of it.
                "-c",
                "from loadtests.load.worker import main; main()",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            processes.append(process)
            assert process.stdin is not None
            process.stdin.write(spec.to_json().encode() + b"\n")
            await process.stdin.drain()
        for process in processes:
            ready = await _line(process, STARTUP_TIMEOUT)
            if ready.strip() != "ready":
                raise RuntimeError(f"load process {process.pid} said {ready!r}")
        start_epoch = time.time() + START_LEAD
        start = f"{start_epoch!r}\n".encode()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(start)
            await process.stdin.drain()
        if on_start is not None:
            on_start(start_epoch)
        # Everything sent by the schedule's end, everything answered or timed out after that.
        budget = START_LEAD + plan.schedule.seconds + plan.timeout + STARTUP_TIMEOUT
        results = [Result.from_json(await _line(p, budget)) for p in processes]
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()  # the worker serves windows until its stdin ends
            await asyncio.wait_for(process.wait(), STARTUP_TIMEOUT)
    finally:
        for process in processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
    return combine(plan, results)


WORKER = [sys.executable, "-c", "from loadtests.load.worker import main; main()"]


class _Worker:
    """One kept load process; a thread reads its lines so that every read has a deadline."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        self.reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self.reader.start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self.lines.put(line)
        self.lines.put("")  # the process ended

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def line(self, within: float) -> str:
        try:
            line = self.lines.get(timeout=within)
        except queue.Empty:
            raise RuntimeError(
                f"load process {self.process.pid} said nothing in {within} s"
            ) from None
        if not line:
            raise RuntimeError(f"load process {self.process.pid} exited ({self.process.wait()})")
        return line

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.reader.join(5)  # it has read to the end: the pipe is closed
        assert self.process.stdout is not None
        self.process.stdout.close()


class Workers:
    """Load processes kept from one window to the next, for a caller that runs many windows
    (`make bench`): each process starts once, not once per window. The same protocol and the
    same merging as `run_window`; a window that fails takes its processes with it."""

    def __init__(self) -> None:
        self._workers: list[_Worker] = []

    def run(self, plan: Plan, on_start: Callable[[float], None] | None = None) -> Window:
        specs = _specs(plan)
        while len(self._workers) < plan.processes:
            self._workers.append(_Worker())
        workers = self._workers[: plan.processes]
        try:
            for worker, spec in zip(workers, specs, strict=True):
                worker.send(spec.to_json())
            for worker in workers:
                ready = worker.line(STARTUP_TIMEOUT)
                if ready.strip() != "ready":
                    raise RuntimeError(f"load process {worker.process.pid} said {ready!r}")
            start_epoch = time.time() + START_LEAD
            for worker in workers:
                worker.send(repr(start_epoch))
            if on_start is not None:
                on_start(start_epoch)
            budget = START_LEAD + plan.schedule.seconds + plan.timeout + STARTUP_TIMEOUT
            results = [Result.from_json(worker.line(budget)) for worker in workers]
        except BaseException:
            self.close()
            raise
        return combine(plan, results)

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._workers.clear()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_window_sync(plan: Plan, on_start: Callable[[float], None] | None = None) -> Window:
    """`run_window` for callers without an event loop (the crossover's driver)."""
    return asyncio.run(run_window(plan, on_start))
