"""The capacity search on judges of known capacity: it must end within refine_to of the true
knee, whether it starts below it, above it, or far below (past any planned ladder)."""

from __future__ import annotations

import pytest

from loadtests.measure.capacity import Retries, holds, retried, search, verdict
from loadtests.measure.gauge import Pace
from loadtests.measure.schema import Window


def judge_of(true_capacity: float, judged: list[float]) -> object:
    def judge(rate: float) -> bool:
        judged.append(rate)
        return rate <= true_capacity

    return judge


@pytest.mark.parametrize(
    ("start", "factor", "capacity"),
    [(200, 1.5, 669), (200, 1.5, 1583), (1500, 1.12, 669), (100, 1.5, 40_000), (600, 1.12, 640)],
)
def test_the_search_ends_within_refine_to_of_the_knee(
    start: float, factor: float, capacity: float
) -> None:
    judged: list[float] = []
    knee = search(judge_of(capacity, judged), start, factor, 0.05)  # type: ignore[arg-type]
    assert knee.held_rps is not None and knee.failed_rps is not None
    assert knee.held_rps <= capacity < knee.failed_rps
    assert knee.failed_rps <= knee.held_rps * 1.05 + 1
    assert knee.judged == len(judged)


def test_a_design_that_holds_nothing_has_no_knee() -> None:
    knee = search(lambda rate: False, 200, 1.5, 0.05)
    assert knee.held_rps is None


@pytest.mark.parametrize(
    ("windows", "confirm", "expected", "measured"),
    [
        ([True, True], 2, True, 2),
        # the first window that does not hold ends the rate
        ([False], 2, False, 1),
        ([True, False], 2, False, 2),
        ([True, True, True], 2, True, 2),  # no window beyond the second
        ([None, False], 2, False, 2),
        # a window the load generator limited is measured again, once
        ([None, True, True], 2, True, 3),
        ([True, None, False], 2, False, 3),
        ([None, True, None], 2, None, 3),
        ([True], 1, True, 1),
        ([None, None], 1, None, 2),
    ],
)
def test_a_rate_holds_when_confirm_windows_in_a_row_hold(
    windows: list[bool | None], confirm: int, expected: bool | None, measured: int
) -> None:
    given = iter(windows)
    taken: list[bool | None] = []

    def measure() -> bool | None:
        taken.append(next(given))
        return taken[-1]

    assert verdict(measure, confirm) is expected
    assert len(taken) == measured


def window(**given: object) -> Window:
    base: Window = {
        "phase": "capacity",
        "design": "session",
        "repeat": 1,
        "offered_rps": 500.0,
        "served_rps": 499.0,
        "p50_ms": 2.0,
        "p99_ms": 20.0,
        "failures": 0,
        "cpu_us_per_request": 900.0,
        "cpu_ms_per_s": 450.0,
        "cpu_by_process": {},
        "store_ops_per_request": 1.0,
        "generator_limited": False,
    }
    return {**base, **given}  # type: ignore[typeddict-item]


def test_a_rate_holds_only_within_the_slo_the_shortfall_and_without_failures() -> None:
    assert holds(window(), 50.0, 0.02) is True
    assert holds(window(p99_ms=51.0), 50.0, 0.02) is False
    assert holds(window(served_rps=489.0), 50.0, 0.02) is False  # 2.2 % short
    assert holds(window(failures=1), 50.0, 0.02) is False
    assert holds(window(p99_ms=None), 50.0, 0.02) is False
    assert holds(window(generator_limited=True), 50.0, 0.02) is None


