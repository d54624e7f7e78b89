"""loadtests.microbench's paired measurement, on a clock the test drives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace

import pytest

from loadtests import microbench
from loadtests.microbench import Row, render


class Clock:
    """perf_counter and process_time that move only when a measured call says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self.speed = 1.0  # how slow the machine is right now

    def spend(self, us: float) -> None:
        self.now += us * self.speed / 1e6

    def read(self) -> float:
        return self.now


def test_paired_rounds_keep_the_ratio_when_the_machine_changes_speed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(
        microbench, "time", SimpleNamespace(perf_counter=clock.read, process_time=clock.read)
    )
    calls: list[str] = []

    async def check() -> None:
        calls.append("check")
        clock.spend(120)

    async def get() -> None:
        calls.append("get")
        clock.spend(100)
        if len(calls) == 10:  # the machine slows down 5x from the middle of round 2 on
            clock.speed = 5.0

    paired = asyncio.run(microbench._measure_paired(check, get, 4, 4))
    # Alternating blocks, the order swapped each round.
    blocks = [calls[i] for i in range(0, len(calls), 4)]
    assert blocks == ["check", "get", "get", "check", "check", "get", "get", "check"]
    # Every round's ratio is 1.2 but the one the slow-down split (2.0): the median is 1.2.
    assert paired.ratio == pytest.approx((1.2, 1.2))
    # The medians of each side alone are thrown off by it (600 / 400 us).
    assert paired.call[0] / paired.baseline[0] == pytest.approx(1.5)


def test_the_table_shows_the_paired_ratio() -> None:
    rows = [
        Row("GET", 100.0, 80.0),
        Row("lookup", 150.0, 90.0, "GET", (1.13, 1.1)),
        Row("decode", 50.0, 50.0, "GET"),
    ]
    text = render(rows)
    assert "| lookup | 150.0 | 90.0 | 1.13x GET (paired rounds; CPU 1.10x) |" in text
    assert "| decode | 50.0 | 50.0 | 0.50x GET |" in text
    assert rows[1].as_dict()["ratio_wall"] == 1.13 and "ratio_wall" not in rows[2].as_dict()


def test_counted_instructions_go_to_their_rows_the_lower_round_each() -> None:
    rows = [
        Row("redis-py asyncio GET (bare)", 100.0, 80.0),
        Row("Verifier session lookup", 110.0, 90.0, "redis-py asyncio GET (bare)", (1.1, 1.1)),
        Row("bare dict look-up", 0.1, 0.1),
    ]
    counted = microbench.with_instructions(
        rows, {"get": [300_000.0, 290_000.0], "lookup": [330_000.0, 335_000.0]}, "counted"
    )
    assert [r.instructions for r in counted] == [290_000, 330_000, None]
    assert "1.14x in instructions" in render(counted)
    assert counted[1].as_dict()["instructions"] == 330_000
    assert microbench.with_instructions(rows, None, "valgrind not on PATH") == rows


