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
        and served(window) >= window["offered_rps"] * (1 - shortfall)
    )


def verdict(measure: Callable[[], bool | None], confirm: int) -> bool | None:
    """One rate's verdict: it holds when `confirm` windows in a row hold and fails at the first
    that does not. Near the knee one short window's p99 passes by chance, and a rate passed
    once by luck would pull the whole search up. `measure()` runs (and records) one window; a
    window the load generator limited (None) is measured again, and a second limited window at
    this rate means the generator cannot offer it (None).

    Not the majority of three: a knee is where windows start failing, and confirming every
    failure with a second window cost a default run 327 capacity windows and 816 s (run A,
    2026-12-06), against 262 and 712 s with this rule on the same machine half an hour later
    (run B): past the 12 minutes."""
    held = limited = 0
    while held < confirm:
        result = measure()
        if result is None:
            limited += 1
            if limited >= 2:
                return None
            continue
        if not result:
            return False
        held += 1
    return True


@dataclass(slots=True)
class Retries:
    """How often a window may be measured again (`per_window`), and how many more windows may
    be in all (`left`): one per design (every design the same chance, whenever in the run its
    searches fall), a bound on the time the machine's slow moments add to a run."""

    per_window: int
    left: int

    def take(self, attempt: int) -> bool:
        if attempt >= self.per_window or self.left <= 0:
            return False
        self.left -= 1
        return True


def retried(
    take: Callable[[], Window],
    judge: Callable[[Window], bool | None],
    slow: Callable[[Window], bool | None],
    retries: Retries,
    keep: Callable[[Window], object],
) -> bool | None:
    """One window's verdict, measured again when it failed while the machine ran slow.

    `take()` measures a window, `judge` says whether it held, `slow` whether the machine ran
    slow while it was measured (`gauge.Pace`; None: not judged); `keep` records every window
    taken, with `held`, `machine_slow` (where judged) and `replaced` (true on a window measured
    again: no figure uses it).

    One-sided on purpose. A window that held on a slow machine held: the system kept up with
    less. A window that failed on one says little of the system: on the AMD EPYC host 74 % and
    65 % of the capacity windows taken while the spinners' lap ran over 5 % slow failed, against
    21 % of the others (runs G and H, 2026-12-07), and one such failure sends the search down a
    step it then has to climb back (G's session run 2: 806 req/s, against 939-1,362 in the other
    four). The slow lap is not the window's own load: windows far past the knee ran at the
    usual lap (gauge.Pace). In run H (two retries a window, no bound) 18 of the 36 windows
    measured again then held. A window is measured again at most `retries.per_window` times,
    and its design's windows at most `retries.left` times in all (each costs a window and the
    services' rest after it); past either, the failure stands: the machine was slow for that
    long, and the search goes on rather than wait for it."""
    attempt = 0
    while True:
        window = take()
        held = judge(window)
        was_slow = slow(window)
        again = held is False and was_slow is True and retries.take(attempt)
        kept: Window = {**window, "held": held, "replaced": again}
        if was_slow is not None:
            kept["machine_slow"] = was_slow
        keep(kept)
        if not again:
            return held
        attempt += 1


def served(window: Window) -> float:
    """What the system answered per second *during* the window: the answers that arrived in
    the measured part. `served_rps` counts the requests scheduled in it, late answers included,
    and so matches the offered rate even in overload."""
    return min(window["served_rps"], window.get("achieved_rps", window["served_rps"]))


@dataclass(frozen=True, slots=True)
class Knee:
    held_rps: float | None  # the highest rate that held (None: not even the first)
    failed_rps: float | None  # the lowest that did not (None: the search ran out of steps)
    judged: int  # rates judged
    # The load generator could not offer a rate above held_rps: the capacity is at least
    # held_rps, and the generator, not the system, ended the search.
    generator_bound: bool = False


def search(
    judge: Callable[[float], bool | None],
    start: float,
    factor: float,
    refine_to: float,
    max_steps: int = 40,
) -> Knee:
    """From `start`, up by `factor` while the rate holds and down by it while it does not, until
    one rate holds and the next one up does not; then bisection (geometric) to `refine_to`.
    A rate the judge cannot decide (None: the load generator was the limit) ends the search
    with a bound: the capacity is at least the highest rate held."""
    held: float | None = None
    failed: float | None = None
    rate = start
    judged = 0
    while judged < max_steps:
        judged += 1
        outcome = judge(rate)
        if outcome is None:
            return Knee(held, failed, judged, generator_bound=True)
        if outcome:
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
        outcome = judge(rate)
        if outcome is None:
            return Knee(held, failed, judged, generator_bound=True)
        if outcome:
            held = rate
        else:
            failed = rate
    return Knee(held, failed, judged)
