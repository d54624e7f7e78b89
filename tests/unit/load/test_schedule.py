"""The arrival schedule: how many requests, when, and how processes share them."""

from __future__ import annotations

import itertools
import statistics

import pytest

from loadtests.load.schedule import Schedule


def test_constant_schedule_has_rate_times_seconds_evenly_spaced_offsets() -> None:
    offsets = Schedule(rate=200, seconds=2).offsets()
    assert len(offsets) == 400
    assert offsets[0] == 0.0
    assert offsets[-1] < 2.0
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(offsets)}
    assert gaps == {0.005}


def test_shares_of_processes_are_together_exactly_the_schedule() -> None:
    schedule = Schedule(rate=300, seconds=1, kind="poisson", seed=3)
    parts = [schedule.share(i, 3) for i in range(3)]
    assert sorted(t for part in parts for t in part) == schedule.offsets()
    assert [len(p) for p in parts] == pytest.approx([len(schedule.offsets()) / 3] * 3, abs=1)
    with pytest.raises(ValueError):
        schedule.share(3, 3)


def test_poisson_schedule_has_the_asked_mean_rate_and_is_fixed_by_its_seed() -> None:
    schedule = Schedule(rate=1000, seconds=10, kind="poisson", seed=7)
    offsets = schedule.offsets()
    # 10,000 expected, standard deviation 100: 4 % is a 4-sigma bound.
    assert 9600 <= len(offsets) <= 10400
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert statistics.mean(gaps) == pytest.approx(0.001, rel=0.04)
    # Exponential gaps: the standard deviation equals the mean (a constant schedule's is 0).
    assert statistics.stdev(gaps) == pytest.approx(0.001, rel=0.1)
    assert offsets == sorted(offsets) and offsets[0] > 0 and offsets[-1] < 10
    assert Schedule(rate=1000, seconds=10, kind="poisson", seed=7).offsets() == offsets
    assert Schedule(rate=1000, seconds=10, kind="poisson", seed=8).offsets() != offsets


@pytest.mark.parametrize("rate, seconds", [(0, 1), (10, 0), (-1, 1)])
def test_a_schedule_needs_a_positive_rate_and_length(rate: float, seconds: float) -> None:
    with pytest.raises(ValueError):
        Schedule(rate=rate, seconds=seconds)
