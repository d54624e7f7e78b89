"""What a reading of the system holds of the load (meter.served_in), by its numbers."""

from __future__ import annotations

import pytest

from loadtests.measure.meter import served_in


def test_a_reading_that_ends_with_the_load_holds_rate_times_its_length() -> None:
    # the in-flight requests' work at its start and its end cancel
    assert served_in(10.0, 10.4, 10.4, 100.0, 0.006) == pytest.approx(40.0)
    assert served_in(10.0, 10.3, 10.4, 100.0, 0.006) == pytest.approx(30.0)  # ends under load


def test_a_reading_past_the_load_holds_the_in_flight_requests_work_not_the_idle_tail() -> None:
    # 16 ms past a load whose requests take 6 ms: their work is done by then, half a latency's
    # worth of requests on average
    assert served_in(10.0, 10.416, 10.4, 100.0, 0.006) == pytest.approx(100 * (0.4 + 0.003))
    # 2 ms past it: d - d^2 / 2L of the 6 ms
    assert served_in(10.0, 10.402, 10.4, 100.0, 0.006) == pytest.approx(
        100 * (0.4 + 0.002 - 0.002**2 / (2 * 0.006))
    )
    # no latency known: nothing of the tail
    assert served_in(10.0, 10.416, 10.4, 100.0, 0.0) == pytest.approx(40.0)
    # the tail's share grows with it, never past L / 2
    tails = [served_in(0.0, 1.0 + d, 1.0, 100.0, 0.006) - 100 for d in (0.001, 0.003, 0.006, 0.05)]
    assert tails == sorted(tails) and tails[-1] == pytest.approx(0.3)


def test_an_idle_reading_counts_one_request_at_least() -> None:
    assert served_in(10.0, 10.4, 10.4, 0.0, 0.006) == 1.0
