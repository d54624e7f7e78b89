"""Capacity of one design: the highest offered rate whose served rate stays within `shortfall`
of it and whose p99 stays within the SLO, found by raising the rate until a rate does not hold,
then bisecting between the last rate held and the first that was not until they are within
`refine_to` of each other. The search never stops at the end of a plan while the design still
holds: it goes on raising (up to `max_steps`, far past any capacity seen on one core).

Pure: `judge(rate)` runs (and records) the windows of one rate and says whether it held, so the
search is tested with a judge of known capacity (tests/unit/measure/test_capacity.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from loadtests.measure.schema import Window


def holds(window: Window, slo_ms: float, shortfall: float) -> bool | None:
    """Whether a window held; None when the load generator was its limit (its figures are the
    generator's: the window is not used)."""
    if window["generator_limited"]:
        return None
    p99 = window["p99_ms"]
    return (
        window["failures"] == 0
        and p99 is not None
        and p99 <= slo_ms
        and window["served_rps"] >= window["offered_rps"] * (1 - shortfall)
    )


@dataclass(frozen=True, slots=True)
class Knee:
    held_rps: float | None  # the highest rate that held (None: not even the first)
    failed_rps: float | None  # the lowest that did not (None: the search ran out of steps)
    judged: int  # rates judged


def search(
    judge: Callable[[float], bool],
    start: float,
    factor: float,
    refine_to: float,
    max_steps: int = 40,
) -> Knee:
    """From `start`, up by `factor` while the rate holds and down by it while it does not, until
    one rate holds and the next one up does not; then bisection (geometric) to `refine_to`."""
    held: float | None = None
    failed: float | None = None
    rate = start
    judged = 0
    while judged < max_steps:
        judged += 1
        if judge(rate):
            held = rate
            if failed is not None:
                break
            rate = float(round(rate * factor))
        else:
            failed = rate
            if held is not None:
                break
            rate = float(round(rate / factor))
            if rate < 1:
                break
    while (
        held is not None
        and failed is not None
        and failed > held * (1 + refine_to)
        and judged < max_steps
    ):
        rate = float(round(math.sqrt(held * failed)))
        if not held < rate < failed:
            break
        judged += 1
        if judge(rate):
            held = rate
        else:
            failed = rate
    return Knee(held, failed, judged)