def test_paced_calls_wait_the_gap_and_are_timed_alone_less_the_clocks_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each call follows a wait of the gap; the wait's wake-up (20 or 60 us here) is outside
    the call's timing, and what reading the clocks costs (0.5 us a read, timed around the empty
    call too) is taken out; a block the machine ran slow in does not move the median."""
    clock = Clock()
    read_us = 0.5

    def read() -> float:
        now = clock.read()
        clock.spend(read_us)
        return now

    monkeypatch.setattr(microbench, "time", SimpleNamespace(perf_counter=read, process_time=read))
    waits: list[float] = []
    order: list[str] = []

    calls_at_last_wait = [0]

    async def wait(gap_s: float) -> None:
        # The wake-up after a call costs more (60 us) than after the empty call (20 us), as a
        # call's aftermath would in every round: whole blocks less an empty block would price
        # every call 40 us too high; timed alone, nothing of the waits is counted.
        waits.append(gap_s)
        clock.spend(60 if len(order) > calls_at_last_wait[0] else 20)
        calls_at_last_wait[0] = len(order)
        clock.spend(0 if clock.speed == 1.0 else 1000)  # a slow machine's wake-up: not timed

    monkeypatch.setattr(microbench, "asyncio", SimpleNamespace(sleep=wait))
    # Series [empty, session, jwt], rotated each round: round 1 runs empty, session, jwt;
    # round 2 session, jwt, empty; round 3 jwt, empty, session. The machine runs 3x slower
    # for round 2's session block alone (calls 7 to 9): that round reads 300 us, not 100.
    speeds = {6: 3.0, 9: 1.0}  # calls made so far -> the machine's speed from there on

    def costing(name: str, us: float) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            order.append(name)
            clock.spend(us)
            clock.speed = speeds.get(len(order), clock.speed)

        return call

    paced = asyncio.run(
        microbench._measure_paced(
            {"session": costing("session", 100), "jwt": costing("jwt", 2)}, 0.004, 3, 3
        )
    )
    assert waits == [0.004] * (3 * 3 * 3)  # every call of every block, the empty one's too
    assert paced["session"] == pytest.approx((100.0, 100.0))
    assert paced["jwt"] == pytest.approx((2.0, 2.0))
    blocks = [order[i] for i in range(0, len(order), 3)]
    assert blocks == ["session", "jwt", "session", "jwt", "jwt", "session"]


def test_the_bench_takes_each_designs_check_from_paced_rows_the_benchmark_makes() -> None:
    from loadtests.measure.run import CHECK_ROWS

    made = {microbench.paced(n) for n in microbench.PACED_CHECKS}
    assert {row for rows in CHECK_ROWS.values() for row in rows} <= made
    # read off the designs' table: the store, the pushed cache, or a JWT (the hybrid's relays),
    # and a JWT in a cookie is also the Cookie field's read
    jwt = ("Verifier JWT, cache hit (paced)",)
    expected = {
        "session": ("Verifier session lookup (paced)",),
        "session-cached": ("Verifier session lookup, cache hit (paced)",),
        "hybrid": jwt,
        "jwt-push": jwt,
        "jwt-off": jwt,
        "jwt-cookie": (*jwt, "Cookie field read, a JWT in it (aiohttp's parser) (paced)"),
    }
    assert expected == CHECK_ROWS


def test_a_designs_check_is_the_sum_of_its_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from loadtests.measure import run

    figures = {
        microbench.JWT_HIT: 2.0,
        microbench.COOKIE_READ: 9.5,
        microbench.SESSION_LOOKUP: 90.0,
        microbench.SESSION_HIT: 1.0,
    }

    async def rows(**_: object) -> list[microbench.Row]:
        return [microbench.Row(microbench.paced(name), us, us) for name, us in figures.items()]

    monkeypatch.setattr(microbench, "run", rows)
    costs = run.check_costs(10, 0.01, keep_awake=False)
    assert costs.by_design["jwt-cookie"] == 11.5
    assert costs.by_design["jwt-push"] == 2.0 and costs.by_design["hybrid"] == 2.0
    assert costs.by_design["session"] == 90.0 and costs.by_design["session-cached"] == 1.0
    del figures[microbench.COOKIE_READ]
    assert run.check_costs(10, 0.01, keep_awake=False).by_design["jwt-cookie"] is None


@pytest.mark.parametrize(
    ("cpus", "pinnable", "expected"),
    [
        ((0, 1), True, {"cpus": [0], "kept_awake": True}),  # the system's CPU, as the bench's
        ((0,), True, {"cpus": [0], "kept_awake": False}),  # one CPU: the windows' not kept
        ((0, 1), False, {"cpus": [], "kept_awake": False}),  # no affinity: placed nowhere
    ],
)
def test_the_placement_is_the_bench_systems_and_is_undone(
    monkeypatch: pytest.MonkeyPatch,
    cpus: tuple[int, ...],
    pinnable: bool,
    expected: dict[str, object],
) -> None:
    pinned: list[tuple[int, ...]] = []
    awake: list[tuple[int, ...]] = []

    def pin(pids: object, to: tuple[int, ...]) -> bool:
        pinned.append(tuple(to))
        return pinnable

    @contextlib.contextmanager
    def kept_awake(on: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        awake.append(tuple(on))
        yield (4242,)

    monkeypatch.setattr(microbench, "available_cpus", lambda: cpus)
    monkeypatch.setattr(microbench, "pin", pin)
    monkeypatch.setattr(microbench, "kept_awake", kept_awake)
    with pytest.raises(RuntimeError), microbench.placed_as_the_system() as placement:
        assert placement == expected
        raise RuntimeError("the benchmark failed")
    assert pinned[-1] == cpus  # every CPU back, though the block raised
    assert awake == ([(0,)] if expected["kept_awake"] else [])
