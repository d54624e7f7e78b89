"""One load process: its share of the schedule, sent on time from its own connection pool.

Run as a child process (`main`) by `generator.run_window` or `generator.Workers`, which talk to
it in JSON lines on stdin/stdout: the spec in, "ready" out, the start time in, the result out,
for as many windows as it is given. A separate
process (not a thread) so that its CPU is its own, measurable and pinnable.

Each request is started at its intended time whether or not earlier ones were answered; its
latency is answer time minus intended time, so time spent waiting for a free connection, for the
server or for this process's own event loop all counts.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from loadtests.load import affinity, histogram
from loadtests.load.schedule import Schedule

# How often a process that is behind its schedule lets the requests already in flight run.
YIELD_EVERY = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One request to send: requests go to the targets in turn (one per user, say)."""

    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Spec:
    """What one process sends: share `index` of `count` of `schedule`, to `targets`."""

    targets: tuple[Target, ...]
    schedule: Schedule
    index: int = 0
    count: int = 1
    connections: int = 100  # this process's pool; a request waits for a free one, on the clock
    timeout: float = 5.0  # seconds from the actual send to the end of the answer
    # Requests meant to leave before this offset are sent (they warm the system and the pool)
    # but not counted: the window's figures are the steady part's.
    measure_from: float = 0.0
    cpus: tuple[int, ...] = ()  # pin this process here first (empty: leave it)
    trace: bool = False  # keep every request's (intended, latency, outcome): tests, debugging

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Spec:
        raw = json.loads(text)
        return cls(
            targets=tuple(Target(**t) for t in raw["targets"]),
            schedule=Schedule(**raw["schedule"]),
            index=raw["index"],
            count=raw["count"],
            connections=raw["connections"],
            timeout=raw["timeout"],
            measure_from=raw["measure_from"],
            cpus=tuple(raw["cpus"]),
            trace=raw["trace"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Trace:
    """One request: intended send time (epoch seconds), latency from it, and its outcome
    (the status class such as "2xx", or the error kind)."""

    intended: float
    latency: float
    outcome: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """What one process saw. Histograms are encoded (`histogram.encode`) to be merged."""

    pid: int
    cpus: tuple[int, ...]
    scheduled: int
    sent: int
    unsent: int  # so far behind that sending would have measured the generator, not the system
    answered: dict[str, int]  # by status class
    errors: dict[str, int]  # by kind: "timeout" or the aiohttp exception's name
    # 2xx answers that *arrived* inside the measured part (whenever they were sent): what the
    # system served in that time, counted without asking it (a scrape of its counters would
    # take its CPU, and the requests' latency, during the window).
    answered_inside: int
    latency: str  # answers and timeouts, microseconds from the intended start
    send_lag: str  # actual send minus intended: this process's own lateness
    cpu_seconds: float
    wall_seconds: float
    traces: tuple[Trace, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Result:
        raw: dict[str, Any] = json.loads(text)
        raw["cpus"] = tuple(raw["cpus"])
        raw["traces"] = tuple(Trace(**t) for t in raw["traces"])
        return cls(**raw)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class _Tally:
    answered: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    traces: list[Trace] = field(default_factory=list)
    inside: int = 0


async def send(spec: Spec, start_epoch: float, session: aiohttp.ClientSession) -> Result:
    """Send this process's share, starting at `start_epoch`, and wait for every answer."""
    offsets = spec.schedule.share(spec.index, spec.count)
    # Intended times on the monotonic clock (latency must not jump with the wall clock); the
    # start is given in epoch seconds because that is the clock all processes share.
    start = time.monotonic() + (start_epoch - time.time())
    latency, lag = histogram.new_histogram(), histogram.new_histogram()
    tally = _Tally()
    in_flight: set[asyncio.Task[None]] = set()
    targets = spec.targets
    sent = unsent = scheduled = 0
    measured_from = start + spec.measure_from
    measured_until = start + spec.schedule.seconds

    async def one(target: Target, intended: float, counted: bool) -> None:
        try:
            async with session.request(
                target.method, target.url, headers=target.headers, data=target.body
            ) as response:
                await response.read()
            outcome = f"{response.status // 100}xx"
        except TimeoutError:
            outcome = "timeout"
        except (aiohttp.ClientError, OSError) as error:
            # Refused or reset: no latency to speak of, so counted by kind and kept out of the
            # histogram.
            outcome = type(error).__name__
        if outcome == "2xx" and measured_from <= time.monotonic() < measured_until:
            tally.inside += 1
        if not counted:
            return
        answered = outcome.endswith("xx")
        kind = tally.answered if answered else tally.errors
        kind[outcome] = kind.get(outcome, 0) + 1
        took = time.monotonic() - intended
        if answered or outcome == "timeout":
            # A timed-out request is as slow as we waited for it, at least: leaving it out would
            # make a system that stops answering look fast.
            histogram.record_seconds(latency, took)
        if spec.trace:
            at = start_epoch + (intended - start)
            tally.traces.append(Trace(intended=at, latency=took, outcome=outcome))

    cpu_before, wall_before = _cpu_seconds(), time.monotonic()
    for i, offset in enumerate(offsets):
        intended = start + offset
        delay = intended - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif i % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        counted = offset >= spec.measure_from
        scheduled += counted
        behind = time.monotonic() - intended
        if behind > spec.timeout:
            unsent += counted
            continue
        if counted:
            histogram.record_seconds(lag, behind)
            sent += 1
        task = asyncio.create_task(one(targets[i % len(targets)], intended, counted))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        # Every request has its own timeout, so this ends.
        await asyncio.gather(*in_flight)
    return Result(
        pid=os.getpid(),
        cpus=affinity.cpus_of(0),
        scheduled=scheduled,
        sent=sent,
        unsent=unsent,
        answered=tally.answered,
        errors=tally.errors,
        answered_inside=tally.inside,
        latency=histogram.encode(latency),
        send_lag=histogram.encode(lag),
        cpu_seconds=round(_cpu_seconds() - cpu_before, 4),
        wall_seconds=round(time.monotonic() - wall_before, 4),
        traces=tuple(sorted(tally.traces, key=lambda t: t.intended)),
    )


def _session(spec: Spec) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=spec.connections, limit_per_host=spec.connections)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=spec.timeout),
        # Credentials are in each target's headers; a jar would add cookies nobody asked for.
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )


async def _run(spec: Spec) -> Result:
    async with _session(spec) as session:
        print("ready", flush=True)
        # Blocking on purpose: nothing runs on this loop before the start.
        start_epoch = float(sys.stdin.readline())
        return await send(spec, start_epoch, session)


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, Result]], Result]:
    """uvloop's runner where it is installed (it spends less CPU per request), asyncio's
    otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency wherever it builds
        return asyncio.run
    return uvloop.run


def main() -> None:
    """The stdin/stdout protocol, once per window until stdin closes: spec in, "ready" out,
    start time in, result out. A process kept between windows (generator.Workers) pays its
    start-up (the interpreter, aiohttp, uvloop) once."""
    runner = _event_loop_runner()
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = Spec.from_json(line)
        # Before the window's event loop and its threads exist, so every thread inherits them.
        affinity.pin([os.getpid()], spec.cpus)
        result = runner(_run(spec))
        print(result.to_json(), flush=True)


if __name__ == "__main__":
    main()
