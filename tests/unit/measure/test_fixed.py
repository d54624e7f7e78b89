"""loadtests/measure/run.py: Bench.fixed, a fixed-rate window the load generator limited."""

from __future__ import annotations

from typing import Any

from loadtests.measure import gauge
from loadtests.measure.model import counts
from loadtests.measure.run import Bench


def bench() -> Bench:
    """A Bench with what `fixed` and `record` use: its windows and its machine's pace."""
    made = Bench.__new__(Bench)
    made.windows = []
    made.pace = gauge.Pace(5.0)
    return made


def taker(*limited: bool) -> Any:
    taken = iter(limited)

    def take() -> dict[str, Any]:
        return {"phase": "chain", "design": "session", "generator_limited": next(taken)}

    return take


def test_a_limited_window_is_kept_replaced_and_measured_once_more() -> None:
    b = bench()
    window = b.fixed(taker(True, False), hops=1)
    assert window["generator_limited"] is False and window["hops"] == 1
    first, second = b.windows
    assert first["replaced"] is True and first["hops"] == 1 and not counts(first)
    assert second is window and counts(second)


def test_once_only_and_not_for_a_window_that_counts() -> None:
    b = bench()
    assert b.fixed(taker(True, True))["generator_limited"] is True  # it stands: not counted
    assert len(b.windows) == 2
    b = bench()
    b.fixed(taker(False))
    assert len(b.windows) == 1 and "replaced" not in b.windows[0]
