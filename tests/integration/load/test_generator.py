"""The open-model generator against an aiohttp server in the test: honest latency under a
stall, the generator's own limits flagged, histograms merged across processes, affinity kept."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout, web

from loadtests.load import Plan, Schedule, Target, Workers, isolate, run_window
from loadtests.load.affinity import available_cpus

STALL = 0.2  # seconds the server holds every answer, once
STALL_AFTER = 0.8  # seconds after the first request


class Stall:
    """A server that answers at once, except that once, STALL_AFTER s after its first request,
    it holds every answer until a 200 ms window has passed (a GC pause, a failover)."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.start: float | None = None  # epoch seconds, the clock the generator's traces use
        self.end: float | None = None

    async def handle(self, request: web.Request) -> web.Response:
        now = time.time()
        if self.first is None:
            self.first = now
        if self.start is None and now - self.first >= STALL_AFTER:
            self.start, self.end = now, now + STALL
        if self.start is not None and self.end is not None and now < self.end:
            await asyncio.sleep(self.end - now)  # the server's misbehaviour, not a test's wait
        return web.Response(text="ok")


Serve = Callable[[Callable[[web.Request], Awaitable[web.Response]]], Awaitable[str]]


@pytest.fixture
def serve(aiohttp_server: Any) -> Serve:
    async def factory(handler: Callable[[web.Request], Awaitable[web.Response]]) -> str:
        app = web.Application()
        app.router.add_get("/", handler)
        server = await aiohttp_server(app)
        return str(server.make_url("/"))

    return factory


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def closed_loop(url: str, rate: float, seconds: float) -> list[float]:
    """What a closed-loop generator (Locust's model) measures: one request after another, at
    most `rate` a second, each timed from its actual send."""
    latencies: list[float] = []
    async with ClientSession(timeout=ClientTimeout(total=5)) as session:
        start = time.monotonic()
        for i in range(round(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing, as a closed-loop user's wait time
            sent = time.monotonic()
            async with session.get(url) as response:
                await response.read()
            latencies.append(time.monotonic() - sent)
    return latencies


# 100 connections: more than the ~40 requests the stall holds at once. One connection: the
# requests wait for it in the pool, and that wait counts too (from their intended start).
@pytest.mark.parametrize("connections", [100, 1])
async def test_a_stall_shows_in_p99_and_every_request_scheduled_in_it_is_late(
    serve: Serve, connections: int
) -> None:
    stall = Stall()
    url = await serve(stall.handle)
    window = await run_window(
        Plan(
            targets=(Target(url=url),),
            schedule=Schedule(rate=200, seconds=2),
            connections=connections,
            trace=True,
        )
    )
    assert stall.start is not None and stall.end is not None
    assert window.sent == window.scheduled == 400
    assert window.answered == {"2xx": 400} and window.errors == {}
    assert window.latency.p99_ms is not None and window.latency.p99_ms >= 100
    during = [t for t in window.traces if stall.start <= t.intended < stall.end]
    # 200 req/s for 200 ms: 40 intended sends (a few fewer if the stall began late in a gap).
    assert len(during) >= 35
    # Each was answered no earlier than the stall's end, and its latency says so (5 ms for
    # converting between the processes' clocks).
    early = [t for t in during if t.latency < stall.end - t.intended - 0.005]
    assert early == []

    # The control: the same server misbehaving the same way, measured closed-loop.
    control = Stall()
    latencies = await closed_loop(await serve(control.handle), rate=200, seconds=2)
    assert control.start is not None
    slow = [x for x in latencies if x >= 0.1]
    # One request waits out the stall and the rest are sent after it: the stall is one point.
    assert 1 <= len(slow) <= 3
    assert len(slow) < len([t for t in during if t.latency >= 0.1]) / 5


async def test_a_rate_one_process_cannot_keep_is_flagged_generator_limited(serve: Serve) -> None:
    url = await serve(ok)
    window = await run_window(
        Plan(
            targets=(Target(url=url),),
            schedule=Schedule(rate=200_000, seconds=1),
            # A short timeout also bounds how far behind it still sends: a short test.
            timeout=0.25,
        )
    )
    assert window.generator_limited
    assert window.limited_because != ()
    assert window.served_rps < 200_000
    # What it did send was answered or failed by kind; nothing vanished.
    assert window.sent + window.unsent == window.scheduled == 200_000
    assert sum(window.answered.values()) + sum(window.errors.values()) == window.sent


async def test_two_processes_share_the_schedule_and_their_histograms_merge(serve: Serve) -> None:
    url = await serve(ok)
    window = await run_window(
        Plan(
            targets=(Target(url=url), Target(url=url + "?other")),
            schedule=Schedule(rate=100, seconds=1, kind="poisson", seed=11),
            processes=2,
            trace=True,
        )
    )
    scheduled = len(Schedule(rate=100, seconds=1, kind="poisson", seed=11).offsets())
    assert window.processes == 2
    assert window.scheduled == window.sent == scheduled
    assert window.answered == {"2xx": scheduled}
    # The merged histogram holds every answer of both processes, and its max is the slowest.
    assert window.latency.count == scheduled == len(window.traces)
    slowest_ms = max(t.latency for t in window.traces) * 1000
    assert window.latency.max_ms == pytest.approx(slowest_ms, rel=2e-3, abs=0.002)
    assert window.generator_cpu_seconds > 0


@pytest.mark.skipif(len(available_cpus()) < 2, reason="isolation needs two CPUs")
async def test_affinity_of_generator_and_system_is_applied_and_recorded(serve: Serve) -> None:
    url = await serve(ok)
    system = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; sys.stdin.read()", stdin=asyncio.subprocess.PIPE
    )
    try:
        isolation = isolate([system.pid], generator_count=1)
        assert isolation.isolated
        assert set(isolation.generator_cpus).isdisjoint(isolation.system_cpus)
        assert os.sched_getaffinity(system.pid) == set(isolation.system_cpus)
        window = await run_window(
            Plan(
                targets=(Target(url=url),),
                schedule=Schedule(rate=50, seconds=0.5),
                isolation=isolation,
            )
        )
    finally:
        assert system.stdin is not None
        system.stdin.close()
        await asyncio.wait_for(system.wait(), 10)
    assert window.generator_cpus == isolation.generator_cpus
    assert window.system_cpus == isolation.system_cpus
    assert window.system_pids == (system.pid,)
    assert window.isolated


async def test_warm_up_requests_are_sent_but_not_counted(serve: Serve) -> None:
    seen: list[float] = []

    async def counting(request: web.Request) -> web.Response:
        seen.append(time.time())
        return web.Response(text="ok")

    url = await serve(counting)
    starts: list[float] = []
    window = await run_window(
        Plan(
            targets=(Target(url=url),),
            schedule=Schedule(rate=100, seconds=1),
            measure_from=0.5,
        ),
        on_start=starts.append,
    )
    assert len(seen) == 100  # the server had the whole schedule
    assert window.scheduled == window.sent == window.latency.count == 50  # the window, half
    assert window.served_rps == pytest.approx(100.0)
    (start,) = starts
    assert min(seen) >= start - 0.005  # on_start told the start before the first send


async def test_kept_workers_serve_window_after_window_from_one_process(serve: Serve) -> None:
    url = await serve(ok)
    plan = Plan(targets=(Target(url=url),), schedule=Schedule(rate=100, seconds=0.5))
    with Workers() as workers:
        first = await asyncio.to_thread(workers.run, plan)
        (pid,) = workers.pids
        second = await asyncio.to_thread(workers.run, plan)
        assert workers.pids == [pid]
    assert first.answered == second.answered == {"2xx": 50}
    assert first.scheduled == second.scheduled == 50
    assert workers.pids == []


async def test_served_inside_counts_answers_arriving_in_the_window_not_requests_sent_in_it(
    serve: Serve,
) -> None:
    # A server that answers one request at a time, 20 ms each: 50 req/s at most, offered 100.
    one_at_a_time = asyncio.Lock()

    async def slow(request: web.Request) -> web.Response:
        async with one_at_a_time:
            await asyncio.sleep(0.02)  # the server's service time, not a test's wait
        return web.Response(text="ok")

    url = await serve(slow)
    window = await run_window(
        Plan(
            targets=(Target(url=url),),
            schedule=Schedule(rate=100, seconds=1),
            measure_from=0.5,
            connections=100,
        )
    )
    # Every request scheduled in the measured half was answered (late): 100 req/s by that count.
    assert window.answered == {"2xx": 50}
    assert window.served_rps == pytest.approx(100.0)
    # What arrived during it is what the server could do: at most 50 req/s (25 answers), and
    # on a machine slow for a moment less (38 once in CI); what was sent would read 100.
    assert 25.0 <= window.served_inside_rps <= 52.0