@pytest.mark.parametrize(
    ("laps", "p99s", "expected", "replaced"),
    [
        # (two retries a window allowed here; the bench's default is one)
        # a failure on a slow machine (lap 5 % over the usual 1,000 us) is measured again ...
        ([1100.0, 1000.0], [80.0, 20.0], True, [True, False]),
        ([1100.0, 1000.0], [80.0, 80.0], False, [True, False]),
        # ... up to twice; the third slow failure stands
        ([1100.0, 1100.0, 1100.0], [80.0, 80.0, 80.0], False, [True, True, False]),
        ([1100.0, 1100.0, 1000.0], [80.0, 80.0, 20.0], True, [True, True, False]),
        # a window that held on a slow machine held; a failure on a usual one stands
        ([1100.0], [20.0], True, [False]),
        ([1040.0], [80.0], False, [False]),
        # a window without a lap (no gaps for the spinners) is not judged slow
        ([None], [80.0], False, [False]),
    ],
)
def test_a_window_that_failed_while_the_machine_ran_slow_is_measured_again(
    laps: list[float | None], p99s: list[float], expected: bool, replaced: list[bool]
) -> None:
    pace = Pace(slow_pct=5.0, min_seen=3)
    for _ in range(3):
        pace.saw({"spin_us_per_lap": 1000.0})
    given = iter(zip(laps, p99s, strict=True))
    kept: list[Window] = []

    def take() -> Window:
        lap, p99 = next(given)
        return window(p99_ms=p99, **({} if lap is None else {"spin_us_per_lap": lap}))

    retries = Retries(per_window=2, left=10)
    held = retried(take, lambda w: holds(w, 50.0, 0.02), pace.slow, retries, kept.append)
    assert held is expected
    assert retries.left == 10 - sum(replaced)
    assert [w["replaced"] for w in kept] == replaced
    # judged where there was a lap, and once each
    assert [w.get("machine_slow") for w in kept] == [
        None if lap is None else lap > 1050 for lap in laps
    ]
    assert [w["held"] for w in kept] == [p99 <= 50 for p99 in p99s]


def test_a_window_the_load_generator_limited_is_not_measured_again_for_the_machine() -> None:
    pace = Pace(slow_pct=5.0, min_seen=1)
    pace.saw({"spin_us_per_lap": 1000.0})
    kept: list[Window] = []
    limited = window(generator_limited=True, spin_us_per_lap=1200.0)
    held = retried(
        lambda: limited, lambda w: holds(w, 50.0, 0.02), pace.slow, Retries(2, 10), kept.append
    )
    assert held is None and len(kept) == 1 and kept[0]["replaced"] is False


def test_the_run_measures_windows_again_within_its_budget() -> None:
    pace = Pace(slow_pct=5.0, min_seen=1)
    pace.saw({"spin_us_per_lap": 1000.0})
    retries = Retries(per_window=1, left=3)
    kept: list[Window] = []
    slow_failure = window(p99_ms=80.0, spin_us_per_lap=1200.0)
    verdicts = [
        retried(
            lambda: slow_failure, lambda w: holds(w, 50.0, 0.02), pace.slow, retries, kept.append
        )
        for _ in range(3)
    ]
    assert verdicts == [False, False, False]
    # one retry each for the first and the second window, the budget's last for the third's
    # first failure; then it is spent and the failure stands
    assert [w["replaced"] for w in kept] == [True, False, True, False, True, False]
    assert retries.left == 0
    kept.clear()
    assert (
        retried(
            lambda: slow_failure, lambda w: holds(w, 50.0, 0.02), pace.slow, retries, kept.append
        )
        is False
    )
    assert [w["replaced"] for w in kept] == [False]


def test_a_window_is_judged_once_and_an_unjudged_one_is_not_measured_again() -> None:
    judged: list[float] = []

    def slow(w: Window) -> bool | None:
        judged.append(w["p99_ms"] or 0)
        return None  # Pace had too few windows yet

    kept: list[Window] = []
    held = retried(
        lambda: window(p99_ms=80.0),
        lambda w: holds(w, 50.0, 0.02),
        slow,
        Retries(1, 3),
        kept.append,
    )
    assert held is False and judged == [80.0]
    assert len(kept) == 1 and "machine_slow" not in kept[0] and kept[0]["replaced"] is False


def test_a_replaced_window_counts_in_no_figure() -> None:
    from loadtests.measure import model

    failed_slow = window(p99_ms=80.0, held=False, replaced=True, machine_slow=True)
    held = window(held=True)
    limited = window(generator_limited=True)
    assert [model.counts(w) for w in (failed_slow, held, limited)] == [False, True, False]
    assert model.usable([failed_slow, held, limited], "capacity") == [held]
